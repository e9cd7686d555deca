//! The state of every bucket: a fixed table of slots in Envoy's shared
//! data, updated with compare-and-swap.
//!
//! Shared data keys are never freed, so the key space is fixed by design:
//! rule `r` owns the keys `rate_limit.<r>.0` … `rate_limit.<r>.<slots-1>`,
//! all created when the plugin is configured. A request's key hash picks
//! the slot; the slot holds only the GCRA state and a fingerprint of the
//! last key that wrote it. Keys that land in the same slot share its state:
//! a colliding key is never handed a fresh bucket (stricter, never looser),
//! and spraying keys cannot reset anyone's limit nor grow memory.
//!
//! Slots are created up front because creation is not atomic in Envoy (a
//! missing key is written whatever CAS is passed): two workers creating
//! the same slot at once would lose one update.
//!
//! A configuration update that changes a rule's `slots` moves keys to other
//! slots. So that no key gets a fresh bucket by moving, each rule's layout
//! (`rate_limit.<r>.layout`) remembers the earlier slot counts for as long
//! as debt written under them can last; until then a request also reads the
//! slots its key had under them and takes the largest debt (stricter, never
//! looser), and writes only its current slot.

use crate::gcra::{rescale, Limit, Verdict};
use crate::key::Seed;
use filter_common::{CasOutcome, SharedData};

/// Shared data key of the hash seed, common to all rules.
pub const SEED_KEY: &str = "rate_limit.seed";
/// Compare-and-swap attempts per rule and request before the rule's
/// `failure_mode` applies.
pub const MAX_ATTEMPTS: u32 = 16;
/// Stored value: TAT (12 bytes; scaled TATs stay below 2^96), its scale
/// (4), the key fingerprint (4). Never empty: Envoy hands an empty value
/// back as "no value", without its CAS.
const VALUE_LEN: usize = 20;
/// A slot no request has used yet.
const FRESH: [u8; VALUE_LEN] = [0; VALUE_LEN];

/// Where a key lives in a rule's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub slot: u32,
    /// Tells keys sharing a slot apart (for the collision metric only).
    pub fingerprint: u32,
    /// The hash bits that pick the slot, to find it in a table of another
    /// size ([`Placement::slot_in`]).
    low: u32,
}

impl Placement {
    /// Low 32 bits pick the slot (multiply-shift: uniform for any table
    /// size), high 32 bits are the fingerprint.
    pub fn from_hash(hash: u64, slots: u32) -> Self {
        let low = hash & 0xffff_ffff;
        let slot = (low * u64::from(slots)) >> 32;
        Placement {
            slot: u32::try_from(slot).unwrap_or(0),
            fingerprint: u32::try_from(hash >> 32).unwrap_or(0),
            low: u32::try_from(low).unwrap_or(0),
        }
    }

    /// The key's slot in a table of `slots` slots (an earlier layout).
    pub fn slot_in(&self, slots: u32) -> u32 {
        let slot = (u64::from(self.low) * u64::from(slots)) >> 32;
        u32::try_from(slot).unwrap_or(0)
    }
}

/// An earlier slot count of a rule, still read until `until_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub slots: u32,
    pub until_ns: u64,
}

/// How long after a layout change workers may still run the old
/// configuration (Envoy hands a new one to every worker within
/// milliseconds; this is a wide margin) and add debt under it.
pub const LAYOUT_GRACE_NS: u64 = 60 * 1_000_000_000;
/// Earlier layouts remembered per rule (bounded value size).
const MAX_PREVIOUS: usize = 4;
/// Layout value: slots (4), horizon (8), then `MAX_PREVIOUS` × (slots 4,
/// until 8); slots 0 marks an empty entry.
const LAYOUT_LEN: usize = 12 + MAX_PREVIOUS * 12;

/// A rule's slot count in force, how long its debt can last (the bucket
/// as time, in ns), and the earlier slot counts still to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    slots: u32,
    horizon_ns: u64,
    previous: Vec<Previous>,
}

fn layout_key(rule: &str) -> String {
    format!("rate_limit.{rule}.layout")
}

fn encode_layout(l: &Layout) -> [u8; LAYOUT_LEN] {
    let mut out = [0u8; LAYOUT_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        for (o, b) in out.iter_mut().skip(at).zip(bytes) {
            *o = *b;
        }
    };
    put(0, &l.slots.to_le_bytes());
    put(4, &l.horizon_ns.to_le_bytes());
    for (i, p) in l.previous.iter().take(MAX_PREVIOUS).enumerate() {
        put(12 + i * 12, &p.slots.to_le_bytes());
        put(16 + i * 12, &p.until_ns.to_le_bytes());
    }
    out
}

fn decode_layout(bytes: &[u8]) -> Option<Layout> {
    if bytes.len() != LAYOUT_LEN {
        return None;
    }
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let previous = (0..MAX_PREVIOUS)
        .map(|i| Previous {
            slots: u32_at(12 + i * 12),
            until_ns: u64_at(16 + i * 12),
        })
        .filter(|p| p.slots != 0)
        .collect();
    Some(Layout {
        slots: u32_at(0),
        horizon_ns: u64_at(4),
        previous,
    })
}

/// Records the rule's slot count in force and returns the earlier ones a
/// request must still read. Called at configuration by every VM: the first
/// to see a changed `slots` (Envoy's main thread) records the old count,
/// readable until its debt has certainly been repaid (`horizon_ns` of the
/// old limit, plus [`LAYOUT_GRACE_NS`] for workers still on the old
/// configuration); the others find it already recorded.
pub fn update_layout(
    shared: &mut dyn SharedData,
    rule: &str,
    slots: u32,
    horizon_ns: u64,
    now_ns: u64,
) -> Result<Vec<Previous>, String> {
    let key = layout_key(rule);
    for _ in 0..MAX_ATTEMPTS {
        let found = shared.get(&key);
        let old = found.as_ref().and_then(|(v, _)| decode_layout(v));
        let mut previous: Vec<Previous> = Vec::new();
        if let Some(old) = &old {
            if old.slots != slots && old.slots != 0 {
                previous.push(Previous {
                    slots: old.slots,
                    until_ns: now_ns
                        .saturating_add(old.horizon_ns)
                        .saturating_add(LAYOUT_GRACE_NS),
                });
            }
            for p in &old.previous {
                let live = p.until_ns > now_ns && p.slots != slots;
                if live && !previous.iter().any(|q| q.slots == p.slots) {
                    previous.push(*p);
                }
            }
        }
        previous.truncate(MAX_PREVIOUS);
        let next = Layout {
            slots,
            horizon_ns,
            previous,
        };
        if old.as_ref() == Some(&next) {
            return Ok(next.previous);
        }
        match shared.set(&key, &encode_layout(&next), found.map(|(_, cas)| cas)) {
            CasOutcome::Written => return Ok(next.previous),
            CasOutcome::Conflict => continue,
            CasOutcome::Failed => return Err(format!("cannot write {key} to shared data")),
        }
    }
    Err(format!("cannot update {key} in shared data (conflicts)"))
}

/// Built by hand: this runs on every request, and `format!` costs more.
pub fn slot_key(rule: &str, slot: u32) -> String {
    let mut key = String::with_capacity(rule.len() + 22);
    key.push_str("rate_limit.");
    key.push_str(rule);
    key.push('.');
    let mut digits = [0u8; 10];
    let mut n = slot;
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    for d in digits.iter().skip(at) {
        key.push(char::from(*d));
    }
    key
}

fn marker_key(rule: &str) -> String {
    format!("rate_limit.{rule}.slots")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    tat: u128,
    scale: u32,
    fingerprint: u32,
}

fn encode(s: Stored) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    let tat = s.tat.to_le_bytes();
    for (o, b) in out.iter_mut().zip(tat.iter().take(12)) {
        *o = *b;
    }
    for (o, b) in out.iter_mut().skip(12).zip(s.scale.to_le_bytes()) {
        *o = b;
    }
    for (o, b) in out.iter_mut().skip(16).zip(s.fingerprint.to_le_bytes()) {
        *o = b;
    }
    out
}

/// Anything that is not one of our values reads as a fresh slot; only this
/// module writes these keys.
fn decode(bytes: &[u8]) -> Stored {
    let word = |from: usize| {
        let mut w = [0u8; 4];
        if let Some(src) = bytes.get(from..from + 4) {
            w.copy_from_slice(src);
        }
        u32::from_le_bytes(w)
    };
    if bytes.len() != VALUE_LEN {
        return Stored {
            tat: 0,
            scale: 0,
            fingerprint: 0,
        };
    }
    let mut tat = [0u8; 16];
    if let (Some(dst), Some(src)) = (tat.get_mut(..12), bytes.get(..12)) {
        dst.copy_from_slice(src);
    }
    Stored {
        tat: u128::from_le_bytes(tat),
        scale: word(12),
        fingerprint: word(16),
    }
}

/// The seed every worker hashes keys with. The first VM to configure (in
/// Envoy, the main thread's configuration check, before any worker) stores
/// `fresh`; the others read it.
pub fn load_or_create_seed(shared: &mut dyn SharedData, fresh: [u8; 16]) -> Result<Seed, String> {
    let read = |shared: &dyn SharedData| {
        shared
            .get(SEED_KEY)
            .and_then(|(v, _)| <[u8; 16]>::try_from(v.as_slice()).ok())
    };
    if let Some(seed) = read(shared) {
        return Ok(Seed(seed));
    }
    if shared.set(SEED_KEY, &fresh, None) == CasOutcome::Failed {
        return Err(format!("cannot write {SEED_KEY} to shared data"));
    }
    read(shared)
        .map(Seed)
        .ok_or_else(|| format!("cannot read {SEED_KEY} back from shared data"))
}

/// Creates the rule's slots unless an earlier configuration did. Returns
/// how many it created.
pub fn prepare_table(shared: &mut dyn SharedData, rule: &str, slots: u32) -> Result<u32, String> {
    let marker = marker_key(rule);
    let ready = shared
        .get(&marker)
        .and_then(|(v, _)| std::str::from_utf8(&v).ok()?.parse::<u32>().ok());
    if ready.is_some_and(|n| n >= slots) {
        return Ok(0);
    }
    let mut created = 0;
    for slot in 0..slots {
        let key = slot_key(rule, slot);
        if shared.get(&key).is_none() {
            if shared.set(&key, &FRESH, None) == CasOutcome::Failed {
                return Err(format!("cannot create {key} in shared data"));
            }
            created += 1;
        }
    }
    let count = slots.max(ready.unwrap_or(0)).to_string();
    if shared.set(&marker, count.as_bytes(), None) == CasOutcome::Failed {
        return Err(format!("cannot write {marker} to shared data"));
    }
    Ok(created)
}

/// A read without a write: what the slot would decide now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub verdict: Verdict,
    /// Another key's debt is in this slot: the two share a bucket.
    pub collision: bool,
}

/// The outcome of a compare-and-swap update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Allowed; the slot now holds the new state.
    Allowed(Verdict),
    /// Denied; the slot is unchanged.
    Denied(Verdict),
    /// The state could not be updated (attempts exhausted or the host
    /// refused the write).
    Unavailable,
}

/// One rule's table, seen by one request.
pub struct Table<'a> {
    pub rule: &'a str,
    pub limit: Limit,
    /// Earlier slot counts whose slots still count ([`update_layout`]).
    pub previous: &'a [Previous],
}

impl Table<'_> {
    fn read(&self, shared: &dyn SharedData, key: &str) -> Option<(Stored, u32)> {
        let (bytes, cas) = shared.get(key)?;
        let mut stored = decode(&bytes);
        stored.tat = rescale(stored.tat, stored.scale, self.limit.scale());
        Some((stored, cas))
    }

    /// The largest debt the key left under earlier layouts (0 if none
    /// applies any more), at the current scale.
    fn moved_tat(&self, shared: &dyn SharedData, at: Placement, now_ns: u64) -> u128 {
        self.previous
            .iter()
            .filter(|p| now_ns < p.until_ns)
            .map(|p| at.slot_in(p.slots))
            .filter(|slot| *slot != at.slot)
            .filter_map(|slot| self.read(shared, &slot_key(self.rule, slot)))
            .map(|(s, _)| s.tat)
            .max()
            .unwrap_or(0)
    }

    pub fn peek(&self, shared: &dyn SharedData, at: Placement, now_ns: u64) -> Peek {
        let stored = self
            .read(shared, &slot_key(self.rule, at.slot))
            .map(|(s, _)| s);
        let tat = stored
            .map_or(0, |s| s.tat)
            .max(self.moved_tat(shared, at, now_ns));
        Peek {
            verdict: self.limit.check(tat, now_ns),
            collision: stored.is_some_and(|s| {
                s.fingerprint != at.fingerprint && self.limit.in_debt(s.tat, now_ns)
            }),
        }
    }

    /// Decides and records one request. `retries` counts CAS conflicts;
    /// `collision` tells whether the first read found another key's debt.
    pub fn take(
        &self,
        shared: &mut dyn SharedData,
        at: Placement,
        now_ns: u64,
        retries: &mut u32,
        collision: &mut bool,
    ) -> Take {
        let key = slot_key(self.rule, at.slot);
        let moved = self.moved_tat(&*shared, at, now_ns);
        for attempt in 0..MAX_ATTEMPTS {
            let Some((stored, cas)) = self.read(shared, &key) else {
                // Only when the table was not created at configuration.
                if shared.set(&key, &FRESH, None) == CasOutcome::Failed {
                    return Take::Unavailable;
                }
                continue;
            };
            if attempt == 0 {
                *collision =
                    stored.fingerprint != at.fingerprint && self.limit.in_debt(stored.tat, now_ns);
            }
            let verdict = self.limit.check(stored.tat.max(moved), now_ns);
            if !verdict.allowed {
                return Take::Denied(verdict);
            }
            let value = encode(Stored {
                tat: verdict.tat,
                scale: self.limit.scale(),
                fingerprint: at.fingerprint,
            });
            match shared.set(&key, &value, Some(cas)) {
                CasOutcome::Written => return Take::Allowed(verdict),
                CasOutcome::Conflict => *retries += 1,
                CasOutcome::Failed => return Take::Unavailable,
            }
        }
        Take::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::testing::FakeSharedData;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_780_000_000_000_000_000;

    /// Shared data where another worker slips a write in before some of
    /// our writes (every `every`-th), so our CAS conflicts.
    struct Racing {
        inner: FakeSharedData,
        every: u32,
        writes: u32,
        /// What the other worker does: take one request from the slot.
        other: Option<(Placement, u64)>,
        other_allowed: u32,
        limit: Limit,
    }

    impl SharedData for Racing {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> CasOutcome {
            self.writes += 1;
            if cas.is_some() && self.writes.is_multiple_of(self.every) {
                if let Some((at, now)) = self.other {
                    let table = Table {
                        rule: "r",
                        limit: self.limit,
                        previous: &[],
                    };
                    let mut r = 0;
                    if let Take::Allowed(_) =
                        table.take(&mut self.inner, at, now, &mut r, &mut false)
                    {
                        self.other_allowed += 1;
                    }
                }
            }
            self.inner.set(key, value, cas)
        }
    }

    fn prepared(slots: u32) -> FakeSharedData {
        let mut shared = FakeSharedData::default();
        prepare_table(&mut shared, "r", slots).unwrap();
        shared
    }

    #[test]
    fn slot_keys_are_decimal() {
        for slot in [0, 7, 10, 65535, 4_194_303, u32::MAX] {
            assert_eq!(slot_key("r-1", slot), format!("rate_limit.r-1.{slot}"));
        }
    }

    #[test]
    fn values_round_trip() {
        let s = Stored {
            tat: (1u128 << 95) + 12345,
            scale: 7,
            fingerprint: 0xdead_beef,
        };
        assert_eq!(decode(&encode(s)), s);
        assert_eq!(decode(&FRESH).tat, 0);
        assert_eq!(decode(b"junk").tat, 0);
    }

    #[test]
    fn placement_covers_the_table() {
        assert_eq!(Placement::from_hash(u64::MAX, 10).slot, 9);
        assert_eq!(Placement::from_hash(0, 10).slot, 0);
        assert_eq!(Placement::from_hash(0xabcd_0000_0000_0001, 1).slot, 0);
        assert_eq!(
            Placement::from_hash(0xabcd_0000_0000_0001, 1).fingerprint,
            0xabcd_0000
        );
    }

    #[test]
    fn the_table_is_created_once_and_never_grows() {
        let mut shared = FakeSharedData::default();
        assert_eq!(prepare_table(&mut shared, "r", 64).unwrap(), 64);
        assert_eq!(shared.entries.len(), 65);
        assert_eq!(prepare_table(&mut shared, "r", 64).unwrap(), 0);
        assert_eq!(prepare_table(&mut shared, "r", 32).unwrap(), 0);
        assert_eq!(prepare_table(&mut shared, "r", 80).unwrap(), 16);
        // Any number of keys afterwards: still the same entries.
        let table = Table {
            rule: "r",
            limit: Limit::new(1, 60, 1),
            previous: &[],
        };
        let before = shared.entries.len();
        let mut r = 0;
        for k in 0..10_000u64 {
            let at = Placement::from_hash(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 80);
            table.take(&mut shared, at, NOW, &mut r, &mut false);
        }
        assert_eq!(shared.entries.len(), before);
    }

    #[test]
    fn the_seed_is_created_once_and_then_shared() {
        let mut shared = FakeSharedData::default();
        let a = load_or_create_seed(&mut shared, [1; 16]).unwrap();
        let b = load_or_create_seed(&mut shared, [2; 16]).unwrap();
        assert_eq!(a, Seed([1; 16]));
        assert_eq!(a, b);
    }

    #[test]
    fn exact_under_cas_conflicts() {
        // Two workers take from one slot; every other write of ours races.
        let limit = Limit::new(1, 3600, 50);
        let at = Placement::from_hash(42, 16);
        let mut shared = Racing {
            inner: prepared(16),
            every: 2,
            writes: 0,
            other: Some((at, NOW)),
            other_allowed: 0,
            limit,
        };
        let table = Table {
            rule: "r",
            limit,
            previous: &[],
        };
        let (mut mine, mut retries) = (0, 0);
        for _ in 0..200 {
            match table.take(&mut shared, at, NOW, &mut retries, &mut false) {
                Take::Allowed(_) => mine += 1,
                Take::Denied(_) => {}
                Take::Unavailable => panic!("attempts ran out"),
            }
        }
        assert!(retries > 0);
        assert!(shared.other_allowed > 0);
        assert_eq!(mine + shared.other_allowed, 50);
    }

    #[test]
    fn conflicts_without_end_make_the_slot_unavailable() {
        let limit = Limit::new(1, 1, 1_000_000);
        let at = Placement::from_hash(7, 4);
        let mut shared = Racing {
            inner: prepared(4),
            every: 1,
            writes: 0,
            other: Some((at, NOW)),
            other_allowed: 0,
            limit,
        };
        let table = Table {
            rule: "r",
            limit,
            previous: &[],
        };
        let mut retries = 0;
        assert_eq!(
            table.take(&mut shared, at, NOW, &mut retries, &mut false),
            Take::Unavailable
        );
        assert_eq!(retries, MAX_ATTEMPTS);
    }

    #[test]
    fn a_colliding_key_shares_the_bucket_and_is_counted() {
        let limit = Limit::new(1, 60, 2);
        let table = Table {
            rule: "r",
            limit,
            previous: &[],
        };
        let mut shared = prepared(1);
        let a = Placement::from_hash(1 << 32, 1);
        let b = Placement::from_hash(2 << 32, 1);
        assert_eq!(a.slot, b.slot);
        let mut r = 0;
        assert!(!table.peek(&shared, a, NOW).collision);
        assert!(matches!(
            table.take(&mut shared, a, NOW, &mut r, &mut false),
            Take::Allowed(_)
        ));
        let p = table.peek(&shared, b, NOW);
        assert!(p.collision);
        assert!(matches!(
            table.take(&mut shared, b, NOW, &mut r, &mut false),
            Take::Allowed(_)
        ));
        // b did not get a fresh bucket: a and b together had two requests.
        assert!(matches!(
            table.take(&mut shared, a, NOW, &mut r, &mut false),
            Take::Denied(_)
        ));
        assert!(matches!(
            table.take(&mut shared, b, NOW, &mut r, &mut false),
            Take::Denied(_)
        ));
        // Once the debt is repaid, sharing the slot is no collision.
        assert!(!table.peek(&shared, a, NOW + 120 * 1_000_000_000).collision);
    }

    #[test]
    fn a_changed_rate_keeps_the_debt() {
        let mut shared = prepared(1);
        let at = Placement::from_hash(0, 1);
        let mut r = 0;
        let old = Table {
            rule: "r",
            limit: Limit::new(1, 60, 1),
            previous: &[],
        };
        assert!(matches!(
            old.take(&mut shared, at, NOW, &mut r, &mut false),
            Take::Allowed(_)
        ));
        // Reconfigured to 7 per minute, burst 1: the minute-long debt is
        // now seven times as long in scaled units, still not repaid.
        let new = Table {
            rule: "r",
            limit: Limit::new(7, 60, 1),
            previous: &[],
        };
        assert!(matches!(
            new.take(&mut shared, at, NOW, &mut r, &mut false),
            Take::Denied(_)
        ));
        assert!(matches!(
            new.take(&mut shared, at, NOW + 60_000_000_000, &mut r, &mut false),
            Take::Allowed(_)
        ));
    }

    #[test]
    fn a_missing_slot_is_created_and_a_refused_write_is_unavailable() {
        let mut shared = FakeSharedData::default();
        let table = Table {
            rule: "r",
            limit: Limit::new(1, 1, 1),
            previous: &[],
        };
        let at = Placement::from_hash(0, 1);
        let mut r = 0;
        assert!(matches!(
            table.take(&mut shared, at, NOW, &mut r, &mut false),
            Take::Allowed(_)
        ));

        struct Refusing;
        impl SharedData for Refusing {
            fn get(&self, _: &str) -> Option<(Vec<u8>, u32)> {
                Some((FRESH.to_vec(), 1))
            }
            fn set(&mut self, _: &str, _: &[u8], _: Option<u32>) -> CasOutcome {
                CasOutcome::Failed
            }
        }
        assert_eq!(
            table.take(&mut Refusing, at, NOW, &mut r, &mut false),
            Take::Unavailable
        );
        assert!(prepare_table(&mut Refusing, "x", 1).is_err());
        assert!(load_or_create_seed(&mut Refusing, [0; 16]).is_err());
    }
    #[test]
    fn a_changed_slot_count_is_remembered_until_its_debt_is_repaid() {
        let mut shared = FakeSharedData::default();
        let h = 3_600 * 1_000_000_000;
        assert_eq!(update_layout(&mut shared, "r", 64, h, NOW).unwrap(), vec![]);
        // Every VM configures the same: nothing new is recorded.
        assert_eq!(update_layout(&mut shared, "r", 64, h, NOW).unwrap(), vec![]);
        let moved = update_layout(&mut shared, "r", 1024, 60, NOW + 5).unwrap();
        let until = NOW + 5 + h + LAYOUT_GRACE_NS;
        assert_eq!(
            moved,
            vec![Previous {
                slots: 64,
                until_ns: until
            }]
        );
        // The workers configuring after the main thread get the same.
        assert_eq!(
            update_layout(&mut shared, "r", 1024, 60, NOW + 9).unwrap(),
            moved
        );
        // Back to 64: the 1024 layout is now the earlier one (its own,
        // shorter, horizon), and 64 is current again.
        let back = update_layout(&mut shared, "r", 64, h, NOW + 10).unwrap();
        assert_eq!(
            back,
            vec![Previous {
                slots: 1024,
                until_ns: NOW + 10 + 60 + LAYOUT_GRACE_NS
            }]
        );
        // Once expired, earlier layouts are forgotten.
        assert_eq!(
            update_layout(&mut shared, "r", 32, h, until + 1).unwrap(),
            vec![Previous {
                slots: 64,
                until_ns: until + 1 + h + LAYOUT_GRACE_NS
            }]
        );
    }

    /// Keys at their limit under `from` slots stay limited after the rule
    /// moves to `to` slots, and are free again once their debt is repaid.
    fn keys_stay_limited_across(from: u32, to: u32) {
        let mut shared = FakeSharedData::default();
        let limit = Limit::new(1, 3600, 1);
        prepare_table(&mut shared, "r", from).unwrap();
        assert!(
            update_layout(&mut shared, "r", from, limit.horizon_ns(), NOW)
                .unwrap()
                .is_empty()
        );
        let old = Table {
            rule: "r",
            limit,
            previous: &[],
        };
        let keys: Vec<u64> = (1..=200u64)
            .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let mut r = 0;
        for k in &keys {
            // Each key's one request: keys sharing a slot are refused
            // already (a collision), the others take the slot's token.
            old.take(
                &mut shared,
                Placement::from_hash(*k, from),
                NOW,
                &mut r,
                &mut false,
            );
        }
        prepare_table(&mut shared, "r", to).unwrap();
        let previous =
            update_layout(&mut shared, "r", to, limit.horizon_ns(), NOW + 1_000).unwrap();
        let new = Table {
            rule: "r",
            limit,
            previous: &previous,
        };
        let later = NOW + 60 * 1_000_000_000;
        for k in &keys {
            let at = Placement::from_hash(*k, to);
            assert!(
                !new.peek(&shared, at, later).verdict.allowed,
                "{from}->{to}: key {k}"
            );
            assert!(
                matches!(
                    new.take(&mut shared, at, later, &mut r, &mut false),
                    Take::Denied(_)
                ),
                "{from}->{to}: key {k}"
            );
        }
        // The same move without the layout hands most keys a fresh bucket:
        // what the layout prevents.
        let blind = Table {
            rule: "r",
            limit,
            previous: &[],
        };
        let fresh = keys
            .iter()
            .filter(|k| {
                blind
                    .peek(&shared, Placement::from_hash(**k, to), later)
                    .verdict
                    .allowed
            })
            .count();
        assert!(fresh > 0, "{from}->{to}: the test moves no key");
        // An hour later every debt is repaid: one request each again.
        let hour = NOW + 3_601 * 1_000_000_000;
        let at = Placement::from_hash(keys[0], to);
        assert!(new.peek(&shared, at, hour).verdict.allowed);
    }

    #[test]
    fn a_client_at_its_limit_stays_limited_when_slots_change() {
        keys_stay_limited_across(64, 1024);
        keys_stay_limited_across(1024, 64);
        keys_stay_limited_across(1000, 999);
    }
}
