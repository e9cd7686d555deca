//! Attack suites (issue #7), end to end: the real Envoy on 127.0.0.1 with
//! the real `.wasm` modules and the configs in `envoy/`.
//!
//! - JWT: the attack families of the OWASP JWT cheat sheet and jwt_tool's
//!   modes (alg none, key confusion, psychic signatures, embedded `jwk`,
//!   `jku`/`x5u`, kid injection, signature stripping, claim tampering,
//!   replay after `exp`, oversized and duplicated tokens), each refused with
//!   the status, body reason and RFC 6750 challenge the README documents.
//! - Identity smuggling: client copies of every header jwt-auth writes, in
//!   any letter case and repeated, never reach the upstream.
//! - Rate-limit evasion: forged forwarding headers, key spraying, letter
//!   case of header names, encodings of values, path variants.
//! - Malformed HTTP: bytes that are not UTF-8, control characters, many and
//!   long headers; Envoy answers precisely and no wasm VM is lost.
//!
//! Each suite shares one Envoy (and one set of servers) between its cases
//! and checks every case before failing, so one report lists every case
//! that broke. Requests are written byte for byte ([`RawRequest`]) so that
//! header names keep their letter case and values may be any bytes. Every
//! suite ends by checking that no wasm VM failed or was reloaded
//! (`wasm.*.vm_reload*`, `wasm.envoy.wasm.runtime.v8.*`), that Envoy's log
//! shows no trap, and that fresh connections are still answered right.
//!
//! Run (about 25 s on two cores; build the modules first):
//!
//! ```sh
//! cargo xtask build
//! cargo test -p e2e --test attacks -- --test-threads 2
//! ```
//!
//! Two tests assert the secure behaviour of findings of this suite:
//! `jwt_no_verified_token_reaches_the_upstream` (a second verified token,
//! in the query, was forwarded; see its comment) and
//! `identity_headers_cannot_be_smuggled_with_underscores` (`x_jwt_sub`
//! reached the upstream; fixed in the configs: every connection manager in
//! `envoy/` sets `headers_with_underscores_action: REJECT_REQUEST`). The
//! rate-limit evasion by a repeated key header is refused by the filter
//! (400 `ambiguous_key`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use e2e::attack::{bearer_challenge, send_raw, RawRequest, RawResponse};
use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::jwt_tokens::{claims, jwks, raw, TestKey};
use e2e::servers::{Collector, EchoUpstream, JwksServer};
use e2e::stats::Stats;
use e2e::tokens::now_secs;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{BigUint, RsaPublicKey};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The demo provider of `envoy/chain.yaml` and friends.
const ISS: &str = "https://issuer.demo.local";
const AUD: &str = "demo-api";
/// The configs set no `realm`: the README's default.
const REALM: &str = "portcullis";
/// The filter's documented token size limit (jwt-auth README: "tokens over
/// 64 KiB are refused").
const MAX_TOKEN_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Soft checks: every case runs, the failures are reported together.

struct Checks {
    suite: String,
    passed: usize,
    failures: Vec<String>,
}

impl Checks {
    fn new(suite: &str) -> Self {
        Checks {
            suite: suite.to_string(),
            passed: 0,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, case: &str, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(format!("{case}: {}", what()));
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, case: &str, what: &str, got: T, want: T) {
        let ok = got == want;
        self.check(ok, case, || format!("{what}: got {got:?}, want {want:?}"));
    }

    /// Panics with every failed check.
    fn finish(self) {
        if self.failures.is_empty() {
            eprintln!("{}: all {} checks passed", self.suite, self.passed);
            return;
        }
        panic!(
            "{}: {} check(s) failed ({} passed):\n  - {}",
            self.suite,
            self.failures.len(),
            self.passed,
            self.failures.join("\n  - ")
        );
    }
}

// ---------------------------------------------------------------------------
// A running Envoy with its servers, and requests tagged so the upstream's
// record of each can be found.

static CASE: AtomicU64 = AtomicU64::new(0);

struct World {
    envoy: Envoy,
    upstream: EchoUpstream,
    _jwks: Option<JwksServer>,
    collector: Option<Collector>,
    /// VM counters once the world served its first requests.
    baseline: Stats,
}

/// One request's fate.
struct Sent {
    resp: RawResponse,
    /// The upstream received this request.
    reached: bool,
    /// The headers the upstream received (empty if it did not).
    upstream: BTreeMap<String, Vec<String>>,
    /// The path and query the upstream received.
    upstream_target: String,
}

impl World {
    /// Sends `req` tagged with a unique `x-attack-case` header.
    async fn send(&self, req: RawRequest) -> Sent {
        let id = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let req = req.header("x-attack-case", &id);
        let resp = req
            .send(self.envoy.port)
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e:#}", req.method, req.target));
        let seen = self
            .upstream
            .received()
            .into_iter()
            .find(|r| r.header("x-attack-case") == Some(id.as_str()));
        let mut upstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut upstream_target = String::new();
        if let Some(r) = &seen {
            for (k, v) in &r.headers {
                upstream
                    .entry(k.to_ascii_lowercase())
                    .or_default()
                    .push(v.clone());
            }
            let query = resp.json()["query"].as_str().map(str::to_string);
            upstream_target = match query {
                Some(q) => format!("{}?{q}", r.path),
                None => r.path.clone(),
            };
        }
        Sent {
            resp,
            reached: seen.is_some(),
            upstream,
            upstream_target,
        }
    }

    /// Checks that no wasm VM failed or was replaced, that Envoy's log shows
    /// no trap, and that fresh connections (both workers) still get the
    /// right answers: `ok` must pass, `refused` must get `refused_status`.
    async fn check_healthy(
        &self,
        c: &mut Checks,
        ok: RawRequest,
        refused: RawRequest,
        refused_status: u16,
    ) {
        for i in 0..12 {
            let s = self.send(ok.clone()).await;
            passed(c, &format!("health: normal request {i}"), &s);
            let s = self.send(refused.clone()).await;
            c.eq(
                &format!("health: refused request {i}"),
                "status",
                s.resp.status,
                refused_status,
            );
        }
        let stats = self.envoy.stats().await.unwrap();
        for (name, value) in stats.matching("vm_reload") {
            c.eq("health: no VM reload", &name, value, 0);
        }
        for name in [
            "wasm.envoy.wasm.runtime.v8.created",
            "wasm.envoy.wasm.runtime.v8.active",
            "wasm.wasm_vm_count",
        ] {
            c.eq(
                "health: the same VMs as at the start",
                name,
                stats.get(name),
                self.baseline.get(name),
            );
        }
        c.check(
            self.baseline.get("wasm.envoy.wasm.runtime.v8.created") > 0,
            "health",
            || format!("no v8 VM stats: {:?}", stats.matching("wasm")),
        );
        for w in 0..2 {
            let served: i64 = stats
                .matching(&format!("worker_{w}.downstream_cx_total"))
                .values()
                .sum();
            c.check(served > 0, "health: both workers served", || {
                format!("worker_{w} accepted no connection")
            });
        }
        let log = self.envoy.log().to_ascii_lowercase();
        for bad in ["panicked", "uncaught", "wasm trap", "wasm vm failed"] {
            c.check(!log.contains(bad), "health: Envoy's log", || {
                let line = log.lines().find(|l| l.contains(bad)).unwrap_or_default();
                format!("contains {bad:?}: {line}")
            });
        }
    }
}

async fn snapshot(envoy: &Envoy) -> Stats {
    envoy.stats().await.unwrap()
}

/// The keys the demo issuer serves in the suites that use `envoy/chain*.yaml`.
struct Issuer {
    rsa: TestKey,
    ec: TestKey,
}

impl Issuer {
    fn new() -> Self {
        Issuer {
            rsa: TestKey::rsa("k1", 2048).unwrap(),
            ec: TestKey::p256("ec1"),
        }
    }
    fn jwks(&self) -> String {
        jwks(&[&self.rsa, &self.ec])
    }
    /// A valid RS256 token for `sub`.
    fn token(&self, sub: &str, extra: Value) -> String {
        self.rsa.token("RS256", &claims(ISS, AUD, sub, 600, extra))
    }
}

/// `envoy/<config>` (a `chain*.yaml`) with its upstream, JWKS and collector,
/// ready: keys fetched by every worker.
async fn chain_world(
    config: &str,
    issuer: &Issuer,
    edit: fn(EnvoyOptions) -> EnvoyOptions,
) -> World {
    let upstream = EchoUpstream::start().await.unwrap();
    let jwks_server = JwksServer::start(&issuer.jwks()).await.unwrap();
    let collector = Collector::start().await.unwrap();
    let envoy = Envoy::start(edit(
        EnvoyOptions::new(config)
            .upstream(upstream.port())
            .jwks(jwks_server.port())
            .collector(collector.port()),
    ))
    .await
    .unwrap();
    let mut world = World {
        envoy,
        upstream,
        _jwks: Some(jwks_server),
        collector: Some(collector),
        baseline: Stats::default(),
    };
    // The JWKS is fetched once and picked up by every worker on its tick.
    let token = issuer.token("warm-up", json!({}));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        let s = world.send(RawRequest::get("/warm-up").bearer(&token)).await;
        in_a_row = if s.resp.status == 200 {
            in_a_row + 1
        } else {
            0
        };
        assert!(
            Instant::now() < deadline,
            "{config}: keys never arrived: {} {}",
            s.resp.status,
            s.resp.body_text()
        );
    }
    world.baseline = snapshot(&world.envoy).await;
    world
}

// ---------------------------------------------------------------------------
// Expected refusals.

/// The RFC 6750 `error` the README's table gives for a reason.
fn bearer_error(reason: &str) -> Option<&'static str> {
    match reason {
        "token_missing" | "keys_unavailable" | "overloaded" => None,
        "insufficient_scope" | "peer_not_allowed" => Some("insufficient_scope"),
        _ => Some("invalid_token"),
    }
}

/// Sends `req` and checks that jwt-auth refused it exactly so: status, body
/// (`status`, `error`, `reason`, `message`), the `WWW-Authenticate` challenge
/// (realm, error, an error_description equal to the body's message), the
/// token not echoed, and nothing reaching the upstream.
async fn refused(
    c: &mut Checks,
    w: &World,
    case: &str,
    req: RawRequest,
    want_status: u16,
    want_reason: &str,
) {
    let s = w.send(req).await;
    let r = &s.resp;
    c.eq(case, "status", r.status, want_status);
    let body = r.json();
    c.eq(
        case,
        "body.reason",
        body["reason"].as_str(),
        Some(want_reason),
    );
    c.eq(
        case,
        "body.status",
        body["status"].as_u64(),
        Some(u64::from(want_status)),
    );
    c.check(!s.reached, case, || {
        "the request reached the upstream".into()
    });
    c.check(!r.body_text().contains("eyJ"), case, || {
        format!("something token-like is echoed: {}", r.body_text())
    });
    let challenge = r.header("www-authenticate");
    let Some(params) = challenge.as_deref().and_then(bearer_challenge) else {
        c.check(false, case, || {
            format!("no Bearer challenge: {challenge:?}")
        });
        return;
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    c.eq(case, "challenge realm", param("realm"), Some(REALM));
    match bearer_error(want_reason) {
        Some(err) => {
            c.eq(case, "challenge error", param("error"), Some(err));
            c.eq(case, "body.error", body["error"].as_str(), Some(err));
            let message = body["message"].as_str().unwrap_or_default();
            c.check(!message.is_empty(), case, || "empty body.message".into());
            c.eq(
                case,
                "challenge error_description",
                param("error_description"),
                Some(message),
            );
        }
        None => c.eq(
            case,
            "challenge",
            challenge.as_deref(),
            Some(format!("Bearer realm=\"{REALM}\"").as_str()),
        ),
    }
}

/// Checks that `s` was let through to the upstream.
fn passed(c: &mut Checks, case: &str, s: &Sent) {
    c.eq(case, "status", s.resp.status, 200);
    c.check(s.reached, case, || "the upstream did not receive it".into());
}

/// A token's three parts.
fn parts(token: &str) -> (String, String, String) {
    let mut it = token.splitn(3, '.');
    let h = it.next().unwrap_or_default().to_string();
    let p = it.next().unwrap_or_default().to_string();
    let s = it.next().unwrap_or_default().to_string();
    (h, p, s)
}

fn b64_json(v: &Value) -> String {
    B64.encode(v.to_string())
}

/// The public half of an RSA test key, from its JWK.
fn rsa_public(k: &TestKey) -> RsaPublicKey {
    let jwk = k.jwk();
    let num = |name: &str| {
        BigUint::from_bytes_be(&B64.decode(jwk[name].as_str().unwrap_or_default()).unwrap())
    };
    RsaPublicKey::new(num("n"), num("e")).unwrap()
}

/// Every form of an RSA public key an attacker may try as an HMAC secret
/// (jwt_tool's key confusion: PEM and DER, SubjectPublicKeyInfo and PKCS#1,
/// with and without the trailing newline, the JWK text, the raw modulus).
fn public_key_forms(k: &TestKey) -> Vec<(&'static str, Vec<u8>)> {
    let public = rsa_public(k);
    let spki_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let pkcs1_pem = public.to_pkcs1_pem(LineEnding::LF).unwrap();
    let n = B64
        .decode(k.jwk()["n"].as_str().unwrap_or_default())
        .unwrap();
    vec![
        ("SPKI PEM", spki_pem.clone().into_bytes()),
        (
            "SPKI PEM without newline",
            spki_pem.trim_end().as_bytes().to_vec(),
        ),
        ("PKCS#1 PEM", pkcs1_pem.into_bytes()),
        (
            "SPKI DER",
            public.to_public_key_der().unwrap().as_bytes().to_vec(),
        ),
        (
            "PKCS#1 DER",
            public.to_pkcs1_der().unwrap().as_bytes().to_vec(),
        ),
        ("JWK JSON", k.jwk().to_string().into_bytes()),
        ("modulus", n),
    ]
}

/// The order of the P-256 group: `r = s = n` is as invalid as `r = s = 0`.
const P256_ORDER: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0))
        .collect()
}

// ---------------------------------------------------------------------------
// JWT attacks against the chain module, as shipped.

#[tokio::test(flavor = "multi_thread")]
async fn jwt_attacks_are_refused_with_the_documented_reason() {
    let issuer = Issuer::new();
    let w = chain_world("chain.yaml", &issuer, |o| o).await;
    let mut c = Checks::new("jwt attacks (envoy/chain.yaml)");
    let attacker = TestKey::rsa("k1", 2048).unwrap();
    let attacker_ec = TestKey::p256("ec1");
    let mut evil_jwk = attacker.jwk();
    evil_jwk["kid"] = json!("evil-1");
    let evil_server = JwksServer::start(&json!({"keys": [evil_jwk]}).to_string())
        .await
        .unwrap();

    let get = |token: &str| RawRequest::get("/x").bearer(token);
    let forged = claims(
        ISS,
        AUD,
        "mallory",
        600,
        json!({"scope": "read write admin"}),
    );
    let good = issuer.token("alice", json!({"scope": "read"}));
    let (gh, gp, gs) = parts(&good);

    // Replay after `exp`: a token 50 s past its `exp` is still inside the
    // 60 s clock skew, so it passes now (and is cached) ... (10 s of margin
    // for a slow machine to send three requests)
    let replay_exp = now_secs() as i64 - 50;
    let replay = issuer.token("replayer", json!({"exp": replay_exp}));
    for i in 0..3 {
        let s = w.send(get(&replay)).await;
        passed(&mut c, &format!("replay: inside the skew ({i})"), &s);
    }

    // alg none, every letter case, with an empty signature and with the
    // original signature kept.
    for none in ["none", "None", "NONE", "nOnE"] {
        let t = raw(&json!({"alg": none, "typ": "JWT"}), &forged, b"");
        refused(
            &mut c,
            &w,
            &format!("alg {none}, no signature"),
            get(&t),
            401,
            "alg_not_allowed",
        )
        .await;
        let t = format!(
            "{}.{}.{gs}",
            b64_json(&json!({"alg": none, "kid": "k1"})),
            b64_json(&forged)
        );
        refused(
            &mut c,
            &w,
            &format!("alg {none}, signature kept"),
            get(&t),
            401,
            "alg_not_allowed",
        )
        .await;
    }
    // Other `alg` spellings: names are case-sensitive and exact (RFC 7515).
    for alg in ["rs256", "RS256 ", "", "ES256K", "HS1"] {
        let t = attacker.sign_with_header(&json!({"alg": alg, "kid": "k1"}), &forged);
        refused(
            &mut c,
            &w,
            &format!("alg {alg:?}"),
            get(&t),
            401,
            "alg_not_allowed",
        )
        .await;
    }
    for alg in [json!(null), json!(["RS256"]), json!(256)] {
        let t = raw(&json!({"alg": alg, "kid": "k1"}), &forged, b"sig");
        refused(&mut c, &w, &format!("alg {alg}"), get(&t), 401, "malformed").await;
    }

    // Key confusion: HS256/384/512 signed with the RSA public key as the
    // secret. HMAC is off unless listed in `algorithms`: alg_not_allowed.
    for (form, secret) in public_key_forms(&issuer.rsa) {
        let hmac = TestKey::hmac("k1", &secret);
        for alg in ["HS256", "HS384", "HS512"] {
            let t = hmac.token(alg, &forged);
            refused(
                &mut c,
                &w,
                &format!("key confusion {alg}, {form}, kid k1"),
                get(&t),
                401,
                "alg_not_allowed",
            )
            .await;
        }
        let t = hmac.sign_with_header(&json!({"alg": "HS256"}), &forged);
        refused(
            &mut c,
            &w,
            &format!("key confusion HS256, {form}, no kid"),
            get(&t),
            401,
            "alg_not_allowed",
        )
        .await;
    }

    // Psychic signatures (CVE-2022-21449): ECDSA with r = s = 0, r = s = n,
    // a DER-encoded zero signature, and an EC signature under the RSA kid.
    let ec_token = issuer.ec.token("ES256", &forged);
    let (eh, ep, _) = parts(&ec_token);
    let order = hex(P256_ORDER);
    let psychic: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0", vec![0u8; 64]),
        ("r = s = n", [order.clone(), order].concat()),
        (
            "DER r = s = 0",
            vec![0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
        ),
        (
            "r = 0, s = 1",
            [vec![0u8; 32], vec![0u8; 31], vec![1u8]].concat(),
        ),
    ];
    for (name, sig) in &psychic {
        let t = format!("{eh}.{ep}.{}", B64.encode(sig));
        refused(
            &mut c,
            &w,
            &format!("psychic signature {name}"),
            get(&t),
            401,
            "bad_signature",
        )
        .await;
        let t = format!(
            "{}.{ep}.{}",
            b64_json(&json!({"alg": "ES256"})),
            B64.encode(sig)
        );
        refused(
            &mut c,
            &w,
            &format!("psychic signature {name}, no kid"),
            get(&t),
            401,
            "bad_signature",
        )
        .await;
    }
    let t = issuer
        .ec
        .sign_with_header(&json!({"alg": "ES256", "kid": "k1"}), &forged);
    refused(
        &mut c,
        &w,
        "ES256 under the RSA key's kid",
        get(&t),
        401,
        "no_matching_key",
    )
    .await;

    // An embedded `jwk` with the attacker's key is never used.
    let embedded = [
        (
            "jwk, real kid",
            &attacker,
            json!({"alg": "RS256", "kid": "k1", "jwk": attacker.jwk()}),
        ),
        (
            "jwk, no kid",
            &attacker,
            json!({"alg": "RS256", "jwk": attacker.jwk()}),
        ),
        (
            "jwk EC, no kid",
            &attacker_ec,
            json!({"alg": "ES256", "jwk": attacker_ec.jwk()}),
        ),
    ];
    for (name, key, header) in &embedded {
        let t = key.sign_with_header(header, &forged);
        refused(
            &mut c,
            &w,
            &format!("embedded {name}"),
            get(&t),
            401,
            "bad_signature",
        )
        .await;
    }
    // `jku` / `x5u` pointing at the attacker's server: never fetched.
    let jku = evil_server.0.url(JwksServer::JWKS_PATH);
    let x5u = evil_server.0.url("/cert.pem");
    let remote_refs = [
        (
            "jku, attacker's kid",
            json!({"alg": "RS256", "kid": "evil-1", "jku": jku}),
            "unknown_kid",
        ),
        (
            "jku, real kid",
            json!({"alg": "RS256", "kid": "k1", "jku": jku}),
            "bad_signature",
        ),
        (
            "jku, no kid",
            json!({"alg": "RS256", "jku": jku}),
            "bad_signature",
        ),
        (
            "x5u, attacker's kid",
            json!({"alg": "RS256", "kid": "evil-1", "x5u": x5u}),
            "unknown_kid",
        ),
        (
            "x5u and x5c, no kid",
            json!({"alg": "RS256", "x5u": x5u, "x5c": [B64.encode(b"not a cert")]}),
            "bad_signature",
        ),
    ];
    for (name, header, reason) in &remote_refs {
        let t = attacker.sign_with_header(header, &forged);
        refused(&mut c, &w, name, get(&t), 401, reason).await;
    }

    // kid injection: path traversal, SQL-ish, command and template
    // injection, empty, very long, look-alikes. Keys are found by exact kid.
    let long_kid = "k".repeat(8192);
    let kids: Vec<&str> = vec![
        "../../../../../../dev/null",
        "/dev/null",
        "k1' OR '1'='1",
        "k1\" UNION SELECT 'secret' --",
        "|cat /etc/passwd",
        "${jndi:ldap://127.0.0.1:1/a}",
        "",
        &long_kid,
        "K1",
        "k1 ",
        "k1\u{0000}",
    ];
    for kid in &kids {
        let shown = format!("{:.40}", format!("{kid:?}"));
        let t = attacker.sign_with_header(&json!({"alg": "RS256", "kid": kid}), &forged);
        refused(
            &mut c,
            &w,
            &format!("kid injection {shown}"),
            get(&t),
            401,
            "unknown_kid",
        )
        .await;
        // The /dev/null trick proper: HMAC with an empty secret.
        let t =
            TestKey::hmac("x", b"").sign_with_header(&json!({"alg": "HS256", "kid": kid}), &forged);
        refused(
            &mut c,
            &w,
            &format!("kid injection {shown}, HS256 with an empty key"),
            get(&t),
            401,
            "alg_not_allowed",
        )
        .await;
    }
    for kid in [json!(1), json!(["k1"]), json!({"$ne": null}), json!(null)] {
        let t = attacker.sign_with_header(&json!({"alg": "RS256", "kid": kid}), &forged);
        refused(
            &mut c,
            &w,
            &format!("kid of type {kid}"),
            get(&t),
            401,
            "malformed",
        )
        .await;
    }

    // Signature stripping.
    for (name, t) in [
        ("header.payload.", format!("{gh}.{gp}.")),
        ("header.payload", format!("{gh}.{gp}")),
        ("padded signature", format!("{gh}.{gp}.{gs}==")),
        ("JWE-shaped (5 parts)", format!("{gh}.{gp}.{gs}.{gs}.{gs}")),
    ] {
        refused(
            &mut c,
            &w,
            &format!("signature stripping: {name}"),
            get(&t),
            401,
            "malformed",
        )
        .await;
    }

    // Claim and header tampering, signature kept.
    let tampered_claims = [
        ("sub", json!({"sub": "root"})),
        ("scope", json!({"scope": "read write admin"})),
        ("exp", json!({"exp": now_secs() + 10 * 365 * 86400})),
        ("aud", json!({"aud": "other-api"})),
    ];
    for (name, extra) in &tampered_claims {
        let p = b64_json(&claims(ISS, AUD, "alice", 600, extra.clone()));
        refused(
            &mut c,
            &w,
            &format!("tampered claim {name}"),
            get(&format!("{gh}.{p}.{gs}")),
            401,
            "bad_signature",
        )
        .await;
    }
    let h = b64_json(&json!({"alg": "RS384", "typ": "JWT", "kid": "k1"}));
    refused(
        &mut c,
        &w,
        "tampered header alg RS384",
        get(&format!("{h}.{gp}.{gs}")),
        401,
        "bad_signature",
    )
    .await;
    let h = b64_json(&json!({"alg": "RS256", "typ": "JWT", "kid": "ec1"}));
    refused(
        &mut c,
        &w,
        "tampered header kid",
        get(&format!("{h}.{gp}.{gs}")),
        401,
        "no_matching_key",
    )
    .await;
    let t = attacker.sign_with_header(
        &json!({"alg": "RS256", "kid": "k1", "crit": ["b64"], "b64": false}),
        &forged,
    );
    refused(
        &mut c,
        &w,
        "crit b64 (unencoded payload)",
        get(&t),
        401,
        "unsupported_crit",
    )
    .await;

    // Expired beyond the skew: refused whoever signed it.
    for ago in [120, 3600, 30 * 86400] {
        let t = issuer.token("alice", json!({"exp": now_secs() as i64 - ago}));
        refused(
            &mut c,
            &w,
            &format!("expired {ago} s ago"),
            get(&t),
            401,
            "expired",
        )
        .await;
    }

    // Oversized: a forged 58 KiB token still fits Envoy's header limit and
    // is verified (and refused); an Authorization header over Envoy's 60 KiB
    // default never reaches the filter or the upstream: Envoy answers 431.
    let big = claims(ISS, AUD, "mallory", 600, json!({"pad": "p".repeat(44544)}));
    let t = format!("{gh}.{}.{gs}", b64_json(&big));
    c.check(
        (58 * 1024..59 * 1024).contains(&t.len()),
        "oversized",
        || format!("size {}", t.len()),
    );
    refused(
        &mut c,
        &w,
        "58 KiB forged token",
        get(&t),
        401,
        "bad_signature",
    )
    .await;
    refused(
        &mut c,
        &w,
        "58 KiB forged token in the query",
        RawRequest::get(&format!("/x?access_token={t}")),
        401,
        "bad_signature",
    )
    .await;
    let huge = format!("{gh}.{}.{gs}", "A".repeat(62 * 1024));
    let s = w.send(get(&huge)).await;
    c.eq("62 KiB Authorization header", "status", s.resp.status, 431);
    c.check(!s.reached, "62 KiB Authorization header", || {
        "reached the upstream".into()
    });

    // Duplicated tokens: every token found must verify (README), at most 4.
    let bob = issuer.token("bob", json!({"scope": "read"}));
    let none = raw(&json!({"alg": "none"}), &forged, b"");
    let dup_cases = [
        (
            "valid then alg none, two headers",
            get(&good).bearer(&none),
            "alg_not_allowed",
        ),
        (
            "alg none then valid, two headers",
            get(&none).bearer(&good),
            "alg_not_allowed",
        ),
        (
            "valid and tampered, one header",
            RawRequest::get("/x").header(
                "Authorization",
                format!("Bearer {good}, Bearer {gh}.{}.{gs}", b64_json(&forged)),
            ),
            "bad_signature",
        ),
        (
            "valid header, forged query",
            RawRequest::get(&format!("/x?access_token={none}")).bearer(&good),
            "alg_not_allowed",
        ),
        (
            "forged header, valid query",
            RawRequest::get(&format!("/x?access_token={good}")).bearer(&none),
            "alg_not_allowed",
        ),
        (
            "valid header, stripped query",
            RawRequest::get(&format!("/x?access_token={gh}.{gp}.")).bearer(&good),
            "malformed",
        ),
        (
            "valid query, expired query",
            RawRequest::get(&format!(
                "/x?access_token={good}&access_token={}",
                issuer.token("alice", json!({"exp": now_secs() as i64 - 600}))
            )),
            "expired",
        ),
    ];
    for (name, req, reason) in dup_cases {
        refused(&mut c, &w, &format!("duplicated: {name}"), req, 401, reason).await;
    }
    let five: Vec<String> = (0..5)
        .map(|i| issuer.token(&format!("u{i}"), json!({})))
        .collect();
    let mut req = RawRequest::get("/x");
    for t in &five {
        req = req.bearer(t);
    }
    refused(
        &mut c,
        &w,
        "duplicated: five valid tokens",
        req,
        401,
        "too_many_tokens",
    )
    .await;
    for (name, req) in [
        ("same token twice, two headers", get(&good).bearer(&good)),
        (
            "same token twice, one header",
            RawRequest::get("/x").header("Authorization", format!("Bearer {good}, Bearer {good}")),
        ),
        ("two valid tokens, two headers", get(&good).bearer(&bob)),
    ] {
        let s = w.send(req).await;
        let case = format!("duplicated: {name}");
        passed(&mut c, &case, &s);
        c.eq(
            &case,
            "authorization upstream",
            s.upstream.get("authorization"),
            None,
        );
        c.eq(
            &case,
            "x-jwt-sub upstream",
            s.upstream.get("x-jwt-sub").map(Vec::len),
            Some(1),
        );
    }

    // A path that only looks public: rules see the normalised path.
    for path in [
        "/public/../x",
        "/public/%2e%2e/x",
        "//public/..//x",
        "/public/./../x",
        "/PUBLIC/x",
    ] {
        refused(
            &mut c,
            &w,
            &format!("path {path} without a token"),
            RawRequest::get(path),
            401,
            "token_missing",
        )
        .await;
    }
    let s = w.send(RawRequest::get("/public%2F..%2Fx")).await;
    c.eq(
        "path /public%2F..%2Fx",
        "status (UNESCAPE_AND_REDIRECT)",
        s.resp.status,
        307,
    );
    c.check(!s.reached, "path /public%2F..%2Fx", || {
        "reached the upstream".into()
    });

    // ... and the replayed token, once `exp` + skew has passed: expired,
    // though every worker may hold it in its verified-token cache.
    let expired_at = u64::try_from(replay_exp + 60 + 2).unwrap_or(0);
    while now_secs() < expired_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..4 {
        refused(
            &mut c,
            &w,
            &format!("replay after exp + skew ({i})"),
            get(&replay),
            401,
            "expired",
        )
        .await;
    }

    // The attacker's server was never contacted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.eq(
        "jku/x5u",
        "requests to the attacker's server",
        evil_server.0.received().len(),
        0,
    );

    w.check_healthy(&mut c, get(&good), RawRequest::get("/x"), 401)
        .await;
    c.finish();
}

/// A provider that allows HS256 next to RS256 and ES256, with an RSA, an EC
/// and an `oct` key: key confusion must still fail, by key type. The
/// header limit is raised so that tokens around the filter's own 64 KiB
/// limit reach it.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_key_confusion_and_size_limit_with_hmac_enabled() {
    let issuer = Issuer::new();
    let hmac = TestKey::hmac("hs1", &[0x5a; 32]);
    let config = json!({
        "providers": {"strict": {
            "issuer": ISS,
            "audiences": [AUD],
            "local_jwks": {"inline_string": jwks(&[&issuer.rsa, &issuer.ec, &hmac])},
            "algorithms": ["RS256", "ES256", "HS256"],
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "strict"}}]
    })
    .to_string();
    let upstream = EchoUpstream::start().await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .upstream(upstream.port())
            .plugin_config("jwt_auth", config)
            .replace(
                "stat_prefix: ingress\n",
                "stat_prefix: ingress\n          max_request_headers_kb: 96\n",
            ),
    )
    .await
    .unwrap();
    let mut w = World {
        envoy,
        upstream,
        _jwks: None,
        collector: None,
        baseline: Stats::default(),
    };
    let good = issuer.token("alice", json!({}));
    let get = |token: &str| RawRequest::get("/x").bearer(token);
    let first = w.send(get(&good)).await;
    assert_eq!(first.resp.status, 200, "{}", first.resp.body_text());
    w.baseline = snapshot(&w.envoy).await;
    let mut c = Checks::new("jwt with HMAC enabled (envoy/jwt-auth.yaml)");
    let forged = claims(ISS, AUD, "mallory", 600, json!({}));

    // The HMAC path works: the refusals below are not "HMAC is off".
    let real = hmac.token("HS256", &forged);
    c.eq(
        "HS256 with the real secret",
        "status",
        w.send(get(&real)).await.resp.status,
        200,
    );
    let real = hmac.sign_with_header(&json!({"alg": "HS256"}), &forged);
    c.eq(
        "HS256 with the real secret, no kid",
        "status",
        w.send(get(&real)).await.resp.status,
        200,
    );

    // The RSA public key as an HMAC secret: under the RSA kid no key fits
    // HS256; without a kid only `oct` keys are tried; under the `oct` kid
    // the secret is wrong.
    for (form, secret) in public_key_forms(&issuer.rsa) {
        let key = TestKey::hmac("k1", &secret);
        let t = key.token("HS256", &forged);
        refused(
            &mut c,
            &w,
            &format!("key confusion, {form}, RSA kid"),
            get(&t),
            401,
            "no_matching_key",
        )
        .await;
        let t = key.sign_with_header(&json!({"alg": "HS256"}), &forged);
        refused(
            &mut c,
            &w,
            &format!("key confusion, {form}, no kid"),
            get(&t),
            401,
            "bad_signature",
        )
        .await;
        let t = key.sign_with_header(&json!({"alg": "HS256", "kid": "hs1"}), &forged);
        refused(
            &mut c,
            &w,
            &format!("key confusion, {form}, oct kid"),
            get(&t),
            401,
            "bad_signature",
        )
        .await;
    }
    let ec_point = {
        let jwk = issuer.ec.jwk();
        let coord = |n: &str| B64.decode(jwk[n].as_str().unwrap_or_default()).unwrap();
        [vec![4u8], coord("x"), coord("y")].concat()
    };
    let t = TestKey::hmac("ec1", &ec_point).token("HS256", &forged);
    refused(
        &mut c,
        &w,
        "key confusion, EC point, EC kid",
        get(&t),
        401,
        "no_matching_key",
    )
    .await;

    // Psychic signatures against a local P-256 key.
    let (eh, ep, _) = parts(&issuer.ec.token("ES256", &forged));
    let t = format!("{eh}.{ep}.{}", B64.encode([0u8; 64]));
    refused(
        &mut c,
        &w,
        "psychic signature r = s = 0",
        get(&t),
        401,
        "bad_signature",
    )
    .await;

    // kid injection with the /dev/null trick (HMAC, empty secret), now that
    // HS256 is allowed: unknown kids are unknown, an empty key is wrong.
    for kid in [
        "../../../../../../dev/null",
        "/dev/null",
        "hs1' OR '1'='1",
        "",
    ] {
        let t =
            TestKey::hmac("x", b"").sign_with_header(&json!({"alg": "HS256", "kid": kid}), &forged);
        refused(
            &mut c,
            &w,
            &format!("kid injection {kid:?}, HS256 empty key"),
            get(&t),
            401,
            "unknown_kid",
        )
        .await;
    }
    let t = TestKey::hmac("hs1", b"").token("HS256", &forged);
    refused(
        &mut c,
        &w,
        "HS256 with an empty key under the oct kid",
        get(&t),
        401,
        "bad_signature",
    )
    .await;

    // The filter's size limit, exactly: the longest valid token of at most
    // 64 KiB passes, one a byte or two longer is refused as malformed.
    let (fits, too_long) = tokens_around(&issuer.rsa, MAX_TOKEN_BYTES);
    c.check(
        fits.len() <= MAX_TOKEN_BYTES && fits.len() + 3 >= MAX_TOKEN_BYTES,
        "size limit",
        || format!("fits is {} bytes", fits.len()),
    );
    c.check(too_long.len() > MAX_TOKEN_BYTES, "size limit", || {
        format!("too_long is {} bytes", too_long.len())
    });
    let s = w.send(get(&fits)).await;
    passed(&mut c, &format!("valid token of {} bytes", fits.len()), &s);
    refused(
        &mut c,
        &w,
        &format!("valid token of {} bytes", too_long.len()),
        get(&too_long),
        401,
        "malformed",
    )
    .await;
    refused(
        &mut c,
        &w,
        &format!("valid token of {} bytes in the query", too_long.len()),
        RawRequest::get(&format!("/x?access_token={too_long}")),
        401,
        "malformed",
    )
    .await;
    // Past the (raised) header limit, Envoy answers before any filter.
    let s = w
        .send(get(&format!("{}{}", fits, "A".repeat(40 * 1024))))
        .await;
    c.eq("104 KiB Authorization header", "status", s.resp.status, 431);

    w.check_healthy(&mut c, get(&good), RawRequest::get("/x"), 401)
        .await;
    c.finish();
}

/// The longest RS256 token no longer than `limit`, and the shortest longer.
fn tokens_around(key: &TestKey, limit: usize) -> (String, String) {
    let base = claims(ISS, AUD, "big", 600, json!({}));
    let with_pad = |n: usize| {
        let mut c = base.clone();
        c["pad"] = json!("p".repeat(n));
        c
    };
    let header_and_sig = {
        let t = key.token("RS256", &with_pad(0));
        t.len() - b64_json(&with_pad(0)).len()
    };
    let len = |n: usize| header_and_sig + b64_json(&with_pad(n)).len();
    let (mut lo, mut hi) = (0, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if len(mid) <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (
        key.token("RS256", &with_pad(lo)),
        key.token("RS256", &with_pad(lo + 1)),
    )
}

// ---------------------------------------------------------------------------
// A verified token never travels on (forward: false), wherever it was found.
//
// OPEN FINDING: jwt-auth removes only the location of the first verified
// token (`forward()` in filters/jwt-auth/src/filter.rs gets the `first`
// of `verify_provider`); with a token in `Authorization` and another (or
// the same) in `?access_token=`, the query one goes upstream in `:path`.

/// Every place the upstream could have received `token`.
fn upstream_has(s: &Sent, token: &str) -> Vec<String> {
    let sig = parts(token).2;
    let mut found = Vec::new();
    if s.upstream_target.contains(&sig) {
        found.push(format!("in the path: {:.80}", s.upstream_target));
    }
    for (k, vs) in &s.upstream {
        if vs.iter().any(|v| v.contains(&sig)) {
            found.push(format!("in header {k}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_no_verified_token_reaches_the_upstream() {
    let issuer = Issuer::new();
    let w = chain_world("chain.yaml", &issuer, |o| o).await;
    let mut c = Checks::new("tokens never forwarded (envoy/chain.yaml, forward: false)");
    let alice = issuer.token("alice", json!({}));
    let bob = issuer.token("bob", json!({}));
    let cases = [
        ("header", RawRequest::get("/x").bearer(&alice), vec![&alice]),
        (
            "query",
            RawRequest::get(&format!("/x?a=1&access_token={alice}&b=2")),
            vec![&alice],
        ),
        (
            "two headers",
            RawRequest::get("/x").bearer(&alice).bearer(&bob),
            vec![&alice, &bob],
        ),
        (
            "two query parameters",
            RawRequest::get(&format!("/x?access_token={alice}&access_token={bob}")),
            vec![&alice, &bob],
        ),
        (
            "the same token in the header and the query",
            RawRequest::get(&format!("/x?access_token={alice}")).bearer(&alice),
            vec![&alice],
        ),
        (
            "one token in the header, another in the query",
            RawRequest::get(&format!("/x?access_token={bob}")).bearer(&alice),
            vec![&alice, &bob],
        ),
        (
            "one token in the query, another in the header",
            RawRequest::get(&format!("/x?access_token={alice}")).bearer(&bob),
            vec![&alice, &bob],
        ),
    ];
    for (name, req, tokens) in cases {
        let s = w.send(req).await;
        passed(&mut c, name, &s);
        for t in tokens {
            let leaks = upstream_has(&s, t);
            c.check(leaks.is_empty(), name, || {
                format!("a verified token reached the upstream {leaks:?}")
            });
        }
        c.eq(
            name,
            "x-jwt-sub values upstream",
            s.upstream.get("x-jwt-sub").map(Vec::len),
            Some(1),
        );
    }
    w.check_healthy(
        &mut c,
        RawRequest::get("/x").bearer(&alice),
        RawRequest::get("/x"),
        401,
    )
    .await;
    c.finish();
}

// ---------------------------------------------------------------------------
// Identity smuggling.

/// The request headers jwt-auth writes in an Envoy config: every
/// `claim_to_headers[].header_name` and `forward_payload_header`.
fn owned_headers(config: &str) -> Vec<String> {
    let text = std::fs::read_to_string(e2e::paths::envoy_config(config)).unwrap();
    let mut out: Vec<String> = Vec::new();
    for key in ["\"header_name\":", "\"forward_payload_header\":"] {
        for piece in text.split(key).skip(1) {
            let name = piece
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// Letter-case variants of a header name.
fn case_variants(name: &str) -> Vec<String> {
    let title: String = name
        .split('-')
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-");
    let alternating: String = name
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i % 2 == 0 {
                ch.to_ascii_uppercase()
            } else {
                ch
            }
        })
        .collect();
    vec![
        name.to_string(),
        name.to_ascii_uppercase(),
        title,
        alternating,
    ]
}

const SMUGGLED: &str = "smuggled-root";

/// Every owned header in every letter case, three times each.
fn with_smuggled(mut req: RawRequest, owned: &[String]) -> RawRequest {
    for name in owned {
        for variant in case_variants(name) {
            for i in 0..3 {
                req = req.header(&variant, format!("{SMUGGLED}-{i}"));
            }
        }
    }
    req
}

async fn smuggling_suite(config: &str) {
    let issuer = Issuer::new();
    let w = chain_world(config, &issuer, |o| o).await;
    let mut c = Checks::new(&format!("identity smuggling (envoy/{config})"));
    let owned = owned_headers(config);
    for h in ["x-jwt-sub", "x-jwt-scope", "x-jwt-roles", "x-jwt-payload"] {
        c.check(owned.contains(&h.to_string()), "owned headers", || {
            format!("{h} not found in {config}: {owned:?}")
        });
    }
    let smuggled_values = |s: &Sent| -> Vec<String> {
        s.upstream
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {v}")))
            .filter(|kv| kv.contains(SMUGGLED))
            .collect()
    };

    let full = issuer.token("alice", json!({"scope": "read write", "roles": ["viewer"]}));
    let bare = issuer.token("bob", json!({}));
    let cases = [
        (
            "no token, open path",
            RawRequest::get("/public/smuggle-1"),
            None,
            None,
        ),
        (
            "no token, open path, HEAD",
            RawRequest {
                method: "HEAD".into(),
                ..RawRequest::get("/public/smuggle-2")
            },
            None,
            None,
        ),
        (
            "valid token with every claim",
            RawRequest::get("/x/smuggle-3").bearer(&full),
            Some(&full),
            Some("alice"),
        ),
        (
            "valid token with every claim, /api",
            RawRequest::get("/api/smuggle-4").bearer(&full),
            Some(&full),
            Some("alice"),
        ),
        (
            "valid token with every claim, POST /api",
            RawRequest {
                method: "POST".into(),
                ..RawRequest::get("/api/smuggle-5").bearer(&full)
            },
            Some(&full),
            Some("alice"),
        ),
        (
            "valid token without scope or roles",
            RawRequest::get("/x/smuggle-6").bearer(&bare),
            Some(&bare),
            Some("bob"),
        ),
        (
            "valid token in the query",
            RawRequest::get(&format!("/x/smuggle-7?access_token={bare}")),
            Some(&bare),
            Some("bob"),
        ),
        (
            "valid token on an open path",
            RawRequest::get("/public/smuggle-8").bearer(&bare),
            None,
            None,
        ),
    ];
    for (name, req, token, sub) in cases {
        let s = w.send(with_smuggled(req, &owned)).await;
        passed(&mut c, name, &s);
        let leaked = smuggled_values(&s);
        c.check(leaked.is_empty(), name, || {
            format!("the upstream saw client values: {leaked:?}")
        });
        match token {
            None => {
                for h in &owned {
                    c.eq(name, h, s.upstream.get(h), None);
                }
            }
            Some(t) => {
                let payload: Value =
                    serde_json::from_slice(&B64.decode(parts(t).1).unwrap()).unwrap();
                for h in &owned {
                    let want = match h.as_str() {
                        "x-jwt-payload" => Some(vec![parts(t).1]),
                        "x-jwt-sub" => sub.map(|s| vec![s.to_string()]),
                        other => {
                            let claim = other.trim_start_matches("x-jwt-");
                            match &payload[claim] {
                                Value::Null => None,
                                Value::String(v) => Some(vec![v.clone()]),
                                v => Some(vec![v.to_string()]),
                            }
                        }
                    };
                    c.eq(name, h, s.upstream.get(h).cloned(), want);
                }
            }
        }
    }
    // An invalid token: refused, so the smuggled headers go nowhere.
    let forged = raw(
        &json!({"alg": "none"}),
        &claims(ISS, AUD, "root", 600, json!({})),
        b"",
    );
    refused(
        &mut c,
        &w,
        "alg none with smuggled headers",
        with_smuggled(RawRequest::get("/x/smuggle-9").bearer(&forged), &owned),
        401,
        "alg_not_allowed",
    )
    .await;
    refused(
        &mut c,
        &w,
        "no token with smuggled headers",
        with_smuggled(RawRequest::get("/x/smuggle-10"), &owned),
        401,
        "token_missing",
    )
    .await;

    // Headers named like the filter-state keys carry no identity.
    let fake =
        json!({"provider": "demo", "issuer": ISS, "subject": "root", "claims": {"scope": "admin"}})
            .to_string();
    let mut req = RawRequest::get("/public/smuggle-11");
    for name in [
        "portcullis.identity",
        "wasm.portcullis.identity",
        "Portcullis.Jwt",
        "x-portcullis-identity",
    ] {
        req = req.header(name, &fake);
    }
    let s = w.send(req).await;
    passed(&mut c, "forged filter-state headers", &s);
    // Rate-limit headers written by a client do not come back as the
    // filter's: only the filter's own RateLimit fields are answered.
    let forged_rl = "\"per-client\";r=999;t=0";
    let s = w
        .send(
            RawRequest::get("/api/smuggle-12")
                .bearer(&full)
                .header("RateLimit", forged_rl)
                .header("ratelimit-policy", "\"per-client\";q=999999;w=1")
                .header("X-RateLimit-Remaining", "999"),
        )
        .await;
    passed(&mut c, "forged RateLimit request headers", &s);
    let answered = s.resp.header("ratelimit").unwrap_or_default();
    c.check(
        !answered.contains("r=999"),
        "forged RateLimit request headers",
        || format!("ratelimit answered: {answered}"),
    );
    c.check(
        answered.contains("\"per-client\";r="),
        "RateLimit on allowed responses",
        || format!("ratelimit answered: {answered:?}"),
    );

    // The audit events name the verified caller only.
    if let Some(collector) = &w.collector {
        for (path, want_user) in [
            ("/public/smuggle-1", None),
            ("/public/smuggle-8", None),
            ("/public/smuggle-11", None),
            ("/x/smuggle-3", Some("alice")),
            ("/x/smuggle-6", Some("bob")),
            ("/x/smuggle-9", None),
        ] {
            let Some(e) = audit_event(collector, path).await else {
                c.check(false, "audit", || format!("no event for {path}"));
                continue;
            };
            c.eq(
                &format!("audit {path}"),
                "user.id",
                e["user"]["id"].as_str(),
                want_user,
            );
            let text = e.to_string();
            c.check(
                !text.contains(SMUGGLED) && !text.contains("\"root\""),
                &format!("audit {path}"),
                || format!("client values in the event: {text}"),
            );
        }
        if let Some(e) = audit_event(collector, "/x/smuggle-3").await {
            c.eq(
                "audit /x/smuggle-3",
                "user.claims.scope",
                e["user"]["claims"]["scope"].as_str(),
                Some("read write"),
            );
        }
    }

    w.check_healthy(
        &mut c,
        RawRequest::get("/x").bearer(&full),
        RawRequest::get("/x"),
        401,
    )
    .await;
    c.finish();
}

/// The audit event of the request to `path`, once the collector has it
/// (batches are flushed every second).
async fn audit_event(c: &Collector, path: &str) -> Option<Value> {
    for _ in 0..60 {
        let found = String::from_utf8_lossy(&c.all_bytes())
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["url"]["path"] == json!(path));
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_cannot_be_smuggled_chain_module() {
    smuggling_suite("chain.yaml").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_cannot_be_smuggled_three_filters() {
    smuggling_suite("chain-filters.yaml").await;
}

/// Header names an upstream may read as an owned header although they are
/// spelled differently: `_` for `-` (CGI-style servers, e.g. WSGI, Rack,
/// PHP-FPM, map `x-jwt-sub` and `x_jwt_sub` both to `HTTP_X_JWT_SUB`).
/// Envoy passes such names on by default (`headers_with_underscores_action:
/// ALLOW`); every config in `envoy/` sets `REJECT_REQUEST`, so Envoy's codec
/// answers 400 before any filter runs and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_cannot_be_smuggled_with_underscores() {
    let mut c = Checks::new("identity smuggling with underscores (envoy/chain.yaml)");
    // Every shipped HTTP connection manager refuses them (the benchmark's
    // too, so that every compared configuration does the same work).
    let dir = e2e::paths::workspace_root().join("envoy");
    let mut configs = 0;
    for sub in [dir.clone(), dir.join("bench")] {
        for entry in std::fs::read_dir(&sub).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let managers = text.matches("v3.HttpConnectionManager").count();
            configs += managers;
            c.eq(
                &path.display().to_string(),
                "connection managers with headers_with_underscores_action: REJECT_REQUEST",
                text.matches("headers_with_underscores_action: REJECT_REQUEST")
                    .count(),
                managers,
            );
        }
    }
    c.check(configs >= 12, "configs", || format!("only {configs} found"));

    let issuer = Issuer::new();
    let w = chain_world("chain.yaml", &issuer, |o| o).await;
    let owned = owned_headers("chain.yaml");
    let bare = issuer.token("bob", json!({}));
    let full = issuer.token("alice", json!({"scope": "read", "roles": ["viewer"]}));
    let before = snapshot(&w.envoy).await;
    let mut sent = 0;
    for (name, base) in [
        ("no token, open path", RawRequest::get("/public/u")),
        (
            "valid token without scope or roles",
            RawRequest::get("/x/u").bearer(&bare),
        ),
        (
            "valid token with every claim",
            RawRequest::get("/x/u").bearer(&full),
        ),
    ] {
        let mut req = base.clone();
        for h in &owned {
            let under = h.replace('-', "_");
            let mixed = h.replacen('-', "_", 1);
            for variant in [under.clone(), under.to_ascii_uppercase(), mixed] {
                req = req.header(&variant, SMUGGLED);
            }
        }
        // Every spelling together, then one alone (the first line Envoy
        // reads is no different from any other).
        let one = base.header("x_jwt_sub", "root");
        for (case, req) in [
            (name.to_string(), req),
            (format!("{name}, x_jwt_sub alone"), one),
        ] {
            let s = w.send(req).await;
            sent += 1;
            c.eq(&case, "status", s.resp.status, 400);
            c.check(!s.reached, &case, || {
                format!("reached the upstream with {:?}", s.upstream)
            });
        }
    }
    let after = snapshot(&w.envoy).await;
    let stat = "http1.requests_rejected_with_underscores_in_headers";
    c.eq(stat, "increase", after.get(stat) - before.get(stat), sent);
    // Underscores elsewhere are fine: in a value, the path, the query.
    let s = w
        .send(RawRequest::get("/public/a_b?x_y=1").header("x-tenant-id", "t_1"))
        .await;
    passed(&mut c, "underscores outside header names", &s);
    w.check_healthy(
        &mut c,
        RawRequest::get("/x").bearer(&full),
        RawRequest::get("/public/u").header("X_Jwt_Sub", "root"),
        400,
    )
    .await;
    c.finish();
}

// ---------------------------------------------------------------------------
// Rate-limit evasion.

const EVASION_CONFIG: &str = r#"{
  "headers": {"on_allowed": true},
  "rules": [
    {"name": "per-ip", "match": {"prefix": "/ip"}, "key": [{"client_ip": {}}],
     "limit": {"requests_per_unit": 3, "unit": "hour"}},
    {"name": "spray-ip", "match": {"prefix": "/spray"}, "key": [{"client_ip": {}}],
     "limit": {"requests_per_unit": 5, "unit": "hour"}},
    {"name": "spray-key", "match": {"prefix": "/spray"}, "key": [{"header": {"name": "x-api-key"}}],
     "limit": {"requests_per_unit": 1000, "unit": "hour"}},
    {"name": "per-key", "match": {"prefix": "/key"}, "key": [{"header": {"name": "x-api-key"}}],
     "limit": {"requests_per_unit": 2, "unit": "hour"}}
  ]
}"#;

/// Statuses of requests, and the rule each 429 names.
async fn run_all(w: &World, reqs: Vec<RawRequest>) -> (Vec<u16>, Vec<String>) {
    let mut statuses = Vec::new();
    let mut rules = Vec::new();
    for r in reqs {
        let s = w.send(r).await;
        if s.resp.status == 429 {
            rules.push(s.resp.json()["rule"].as_str().unwrap_or("?").to_string());
        }
        statuses.push(s.resp.status);
    }
    (statuses, rules)
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_evasion_is_refused() {
    let upstream = EchoUpstream::start().await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new("rate-limit.yaml")
            .upstream(upstream.port())
            .plugin_config("rate_limit", EVASION_CONFIG),
    )
    .await
    .unwrap();
    let mut w = World {
        envoy,
        upstream,
        _jwks: None,
        collector: None,
        baseline: Stats::default(),
    };
    assert_eq!(w.send(RawRequest::get("/free")).await.resp.status, 200);
    w.baseline = snapshot(&w.envoy).await;
    let mut c = Checks::new("rate-limit evasion (envoy/rate-limit.yaml)");

    // X-Forwarded-For and friends are not the client address
    // (use_remote_address: true; client_ip without trusted_hops).
    let ip = |h: &str, v: &str| RawRequest::get("/ip").header(h, v);
    let forged = vec![
        RawRequest::get("/ip"),
        ip("X-Forwarded-For", "203.0.113.7"),
        ip("x-forwarded-for", "203.0.113.8, 198.51.100.9"),
        ip("X-Forwarded-For", "10.0.0.1").header("X-Forwarded-For", "10.0.0.2"),
        ip("X-Real-IP", "203.0.113.10"),
        ip("Forwarded", "for=203.0.113.11;proto=https"),
        ip("True-Client-IP", "203.0.113.12"),
        ip("CF-Connecting-IP", "203.0.113.13"),
        ip("X-Client-IP", "203.0.113.14"),
        ip("X-Envoy-External-Address", "203.0.113.15"),
        ip("X-Original-Forwarded-For", "203.0.113.16"),
        ip("X-Forwarded-For", "::1"),
        ip("X-Forwarded-For", "2001:db8::1"),
    ];
    let n = forged.len();
    let (statuses, rules) = run_all(&w, forged).await;
    c.eq(
        "forged forwarding headers",
        "statuses",
        statuses,
        [vec![200; 3], vec![429; n - 3]].concat(),
    );
    c.check(
        rules.iter().all(|r| r == "per-ip"),
        "forged forwarding headers",
        || format!("rules {rules:?}"),
    );

    // Path spellings that normalise to the limited prefix share its bucket.
    let variants = [
        "//ip",
        "/./ip",
        "/x/../ip",
        "/%69p",
        "/i%70",
        "/%2e/ip",
        "/ip;a=b",
        "/ip?x=1",
        "/ip/%2e%2e/ip",
    ];
    let (statuses, _) = run_all(&w, variants.iter().map(|p| RawRequest::get(p)).collect()).await;
    c.eq(
        "path variants",
        "statuses",
        statuses,
        vec![429; variants.len()],
    );
    let s = w.send(RawRequest::get("/%2Fip")).await;
    c.eq(
        "path /%2Fip",
        "status (UNESCAPE_AND_REDIRECT)",
        s.resp.status,
        307,
    );
    c.check(!s.reached, "path /%2Fip", || "reached the upstream".into());
    // Prefixes are case-sensitive, as Envoy's RouteMatch: /IP is another
    // path (an upstream that treats paths case-insensitively needs a rule
    // for each spelling, or Envoy's `case_sensitive: false` routes).
    c.eq(
        "path /IP",
        "status",
        w.send(RawRequest::get("/IP")).await.resp.status,
        200,
    );

    // Key spraying: a fresh x-api-key (and path, query, user agent, cookie)
    // on every request does not escape the per-IP rule that also applies.
    let spray: Vec<RawRequest> = (0..20)
        .map(|i| {
            RawRequest::get(&format!("/spray/{i}?r={i}"))
                .header("x-api-key", format!("spray-{i}"))
                .header("User-Agent", format!("bot/{i}"))
                .header("Cookie", format!("s={i}"))
        })
        .collect();
    let (statuses, rules) = run_all(&w, spray).await;
    c.eq(
        "key spraying",
        "statuses",
        statuses,
        [vec![200; 5], vec![429; 15]].concat(),
    );
    c.check(
        rules.iter().all(|r| r == "spray-ip"),
        "key spraying",
        || format!("rules {rules:?}"),
    );

    // Header names are case-insensitive (HTTP/1): one bucket.
    let names = ["x-api-key", "X-API-KEY", "X-Api-Key", "x-API-kEY"];
    let (statuses, rules) = run_all(
        &w,
        names
            .iter()
            .map(|n| RawRequest::get("/key").header(n, "case-k"))
            .collect(),
    )
    .await;
    c.eq(
        "header name letter case",
        "statuses",
        statuses,
        vec![200, 200, 429, 429],
    );
    c.check(
        rules.iter().all(|r| r == "per-key"),
        "header name letter case",
        || format!("rules {rules:?}"),
    );

    // Values are compared byte for byte, after HTTP's own trimming of
    // optional whitespace: padding is the same key ...
    let key = |v: &[u8]| RawRequest::get("/key").header("x-api-key", v);
    let (statuses, _) = run_all(
        &w,
        vec![
            key(b"enc"),
            key(b"enc"),
            key(b" enc"),
            key(b"enc "),
            key(b"\tenc\t"),
        ],
    )
    .await;
    c.eq(
        "value padding",
        "statuses",
        statuses,
        vec![200, 200, 429, 429, 429],
    );
    // ... while other spellings are other keys, exactly as the upstream
    // receives them: not case-folded, not percent-decoded.
    for v in [
        &b"ENC"[..],
        b"Enc",
        b"%65nc",
        b"enc%20",
        b"enc\xc2\xa0",
        b"enc,",
    ] {
        let s = w.send(key(v)).await;
        let case = format!("value {:?}", String::from_utf8_lossy(v));
        c.eq(&case, "status (a key of its own)", s.resp.status, 200);
        c.eq(
            &case,
            "value upstream",
            s.upstream.get("x-api-key").cloned(),
            Some(vec![String::from_utf8_lossy(v).into_owned()]),
        );
    }

    // A repeated key header. Envoy's single-header read returns the first
    // line while the upstream receives every line (and may authenticate
    // on any of them), so lines that differ are refused (400
    // `ambiguous_key`, RFC 9110 §5.3) and charged to no bucket; identical
    // lines are one key.
    let (statuses, _) = run_all(&w, vec![key(b"dup"), key(b"dup"), key(b"dup")]).await;
    c.eq(
        "repeated header: the bucket",
        "statuses",
        statuses,
        vec![200, 200, 429],
    );
    let ambiguous = |c: &mut Checks, case: &str, s: &Sent| {
        c.eq(case, "status", s.resp.status, 400);
        c.eq(
            case,
            "reason",
            s.resp.json()["error"].as_str(),
            Some("ambiguous_key"),
        );
        c.eq(
            case,
            "rule",
            s.resp.json()["rule"].as_str(),
            Some("per-key"),
        );
        c.eq(case, "retry-after", s.resp.header("retry-after"), None);
        c.check(!s.reached, case, || "reached the upstream".into());
    };
    let before = snapshot(&w.envoy).await;
    let s = w.send(key(b"dup").header("x-api-key", "fresh-1")).await;
    ambiguous(&mut c, "repeated header, spent key first", &s);
    let s = w.send(key(b"fresh-2").header("x-api-key", "dup")).await;
    ambiguous(&mut c, "repeated header, spent key second", &s);
    let s = w
        .send(
            key(b"fresh-3")
                .header("X-API-KEY", "fresh-3")
                .header("x-api-key", "dup"),
        )
        .await;
    ambiguous(&mut c, "repeated header, spent key third", &s);
    let s = w.send(key(b"fresh-4").header("x-api-key", "FRESH-4")).await;
    ambiguous(&mut c, "repeated header, values differing in case", &s);
    let after = snapshot(&w.envoy).await;
    let metric = "rate_limit.per-key.ambiguous_key";
    c.eq(
        "repeated header",
        metric,
        after.custom(metric) - before.custom(metric),
        4,
    );
    c.eq(
        "repeated header",
        "rate_limit.per-key.allowed (nothing charged)",
        after.custom("rate_limit.per-key.allowed") - before.custom("rate_limit.per-key.allowed"),
        0,
    );
    // The fresh keys of the refused requests still have their whole burst.
    let (statuses, _) = run_all(&w, vec![key(b"fresh-2"), key(b"fresh-2"), key(b"fresh-2")]).await;
    c.eq(
        "repeated header: the refused request's keys were not charged",
        "statuses",
        statuses,
        vec![200, 200, 429],
    );
    // Identical lines (after HTTP's trimming of optional whitespace) are
    // one key: the spent one stays spent, a fresh one counts once.
    let s = w.send(key(b"dup").header("X-Api-Key", " dup\t")).await;
    c.eq(
        "repeated header, identical lines, spent",
        "status",
        s.resp.status,
        429,
    );
    let s = w.send(key(b"twin").header("x-api-key", "twin")).await;
    c.eq(
        "repeated header, identical lines, fresh",
        "status",
        s.resp.status,
        200,
    );
    c.eq(
        "repeated header, identical lines, fresh",
        "values upstream",
        s.upstream.get("x-api-key").cloned(),
        Some(vec!["twin".to_string(), "twin".to_string()]),
    );
    let (statuses, _) = run_all(&w, vec![key(b"twin"), key(b"twin")]).await;
    c.eq(
        "repeated header, identical lines, fresh",
        "statuses after",
        statuses,
        vec![200, 429],
    );
    // A list inside one line is one opaque key (byte for byte), not the
    // spent key: an upstream that splits lists must key on what it
    // authenticates.
    let s = w.send(key(b"dup, fresh-5")).await;
    c.eq(
        "spent key in a list",
        "status (the whole line is the key)",
        s.resp.status,
        200,
    );

    w.check_healthy(
        &mut c,
        RawRequest::get("/free"),
        RawRequest::get("/ip"),
        429,
    )
    .await;
    c.finish();
}

/// The chain's per-user rule keys on the verified identity (issuer and
/// subject): minting more tokens for the same subject, or adding identity
/// headers, does not open a new bucket.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_per_user_cannot_be_escaped() {
    let issuer = Issuer::new();
    // Per hour instead of per minute, so no refill blurs the count.
    let w = chain_world("chain.yaml", &issuer, |o| {
        o.replace(r#""unit": "minute""#, r#""unit": "hour""#)
    })
    .await;
    let mut c = Checks::new("per-user rate limit (envoy/chain.yaml)");
    let fresh = |i: usize| {
        issuer.token(
            "mallory",
            json!({"scope": "read", "jti": format!("j{i}"), "nonce": i}),
        )
    };
    let reqs: Vec<RawRequest> = (0..12)
        .map(|i| RawRequest::get("/api/items").bearer(&fresh(i)))
        .collect();
    let (statuses, rules) = run_all(&w, reqs).await;
    c.eq(
        "a new token per request",
        "statuses",
        statuses,
        [vec![200; 8], vec![429; 4]].concat(),
    );
    c.check(
        rules.iter().all(|r| r == "per-user"),
        "a new token per request",
        || format!("rules {rules:?}"),
    );
    // (`x_jwt_sub` would get a 400 from Envoy before any filter:
    // `identity_headers_cannot_be_smuggled_with_underscores`.)
    let mut req = RawRequest::get("/api/items").bearer(&fresh(99));
    for name in ["x-jwt-sub", "X-JWT-SUB", "portcullis.identity"] {
        req = req.header(name, "somebody-else");
    }
    let s = w.send(req).await;
    c.eq(
        "identity headers next to the token",
        "status",
        s.resp.status,
        429,
    );
    c.eq(
        "identity headers next to the token",
        "rule",
        s.resp.json()["rule"].as_str(),
        Some("per-user"),
    );
    // An unverifiable token naming another subject is refused, not counted.
    let none = raw(
        &json!({"alg": "none"}),
        &claims(ISS, AUD, "mallory-2", 600, json!({"scope": "read"})),
        b"",
    );
    refused(
        &mut c,
        &w,
        "alg none for another subject",
        RawRequest::get("/api/items").bearer(&none),
        401,
        "alg_not_allowed",
    )
    .await;
    // Another user is not affected.
    let s = w
        .send(
            RawRequest::get("/api/items").bearer(&issuer.token("trent", json!({"scope": "read"}))),
        )
        .await;
    passed(&mut c, "another user", &s);
    c.finish();
}

// ---------------------------------------------------------------------------
// Malformed HTTP.

#[tokio::test(flavor = "multi_thread")]
async fn malformed_http_is_answered_precisely_and_costs_no_vm() {
    let issuer = Issuer::new();
    let w = chain_world("chain.yaml", &issuer, |o| o).await;
    let mut c = Checks::new("malformed HTTP (envoy/chain.yaml)");
    let good = issuer.token("alice", json!({"scope": "read"}));

    // Header values that are not UTF-8 (HTTP allows obs-text): the filters
    // read them as bytes. Tokens made of them are malformed; identity
    // headers made of them are stripped; audit labels and the user agent
    // are logged lossily.
    for (name, value) in [
        ("latin-1", &b"Bearer \xe9t\xe9"[..]),
        ("invalid UTF-8", b"Bearer \xff\xfe\xfd"),
        ("token-shaped", b"Bearer eyJ\x80.eyJ\x80.\xff"),
        ("overlong encoding", b"Bearer \xc0\xae\xc0\xae"),
        ("surrogate", b"Bearer \xed\xa0\x80"),
    ] {
        let req = RawRequest::get("/x").header("Authorization", value);
        refused(
            &mut c,
            &w,
            &format!("non-UTF-8 token: {name}"),
            req,
            401,
            "malformed",
        )
        .await;
    }
    let req = RawRequest::get("/x").header("Authorization", b"\xffBearer abc");
    refused(
        &mut c,
        &w,
        "non-UTF-8 before the scheme",
        req,
        401,
        "token_missing",
    )
    .await;
    let odd = |req: RawRequest| {
        req.header("x-jwt-sub", b"\xff\xfe")
            .header("X-JWT-PAYLOAD", b"\x80")
            .header("x-tenant-id", b"\xff\xfe-tenant")
            .header("User-Agent", b"\xc3\x28 agent")
            .header("Cookie", b"a=\xff")
            .header("X-Forwarded-For", b"\xff")
            .header("x-api-key", b"\xfe")
    };
    let s = w.send(odd(RawRequest::get("/public/odd"))).await;
    passed(&mut c, "non-UTF-8 headers, open path", &s);
    c.eq(
        "non-UTF-8 headers, open path",
        "x-jwt-sub upstream",
        s.upstream.get("x-jwt-sub"),
        None,
    );
    c.eq(
        "non-UTF-8 headers, open path",
        "x-jwt-payload upstream",
        s.upstream.get("x-jwt-payload"),
        None,
    );
    let s = w.send(odd(RawRequest::get("/api/odd").bearer(&good))).await;
    passed(&mut c, "non-UTF-8 headers, valid token", &s);
    c.eq(
        "non-UTF-8 headers, valid token",
        "x-jwt-sub upstream",
        s.upstream.get("x-jwt-sub").cloned(),
        Some(vec!["alice".to_string()]),
    );

    // Bytes HTTP forbids: Envoy's codec answers 400 before any filter.
    for (name, bytes) in [
        ("NUL in a value", b"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\x00b\r\nConnection: close\r\n\r\n".to_vec()),
        ("control character in a value", b"GET /x HTTP/1.1\r\nHost: a\r\nx-jwt-sub: a\x01b\r\nConnection: close\r\n\r\n".to_vec()),
        ("DEL in a value", b"GET /public/a HTTP/1.1\r\nHost: a\r\nx-jwt-sub: a\x7fb\r\nConnection: close\r\n\r\n".to_vec()),
        ("space before the colon", b"GET /public/a HTTP/1.1\r\nHost: a\r\nx-jwt-sub : root\r\nConnection: close\r\n\r\n".to_vec()),
        ("non-ASCII in a name", b"GET /public/a HTTP/1.1\r\nHost: a\r\nx-jwt-s\xffb: root\r\nConnection: close\r\n\r\n".to_vec()),
        ("non-ASCII in the path", b"GET /public/\xff HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()),
        ("non-ASCII in the query", b"GET /x?access_token=\xff HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()),
        ("non-ASCII in the host", b"GET /public/a HTTP/1.1\r\nHost: a\xff\r\nConnection: close\r\n\r\n".to_vec()),
        ("a fragment in the target", b"GET /public/a#x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()),
        ("NUL in the path", b"GET /public/a%00 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()),
    ] {
        let before = w.upstream.received().len();
        match send_raw(w.envoy.port, &bytes).await {
            Ok(r) => c.eq(name, "status", r.status, 400),
            Err(e) => c.check(false, name, || format!("no answer: {e:#}")),
        }
        c.eq(name, "requests reaching the upstream", w.upstream.received().len(), before);
    }

    // Many headers. Envoy allows 100 (max_request_headers_count); our echo
    // upstream (hyper) also stops at 100, Envoy's and jwt-auth's additions
    // included, so 85 is about the most that can pass end to end.
    let many = |n: usize, req: RawRequest| {
        (0..n).fold(req, |r, i| {
            r.header(format!("X-Filler-{i}"), format!("v{i}"))
        })
    };
    let s = w
        .send(many(85, RawRequest::get("/api/many").bearer(&good)))
        .await;
    passed(&mut c, "85 headers, valid token", &s);
    refused(
        &mut c,
        &w,
        "95 headers, no token",
        many(95, RawRequest::get("/x")),
        401,
        "token_missing",
    )
    .await;
    let forged = raw(
        &json!({"alg": "none"}),
        &claims(ISS, AUD, "root", 600, json!({})),
        b"",
    );
    refused(
        &mut c,
        &w,
        "95 headers, forged token last",
        many(95, RawRequest::get("/x")).bearer(&forged),
        401,
        "alg_not_allowed",
    )
    .await;
    let smuggle = (0..95).fold(RawRequest::get("/public/many"), |r, i| {
        r.header(
            if i % 2 == 0 {
                "X-Jwt-Sub"
            } else {
                "x-jwt-payload"
            },
            format!("root-{i}"),
        )
    });
    let s = w.send(smuggle).await;
    passed(&mut c, "95 identity headers", &s);
    c.eq(
        "95 identity headers",
        "x-jwt-sub upstream",
        s.upstream.get("x-jwt-sub"),
        None,
    );
    c.eq(
        "95 identity headers",
        "x-jwt-payload upstream",
        s.upstream.get("x-jwt-payload"),
        None,
    );
    for n in [99, 150, 1000] {
        let s = w.send(many(n, RawRequest::get("/x").bearer(&good))).await;
        c.eq(
            &format!("{n} headers"),
            "status (Envoy's limit)",
            s.resp.status,
            431,
        );
        c.check(!s.reached, &format!("{n} headers"), || {
            "reached the upstream".into()
        });
    }

    // Long values, near Envoy's 60 KiB limit on all headers.
    let near = 59 * 1024;
    let s = w
        .send(RawRequest::get("/public/long").header("x-tenant-id", "t".repeat(near)))
        .await;
    passed(&mut c, "59 KiB audit-labelled header", &s);
    let s = w
        .send(RawRequest::get("/public/long-ua").header("User-Agent", "u".repeat(near)))
        .await;
    passed(&mut c, "59 KiB user agent", &s);
    let s = w
        .send(RawRequest::get("/public/long-id").header("x-jwt-sub", "r".repeat(near)))
        .await;
    passed(&mut c, "59 KiB identity header", &s);
    c.eq(
        "59 KiB identity header",
        "x-jwt-sub upstream",
        s.upstream.get("x-jwt-sub"),
        None,
    );
    let garbage = format!("Bearer a.{}.b", "A".repeat(near - 20));
    refused(
        &mut c,
        &w,
        "59 KiB token-shaped garbage",
        RawRequest::get("/x").header("Authorization", &garbage),
        401,
        "malformed",
    )
    .await;
    let chunked = (0..50).fold(RawRequest::get("/public/wide"), |r, i| {
        r.header(format!("x-w-{i}"), "w".repeat(1100))
    });
    passed(&mut c, "50 headers of 1 KiB", &w.send(chunked).await);
    for (name, req) in [
        (
            "61 KiB value",
            RawRequest::get("/public/long").header("x-tenant-id", "t".repeat(61 * 1024)),
        ),
        (
            "61 KiB Authorization",
            RawRequest::get("/x")
                .header("Authorization", format!("Bearer {}", "A".repeat(61 * 1024))),
        ),
        (
            "two 31 KiB values",
            RawRequest::get("/public/long")
                .header("x-a", "a".repeat(31 * 1024))
                .header("x-b", "b".repeat(31 * 1024)),
        ),
    ] {
        let s = w.send(req).await;
        c.eq(name, "status (Envoy's limit)", s.resp.status, 431);
        c.check(!s.reached, name, || "reached the upstream".into());
    }
    // The audit event of the long value is bounded (max_field_bytes).
    if let Some(collector) = &w.collector {
        match audit_event(collector, "/public/long").await {
            Some(e) => {
                let tenant = e["labels"]["tenant"].as_str().unwrap_or_default();
                c.check(
                    tenant.len() <= 1100 && tenant.ends_with("...[truncated]"),
                    "audit of a 59 KiB label",
                    || format!("label of {} bytes: {:.60}", tenant.len(), tenant),
                );
            }
            None => c.check(false, "audit of a 59 KiB label", || "no event".into()),
        }
    }

    w.check_healthy(
        &mut c,
        RawRequest::get("/x").bearer(&good),
        RawRequest::get("/x"),
        401,
    )
    .await;
    c.finish();
}
