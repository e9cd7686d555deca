//! Registered claims (RFC 7519 §4.1): time, issuer, audience, subject.
//! Time claims are read as numbers only, checked against a bounded range
//! before any arithmetic, so no value can overflow.

use crate::status::Reason;
use serde_json::{Map, Value};

/// Latest time we accept in a claim: 9999-12-31T23:59:59Z.
const MAX_TIME: i64 = 253_402_300_799;

/// What a provider checks on every verified payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub clock_skew_secs: i64,
    pub require_expiration: bool,
    pub max_lifetime_secs: Option<i64>,
}

/// The time claims of a payload, in seconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Times {
    pub fn read(payload: &Map<String, Value>) -> Result<Times, Reason> {
        Ok(Times {
            exp: time(payload, "exp")?,
            nbf: time(payload, "nbf")?,
            iat: time(payload, "iat")?,
        })
    }
}

/// A NumericDate: an integer or a finite fraction, within [0, year 9999].
fn time(payload: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reason> {
    let Some(v) = payload.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = v else {
        return Err(Reason::BadTimeClaim);
    };
    let secs = if let Some(i) = n.as_i64() {
        i
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() && (0.0..=MAX_TIME as f64).contains(&f) => f.floor() as i64,
            _ => return Err(Reason::BadTimeClaim),
        }
    };
    if (0..=MAX_TIME).contains(&secs) {
        Ok(Some(secs))
    } else {
        Err(Reason::BadTimeClaim)
    }
}

impl ClaimRules {
    /// Checks `payload` at `now` (seconds). The first failed check wins, in
    /// the order: types, issuer, audience, expiration, not-before, issued-at,
    /// lifetime.
    pub fn check(&self, payload: &Map<String, Value>, now: i64) -> Result<Times, Reason> {
        let times = Times::read(payload)?;
        for name in ["sub", "iss"] {
            if payload.get(name).is_some_and(|v| !v.is_string()) {
                return Err(Reason::BadClaim);
            }
        }
        if let Some(want) = &self.issuer {
            if payload.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(Reason::IssuerMismatch);
            }
        }
        if !self.audiences.is_empty() && !audience_matches(payload.get("aud"), &self.audiences)? {
            return Err(Reason::AudienceMismatch);
        }
        let skew = self.clock_skew_secs;
        match times.exp {
            Some(exp) if now > exp + skew => return Err(Reason::Expired),
            None if self.require_expiration || self.max_lifetime_secs.is_some() => {
                return Err(Reason::ExpirationRequired)
            }
            _ => {}
        }
        if times.nbf.is_some_and(|nbf| nbf > now + skew) {
            return Err(Reason::NotYetValid);
        }
        if times.iat.is_some_and(|iat| iat > now + skew) {
            return Err(Reason::IssuedInFuture);
        }
        if let (Some(max), Some(exp)) = (self.max_lifetime_secs, times.exp) {
            // Measured from iat when present, else from now.
            let start = times.iat.unwrap_or(now).min(now);
            if exp - start > max {
                return Err(Reason::LifetimeTooLong);
            }
        }
        Ok(times)
    }
}

/// `aud` is a string or an array of strings; anything else is a bad claim.
fn audience_matches(aud: Option<&Value>, allowed: &[String]) -> Result<bool, Reason> {
    let ok = |s: &str| allowed.iter().any(|a| a == s);
    match aud {
        None => Ok(false),
        Some(Value::String(s)) => Ok(ok(s)),
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                let s = item.as_str().ok_or(Reason::BadClaim)?;
                found |= ok(s);
            }
            Ok(found)
        }
        Some(_) => Err(Reason::BadClaim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: i64 = 1_700_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://issuer.test".into()),
            audiences: vec!["api".into(), "other".into()],
            clock_skew_secs: 60,
            require_expiration: false,
            max_lifetime_secs: None,
        }
    }

    fn payload(v: Value) -> Map<String, Value> {
        let mut base = json!({"iss":"https://issuer.test","aud":"api","sub":"a"});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        base.as_object().unwrap().clone()
    }

    fn check(v: Value) -> Result<Times, Reason> {
        rules().check(&payload(v), NOW)
    }

    #[test]
    fn exp_and_nbf_boundaries_with_skew() {
        assert!(check(json!({"exp": NOW - 60})).is_ok());
        assert_eq!(check(json!({"exp": NOW - 61})), Err(Reason::Expired));
        assert!(check(json!({"nbf": NOW + 60})).is_ok());
        assert_eq!(check(json!({"nbf": NOW + 61})), Err(Reason::NotYetValid));
        assert!(check(json!({"iat": NOW + 60})).is_ok());
        assert_eq!(check(json!({"iat": NOW + 61})), Err(Reason::IssuedInFuture));
        let mut r = rules();
        r.clock_skew_secs = 0;
        assert!(r.check(&payload(json!({"exp": NOW})), NOW).is_ok());
        assert_eq!(
            r.check(&payload(json!({"exp": NOW - 1})), NOW),
            Err(Reason::Expired)
        );
    }

    #[test]
    fn time_claims_must_be_sane_numbers() {
        for bad in [
            json!("1700000000"),
            json!(true),
            json!(null),
            json!([1]),
            json!(-1),
            json!(1e300),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(MAX_TIME + 1),
            json!(-0.5),
        ] {
            assert_eq!(
                check(json!({"exp": bad.clone()})),
                Err(Reason::BadTimeClaim),
                "{bad}"
            );
            assert_eq!(
                check(json!({"nbf": bad.clone()})),
                Err(Reason::BadTimeClaim),
                "{bad}"
            );
            assert_eq!(
                check(json!({"iat": bad.clone()})),
                Err(Reason::BadTimeClaim),
                "{bad}"
            );
        }
        assert_eq!(
            check(json!({"exp": NOW as f64 + 0.7})).unwrap().exp,
            Some(NOW)
        );
    }

    #[test]
    fn issuer_and_audience() {
        assert_eq!(
            check(json!({"iss": "https://evil"})),
            Err(Reason::IssuerMismatch)
        );
        assert_eq!(check(json!({"iss": 5})), Err(Reason::BadClaim));
        let mut p = payload(json!({}));
        p.remove("iss");
        assert_eq!(rules().check(&p, NOW), Err(Reason::IssuerMismatch));
        assert!(check(json!({"aud": ["x", "other"]})).is_ok());
        assert_eq!(check(json!({"aud": ["x"]})), Err(Reason::AudienceMismatch));
        assert_eq!(check(json!({"aud": "API"})), Err(Reason::AudienceMismatch));
        assert_eq!(check(json!({"aud": [1]})), Err(Reason::BadClaim));
        assert_eq!(check(json!({"aud": {"a":1}})), Err(Reason::BadClaim));
        p = payload(json!({}));
        p.remove("aud");
        assert_eq!(rules().check(&p, NOW), Err(Reason::AudienceMismatch));
        let mut r = rules();
        r.audiences.clear();
        r.issuer = None;
        assert!(r.check(&p, NOW).is_ok());
    }

    #[test]
    fn expiration_and_lifetime() {
        let mut r = rules();
        r.require_expiration = true;
        assert_eq!(
            r.check(&payload(json!({})), NOW),
            Err(Reason::ExpirationRequired)
        );
        r.require_expiration = false;
        r.max_lifetime_secs = Some(3600);
        assert_eq!(
            r.check(&payload(json!({})), NOW),
            Err(Reason::ExpirationRequired)
        );
        assert!(r.check(&payload(json!({"exp": NOW + 3600})), NOW).is_ok());
        assert_eq!(
            r.check(&payload(json!({"exp": NOW + 3601})), NOW),
            Err(Reason::LifetimeTooLong)
        );
        assert_eq!(
            r.check(&payload(json!({"iat": NOW - 100, "exp": NOW + 3550})), NOW),
            Err(Reason::LifetimeTooLong)
        );
    }
}
