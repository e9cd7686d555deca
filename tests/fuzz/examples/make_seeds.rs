//! Writes the generated part of the seed corpora (tokens signed with the
//! test keys, JWKS documents, requests, the targets' own configs):
//! `cargo +nightly run --example make_seeds` from `tests/fuzz`. The configs
//! from `envoy/*.yaml` were extracted once and are checked in beside them.

use portcullis_fuzz::{
    claims, hs256_token, jwt_auth_config, Keys, AUDIT_LOG_CONFIG, NOW, RATE_LIMIT_CONFIG,
};
use serde_json::json;
use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn main() {
    let keys = Keys::load().expect("test keys");
    let now = NOW as i64;
    let good = claims(json!({"scope": "read write", "org": {"tier": "gold"}, "roles": ["admin"]}));
    let algs = ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"];
    let tokens: Vec<(String, String)> = algs
        .iter()
        .map(|a| (a.to_lowercase(), keys.token(a, &good)))
        .collect();

    // jws_parse / jws_verify: valid tokens, and broken ones.
    for (alg, t) in &tokens {
        write("jws_parse", &format!("valid-{alg}"), t);
        write("jws_verify", &format!("valid-{alg}"), t);
    }
    let rs = &tokens[0].1;
    let (head, _) = rs.rsplit_once('.').unwrap_or((rs, ""));
    let bad = [
        ("two-parts", head.to_string()),
        ("empty-sig", format!("{head}.")),
        (
            "alg-none",
            format!(
                "eyJhbGciOiJub25lIn0.{}.AAAA",
                head.split('.').nth(1).unwrap_or("")
            ),
        ),
        (
            "crit",
            "eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiZXhwIl19.e30.AAAA".to_string(),
        ),
        ("short-sig", format!("{head}.AAAA")),
        ("padded", format!("{rs}==")),
    ];
    for (name, t) in &bad {
        write("jws_parse", name, t);
        write("jws_verify", name, t);
    }
    // jws_verify, direct mode: alg, key, split, message, signature.
    write(
        "jws_verify",
        "direct-es256-short",
        [6u8, 1, 4, b'a', b'b', b'c', b'd', 1, 2, 3],
    );
    write(
        "jws_verify",
        "direct-rs256",
        [0u8, 0, 2, b'h', b'i']
            .iter()
            .copied()
            .chain([0xAB; 256])
            .collect::<Vec<_>>(),
    );
    write(
        "jws_verify",
        "direct-eddsa",
        [8u8, 3, 1, b'm']
            .iter()
            .copied()
            .chain([0x5A; 64])
            .collect::<Vec<_>>(),
    );

    // jwks_parse: option byte then the document.
    let jwks = keys.jwks(true).to_string();
    for (flags, name) in [(7u8, "strict-oct"), (0, "lenient"), (4, "lenient-2048")] {
        let mut doc = vec![flags];
        doc.extend_from_slice(jwks.as_bytes());
        write("jwks_parse", name, doc);
    }
    let demo = include_bytes!("../../../envoy/demo/jwks.json");
    write("jwks_parse", "demo", [&[6u8][..], demo].concat());
    for (name, doc) in [
        ("no-keys", r#"{"keys":[]}"#),
        (
            "bad-ec",
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#,
        ),
        (
            "bad-rsa",
            r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS256"},{"kty":"oct","k":"AAAA"}]}"#,
        ),
        (
            "okp-x448",
            r#"{"keys":[{"kty":"OKP","crv":"X448","x":"AAAA"}]}"#,
        ),
    ] {
        write("jwks_parse", name, [&[2u8][..], doc.as_bytes()].concat());
    }

    // The targets' own configs are seeds of the config targets too.
    let jwt_cfg = jwt_auth_config(&keys);
    write("config_jwt_auth", "fuzz-target", jwt_cfg.to_string());
    write("config_rate_limit", "fuzz-target", RATE_LIMIT_CONFIG);
    write("config_audit_log", "fuzz-target", AUDIT_LOG_CONFIG);
    let rl: serde_json::Value = serde_json::from_str(RATE_LIMIT_CONFIG).unwrap_or_default();
    let al: serde_json::Value = serde_json::from_str(AUDIT_LOG_CONFIG).unwrap_or_default();
    write(
        "config_chain",
        "fuzz-targets",
        json!({"jwt_auth": jwt_cfg, "rate_limit": rl, "audit_log": al}).to_string(),
    );
    write("config_chain", "empty", "{}");
    write(
        "config_jwt_auth",
        "unknown-field",
        r#"{"providers":{"p":{"jwt_cache_config":{}}}}"#,
    );
    write(
        "config_rate_limit",
        "bad-unit",
        r#"{"rules":[{"name":"r","limit":{"requests_per_unit":0,"unit":"week"}}]}"#,
    );
    write(
        "config_audit_log",
        "redacted-label",
        r#"{"headers":[{"name":"authorization"}]}"#,
    );

    // jwt_check: requests in the text format.
    let bearer = |t: &str| format!("authorization: Bearer {t}\n");
    let base = ":authority: api.test\n";
    for (alg, t) in &tokens {
        write(
            "jwt_check",
            &format!("get-api-{alg}"),
            format!("GET /api/items?page=1\n{base}{}x-sub: forged\n", bearer(t)),
        );
    }
    let t = &tokens[0].1;
    let seeds = [
        ("post-api", format!("POST /api/items\n{base}{}", bearer(t))),
        ("query-token", format!("GET /x?access_token={t}\n{base}")),
        ("cookie-token", format!("GET /x\n{base}cookie: a=b; session={t}\n")),
        ("x-jwt", format!("GET /any\n{base}x-jwt: {t}\n")),
        ("missing", format!("GET /api\n{base}x-tier: forged\nx-jwt-payload: forged\n")),
        ("optional", format!("GET /optional/x\n{base}")),
        ("lenient-bad", format!("GET /lenient\n{base}authorization: Bearer abc.def.ghi\n")),
        ("public", format!("GET /public\n{base}authorization: Bearer \u{ff}\n")),
        ("peer-ok", format!("GET /internal/x\n{base}@connection.uri_san_peer_certificate: spiffe://cluster.local/ns/shop/sa/a\n")),
        ("peer-bad", format!("GET /internal/x\n{base}@connection.uri_san_peer_certificate: spiffe://evil\n")),
        ("expired", format!("GET /x\n{base}!now: {}\n{}", NOW + 100_000, bearer(t))),
        ("hs256-claims", format!("GET /api\n{base}!hs256: {}\n", claims(json!({"scope": ["read"], "vip": true})))),
        ("hs256-other", format!("GET /all\n{base}!hs256: {}\nx-other-token: {}\n", claims(json!({})),
            hs256_token(json!({"iss": "https://other.test", "sub": "bob", "exp": now + 60}).to_string().as_bytes()))),
        ("hs256-garbage", format!("GET /x\n{base}!hs256: [1,2\n")),
        ("admin-host", format!("DELETE /x\n:authority: a.admin.test\nx-mode: strict\n{}", bearer(t))),
    ];
    for (name, s) in &seeds {
        write("jwt_check", name, s);
    }

    // rate_limit_key: request sequences.
    let rl_seeds = [
        ("ipv4-burst", "GET /api\n:authority: example.com\n@source.address: 10.0.0.1:1234\n---\nGET /api\n@source.address: 10.0.0.1:1234\n---\nGET /api\n@source.address: 10.0.0.1:99\n".to_string()),
        ("xff", "GET /\nx-forwarded-for: 1.2.3.4, 5.6.7.8, 9.9.9.9\n@source.address: [2001:db8::1]:443\n---\nGET /\nx-forwarded-for: 2001:db8::5, 10.0.0.1\n".to_string()),
        ("api-key", "POST /api/v1\nx-api-key: k1\n@source.address: 10.0.0.2:1\n---\nPOST /api/v1\nx-api-key: k1\n!now: 1700000030\n".to_string()),
        ("identity", "GET /\n@portcullis.identity: {\"provider\":\"main\",\"issuer\":\"i\",\"subject\":\"alice\"}\n@xds.route_name: r\n@connection.uri_san_peer_certificate: spiffe://a\n".to_string()),
        ("gold", "POST /\n:authority: shop.example.com\nx-tier: gold\n".to_string()),
    ];
    for (name, s) in &rl_seeds {
        write("rate_limit_key", name, s);
    }

    // audit_event: requests with decisions and stream attributes.
    let au_seeds = [
        ("allowed", format!("GET /api/items?page=2&q=x&password=p\n:authority: api.test:8443\nuser-agent: curl/8\nx-request-id: r-1\nx-tenant-id: acme\n@portcullis.identity: {{\"provider\":\"main\",\"issuer\":\"{}\",\"subject\":\"alice\",\"claims\":{{\"scope\":\"read\",\"org\":{{\"tier\":\"gold\"}}}}}}\n@portcullis.jwt: {{\"outcome\":\"allowed\"}}\n@response.code#: 200\n@source.address: 10.0.0.7:38694\n@request.protocol: HTTP/1.1\n@request.total_size#: 204\n@xds.route_name: api\n", portcullis_fuzz::ISSUER)),
        ("denied", "GET /x/eyJhbGciOiJIUzI1NiJ9.e30.abc\nuser-agent: Bearer abc\n@portcullis.jwt: {\"outcome\":\"denied\",\"reason\":\"token_expired\",\"status\":401}\n@response.code#: 401\n---\nPOST /y\n@portcullis.rate_limit: {\"outcome\":\"limited\",\"rule\":\"ip\"}\n@response.code#: 429\n".to_string()),
        ("mtls", "GET /z\n@connection.mtls: \u{1}\n@connection.uri_san_peer_certificate: spiffe://td/ns/a\n@connection.subject_peer_certificate: CN=client\n@source.address: [::1]:5\n".to_string()),
        ("health", "GET /health\nx-request-id: abc\n---\nGET /health\nx-request-id: abd\n---\nGET /health\n".to_string()),
    ];
    for (name, s) in &au_seeds {
        write("audit_event", name, s);
    }

    // jwks_fetch: answers to the fetches, oldest call first (the providers
    // sort by name: `oidc`'s discovery goes out before `remote`'s JWKS).
    let remote_jwks = keys.jwks(false).to_string();
    let disc = json!({"issuer": portcullis_fuzz::ISSUER, "jwks_uri": "http://idp/keys"});
    write(
        "jwks_fetch",
        "both-ok",
        format!("200 1\n{disc}\n---\n200 1\n{remote_jwks}\n---\n200 1\n{remote_jwks}"),
    );
    write("jwks_fetch", "failures", "503 5\n---\nnone 20\n---\n200 1\n{bad json\n---\n200 1\n{\"issuer\":\"https://evil\",\"jwks_uri\":\"http://idp/k\"}\n---\n200 30\n{\"keys\":[]}");
    write("jwks_fetch", "rotation", format!("200 3\n{disc}\n---\n200 9\n{remote_jwks}\n---\n404 1\n---\n200 1\n{remote_jwks}\n---\n200 1\n{{\"keys\":[{{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}}]}}"));

    // audit_chain_verify: events as `cargo xtask audit-verify` reads them.
    write("audit_chain_verify", "empty", "");
    write(
        "audit_chain_verify",
        "garbage",
        "{\"audit\":{\"seq\":1}}\nnot json\n",
    );
    println!("seeds written");
}
