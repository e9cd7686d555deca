//! The in-memory delivery queue of one HTTP sink: capped in bytes,
//! drop-oldest when full, one batch in flight at a time (so events arrive
//! in order), retried with exponential backoff until delivered.

use crate::config::HttpSink;
use filter_common::{Callout, Callouts, HostError};
use std::collections::VecDeque;

/// An encoded record and the host time it was queued at.
type Record = (Vec<u8>, u64);

/// Encoded records waiting for delivery, and the batch being delivered.
#[derive(Debug, Default)]
pub struct Queue {
    pending: VecDeque<Record>,
    pending_bytes: usize,
    in_flight: Vec<Record>,
    in_flight_bytes: usize,
    cap: usize,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Queue {
            cap,
            ..Default::default()
        }
    }

    /// Bytes held: queued and in flight. Never above the cap.
    pub fn bytes(&self) -> usize {
        self.pending_bytes + self.in_flight_bytes
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest queued record arrived.
    pub fn oldest_at(&self) -> Option<u64> {
        self.pending.front().map(|(_, at)| *at)
    }

    /// Adds a record queued at `at`, dropping the oldest queued ones to
    /// make room (or the record itself, when even an empty queue beside
    /// the batch in flight has no room). Returns how many were dropped.
    pub fn push(&mut self, record: Vec<u8>, at: u64) -> u64 {
        let mut dropped = 0;
        while self.bytes() + record.len() > self.cap {
            match self.pending.pop_front() {
                Some((old, _)) => {
                    self.pending_bytes -= old.len();
                    dropped += 1;
                }
                None => return dropped + 1,
            }
        }
        self.pending_bytes += record.len();
        self.pending.push_back((record, at));
        dropped
    }

    /// Moves up to `max_bytes` of the oldest records (at least one) into
    /// flight and returns them as one body. `None` if a batch is already in
    /// flight or nothing is queued.
    pub fn take_batch(&mut self, max_bytes: usize) -> Option<(Vec<u8>, usize)> {
        if !self.in_flight.is_empty() || self.pending.is_empty() {
            return None;
        }
        let mut body = Vec::new();
        while let Some((next, _)) = self.pending.front() {
            if !body.is_empty() && body.len() + next.len() > max_bytes {
                break;
            }
            let Some(rec) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= rec.0.len();
            self.in_flight_bytes += rec.0.len();
            body.extend_from_slice(&rec.0);
            self.in_flight.push(rec);
        }
        Some((body, self.in_flight.len()))
    }

    pub fn in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The batch in flight was delivered; returns how many records it held.
    pub fn ack(&mut self) -> usize {
        let n = self.in_flight.len();
        self.in_flight.clear();
        self.in_flight_bytes = 0;
        n
    }

    /// The batch in flight failed: it goes back to the front, in order.
    pub fn nack(&mut self) {
        for rec in self.in_flight.drain(..).rev() {
            self.pending_bytes += rec.0.len();
            self.pending.push_front(rec);
        }
        self.in_flight_bytes = 0;
    }
}

/// A batch due for its sink: the callout that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Dispatch {
    /// Starts the callout: its token, or the host's refusal (e.g. an
    /// unknown cluster).
    pub fn send(&self, callouts: &mut dyn Callouts) -> Result<u32, HostError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        callouts.dispatch(&Callout {
            cluster: &self.cluster,
            headers: &headers,
            body: Some(&self.body),
            timeout_ms: self.timeout_ms,
        })
    }
}

/// Counts for the metrics, reported by each step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub sent: u64,
    pub retried: u64,
}

/// One HTTP sink's queue and its schedule.
#[derive(Debug)]
pub struct Shipper {
    pub sink: HttpSink,
    queue: Queue,
    /// The callout carrying the batch in flight.
    token: Option<u32>,
    /// When the batch went out: a callout never answered is failed after
    /// twice its timeout, so a lost callback cannot stall the queue.
    sent_at: u64,
    /// No attempt before this time (backoff after a failure).
    retry_at: u64,
    /// A failed batch waits: it goes as soon as the backoff ends.
    retrying: bool,
    backoff_ms: u64,
}

const MS: u64 = 1_000_000;

impl Shipper {
    pub fn new(sink: HttpSink) -> Self {
        Shipper {
            queue: Queue::new(sink.queue_max_bytes),
            backoff_ms: sink.retry.initial_backoff_ms,
            sink,
            token: None,
            sent_at: 0,
            retry_at: 0,
            retrying: false,
        }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Queues a record; returns how many records were dropped for room.
    pub fn enqueue(&mut self, record: Vec<u8>, now: u64) -> u64 {
        self.queue.push(record, now)
    }

    /// A batch, if one is due: no batch in flight, not backing off, and
    /// either a full batch is queued or the oldest queued record has
    /// waited `flush_interval_ms`. A partial batch waits even right after
    /// a success: under load, sending whatever arrived during the last
    /// round trip meant a callout every ~17 events, each costing Envoy
    /// tens of µs.
    pub fn poll(&mut self, now: u64) -> Option<Dispatch> {
        if self.queue.in_flight() || now < self.retry_at || self.queue.pending_len() == 0 {
            return None;
        }
        let full = self.queue.pending_bytes() >= self.sink.batch_max_bytes;
        let old = self.queue.oldest_at().is_some_and(|t| {
            now.saturating_sub(t) >= self.sink.flush_interval_ms.saturating_mul(MS)
        });
        if !(full || old || self.retrying) {
            return None;
        }
        let (body, _) = self.queue.take_batch(self.sink.batch_max_bytes)?;
        self.retrying = false;
        self.sent_at = now;
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), self.sink.path.clone()),
            (":authority".to_string(), self.sink.authority().to_string()),
            (
                "content-type".to_string(),
                "application/x-ndjson".to_string(),
            ),
        ];
        headers.extend(self.sink.headers.iter().cloned());
        Some(Dispatch {
            cluster: self.sink.cluster.clone(),
            headers,
            body,
            timeout_ms: self.sink.timeout_ms,
        })
    }

    /// The host accepted the callout (`Some(token)`) or refused it.
    pub fn dispatched(&mut self, token: Option<u32>, now: u64) -> Delivery {
        match token {
            Some(t) => {
                self.token = Some(t);
                Delivery::default()
            }
            None => self.failed(now),
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.token == Some(token)
    }

    /// The callout answered: any 2xx is a delivery; anything else
    /// (5xx, 4xx, no status: refused, reset, timed out) is retried.
    pub fn on_response(&mut self, status: Option<u32>, now: u64) -> Delivery {
        self.token = None;
        if status.is_some_and(|s| (200..300).contains(&s)) {
            self.backoff_ms = self.sink.retry.initial_backoff_ms;
            self.retry_at = 0;
            Delivery {
                sent: self.queue.ack() as u64,
                retried: 0,
            }
        } else {
            self.failed(now)
        }
    }

    /// Fails a batch whose callout was never answered.
    pub fn check_stalled(&mut self, now: u64) -> Delivery {
        let limit = self
            .sink
            .timeout_ms
            .saturating_mul(2)
            .saturating_add(1000)
            .saturating_mul(MS);
        if self.token.is_some() && now.saturating_sub(self.sent_at) > limit {
            self.token = None;
            return self.failed(now);
        }
        Delivery::default()
    }

    fn failed(&mut self, now: u64) -> Delivery {
        self.queue.nack();
        self.retrying = true;
        self.retry_at = now.saturating_add(self.backoff_ms.saturating_mul(MS));
        self.backoff_ms = self
            .backoff_ms
            .saturating_mul(2)
            .min(self.sink.retry.max_backoff_ms);
        Delivery {
            sent: 0,
            retried: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use filter_common::testing::FakeCallouts;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rec(i: u8, len: usize) -> Vec<u8> {
        vec![i; len]
    }

    #[test]
    fn cap_drops_oldest_and_counts() {
        let mut q = Queue::new(100);
        assert_eq!(q.push(rec(1, 40), 0), 0);
        assert_eq!(q.push(rec(2, 40), 0), 0);
        assert_eq!(q.push(rec(3, 40), 0), 1);
        assert_eq!(q.bytes(), 80);
        let (body, n) = q.take_batch(1000).unwrap();
        assert_eq!((body[0], n), (2, 2));
        // In flight counts toward the cap; only queued records are dropped.
        assert_eq!(q.push(rec(4, 30), 0), 1);
        assert_eq!(q.bytes(), 80);
        assert_eq!(q.push(rec(5, 30), 0), 1);
        assert!(q.bytes() <= 100);
        // Larger than the cap itself: dropped.
        assert_eq!(q.push(rec(6, 101), 0), 1);
    }

    #[test]
    fn batches_keep_order_across_failures() {
        let mut q = Queue::new(1000);
        for i in 0..5 {
            q.push(rec(i, 10), 0);
        }
        let (b, n) = q.take_batch(25).unwrap();
        assert_eq!((b.len(), n), (20, 2));
        assert!(q.take_batch(25).is_none(), "one batch in flight");
        q.nack();
        let (b, _) = q.take_batch(25).unwrap();
        assert_eq!(b[0], 0);
        assert_eq!(q.ack(), 2);
        let (b, _) = q.take_batch(1).unwrap();
        assert_eq!((b.len(), b[0]), (10, 2), "at least one record per batch");
    }

    fn shipper() -> Shipper {
        let c = Config::parse(
            br#"{"sinks": {"http": [{"cluster": "c", "path": "/in", "batch_max_bytes": 30,
                "queue_max_bytes": 100, "flush_interval_ms": 100, "timeout_ms": 50,
                "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 25}}]}}"#,
        )
        .unwrap();
        Shipper::new(c.sinks.http[0].clone())
    }

    #[test]
    fn flushes_by_size_or_interval() {
        let mut s = shipper();
        s.enqueue(rec(1, 10), 0);
        assert!(s.poll(50 * MS).is_none());
        let d = s.poll(100 * MS).unwrap();
        assert_eq!(d.cluster, "c");
        assert!(d.headers.contains(&(":path".into(), "/in".into())));
        assert_eq!(s.on_response(Some(200), 100 * MS).sent, 1);
        for i in 0..3 {
            s.enqueue(rec(i, 10), 200 * MS);
        }
        assert_eq!(s.poll(200 * MS).unwrap().body.len(), 30);
    }

    #[test]
    fn a_dispatch_is_one_callout() {
        let mut s = shipper();
        s.enqueue(rec(1, 10), 0);
        let d = s.poll(100 * MS).unwrap();
        let mut calls = FakeCallouts::default();
        assert_eq!(d.send(&mut calls), Ok(1));
        let sent = &calls.calls[0];
        assert_eq!(sent.cluster, "c");
        assert_eq!(sent.headers, d.headers);
        assert_eq!(sent.body.as_deref(), Some(&d.body[..]));
        assert_eq!(sent.timeout_ms, 50);
        calls.refuse = true;
        assert!(d.send(&mut calls).is_err());
    }

    #[test]
    fn after_a_success_only_a_full_batch_goes_at_once() {
        let mut s = shipper();
        for i in 0..4 {
            s.enqueue(rec(i, 10), 0);
        }
        s.poll(0).unwrap();
        s.dispatched(Some(1), 0);
        assert_eq!(s.on_response(Some(200), MS).sent, 3);
        assert!(s.poll(MS).is_none(), "10 bytes wait for the interval");
        for i in 0..2 {
            s.enqueue(rec(i, 10), 2 * MS);
        }
        assert_eq!(s.poll(2 * MS).unwrap().body.len(), 30, "full again");
    }

    #[test]
    fn a_partial_batch_is_due_by_its_oldest_record() {
        let mut s = shipper();
        for i in 0..4 {
            s.enqueue(rec(i, 10), 0);
        }
        s.poll(60 * MS).unwrap();
        s.dispatched(Some(1), 60 * MS);
        assert_eq!(s.on_response(Some(200), 61 * MS).sent, 3);
        assert!(s.poll(99 * MS).is_none());
        // Queued at 0: due at 100 ms, not an interval after the last send.
        assert_eq!(s.poll(100 * MS).unwrap().body.len(), 10);
    }

    #[test]
    fn retries_with_capped_backoff() {
        let mut s = shipper();
        for i in 0..3 {
            s.enqueue(rec(i, 10), 0);
        }
        s.poll(0).unwrap();
        assert_eq!(s.dispatched(Some(7), 0), Delivery::default());
        assert!(s.owns(7));
        assert_eq!(s.on_response(Some(503), 0).retried, 1);
        assert!(s.poll(5 * MS).is_none(), "backing off 10 ms");
        s.poll(10 * MS).unwrap();
        assert_eq!(s.on_response(None, 10 * MS).retried, 1);
        assert!(s.poll(29 * MS).is_none(), "then 20 ms");
        s.poll(30 * MS).unwrap();
        assert_eq!(s.dispatched(None, 30 * MS).retried, 1);
        assert!(s.poll(54 * MS).is_none(), "capped at 25 ms");
        s.poll(55 * MS).unwrap();
        s.dispatched(Some(8), 55 * MS);
        assert_eq!(s.check_stalled(100 * MS), Delivery::default());
        assert_eq!(s.check_stalled(2000 * MS).retried, 1);
        s.poll(2100 * MS).unwrap();
        assert_eq!(s.on_response(Some(204), 2100 * MS).sent, 3);
        assert_eq!(s.queue().bytes(), 0);
    }
}
