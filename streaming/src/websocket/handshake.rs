//! The HTTP/1.1 upgrade handshake (RFC 6455 section 4), server and client.
//!
//! The server side only inspects headers: berthd's HTTP server owns the
//! request and writes the 101 with [`response_headers`]. The client side
//! speaks the whole exchange over a raw transport.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::Role;
use super::WebSocket;

/// The GUID every accept key is derived with (RFC 6455 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest response head the client accepts.
const MAX_RESPONSE_HEAD: usize = 16 << 10;

/// Errors of the opening handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The transport failed.
    #[error("websocket handshake i/o failed")]
    Io(#[source] std::io::Error),
    /// The request lacks `Upgrade: websocket` or `Connection: upgrade`.
    #[error("not a websocket upgrade request (Upgrade/Connection headers)")]
    NotWebSocket,
    /// The request's `Sec-WebSocket-Version` is not 13; answer 426 with
    /// `Sec-WebSocket-Version: 13`.
    #[error("websocket version {0:?} is not supported (only 13)")]
    UnsupportedVersion(Option<String>),
    /// The request's `Sec-WebSocket-Key` is missing or not 16 base64 bytes.
    #[error("Sec-WebSocket-Key is missing or malformed")]
    BadKey,
    /// None of the requested sub-protocols is supported.
    #[error(
        "requested websocket protocols {requested:?} are not supported (supported: {supported:?})"
    )]
    NoCommonProtocol {
        /// What the client asked for.
        requested: Vec<String>,
        /// What we support.
        supported: Vec<String>,
    },
    /// The server did not answer 101.
    #[error("websocket upgrade refused: HTTP {status} {reason}: {body}")]
    Refused {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Start of the response body (servers put their error there).
        body: String,
    },
    /// The server's response head is not valid HTTP.
    #[error("websocket upgrade response is not valid HTTP")]
    BadResponse(#[source] httparse::Error),
    /// The server's response head is too large or ended early.
    #[error("websocket upgrade response head is incomplete or over {MAX_RESPONSE_HEAD} bytes")]
    ResponseTruncated,
    /// The 101 lacks the upgrade headers or carries the wrong accept key.
    #[error("websocket 101 response is invalid: {0}")]
    BadUpgrade(&'static str),
    /// The server chose a protocol the client did not offer.
    #[error("server chose websocket protocol {chosen:?}, not one of {offered:?}")]
    UnofferedProtocol {
        /// The server's choice.
        chosen: String,
        /// What we offered.
        offered: Vec<String>,
    },
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    B64.encode(h.finalize())
}

/// Whether a comma-separated header (any of its lines) holds `token`,
/// case-insensitively.
fn has_token(headers: &http::HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The sub-protocols a request asks for, in its order of preference.
pub fn requested_protocols(req: &http::HeaderMap) -> Vec<String> {
    req.get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether a request asks for a WebSocket upgrade at all.
pub fn is_websocket_request(req: &http::HeaderMap) -> bool {
    has_token(req, http::header::UPGRADE, "websocket")
        && has_token(req, http::header::CONNECTION, "upgrade")
}

fn request_key(req: &http::HeaderMap) -> Result<&str, HandshakeError> {
    let key = req
        .get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(HandshakeError::BadKey)?;
    match B64.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(key),
        _ => Err(HandshakeError::BadKey),
    }
}

/// Checks a WebSocket upgrade request and picks its sub-protocol: the
/// client's most preferred one that is in `supported`. A request naming no
/// protocol gets `""`, if `supported` holds `""` (the Kubernetes servers map
/// it to the original `channel.k8s.io` framing).
pub fn negotiate(req: &http::HeaderMap, supported: &[&str]) -> Result<String, HandshakeError> {
    if !is_websocket_request(req) {
        return Err(HandshakeError::NotWebSocket);
    }
    let version = req
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version.map(str::trim) != Some("13") {
        return Err(HandshakeError::UnsupportedVersion(
            version.map(str::to_owned),
        ));
    }
    request_key(req)?;
    let mut requested = requested_protocols(req);
    if requested.is_empty() {
        requested.push(String::new());
    }
    match requested.iter().find(|p| supported.contains(&p.as_str())) {
        Some(p) => Ok(p.clone()),
        None => Err(HandshakeError::NoCommonProtocol {
            requested,
            supported: supported.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

/// The headers of the 101 response to `req`: upgrade headers, the accept
/// key, and `chosen` as the sub-protocol unless it is empty.
pub fn response_headers(
    req: &http::HeaderMap,
    chosen: &str,
) -> Result<http::HeaderMap, HandshakeError> {
    let accept = accept_key(request_key(req)?);
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    let accept = http::HeaderValue::from_str(&accept).map_err(|_| HandshakeError::BadKey)?;
    h.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    if !chosen.is_empty() {
        let v =
            http::HeaderValue::from_str(chosen).map_err(|_| HandshakeError::NoCommonProtocol {
                requested: vec![chosen.to_owned()],
                supported: Vec::new(),
            })?;
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(h)
}

/// Sends a WebSocket upgrade request over `io` and reads the 101 response:
/// the client end of the connection (holding any bytes the server sent
/// behind its headers) and the sub-protocol the server chose (`""` if none).
pub async fn client_upgrade<IO>(
    mut io: IO,
    host: &str,
    path_and_query: &str,
    protocols: &[&str],
) -> Result<(WebSocket<IO>, String), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| HandshakeError::Io(std::io::Error::other(e)))?;
    let key = B64.encode(raw);
    let mut req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        // One comma-separated line: Go's x/net/websocket reads only the first.
        req.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes())
        .await
        .map_err(HandshakeError::Io)?;
    io.flush().await.map_err(HandshakeError::Io)?;

    let (head, rest) = read_head(&mut io).await?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let status = resp.parse(&head).map_err(HandshakeError::BadResponse)?;
    if status.is_partial() {
        return Err(HandshakeError::ResponseTruncated);
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Refused {
            status: code,
            reason: resp.reason.unwrap_or("").to_owned(),
            body: String::from_utf8_lossy(&rest[..rest.len().min(512)]).into_owned(),
        });
    }
    let mut map = http::HeaderMap::new();
    for h in resp.headers.iter() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    if !has_token(&map, http::header::UPGRADE, "websocket") {
        return Err(HandshakeError::BadUpgrade("no Upgrade: websocket"));
    }
    if !has_token(&map, http::header::CONNECTION, "upgrade") {
        return Err(HandshakeError::BadUpgrade("no Connection: upgrade"));
    }
    let accept = map
        .get(http::header::SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok());
    if accept.map(str::trim) != Some(accept_key(&key).as_str()) {
        return Err(HandshakeError::BadUpgrade(
            "Sec-WebSocket-Accept does not match the key",
        ));
    }
    let chosen = map
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if !chosen.is_empty() && !protocols.contains(&chosen.as_str()) {
        return Err(HandshakeError::UnofferedProtocol {
            chosen,
            offered: protocols.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok((WebSocket::from_parts(io, Role::Client, rest), chosen))
}

/// Reads up to and including the blank line ending a response head; returns
/// the head and whatever arrived after it.
async fn read_head<IO: AsyncRead + Unpin>(
    io: &mut IO,
) -> Result<(Vec<u8>, Vec<u8>), HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = io.read(&mut chunk).await.map_err(HandshakeError::Io)?;
        if n == 0 {
            return Err(HandshakeError::ResponseTruncated);
        }
        // Only the new bytes (and 3 before them) can complete the terminator.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + i + 4;
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(HandshakeError::ResponseTruncated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::Message;
    use tokio::io::duplex;

    fn req(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const BASE: [(&str, &str); 4] = [
        ("upgrade", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn rfc_accept_key() {
        // RFC 6455 1.3's worked example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn negotiation_follows_client_preference() {
        let mut h = req(&BASE);
        h.append(
            "sec-websocket-protocol",
            "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        h.append("sec-websocket-protocol", "channel.k8s.io".parse().unwrap());
        let sup = ["channel.k8s.io", "v4.channel.k8s.io", ""];
        assert_eq!(negotiate(&h, &sup).unwrap(), "v4.channel.k8s.io");
        assert!(matches!(
            negotiate(&h, &["x"]),
            Err(HandshakeError::NoCommonProtocol { .. })
        ));
        // No protocol asked: "" if supported.
        let h = req(&BASE);
        assert_eq!(negotiate(&h, &sup).unwrap(), "");
        assert!(negotiate(&h, &["v4.channel.k8s.io"]).is_err());
        let r = response_headers(&h, "").unwrap();
        assert!(r.get("sec-websocket-protocol").is_none());
        assert_eq!(r["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let r = response_headers(&h, "v4.channel.k8s.io").unwrap();
        assert_eq!(r["sec-websocket-protocol"], "v4.channel.k8s.io");
    }

    #[test]
    fn rejects_bad_requests() {
        let sup = [""];
        assert!(matches!(
            negotiate(&req(&BASE[1..]), &sup),
            Err(HandshakeError::NotWebSocket)
        ));
        let mut v = BASE;
        v[2].1 = "8";
        assert!(matches!(
            negotiate(&req(&v), &sup),
            Err(HandshakeError::UnsupportedVersion(Some(_)))
        ));
        let mut k = BASE;
        k[3].1 = "c2hvcnQ=";
        assert!(matches!(
            negotiate(&req(&k), &sup),
            Err(HandshakeError::BadKey)
        ));
        assert!(matches!(
            negotiate(&req(&BASE[..3]), &sup),
            Err(HandshakeError::BadKey)
        ));
    }

    /// A minimal server for the client tests: reads the request head with
    /// httparse, answers through `negotiate`/`response_headers`.
    async fn serve(
        io: tokio::io::DuplexStream,
        supported: &'static [&'static str],
        extra: &'static [u8],
    ) {
        let mut io = io;
        let (head, _) = read_head(&mut io).await.unwrap();
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut hs);
        r.parse(&head).unwrap();
        assert_eq!((r.method, r.path), (Some("GET"), Some("/exec/tok?x=1")));
        let map = req(&r
            .headers
            .iter()
            .map(|h| (h.name, std::str::from_utf8(h.value).unwrap()))
            .collect::<Vec<_>>());
        let resp = match negotiate(&map, supported) {
            Ok(p) => {
                let mut s = String::from("HTTP/1.1 101 Switching Protocols\r\n");
                for (n, v) in &response_headers(&map, &p).unwrap() {
                    s.push_str(&format!("{}: {}\r\n", n, v.to_str().unwrap()));
                }
                s + "\r\n"
            }
            Err(e) => format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\n{}",
                &e.to_string()[..3]
            ),
        };
        io.write_all(resp.as_bytes()).await.unwrap();
        io.write_all(extra).await.unwrap();
        let (mut rd, _w) = WebSocket::server(io).split();
        while rd.recv().await.unwrap().is_some() {}
    }

    #[tokio::test]
    async fn client_upgrade_against_server_side() {
        let (a, b) = duplex(4096);
        // The server's first frame is written right behind its headers.
        let srv = tokio::spawn(serve(
            b,
            &["v4.channel.k8s.io", "v5.channel.k8s.io"],
            &[0x82, 0x01, 0x07],
        ));
        let (ws, chosen) = client_upgrade(
            a,
            "127.0.0.1:1",
            "/exec/tok?x=1",
            &["v5.channel.k8s.io", "v4.channel.k8s.io"],
        )
        .await
        .unwrap();
        assert_eq!(chosen, "v5.channel.k8s.io");
        let (mut r, mut w) = ws.split();
        assert_eq!(r.recv().await.unwrap(), Some(Message::Binary(vec![7])));
        w.close(1000, "").await.unwrap();
        assert!(matches!(r.recv().await.unwrap(), Some(Message::Close(_))));
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn client_upgrade_reports_refusal() {
        let (a, b) = duplex(4096);
        let srv = tokio::spawn(async move {
            let mut b = b;
            read_head(&mut b).await.unwrap();
            b.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno token\n")
                .await
                .unwrap();
        });
        let err = client_upgrade(a, "h", "/exec/tok?x=1", &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap();
        match err {
            HandshakeError::Refused {
                status: 404, body, ..
            } => assert_eq!(body, "no token\n"),
            e => panic!("{e}"),
        }
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn client_checks_accept_key() {
        let (a, b) = duplex(4096);
        let srv = tokio::spawn(async move {
            let mut b = b;
            read_head(&mut b).await.unwrap();
            b.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await
            .unwrap();
        });
        let err = client_upgrade(a, "h", "/", &[]).await.err().unwrap();
        assert!(matches!(err, HandshakeError::BadUpgrade(_)), "{err}");
        srv.await.unwrap();
    }
}
