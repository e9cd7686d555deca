//! `JwtAuth::check` end to end over a FakeHost with fuzzed header bytes,
//! properties and clock (the request text format of `portcullis_fuzz`;
//! `!hs256: <claims>` mints a validly signed token so the claim, audience,
//! authorization and forwarding paths are reached too).
//!
//! Checked: a decision is always reached (local keys never wait), a
//! rejection always sends a reply, the token never appears in a log line
//! or a reply, client-sent copies of the forwarded-claim headers never
//! survive without a verified token, and the token cache never changes a
//! decision (the same request is checked twice).
#![no_main]

use filter_common::testing::{FakeHost, FakeMetrics};
use filter_common::RequestContext;
use jwt_auth::{Check, Config, JwtAuth, Mode, PureRust};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{contains, jwt_auth_config, parse_request, Keys};
use std::rc::Rc;

const FORWARDED: [&str; 4] = ["x-sub", "x-tier", "x-roles", "x-jwt-payload"];
const TOKEN_HEADERS: [&str; 4] = ["authorization", "x-jwt", "x-other-token", "cookie"];

/// What must not change between the first check and the cached one: the
/// decision, who was identified, the forwarded claim headers.
type Decision = (Check, Option<String>, Vec<(String, Vec<u8>)>);

thread_local! {
    static CONFIG: Rc<Config> = {
        let keys = Keys::load().expect("test keys");
        let json = jwt_auth_config(&keys).to_string();
        Rc::new(Config::parse(json.as_bytes()).expect("fuzz config parses"))
    };
}

/// Token-shaped substrings of the request's token headers.
fn tokens(host: &FakeHost) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (name, value) in &host.request_headers {
        if !TOKEN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        for part in value.split(|b| !(b.is_ascii_alphanumeric() || b"-_.".contains(b))) {
            if part.len() >= 16 && part.iter().filter(|b| **b == b'.').count() == 2 {
                out.push(part.to_vec());
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let request = parse_request(data);
    let secrets = tokens(&request);
    let mut auth = JwtAuth::new(CONFIG.with(Rc::clone));
    let mut first: Option<Decision> = None;
    for _ in 0..2 {
        let mut host = request.clone();
        let mut ctx = RequestContext::default();
        let mut metrics = FakeMetrics::default();
        let check = auth.check(&mut host, &mut ctx, &PureRust, &mut metrics, Mode::MayWait);
        match check {
            Check::Continue => assert!(host.sent.is_none(), "continued after a reply"),
            Check::Responded(reason) => {
                let (status, _, _) = host.sent.as_ref().expect("rejection without a reply");
                assert!(
                    matches!(status, 400 | 401 | 403 | 503),
                    "{reason:?} gave {status}"
                );
            }
            Check::Wait { .. } => panic!("waited although every key is local"),
        }
        if let Some((status, headers, body)) = &host.sent {
            for t in &secrets {
                assert!(!contains(body, t), "token in the {status} body");
                for (_, v) in headers {
                    assert!(!contains(v.as_bytes(), t), "token in a reply header");
                }
            }
        }
        for (_, line) in host.logs.borrow().iter() {
            for t in &secrets {
                assert!(!contains(line.as_bytes(), t), "token in a log line");
            }
        }
        let who = ctx.identity.as_ref().map(|i| i.provider.clone());
        if matches!(who.as_deref(), None | Some("peer")) {
            for h in FORWARDED {
                assert!(host.header_str(h).is_none(), "client-sent {h} survived");
            }
        }
        let forwarded: Vec<_> = host
            .request_headers
            .iter()
            .filter(|(k, _)| FORWARDED.contains(&k.as_str()))
            .cloned()
            .collect();
        let now = (check, who, forwarded);
        match &first {
            None => first = Some(now),
            Some(before) => assert_eq!(before, &now, "the token cache changed the decision"),
        }
    }
});
