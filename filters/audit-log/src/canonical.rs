//! The canonical form the hash chain hashes: compact JSON with every
//! object's keys sorted by their UTF-8 bytes, no whitespace, strings
//! escaped as serde_json escapes them (`"`, `\`, control characters;
//! nothing else), and numbers as serde_json prints them (integers in
//! decimal, floats in their shortest round-trip form). A verifier can
//! rebuild it from any parse of a line, whatever key order or spacing the
//! log store used.
//!
//! Typed events are written in this form directly (their fields are
//! declared in key order, and free-form maps go through [`sorted_map`]), so
//! the request path serializes each event once.

use serde::Serialize;
use serde_json::Value;

/// The canonical bytes of a value.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    canonical_into(value, &mut buf, false, &mut None);
    buf
}

/// Appends the canonical bytes of an event without its `audit.hash` (what
/// the chain hashes). Returns where the top-level `audit` object's first
/// key starts in `out`, the place a hash is spliced in (`hash` sorts first
/// in `audit`); `None` if the event has no other `audit` key.
pub fn write_for_hash(event: &Value, out: &mut Vec<u8>) -> Option<usize> {
    let mut audit_at = None;
    canonical_into(event, out, true, &mut audit_at);
    audit_at
}

/// `top` drops `audit.hash` from the top-level `audit` object and records
/// in `audit_at` where that object's first key starts.
fn canonical_into(value: &Value, out: &mut Vec<u8>, top: bool, audit_at: &mut Option<usize>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            let mut first = true;
            for k in keys {
                let Some(v) = map.get(k) else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(k, out);
                out.push(b':');
                if top && k == "audit" {
                    if v.as_object().is_some_and(|o| o.keys().any(|k| k != "hash")) {
                        *audit_at = Some(out.len() + 1);
                    }
                    canonical_without_hash(v, out);
                } else {
                    canonical_into(v, out, false, audit_at);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_into(v, out, false, audit_at);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(s, out),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn canonical_without_hash(audit: &Value, out: &mut Vec<u8>) {
    match audit {
        Value::Object(map) if map.contains_key("hash") => {
            let mut copy = map.clone();
            copy.remove("hash");
            canonical_into(&Value::Object(copy), out, false, &mut None);
        }
        other => canonical_into(other, out, false, &mut None),
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A JSON value with object keys sorted, whatever serde_json's map order.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            Value::Object(m) => sorted_map(m, s),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Serializes a map with its keys (and those of every nested object)
/// sorted: `#[serde(serialize_with = "crate::canonical::sorted_map")]` on a
/// free-form field keeps a typed event canonical.
pub fn sorted_map<S: serde::Serializer>(
    m: &serde_json::Map<String, Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let mut map = s.serialize_map(Some(keys.len()))?;
    for k in keys {
        if let Some(v) = m.get(k) {
            map.serialize_entry(k, &Sorted(v))?;
        }
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn canonical_sorts_keys_and_is_compact() {
        let v = json!({"b": [1, {"z": 1, "a": "x\"y"}], "a": 1.5, "é": null});
        assert_eq!(
            String::from_utf8(canonical(&v)).unwrap(),
            r#"{"a":1.5,"b":[1,{"a":"x\"y","z":1}],"é":null}"#
        );
    }
}
