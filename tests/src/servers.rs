//! Small real HTTP servers (axum on tokio) bound to 127.0.0.1: the demo
//! upstream, a JWKS/OIDC server and an audit collector. Each records what it
//! received; the JWKS server and collector can be told to answer
//! differently, stall, or go down and come back on the same port.

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use axum::Router;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as a server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the server chose for its answer (an answer delayed past
    /// the client's timeout may never have reached it).
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Wait this long before answering (to drive timeouts).
    pub delay: Duration,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Canned {
    pub fn json(body: impl Into<String>) -> Self {
        Self::bytes(200, "application/json", body.into().into_bytes())
    }
    pub fn status(status: u16) -> Self {
        Self::bytes(status, "text/plain", Vec::new())
    }
    /// Any status, content type and body (garbage included).
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Canned {
            status,
            content_type: content_type.into(),
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    /// An HTML page, as a login portal or a misrouted proxy answers.
    pub fn html(status: u16, body: &str) -> Self {
        Self::bytes(status, "text/html; charset=utf-8", body.as_bytes().to_vec())
    }
    /// A well-formed JSON document of exactly `len` bytes (at least 24):
    /// `{"keys":[],"pad":"aaa…"}`, to exceed size caps.
    pub fn huge_json(len: usize) -> Self {
        let frame = r#"{"keys":[],"pad":""}"#;
        let mut body = Vec::with_capacity(len.max(frame.len()));
        body.extend_from_slice(br#"{"keys":[],"pad":""#);
        body.resize(len.max(frame.len()) - 2, b'a');
        body.extend_from_slice(br#""}"#);
        Self::bytes(200, "application/json", body)
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Default)]
struct Shared {
    routes: BTreeMap<String, Canned>,
    fallback: Option<Canned>,
    received: Vec<Received>,
}

/// The shared machinery: a server on a fixed port that can be stopped and
/// restarted, answering from a table of canned responses.
#[derive(Clone)]
pub struct CannedServer {
    state: Arc<Mutex<Shared>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    pub addr: SocketAddr,
    echo: bool,
}

impl CannedServer {
    async fn start(echo: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = CannedServer {
            state: Arc::new(Mutex::new(Shared::default())),
            task: Arc::new(Mutex::new(None)),
            addr,
            echo,
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let app = Router::new().fallback(handle).with_state(self.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `path` with `canned` from now on.
    pub fn set(&self, path: &str, canned: Canned) {
        if let Ok(mut s) = self.state.lock() {
            s.routes.insert(path.to_string(), canned);
        }
    }

    /// Answers every path without its own entry with `canned`.
    pub fn set_fallback(&self, canned: Canned) {
        if let Ok(mut s) = self.state.lock() {
            s.fallback = Some(canned);
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.received.clear();
        }
    }

    /// Stops listening: connections are refused until [`CannedServer::up`].
    pub fn down(&self) {
        if let Some(task) = self.task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) -> anyhow::Result<()> {
        self.down();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.serve(listener);
        Ok(())
    }
}

async fn handle(
    State(server): State<CannedServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    req: Request<Body>,
) -> Response<Body> {
    let body = to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let mut received = Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        answered: 0,
    };
    let canned = {
        let Ok(mut s) = server.state.lock() else {
            return Response::new(Body::empty());
        };
        let canned = s
            .routes
            .get(uri.path())
            .cloned()
            .or_else(|| s.fallback.clone());
        let canned = match canned {
            Some(c) => c,
            None if server.echo => Canned::json(echo_body(&received, uri.query())),
            None => Canned::status(404),
        };
        received.answered = canned.status;
        s.received.push(received);
        canned
    };
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    let mut response = Response::builder()
        .status(StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", canned.content_type);
    for (k, v) in &canned.headers {
        response = response.header(k.as_str(), v.as_str());
    }
    response.body(Body::from(canned.body)).unwrap_or_default()
}

/// The echo upstream's answer: what arrived, as JSON.
fn echo_body(r: &Received, query: Option<&str>) -> String {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &r.headers {
        headers.entry(k.clone()).or_default().push(v.clone());
    }
    serde_json::json!({
        "method": r.method,
        "path": r.path,
        "query": query,
        "headers": headers,
    })
    .to_string()
}

/// The demo upstream: answers every request with the method, path, query
/// and headers it received, as JSON.
#[derive(Clone)]
pub struct EchoUpstream(pub CannedServer);

impl EchoUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        Ok(EchoUpstream(CannedServer::start(true).await?))
    }
    pub fn port(&self) -> u16 {
        self.0.port()
    }
    pub fn received(&self) -> Vec<Received> {
        self.0.received()
    }
}

/// Serves a JWKS at `/jwks.json` and an OIDC discovery document at
/// `/.well-known/openid-configuration`; both can be changed mid-test.
#[derive(Clone)]
pub struct JwksServer(pub CannedServer);

impl JwksServer {
    pub const JWKS_PATH: &'static str = "/jwks.json";
    pub const DISCOVERY_PATH: &'static str = "/.well-known/openid-configuration";

    pub async fn start(jwks: &str) -> anyhow::Result<Self> {
        let s = JwksServer(CannedServer::start(false).await?);
        s.set_jwks(jwks);
        Ok(s)
    }
    pub fn port(&self) -> u16 {
        self.0.port()
    }
    pub fn set_jwks(&self, jwks: &str) {
        self.0.set(Self::JWKS_PATH, Canned::json(jwks));
    }
    pub fn set_discovery(&self, doc: &str) {
        self.0.set(Self::DISCOVERY_PATH, Canned::json(doc));
    }
    pub fn set_answer(&self, canned: Canned) {
        self.0.set(Self::JWKS_PATH, canned);
    }
    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.0.received_on(Self::JWKS_PATH).len()
    }
}

/// Records what is posted to it; answers 200 unless told otherwise.
#[derive(Clone)]
pub struct Collector(pub CannedServer);

impl Collector {
    pub async fn start() -> anyhow::Result<Self> {
        let s = Collector(CannedServer::start(false).await?);
        s.0.set_fallback(Canned::json("{}"));
        Ok(s)
    }
    pub fn port(&self) -> u16 {
        self.0.port()
    }
    pub fn answer(&self, canned: Canned) {
        self.0.set_fallback(canned);
    }
    pub fn received(&self) -> Vec<Received> {
        self.0.received()
    }
    /// Every body received, concatenated.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.received().into_iter().flat_map(|r| r.body).collect()
    }
    /// Every NDJSON event received so far (lines that are not JSON are skipped).
    pub fn events(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.all_bytes())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    /// [`Collector::events`] once `want` holds of them, or after 10 s
    /// whatever they are (the caller's assertion then says what is missing).
    pub async fn events_until(
        &self,
        want: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for _ in 0..100 {
            out = self.events();
            if want(&out) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        out
    }
    /// The requests it answered with a 2xx (what a sender may count as
    /// delivered), in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_json_has_the_asked_length_and_parses() {
        for len in [0, 20, 21, 1000, 3 << 20] {
            let c = Canned::huge_json(len);
            assert_eq!(c.body.len(), len.max(20));
            let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
            assert_eq!(v["keys"], serde_json::json!([]));
        }
    }
}
