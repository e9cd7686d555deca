//! Checks the hash chains in a file of events (NDJSON, or `_bulk` bodies)
//! and reports, per producer, the first event deleted, reordered or
//! altered. See [`crate::hash_chain`] for what is hashed.

use crate::hash_chain::{event_hash, GENESIS};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The event's content does not match its own `audit.hash`.
    Altered { line: usize, seq: u64 },
    /// The event's `prev_hash` is not the hash of the event before it: that
    /// one was replaced (or this one forged with a recomputed hash).
    Relinked { line: usize, seq: u64 },
    /// Events `from..=to` are missing from the file.
    Deleted { line: usize, from: u64, to: u64 },
    /// `seq` appears after a later event, at `line`.
    Reordered { line: usize, seq: u64, after: u64 },
    /// The same `seq` twice.
    Duplicated { line: usize, seq: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Altered { line, seq } => {
                write!(f, "line {line}: seq {seq} altered (content does not match its hash)")
            }
            Problem::Relinked { line, seq } => write!(
                f,
                "line {line}: seq {seq} does not link to the event before it (that event was replaced)"
            ),
            Problem::Deleted { line, from, to } if from == to => {
                write!(f, "line {line}: seq {from} deleted")
            }
            Problem::Deleted { line, from, to } => {
                write!(f, "line {line}: seq {from}..={to} deleted")
            }
            Problem::Reordered { line, seq, after } => {
                write!(f, "line {line}: seq {seq} reordered (comes after seq {after})")
            }
            Problem::Duplicated { line, seq } => write!(f, "line {line}: seq {seq} duplicated"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerReport {
    pub producer: String,
    pub events: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first problem found; `None` if the chain holds.
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub producers: Vec<ProducerReport>,
    /// Lines that are not audit events: `(line, why)`.
    pub malformed: Vec<(usize, String)>,
}

impl Report {
    /// Every chain holds and every line was an event.
    pub fn is_ok(&self) -> bool {
        self.malformed.is_empty() && self.producers.iter().all(|p| p.problem.is_none())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.producers {
            match &p.problem {
                None => writeln!(
                    f,
                    "ok    {}: {} events, seq {}..={}",
                    p.producer, p.events, p.first_seq, p.last_seq
                )?,
                Some(problem) => writeln!(f, "FAIL  {}: {problem}", p.producer)?,
            }
        }
        for (line, why) in &self.malformed {
            writeln!(f, "FAIL  line {line}: {why}")?;
        }
        Ok(())
    }
}

struct Entry {
    line: usize,
    seq: u64,
    prev_hash: String,
    hash: String,
    computed: String,
}

/// Verifies every chain in `text`. A producer's chain must start at seq 0
/// (so deleting the first events shows); `_bulk` action lines are skipped.
pub fn verify(text: &str) -> Report {
    let mut report = Report::default();
    let mut by_producer: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                report.malformed.push((line, format!("not JSON: {e}")));
                continue;
            }
        };
        if is_bulk_action(&value) {
            continue;
        }
        match entry(line, &value) {
            Some((producer, e)) => by_producer.entry(producer).or_default().push(e),
            None => report
                .malformed
                .push((line, "no audit.producer/seq/prev_hash/hash".into())),
        }
    }
    for (producer, entries) in by_producer {
        report.producers.push(check(producer, &entries));
    }
    report
}

fn is_bulk_action(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && ["create", "index"].iter().any(|k| o.contains_key(*k)))
}

fn entry(line: usize, v: &Value) -> Option<(String, Entry)> {
    let audit = v.get("audit")?;
    let producer = audit.get("producer")?.as_str()?.to_string();
    Some((
        producer,
        Entry {
            line,
            seq: audit.get("seq")?.as_u64()?,
            prev_hash: audit.get("prev_hash")?.as_str()?.to_string(),
            hash: audit.get("hash")?.as_str()?.to_string(),
            computed: event_hash(v),
        },
    ))
}

fn check(producer: String, entries: &[Entry]) -> ProducerReport {
    let seqs: BTreeSet<u64> = entries.iter().map(|e| e.seq).collect();
    let mut report = ProducerReport {
        producer,
        events: entries.len(),
        first_seq: seqs.first().copied().unwrap_or(0),
        last_seq: seqs.last().copied().unwrap_or(0),
        problem: None,
    };
    let mut expected = 0u64;
    let mut prev_hash = GENESIS.to_string();
    let mut seen = BTreeSet::new();
    for e in entries {
        let problem = if e.computed != e.hash {
            Some(Problem::Altered {
                line: e.line,
                seq: e.seq,
            })
        } else if seen.contains(&e.seq) {
            Some(Problem::Duplicated {
                line: e.line,
                seq: e.seq,
            })
        } else if e.seq < expected {
            Some(Problem::Reordered {
                line: e.line,
                seq: e.seq,
                after: expected.saturating_sub(1),
            })
        } else if e.seq > expected {
            // Missing here: later in the file means reordered, else deleted.
            if seqs.contains(&expected) {
                let line = entries
                    .iter()
                    .find(|x| x.seq == expected)
                    .map_or(e.line, |x| x.line);
                Some(Problem::Reordered {
                    line,
                    seq: expected,
                    after: e.seq,
                })
            } else {
                Some(Problem::Deleted {
                    line: e.line,
                    from: expected,
                    to: e.seq - 1,
                })
            }
        } else if e.prev_hash != prev_hash {
            Some(Problem::Relinked {
                line: e.line,
                seq: e.seq,
            })
        } else {
            None
        };
        if problem.is_some() {
            report.problem = problem;
            return report;
        }
        seen.insert(e.seq);
        expected = e.seq.saturating_add(1);
        prev_hash = e.hash.clone();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_chain::Chain;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn events(producer: &str, n: u64) -> Vec<String> {
        let mut c = Chain::new(producer);
        (0..n)
            .map(|i| {
                let mut v =
                    json!({"url": {"path": format!("/r{i}")}, "audit": {"schema_version": "1"}});
                c.seal(&mut v).1
            })
            .collect()
    }

    fn problem(lines: &[String]) -> Option<Problem> {
        let r = verify(&lines.join("\n"));
        assert_eq!(r.producers.len(), 1, "{r}");
        r.producers[0].problem.clone()
    }

    #[test]
    fn intact_chains_of_several_producers_interleaved() {
        let a = events("a", 4);
        let b = events("b", 3);
        let mixed = [&a[0], &b[0], &a[1], &b[1], &b[2], &a[2], &a[3]]
            .map(String::as_str)
            .join("\n");
        let r = verify(&mixed);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.producers.len(), 2);
        assert_eq!(r.producers[0].events, 4);
        assert_eq!(r.producers[1].last_seq, 2);
    }

    #[test]
    fn deleted_event_is_caught() {
        let mut e = events("a", 5);
        e.remove(2);
        assert_eq!(
            problem(&e),
            Some(Problem::Deleted {
                line: 3,
                from: 2,
                to: 2
            })
        );
        let e = events("a", 5);
        assert_eq!(
            problem(&e[2..]),
            Some(Problem::Deleted {
                line: 1,
                from: 0,
                to: 1
            })
        );
    }

    #[test]
    fn swapped_events_are_caught() {
        let mut e = events("a", 5);
        e.swap(1, 2);
        assert_eq!(
            problem(&e),
            Some(Problem::Reordered {
                line: 3,
                seq: 1,
                after: 2
            })
        );
    }

    #[test]
    fn edited_event_is_caught() {
        let e = events("a", 3);
        let mut edited = e.clone();
        edited[1] = e[1].replace("/r1", "/rX");
        assert_eq!(problem(&edited), Some(Problem::Altered { line: 2, seq: 1 }));
        // Edited and re-hashed: the next event's link breaks.
        let mut v: Value = serde_json::from_str(&edited[1]).unwrap();
        let h = event_hash(&v);
        v["audit"]["hash"] = json!(h);
        edited[1] = v.to_string();
        assert_eq!(
            problem(&edited),
            Some(Problem::Relinked { line: 3, seq: 2 })
        );
    }

    #[test]
    fn duplicates_malformed_lines_and_bulk_bodies() {
        let e = events("a", 2);
        let dup = vec![e[0].clone(), e[0].clone(), e[1].clone()];
        assert_eq!(problem(&dup), Some(Problem::Duplicated { line: 2, seq: 0 }));
        let bulk = format!(
            "{{\"create\":{{\"_index\":\"audit\"}}}}\n{}\n{{\"create\":{{}}}}\n{}\n",
            e[0], e[1]
        );
        assert!(verify(&bulk).is_ok());
        let r = verify(&format!("{}\nnot json\n{{\"a\":1}}", e[0]));
        assert_eq!(r.malformed.len(), 2);
        assert!(!r.is_ok());
        assert!(r.to_string().contains("line 2"));
    }

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        let e = events("a", 2);
        let pretty: Vec<String> = e
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                // A log store may reorder keys; a line must stay one line.
                serde_json::to_string(&v).unwrap().replace(",\"", ", \"")
            })
            .collect();
        assert!(verify(&pretty.join("\n")).is_ok());
    }
}
