//! How events are written for each sink.

use crate::config::Format;

/// One event as a record of the sink's format, newline-terminated.
///
/// `_bulk` gets a `create` action whose `_id` is `<producer>:<seq>`: a batch
/// retried after a lost answer is then refused per item (409) instead of
/// being indexed twice.
pub fn record(format: Format, event_json: &str, index: &str, producer: &str, seq: u64) -> Vec<u8> {
    match format {
        Format::Ndjson => {
            let mut out = Vec::with_capacity(event_json.len() + 1);
            out.extend_from_slice(event_json.as_bytes());
            out.push(b'\n');
            out
        }
        Format::ElasticsearchBulk => {
            let action = serde_json::json!({
                "create": { "_index": index, "_id": format!("{producer}:{seq}") }
            });
            let mut out = action.to_string().into_bytes();
            out.push(b'\n');
            out.extend_from_slice(event_json.as_bytes());
            out.push(b'\n');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ndjson_is_one_line() {
        assert_eq!(
            record(Format::Ndjson, r#"{"a":1}"#, "i", "p", 0),
            b"{\"a\":1}\n"
        );
    }

    #[test]
    fn bulk_has_an_action_line_with_a_stable_id() {
        let r = String::from_utf8(record(
            Format::ElasticsearchBulk,
            r#"{"a":1}"#,
            "audit",
            "n/1",
            7,
        ))
        .unwrap();
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), 2);
        let action: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action["create"]["_index"], "audit");
        assert_eq!(action["create"]["_id"], "n/1:7");
        assert_eq!(lines[1], r#"{"a":1}"#);
        assert!(r.ends_with('\n'));
    }
}
