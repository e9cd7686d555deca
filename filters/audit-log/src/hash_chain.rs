//! The hash chain that makes deletions, reorderings and edits visible.
//!
//! Each producer (one worker VM) numbers its events from 0 and links each
//! to the one before:
//!
//! - `audit.producer`: the producer id; `audit.seq`: 0, 1, 2, ...
//! - `audit.prev_hash`: the `audit.hash` of event `seq - 1`, or
//!   [`GENESIS`] (64 zeros) for `seq` 0.
//! - `audit.hash` = lower-case hex of
//!   `SHA-256("portcullis-audit-v1\n" || canonical(event without audit.hash))`,
//!   with `canonical` as [`crate::canonical`] defines it.

use crate::canonical::{canonical, write_for_hash};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first event of a producer.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation: a hash of these events cannot be mistaken for
/// another format's.
pub const DOMAIN: &[u8] = b"portcullis-audit-v1\n";

/// One producer's chain: the next sequence number and the last hash.
#[derive(Debug, Clone)]
pub struct Chain {
    producer: String,
    next_seq: u64,
    prev_hash: String,
}

impl Chain {
    pub fn new(producer: impl Into<String>) -> Self {
        Chain {
            producer: producer.into(),
            next_seq: 0,
            prev_hash: GENESIS.to_string(),
        }
    }

    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The next sequence number and the hash it must link to.
    pub fn next_link(&self) -> (u64, &str) {
        (self.next_seq, &self.prev_hash)
    }

    /// Hashes the canonical bytes of the next event (without its hash) and
    /// advances the chain; returns the hash.
    pub fn append(&mut self, canonical_without_hash: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(canonical_without_hash);
        let hash = hex(&h.finalize());
        self.prev_hash.clone_from(&hash);
        self.next_seq = self.next_seq.wrapping_add(1);
        hash
    }

    /// Sets `audit.producer`, `seq`, `prev_hash` and `hash` on the event
    /// (an object) and advances the chain. Returns the sequence number and
    /// the event as its canonical JSON line, which is what sinks write:
    /// serialized once, the hash spliced in (`hash` sorts first in
    /// `audit`).
    pub fn seal(&mut self, event: &mut Value) -> (u64, String) {
        let seq = self.next_seq;
        if let Some(audit) = event
            .as_object_mut()
            .map(|o| {
                o.entry("audit")
                    .or_insert_with(|| Value::Object(Default::default()))
            })
            .and_then(Value::as_object_mut)
        {
            audit.insert("producer".into(), Value::from(self.producer.as_str()));
            audit.insert("seq".into(), Value::from(seq));
            audit.insert("prev_hash".into(), Value::from(self.prev_hash.as_str()));
            audit.remove("hash");
        }
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(DOMAIN);
        let audit_at = write_for_hash(event, &mut buf);
        let hash = hex(&Sha256::digest(&buf));
        if let Some(audit) = event.get_mut("audit").and_then(Value::as_object_mut) {
            audit.insert("hash".into(), Value::from(hash.as_str()));
        }
        let mut line = buf.split_off(DOMAIN.len());
        match audit_at.and_then(|at| at.checked_sub(DOMAIN.len())) {
            Some(at) if at <= line.len() => {
                let field = format!("\"hash\":\"{hash}\",");
                line.splice(at..at, field.into_bytes());
            }
            _ => line = canonical(event),
        }
        self.prev_hash = hash;
        self.next_seq = seq.wrapping_add(1);
        let line = String::from_utf8(line)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        (seq, line)
    }
}

/// A producer id, `<node id>/<16 hex digits>`: Envoy's node id (`envoy`
/// when it has none) and a per-VM nonce, so that every worker VM, and every
/// restart of one, starts a chain of its own (README.md, "Producer").
pub fn producer_id(node_id: Option<&[u8]>, nonce: [u8; 8]) -> String {
    let node = node_id
        .map(String::from_utf8_lossy)
        .filter(|s| !s.is_empty())
        .unwrap_or("envoy".into());
    format!("{node}/{}", hex(&nonce))
}

/// The hash of an event, ignoring any `audit.hash` it carries.
pub fn event_hash(event: &Value) -> String {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(DOMAIN);
    write_for_hash(event, &mut buf);
    hex(&Sha256::digest(&buf))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.extend(char::from_digit(u32::from(b >> 4), 16));
        s.extend(char::from_digit(u32::from(b & 15), 16));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn chain_links_events() {
        let mut c = Chain::new("node/abc");
        let mut e0 = json!({"http": {"status": 200}});
        let mut e1 = json!({"http": {"status": 401}, "audit": {"schema_version": "1"}});
        let (s0, line0) = c.seal(&mut e0);
        assert_eq!(s0, 0);
        assert_eq!(c.seal(&mut e1).0, 1);
        // The line is the canonical form of the sealed event.
        assert_eq!(line0.as_bytes(), canonical(&e0));
        assert_eq!(e0["audit"]["prev_hash"], GENESIS);
        assert_eq!(e1["audit"]["prev_hash"], e0["audit"]["hash"]);
        assert_eq!(e1["audit"]["schema_version"], "1");
        assert_eq!(e0["audit"]["hash"].as_str().unwrap(), event_hash(&e0));
        // The hash does not depend on key order or spacing of a re-parse.
        let text = serde_json::to_string_pretty(&e1).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event_hash(&back), e1["audit"]["hash"].as_str().unwrap());
        // An edit changes it.
        let mut edited = back.clone();
        edited["http"]["status"] = json!(200);
        assert_ne!(event_hash(&edited), e1["audit"]["hash"].as_str().unwrap());
    }

    #[test]
    fn producer_ids_name_the_node_and_the_vm() {
        let nonce = [0, 1, 2, 3, 0xa4, 0xb5, 0xc6, 0xff];
        assert_eq!(
            producer_id(Some(b"sidecar~10.0.0.1"), nonce),
            "sidecar~10.0.0.1/00010203a4b5c6ff"
        );
        assert_eq!(producer_id(Some(b""), nonce), "envoy/00010203a4b5c6ff");
        assert_eq!(producer_id(None, nonce), "envoy/00010203a4b5c6ff");
    }

    #[test]
    fn known_vector() {
        // Pins the canonical form: changing it breaks every stored chain.
        let e = json!({"audit": {"producer": "p", "seq": 0, "prev_hash": GENESIS, "hash": "x"}});
        let mut input = DOMAIN.to_vec();
        input.extend_from_slice(
            format!(r#"{{"audit":{{"prev_hash":"{GENESIS}","producer":"p","seq":0}}}}"#).as_bytes(),
        );
        assert_eq!(event_hash(&e), hex(&Sha256::digest(&input)));
    }
}
