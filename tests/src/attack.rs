//! Helpers for the attack suites (`tests/tests/attacks.rs`): a raw HTTP/1.1
//! client that writes exactly the bytes it is given (header names in any
//! letter case, values that are not UTF-8, duplicated headers, hundreds of
//! headers), and an RFC 6750 challenge parser.
//!
//! reqwest (through `http::HeaderName`) lower-cases names and refuses some
//! bytes, so it cannot send everything an attacker can.

use anyhow::{bail, Context, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP/1.1 request written byte for byte, with `connection: close`.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawRequest {
    pub fn get(target: &str) -> Self {
        RawRequest {
            method: "GET".into(),
            target: target.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header as given: the name keeps its letter case, the value
    /// its bytes, and a name given twice is sent twice.
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        out.extend_from_slice(b"Host: 127.0.0.1\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    }

    /// Sends the request to `127.0.0.1:port` on a new connection.
    pub async fn send(&self, port: u16) -> Result<RawResponse> {
        exchange(port, &self.to_bytes(), self.method == "HEAD").await
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-cased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Writes `bytes` to a new connection and reads one response: until its
/// body is complete (content-length or chunked), else until the peer
/// closes. A peer that closes without answering is an error.
pub async fn send_raw(port: u16, bytes: &[u8]) -> Result<RawResponse> {
    exchange(port, bytes, false).await
}

/// `head_only`: the answer to a HEAD request, which has no body whatever
/// its content-length says.
async fn exchange(port: u16, bytes: &[u8], head_only: bool) -> Result<RawResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        // Envoy may answer (431, 400) and close before reading everything:
        // a failed write is not the answer, what comes back is.
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // Envoy delays its close by a second (delayed_close_timeout):
            // stop as soon as the response is whole.
            if let Some(done) = complete(&buf, head_only) {
                return done;
            }
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                // A reset after the response was written still leaves it.
                Err(_) if !buf.is_empty() => break,
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        parse_response(&buf)
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .context("no response within 20 s")?
}

/// `Some` once `buf` holds a whole response whose end is known without
/// the connection closing.
fn complete(buf: &[u8], head_only: bool) -> Option<Result<RawResponse>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head_only {
        return Some(parse_response(buf.get(..end + 4).unwrap_or_default()));
    }
    let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).to_ascii_lowercase();
    let rest = buf.get(end + 4..).unwrap_or_default();
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name))
            .map(|(_, v)| v.trim().to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        return chunked_end(rest).then(|| parse_response(buf));
    }
    let len: usize = header("content-length")?.parse().ok()?;
    (rest.len() >= len).then(|| parse_response(buf))
}

/// Parses one HTTP/1.1 response (content-length, chunked, or until close).
pub fn parse_response(buf: &[u8]) -> Result<RawResponse> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!(
            "no complete response head in {} bytes: {:?}",
            buf.len(),
            String::from_utf8_lossy(buf)
        );
    };
    let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
    let rest = buf.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len.min(rest.len())).unwrap_or_default().to_vec()
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Whether a chunked body is complete (its last, empty chunk arrived).
fn chunked_end(mut rest: &[u8]) -> bool {
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size_text = String::from_utf8_lossy(rest.get(..eol).unwrap_or_default()).into_owned();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return false;
        };
        rest = rest.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return rest.windows(2).any(|w| w == b"\r\n");
        }
        match rest.get(size + 2..) {
            Some(r) => rest = r,
            None => return false,
        }
    }
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(out);
        };
        let size_text = String::from_utf8_lossy(rest.get(..eol).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = rest.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size.min(rest.len())).unwrap_or_default());
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// The auth-params of an RFC 6750 `WWW-Authenticate: Bearer ...` challenge,
/// e.g. `[("realm", "api"), ("error", "invalid_token")]`. `None` when the
/// scheme is not `Bearer`.
pub fn bearer_challenge(value: &str) -> Option<Vec<(String, String)>> {
    let (scheme, mut rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((name, after)) = rest.split_once('=') else {
            return Some(params);
        };
        let name = name.trim().to_ascii_lowercase();
        let (val, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, quoted.get(end..).unwrap_or_default())
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (
                after.get(..end).unwrap_or_default().trim().to_string(),
                after.get(end..).unwrap_or_default(),
            )
        };
        params.push((name, val));
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let p = bearer_challenge(
            r#"Bearer realm="portcullis", error="invalid_token", error_description="Jwt is expired""#,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("realm".to_string(), "portcullis".to_string()),
                ("error".to_string(), "invalid_token".to_string()),
                (
                    "error_description".to_string(),
                    "Jwt is expired".to_string()
                ),
            ]
        );
        assert_eq!(
            bearer_challenge(r#"Bearer realm="a\"b""#).unwrap(),
            vec![("realm".to_string(), "a\"b".to_string())]
        );
        assert!(bearer_challenge("Basic realm=\"x\"").is_none());
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiEXTRA")
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hi");
        assert_eq!(r.header("x-a").as_deref(), Some("b"));
        let r = parse_response(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 431);
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200").is_err());
        assert!(chunked_end(b"3\r\nabc\r\n0\r\n\r\n"));
        assert!(!chunked_end(b"5\r\n0\r\n\r\n"));
        assert!(!chunked_end(b"3\r\nabc\r\n"));
    }
}
