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
use filter_common::testing::{FakeCallouts, FakeMetrics};
use filter_common::{HttpHost, Level, RequestContext, RequestInfo};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{contains, parse_request, split_requests, AUDIT_LOG_CONFIG, AUDIT_QUEUE_CAP};
use std::rc::Rc;

const MARK: &str = "PCSECRETPC";
const MS: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let config = Config::parse(AUDIT_LOG_CONFIG.as_bytes()).expect("fuzz config parses");
    let mut metrics = FakeMetrics::default();
    let mut log = AuditLog::new(Rc::new(config), "fuzz/0", &mut metrics).expect("stats defined");
    let mut callouts = FakeCallouts::default();
    let quiet = |_: Level, _: &str| {};
    // If the input spells the marker itself, it may legitimately be logged.
    let check_secrets = !contains(data, b"SECRET");
    let mut ndjson = String::new();
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
        // Tokens are the calls' positions from 1; each batch sent is
        // answered, and what an answer sends next is answered in turn (at
        // most 8 more).
        let mut answered = callouts.calls.len();
        log.on_tick(now, &mut metrics, &mut callouts, &quiet);
        let mut budget = callouts.calls.len() - answered + 8;
        while answered < callouts.calls.len() && budget > 0 {
            let d = &callouts.calls[answered];
            if check_secrets {
                let body = d.body.as_deref().unwrap_or_default();
                assert!(!contains(body, MARK.as_bytes()), "secret in shipped batch");
            }
            answered += 1;
            budget -= 1;
            let token = u32::try_from(answered).expect("few calls");
            let status = match i % 3 {
                0 => None,
                1 => Some(200),
                _ => Some(503),
            };
            log.on_http_call_response(token, status, now, &mut metrics, &mut callouts, &quiet);
        }
        assert!(log.queue_bytes() <= AUDIT_QUEUE_CAP, "queue over its cap");
    }
    if !ndjson.is_empty() {
        let report = chain_verify::verify(&ndjson);
        assert!(report.is_ok(), "hash chain broken: {report:?}");
    }
});
