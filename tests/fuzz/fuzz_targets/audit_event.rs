//! audit-log's request path over a FakeHost: capture at request headers,
//! decisions from fuzzed filter state (`@portcullis.identity`,
//! `@portcullis.jwt`, `@portcullis.rate_limit`), stream attributes from
//! fuzzed properties, event building, redaction, sealing, and the HTTP
//! sinks' queues. Several requests per input (separated by `---`).
//!
//! Checked: every event is a JSON object; secrets planted where they must
//! never be read (credential headers, a redacted query parameter) appear
//! in no event, log line, filter state or shipped batch; the queues stay
//! under their caps; the emitted events form an intact hash chain.
#![no_main]

use audit_log::{chain_verify, fill_from_filter_state, AuditLog, Config, AUDIT_KEY};
use filter_common::testing::FakeMetrics;
use filter_common::{HttpHost, RequestContext, RequestInfo};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{contains, parse_request, split_requests, AUDIT_LOG_CONFIG, AUDIT_QUEUE_CAP};
use std::rc::Rc;

const MARK: &str = "PCSECRETPC";
const MS: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let config = Config::parse(AUDIT_LOG_CONFIG.as_bytes()).expect("fuzz config parses");
    let mut log = AuditLog::new(Rc::new(config), "fuzz/0");
    let mut metrics = FakeMetrics::default();
    // If the input spells the marker itself, it may legitimately be logged.
    let check_secrets = !contains(data, b"SECRET");
    let mut ndjson = String::new();
    let mut token = 0u32;
    for (i, req) in split_requests(data).into_iter().take(16).enumerate() {
        let mut host = parse_request(req);
        for (name, value) in [
            ("authorization", format!("Bearer {MARK}")),
            ("proxy-authorization", format!("Basic {MARK}")),
            ("cookie", format!("session={MARK}")),
            ("x-api-key", MARK.to_string()),
            ("x-session-token", MARK.to_string()),
        ] {
            host.push(name, &value);
        }
        if let Some((_, path)) = host.request_headers.iter_mut().find(|(k, _)| k == ":path") {
            let sep = if path.contains(&b'?') { "&" } else { "?" };
            path.extend_from_slice(
                format!("{sep}access_token={MARK}&session_id={MARK}").as_bytes(),
            );
        }
        let mut ctx = RequestContext {
            request: RequestInfo::from_host(&host),
            ..RequestContext::default()
        };
        fill_from_filter_state(&host, &mut ctx);
        let audit = log.on_request_headers(&host, &ctx);
        host.now_nanos = host.now_nanos.saturating_add(3 * MS);
        let event = log.on_log(&mut host, &ctx, &audit, &mut metrics);
        if let Some(json) = &event {
            let v: serde_json::Value = serde_json::from_str(json).expect("event is JSON");
            assert!(v.is_object(), "event is not an object");
            ndjson.push_str(json);
            ndjson.push('\n');
        }
        if check_secrets {
            if let Some(json) = &event {
                assert!(!json.contains(MARK), "secret in event: {json}");
            }
            for (_, line) in host.logs.borrow().iter() {
                assert!(!line.contains(MARK), "secret in log line");
            }
            if let Some(state) = host.property(&[AUDIT_KEY]) {
                assert!(!contains(&state, MARK.as_bytes()), "secret in filter state");
            }
        }
        let now = host.now_nanos.saturating_add(20 * MS);
        let mut due = log.on_tick(now, &mut metrics);
        while let Some(d) = due.pop() {
            if check_secrets {
                assert!(
                    !contains(&d.body, MARK.as_bytes()),
                    "secret in shipped batch"
                );
            }
            token += 1;
            log.dispatched(d.sink, Some(token), now, &mut metrics);
            let status = match i % 3 {
                0 => None,
                1 => Some(200),
                _ => Some(503),
            };
            if let Some(more) = log.on_http_call_response(token, status, now, &mut metrics) {
                if due.len() < 8 {
                    due.extend(more);
                }
            }
        }
        assert!(log.queue_bytes() <= AUDIT_QUEUE_CAP, "queue over its cap");
    }
    if !ndjson.is_empty() {
        let report = chain_verify::verify(&ndjson);
        assert!(report.is_ok(), "hash chain broken: {report:?}");
    }
});
