//! Protobuf JSON durations (`"600s"`, `"1.5s"`), as Envoy configs write
//! them, and the object form `{"seconds": 300}` that Envoy's own examples
//! use (Envoy's loader accepts both).

use serde::{Deserialize, Deserializer};

/// A duration in milliseconds, parsed from the proto-JSON form `"<seconds>s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    pub fn nanos(self) -> u64 {
        self.0.saturating_mul(1_000_000)
    }
    pub fn secs(self) -> u64 {
        self.0 / 1000
    }
}

/// Parses `"10s"`, `"0.5s"`, `"1.000340012s"`. Up to ten years, so
/// arithmetic on it never overflows.
pub fn parse(text: &str) -> Result<Millis, String> {
    let err = || format!("`{text}` is not a duration such as \"10s\" or \"0.5s\"");
    let num = text.strip_suffix('s').ok_or_else(err)?;
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 9 {
        return Err(err());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return Err(err());
    }
    let secs: u64 = whole.parse().map_err(|_| err())?;
    if secs > 10 * 365 * 86_400 {
        return Err(format!("`{text}` is longer than ten years"));
    }
    let mut ms = 0u64;
    for (i, b) in frac.bytes().take(3).enumerate() {
        let digit = u64::from(b - b'0');
        ms += digit * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    Ok(Millis(secs * 1000 + ms))
}

/// `{"seconds": 300, "nanos": 500000000}`; `seconds` may be a number or,
/// as proto-JSON writes an int64, a string. (A visitor, not an untagged
/// enum: those cost the wasm module tens of KiB.)
fn from_parts(secs: u64, nanos: u64) -> Result<Millis, String> {
    if nanos >= 1_000_000_000 {
        return Err("`nanos` must be below 1000000000".into());
    }
    if secs > 10 * 365 * 86_400 {
        return Err(format!("{secs} seconds is longer than ten years"));
    }
    Ok(Millis(secs * 1000 + nanos / 1_000_000))
}

/// A whole number of seconds, as a number or a string.
struct Seconds(u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
                v.parse()
                    .map(Seconds)
                    .map_err(|_| E::custom("`seconds` must be a whole number of seconds"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"10s\" or {\"seconds\": 10}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Millis, E> {
                parse(v).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Millis, A::Error> {
                use serde::de::Error;
                let (mut secs, mut nanos) = (0u64, 0u64);
                while let Some(key) = m.next_key::<String>()? {
                    match key.as_str() {
                        "seconds" => secs = m.next_value::<Seconds>()?.0,
                        "nanos" => nanos = u64::from(m.next_value::<u32>()?),
                        other => {
                            return Err(A::Error::custom(format!(
                                "unknown field `{other}`, expected `seconds` or `nanos`"
                            )))
                        }
                    }
                }
                from_parts(secs, nanos).map_err(A::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_proto_durations() {
        assert_eq!(parse("600s"), Ok(Millis(600_000)));
        assert_eq!(parse("0.5s"), Ok(Millis(500)));
        assert_eq!(parse("1.000340012s"), Ok(Millis(1000)));
        assert_eq!(parse("0s"), Ok(Millis(0)));
        for bad in [
            "",
            "s",
            "10",
            "-1s",
            "1.5.2s",
            "1e3s",
            "10m",
            "9999999999s",
            " 1s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_object_form_envoy_examples_use() {
        let d =
            |v: serde_json::Value| serde_json::from_value::<Millis>(v).map_err(|e| e.to_string());
        for (v, want) in [
            (serde_json::json!({"seconds": 300}), Ok(Millis(300_000))),
            (serde_json::json!({"seconds": "300"}), Ok(Millis(300_000))),
            (
                serde_json::json!({"seconds": 1, "nanos": 500_000_000}),
                Ok(Millis(1500)),
            ),
            (serde_json::json!({"nanos": 2_000_000}), Ok(Millis(2))),
            (serde_json::json!("1.5s"), Ok(Millis(1500))),
        ] {
            assert_eq!(d(v.clone()), want, "{v}");
        }
        for bad in [
            serde_json::json!({"seconds": -1}),
            serde_json::json!({"seconds": 1.5}),
            serde_json::json!({"nanos": 1_000_000_000}),
            serde_json::json!({"minutes": 1}),
            serde_json::json!({"seconds": 999_999_999_999u64}),
            serde_json::json!(10),
            serde_json::json!("10"),
        ] {
            assert!(d(bad.clone()).is_err(), "{bad}");
        }
    }
}
