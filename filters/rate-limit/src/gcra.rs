//! GCRA (the generic cell rate algorithm), in exact integer arithmetic.
//!
//! A limit of `rate` requests per `unit` with bucket size `burst` lets a
//! request through at time `now` when its theoretical arrival time (TAT)
//! is not too far ahead:
//!
//! ```text
//! T   = unit / rate           emission interval: one request's worth of time
//! tau = burst × T             the bucket, as time
//! allowed  ⇔  max(TAT, now) + T − now ≤ tau ;  then TAT := max(TAT, now) + T
//! ```
//!
//! It is the token bucket of capacity `burst` refilled at `rate` per
//! `unit`, continuously: after an idle period `burst` requests pass at once,
//! then one per `T`. Over any interval of length t, at most
//! `burst + rate × t / unit` requests pass. A denied request changes
//! nothing.
//!
//! `T` is rarely a whole number of nanoseconds (1 s / 3), so every time
//! here is *scaled*: nanoseconds × `rate`. Then `T` is exactly `unit` in
//! nanoseconds and nothing is ever rounded; the stored TAT carries its
//! scale so a changed rate is converted, rounding towards stricter.

pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    rate: u32,
    unit_ns: u64,
    burst: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The TAT to store if the request is allowed (scaled).
    pub tat: u128,
    /// Requests that would still pass right now, after this one.
    pub remaining: u64,
    /// Nanoseconds until the next request can pass (0 if one can now).
    pub next_ns: u64,
    /// Nanoseconds until the bucket is full again.
    pub full_ns: u64,
}

impl Limit {
    /// `rate` ≥ 1 requests per `unit_seconds`, bucket `burst` ≥ 1 (the
    /// config validates both; zeros are raised to 1 here).
    pub fn new(rate: u32, unit_seconds: u64, burst: u32) -> Self {
        Limit {
            rate: rate.max(1),
            unit_ns: unit_seconds.saturating_mul(NANOS_PER_SECOND).max(1),
            burst: burst.max(1),
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }
    pub fn burst(&self) -> u32 {
        self.burst
    }
    pub fn unit_seconds(&self) -> u64 {
        self.unit_ns / NANOS_PER_SECOND
    }

    /// The scale of every time this limit handles.
    pub fn scale(&self) -> u32 {
        self.rate
    }

    fn t(&self) -> u128 {
        u128::from(self.unit_ns)
    }

    fn tau(&self) -> u128 {
        u128::from(self.burst) * self.t()
    }

    fn scaled(&self, now_ns: u64) -> u128 {
        u128::from(now_ns) * u128::from(self.rate)
    }

    /// Scaled time back to nanoseconds, rounded up.
    fn ns(&self, scaled: u128) -> u64 {
        let ns = scaled.div_ceil(u128::from(self.rate));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// The longest a debt can last: a full bucket, in nanoseconds.
    pub fn horizon_ns(&self) -> u64 {
        self.ns(self.tau())
    }

    /// Whether a stored TAT still holds debt at `now_ns` (a bucket that is
    /// not full).
    pub fn in_debt(&self, tat: u128, now_ns: u64) -> bool {
        tat > self.scaled(now_ns)
    }

    /// Decides one request at `now_ns` against the stored `tat` (0 for a
    /// fresh bucket).
    pub fn check(&self, tat: u128, now_ns: u64) -> Verdict {
        let now = self.scaled(now_ns);
        let (t, tau) = (self.t(), self.tau());
        // Never more than a full bucket of debt: guards against the wall
        // clock stepping back (the bucket counts as empty, not as full).
        let base = tat.min(now + tau).max(now);
        let candidate = base + t;
        let allowed = candidate - now <= tau;
        let after = if allowed { candidate } else { base };
        let debt = after - now;
        Verdict {
            allowed,
            tat: candidate,
            remaining: u64::try_from(tau.saturating_sub(debt) / t).unwrap_or(u64::MAX),
            next_ns: self.ns((after + t).saturating_sub(now + tau)),
            full_ns: self.ns(debt),
        }
    }
}

/// Converts a TAT stored at one scale (an older rate) to another, rounding
/// up: a changed rate never hands out a request that was not earned.
pub fn rescale(tat: u128, from: u32, to: u32) -> u128 {
    if from == to {
        return tat;
    }
    if from == 0 {
        return 0;
    }
    tat.div_ceil(u128::from(from)) * u128::from(to)
}

/// Whole seconds, rounded up (for `Retry-After` and the headers).
pub fn ceil_seconds(ns: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const S: u64 = NANOS_PER_SECOND;
    /// A realistic wall clock (2026), so the arithmetic sees real magnitudes.
    const EPOCH: u64 = 1_780_000_000 * S;

    /// Runs requests at the given offsets; returns which passed.
    fn run(limit: Limit, times: &[u64]) -> Vec<bool> {
        let mut tat = 0u128;
        times
            .iter()
            .map(|&t| {
                let v = limit.check(tat, EPOCH + t);
                if v.allowed {
                    tat = v.tat;
                }
                v.allowed
            })
            .collect()
    }

    fn passed(limit: Limit, times: &[u64]) -> usize {
        run(limit, times).iter().filter(|a| **a).count()
    }

    #[test]
    fn every_unit_allows_exactly_its_rate_after_the_burst() {
        for (unit, secs) in [
            ("second", 1),
            ("minute", 60),
            ("hour", 3600),
            ("day", 86_400),
        ] {
            let limit = Limit::new(10, secs, 5);
            // 5 at once, then one every unit/10.
            assert_eq!(passed(limit, &[0; 20]), 5, "{unit}");
            let step = secs * S / 10;
            let times: Vec<u64> = (0..100).map(|i| i * step / 2).collect();
            // Over 99 half-steps (49.5 T): 5 + 49 requests.
            assert_eq!(passed(limit, &times), 5 + 49, "{unit}");
        }
    }

    #[test]
    fn burst_defaults_and_refill_after_idle() {
        let limit = Limit::new(3, 1, 3);
        assert_eq!(run(limit, &[0, 0, 0, 0]), vec![true, true, true, false]);
        // One third of a second later exactly one more passes.
        let third = S / 3;
        assert_eq!(
            run(limit, &[0, 0, 0, third, third + 1, third + 2]),
            vec![true, true, true, false, true, false]
        );
        // After a long idle, the full burst again, and never more.
        let times = [0, 0, 0, 100 * S, 100 * S, 100 * S, 100 * S];
        assert_eq!(
            run(limit, &times),
            vec![true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn a_third_of_a_second_never_drifts() {
        // 3/s: T = 333_333_333.33 ns, which no integer nanosecond count
        // holds. Every second for an hour, exactly 3 requests pass; one
        // nanosecond early, only 2 have been earned.
        let limit = Limit::new(3, 1, 3);
        let mut tat = 0;
        for second in 0..3600u64 {
            let now = EPOCH + second * S;
            if second > 0 {
                let mut early = tat;
                for expect in [true, true, false] {
                    let v = limit.check(early, now - 1);
                    assert_eq!(v.allowed, expect, "second {second}");
                    if v.allowed {
                        early = v.tat;
                    }
                }
            }
            for expect in [true, true, true, false] {
                let v = limit.check(tat, now);
                assert_eq!(v.allowed, expect, "second {second}");
                if v.allowed {
                    tat = v.tat;
                }
            }
        }
    }

    #[test]
    fn remaining_and_wait_times() {
        let limit = Limit::new(10, 1, 5);
        let v = limit.check(0, EPOCH);
        assert!(v.allowed);
        assert_eq!(v.remaining, 4);
        assert_eq!(v.next_ns, 0);
        assert_eq!(v.full_ns, S / 10);
        let mut tat = v.tat;
        for _ in 0..4 {
            tat = limit.check(tat, EPOCH).tat;
        }
        let v = limit.check(tat, EPOCH);
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
        assert_eq!(v.next_ns, S / 10);
        assert_eq!(v.full_ns, S / 2);
        assert!(limit.check(tat, EPOCH + v.next_ns).allowed);
        assert!(!limit.check(tat, EPOCH + v.next_ns - 1).allowed);
        assert_eq!(ceil_seconds(v.next_ns), 1);
        assert_eq!(ceil_seconds(S), 1);
        assert_eq!(ceil_seconds(S + 1), 2);
    }

    #[test]
    fn a_clock_stepping_back_empties_the_bucket_but_never_fills_it() {
        let limit = Limit::new(1, 60, 2);
        let tat = limit.check(0, EPOCH).tat;
        let tat = limit.check(tat, EPOCH).tat;
        // An hour earlier: the debt looks like an hour; it is capped at one
        // bucket, so the next request waits at most one refill, not an hour.
        let v = limit.check(tat, EPOCH - 3600 * S);
        assert!(!v.allowed);
        assert_eq!(v.next_ns, 60 * S);
    }

    #[test]
    fn rescaling_rounds_towards_stricter() {
        assert_eq!(rescale(10, 3, 3), 10);
        assert_eq!(rescale(10, 3, 6), 24); // ceil(10 / 3) × 6
        assert_eq!(rescale(10, 0, 6), 0);
        // A TAT in the future stays in the future at the new scale.
        let old = Limit::new(10, 1, 1);
        let new = Limit::new(100, 1, 1);
        let tat = old.check(0, EPOCH).tat;
        assert!(!new.check(rescale(tat, 10, 100), EPOCH).allowed);
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The reference model: a token bucket counted in scaled units
        /// (one request costs `unit_ns`, `rate` units flow in per ns).
        struct Bucket {
            tokens: u128,
            last: u64,
            cap: u128,
            cost: u128,
            rate: u128,
        }

        impl Bucket {
            fn new(rate: u32, unit_s: u64, burst: u32, start: u64) -> Self {
                let cost = u128::from(unit_s * S);
                Bucket {
                    tokens: cost * u128::from(burst),
                    last: start,
                    cap: cost * u128::from(burst),
                    cost,
                    rate: u128::from(rate),
                }
            }
            fn take(&mut self, now: u64) -> bool {
                let refill = u128::from(now - self.last) * self.rate;
                self.tokens = (self.tokens + refill).min(self.cap);
                self.last = now;
                if self.tokens >= self.cost {
                    self.tokens -= self.cost;
                    true
                } else {
                    false
                }
            }
        }

        fn unit() -> impl Strategy<Value = u64> {
            prop_oneof![Just(1u64), Just(60), Just(3600), Just(86_400)]
        }

        /// Gaps between requests: many at once, some short, some long idles.
        fn schedule(unit_s: u64) -> impl Strategy<Value = Vec<u64>> {
            let u = unit_s * S;
            prop::collection::vec(
                prop_oneof![
                    3 => Just(0u64),
                    4 => 0..u / 50,
                    2 => 0..u,
                    1 => 0..10 * u,
                ],
                1..300,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            #[test]
            fn matches_the_token_bucket_and_the_bound(
                (unit_s, gaps) in unit().prop_flat_map(|u| (Just(u), schedule(u))),
                rate in 1u32..2000,
                burst in 1u32..60,
            ) {
                let limit = Limit::new(rate, unit_s, burst);
                let mut model = Bucket::new(rate, unit_s, burst, EPOCH);
                let mut now = EPOCH;
                let mut tat = 0u128;
                let mut passed = Vec::new();
                for gap in gaps {
                    now += gap;
                    let v = limit.check(tat, now);
                    prop_assert_eq!(v.allowed, model.take(now), "at {}", now - EPOCH);
                    if v.allowed {
                        tat = v.tat;
                        passed.push(now);
                        // What the model has left is what we report.
                        prop_assert_eq!(u128::from(v.remaining), model.tokens / model.cost);
                    }
                }
                // Over any interval [a, b]: count ≤ burst + rate × (b − a) / unit.
                let unit_ns = u128::from(unit_s * S);
                for i in 0..passed.len() {
                    for j in i..passed.len() {
                        let count = (j - i + 1) as u128;
                        let span = u128::from(passed[j] - passed[i]);
                        prop_assert!(
                            count.saturating_sub(u128::from(burst)) * unit_ns
                                <= u128::from(rate) * span,
                            "{} passed in {} ns", count, span
                        );
                    }
                }
            }

            #[test]
            fn the_wait_is_exact(
                rate in 1u32..1000,
                unit_s in unit(),
                burst in 1u32..20,
                extra in 1usize..40,
            ) {
                let limit = Limit::new(rate, unit_s, burst);
                let mut tat = 0u128;
                let mut denied = None;
                for _ in 0..(burst as usize + extra) {
                    let v = limit.check(tat, EPOCH);
                    if v.allowed { tat = v.tat } else { denied = Some(v) }
                }
                let v = denied.unwrap();
                prop_assert!(v.next_ns > 0);
                prop_assert!(limit.check(tat, EPOCH + v.next_ns).allowed);
                prop_assert!(!limit.check(tat, EPOCH + v.next_ns - 1).allowed);
                // After `full_ns`, the whole burst is back.
                let mut t2 = tat;
                for _ in 0..burst {
                    let w = limit.check(t2, EPOCH + v.full_ns);
                    prop_assert!(w.allowed);
                    t2 = w.tat;
                }
                prop_assert!(!limit.check(t2, EPOCH + v.full_ns).allowed);
            }

            #[test]
            fn time_going_backwards_is_never_looser(
                rate in 1u32..100, burst in 1u32..10, back in 0u64..10 * S,
            ) {
                let limit = Limit::new(rate, 1, burst);
                let mut tat = 0u128;
                for _ in 0..burst { tat = limit.check(tat, EPOCH).tat; }
                // Some worker's clock reads a little earlier: still empty.
                prop_assert!(!limit.check(tat, EPOCH - back).allowed);
            }
        }
    }
}
