//! Protobuf JSON durations (`"600s"`, `"1.5s"`), as Envoy configs write them.

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

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
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
}
