//! `cargo xtask demo --tour`: a scripted walk through what the chain does.
//! Each step checks what it shows, so a broken chain fails the tour.

use crate::demo::AUDIENCE;
use anyhow::{bail, ensure, Result};
use e2e::envoy::Envoy;
use e2e::servers::Collector;
use e2e::tokens::RsaIssuer;
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};

pub async fn run(envoy: &Envoy, issuer: &RsaIssuer, collector: &Collector) -> Result<()> {
    let client = Client::new();
    let reader = issuer.token(
        "alice",
        AUDIENCE,
        3600,
        json!({"scope": "read", "roles": ["viewer"]}),
    );
    let writer = issuer.token(
        "bob",
        AUDIENCE,
        3600,
        json!({"scope": "read write", "roles": ["editor"]}),
    );
    let send = |method: Method, path: &str, token: Option<&str>| {
        let mut req = client.request(method, envoy.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    step("1. no token: 401 with an RFC 6750 challenge");
    let r = send(Method::GET, "/api/items", None).await?;
    show(&r, &["www-authenticate"]);
    expect(r, 401).await?;

    step("2. a valid token: 200, and the upstream sees who called (the token itself is not echoed here)");
    let r = send(Method::GET, "/api/items", Some(&reader)).await?;
    show(&r, &["ratelimit-policy", "ratelimit"]);
    let body: Value = expect(r, 200).await?.json().await?;
    for h in ["x-jwt-sub", "x-jwt-scope", "x-jwt-roles"] {
        let v = &body["headers"][h];
        println!("   upstream got {h}: {v}");
        ensure!(!v.is_null(), "the upstream did not receive {h}");
    }

    step("3. a spoofed identity header without a token is stripped before the upstream");
    let r = client
        .get(envoy.url("/public/info"))
        .header("x-jwt-sub", "admin")
        .send()
        .await?;
    let body: Value = expect(r, 200).await?.json().await?;
    println!(
        "   upstream got x-jwt-sub: {}",
        body["headers"]["x-jwt-sub"]
    );
    ensure!(
        body["headers"]["x-jwt-sub"].is_null(),
        "a spoofed header reached the upstream"
    );

    step("4. a read-only token on a write: 403 insufficient_scope");
    let r = send(Method::POST, "/api/items", Some(&reader)).await?;
    show(&r, &["www-authenticate"]);
    expect(r, 403).await?;
    let r = send(Method::POST, "/api/items", Some(&writer)).await?;
    println!(
        "   the same POST with bob's read+write token: {}",
        r.status()
    );
    expect(r, 200).await?;

    step("5. a burst from one user: the per-user limit answers 429 and names itself");
    let mut codes = Vec::new();
    let mut limited = None;
    for _ in 0..12 {
        let r = send(Method::GET, "/api/items", Some(&reader)).await?;
        codes.push(r.status().as_u16());
        if r.status() == 429 && limited.is_none() {
            limited = Some(r);
        }
    }
    println!("   statuses: {codes:?}");
    let Some(r) = limited else {
        bail!("the burst was never limited");
    };
    show(&r, &["retry-after", "ratelimit-policy", "ratelimit"]);
    let text = r.text().await?;
    println!("   body: {text}");

    step("6. the audit events of the tour (posted by Envoy to the local collector)");
    let events = collector.events_until(|es| es.len() >= 6).await;
    for e in &events {
        println!(
            "   {:<4} {:<7} {:<14} status={} jwt={}/{} rate_limit={}/{} user={}",
            e["http"]["request"]["method"].as_str().unwrap_or("-"),
            e["url"]["path"].as_str().unwrap_or("-"),
            e["event"]["outcome"].as_str().unwrap_or("-"),
            e["http"]["response"]["status_code"],
            e["decision"]["jwt"]["outcome"].as_str().unwrap_or("-"),
            e["decision"]["jwt"]["reason"].as_str().unwrap_or("-"),
            e["decision"]["rate_limit"]["outcome"]
                .as_str()
                .unwrap_or("-"),
            e["decision"]["rate_limit"]["rule"].as_str().unwrap_or("-"),
            e["user"]["id"].as_str().unwrap_or("-"),
        );
    }
    if let Some(last) = events.last() {
        println!("\n   one event in full:\n   {last}");
    }
    let all = String::from_utf8_lossy(&collector.all_bytes()).into_owned();
    ensure!(
        !all.contains(&reader) && !all.contains(&writer),
        "a token reached the audit log"
    );
    let report = audit_log::chain_verify::verify(&all);
    println!(
        "\n   hash chains: {}",
        if report.is_ok() { "verified" } else { "BROKEN" }
    );
    ensure!(report.is_ok(), "the audit hash chain did not verify");
    println!("\ntour finished");
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn show(r: &Response, headers: &[&str]) {
    println!("   {} {}", r.status().as_u16(), r.url().path());
    for h in headers {
        if let Some(v) = r.headers().get(*h) {
            println!("   {h}: {}", String::from_utf8_lossy(v.as_bytes()));
        }
    }
}

async fn expect(r: Response, status: u16) -> Result<Response> {
    if r.status().as_u16() != status {
        let got = r.status();
        let body = r.text().await.unwrap_or_default();
        bail!("expected {status}, got {got}: {body}");
    }
    Ok(r)
}
