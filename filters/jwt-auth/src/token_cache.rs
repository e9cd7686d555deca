//! Verified tokens, so a repeated token skips the signature check. Keyed by
//! a SHA-256 of (provider, token): the token itself is not kept. Bounded in
//! entries and bytes; an entry dies at the token's `exp` and when its
//! provider's key set changes. Claims are re-checked on every hit.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Tokens without `exp` are kept at most this long (seconds).
const NO_EXP_TTL: i64 = 300;
/// Overhead counted per entry besides the payload text.
const ENTRY_OVERHEAD: usize = 128;

pub type CacheKey = [u8; 32];

pub fn cache_key(provider: usize, token: &[u8]) -> CacheKey {
    let mut h = Sha256::new();
    h.update((provider as u64).to_le_bytes());
    h.update(token);
    h.finalize().into()
}

#[derive(Debug, Clone)]
struct Entry {
    key_version: u64,
    expires_at: i64,
    payload: Rc<Map<String, Value>>,
    size: usize,
    seq: u64,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    seq: u64,
    map: HashMap<CacheKey, Entry>,
    /// Insertion order for eviction, `(key, seq)`; stale pairs are skipped.
    order: VecDeque<(CacheKey, u64)>,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        TokenCache {
            max_entries,
            max_bytes,
            ..TokenCache::default()
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The verified payload, if cached under the current key set and alive.
    pub fn get(
        &mut self,
        key: &CacheKey,
        key_version: u64,
        now: i64,
    ) -> Option<Rc<Map<String, Value>>> {
        let e = self.map.get(key)?;
        if e.key_version == key_version && now < e.expires_at {
            return Some(e.payload.clone());
        }
        self.remove(key);
        None
    }

    /// Caches a verified payload. `exp` bounds its life; `payload_len` is
    /// the size of its JSON text.
    pub fn insert(
        &mut self,
        key: CacheKey,
        key_version: u64,
        exp: Option<i64>,
        now: i64,
        payload: Rc<Map<String, Value>>,
        payload_len: usize,
    ) {
        if self.max_entries == 0 {
            return;
        }
        let expires_at = exp.unwrap_or(now.saturating_add(NO_EXP_TTL));
        let size = payload_len.saturating_add(ENTRY_OVERHEAD);
        if expires_at <= now || size > self.max_bytes {
            return;
        }
        self.remove(&key);
        self.seq += 1;
        self.map.insert(
            key,
            Entry {
                key_version,
                expires_at,
                payload,
                size,
                seq: self.seq,
            },
        );
        self.order.push_back((key, self.seq));
        self.bytes += size;
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((k, seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|e| e.seq == seq) {
                self.remove(&k);
            }
        }
        if self.order.len() > 2 * self.max_entries + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(e.size);
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn payload() -> Rc<Map<String, Value>> {
        Rc::new(json!({"sub": "a"}).as_object().unwrap().clone())
    }

    #[test]
    fn hit_until_exp_and_until_the_key_set_changes() {
        let mut c = TokenCache::new(10, 1 << 20);
        let k = cache_key(0, b"tok");
        c.insert(k, 1, Some(200), 100, payload(), 10);
        assert!(c.get(&k, 1, 199).is_some());
        assert!(c.get(&k, 1, 200).is_none(), "never outlives exp");
        c.insert(k, 1, Some(200), 100, payload(), 10);
        assert!(c.get(&k, 2, 150).is_none(), "a new key set invalidates");
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
        assert_ne!(cache_key(0, b"tok"), cache_key(1, b"tok"));
    }

    #[test]
    fn expired_or_oversized_entries_are_not_kept() {
        let mut c = TokenCache::new(10, 1000);
        c.insert(cache_key(0, b"a"), 1, Some(100), 100, payload(), 10);
        c.insert(cache_key(0, b"b"), 1, Some(500), 100, payload(), 5000);
        assert!(c.is_empty());
        c.insert(cache_key(0, b"c"), 1, None, 100, payload(), 10);
        assert!(c
            .get(&cache_key(0, b"c"), 1, 100 + NO_EXP_TTL - 1)
            .is_some());
        assert!(c.get(&cache_key(0, b"c"), 1, 100 + NO_EXP_TTL).is_none());
        let mut off = TokenCache::new(0, 1000);
        off.insert(cache_key(0, b"a"), 1, Some(500), 100, payload(), 10);
        assert!(off.is_empty());
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let mut c = TokenCache::new(3, 1 << 20);
        for i in 0..100u32 {
            c.insert(
                cache_key(0, &i.to_le_bytes()),
                1,
                Some(1000),
                1,
                payload(),
                10,
            );
            assert!(c.len() <= 3);
        }
        assert!(c.get(&cache_key(0, &99u32.to_le_bytes()), 1, 2).is_some());
        assert!(c.get(&cache_key(0, &0u32.to_le_bytes()), 1, 2).is_none());
        let mut c = TokenCache::new(1000, 10 * (ENTRY_OVERHEAD + 100));
        for i in 0..100u32 {
            c.insert(
                cache_key(0, &i.to_le_bytes()),
                1,
                Some(1000),
                1,
                payload(),
                100,
            );
            assert!(c.bytes() <= 10 * (ENTRY_OVERHEAD + 100));
        }
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn the_order_queue_stays_bounded_under_churn() {
        let mut c = TokenCache::new(2, 1 << 20);
        let k = cache_key(0, b"x");
        for v in 0..10_000u64 {
            c.insert(k, v, Some(1000), 1, payload(), 10);
            let _ = c.get(&k, v + 1, 2);
        }
        assert!(c.order.len() <= 2 * 2 + 17);
    }
}
