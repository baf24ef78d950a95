//! The HTTP/1.1 upgrade to SPDY/3.1 and `X-Stream-Protocol-Version`
//! negotiation, as the kubelet's streaming server and client-go do them.
//!
//! Negotiation follows k8s.io/streaming's `Handshake`: the client's list is
//! walked in the client's order and the first protocol the server supports
//! wins. A missing or empty header is a 400, no common protocol a 403 whose
//! response lists the server's protocols in `X-Accepted-Stream-Protocol-Versions`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::StatusCode;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::warn;

use super::{Incoming, Session};

/// The `Upgrade` token of SPDY/3.1.
pub const SPDY_31: &str = "SPDY/3.1";
/// The header carrying the offered (request) and chosen (response) protocols.
pub const PROTOCOL_VERSION_HEADER: &str = "x-stream-protocol-version";
/// The header listing the server's protocols when negotiation fails.
pub const ACCEPTED_PROTOCOL_VERSIONS_HEADER: &str = "x-accepted-stream-protocol-versions";

/// Largest response head (and error body) read by [`client_upgrade`].
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Errors of the upgrade handshake.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// The request has no `X-Stream-Protocol-Version` header.
    #[error("unable to upgrade: header X-Stream-Protocol-Version does not exist in request")]
    MissingProtocolHeader,
    /// The header is present but names no protocol.
    #[error("unable to upgrade: header X-Stream-Protocol-Version contains {values:?}, but no valid protocols")]
    NoValidProtocols { values: Vec<String> },
    /// No protocol the client offers is supported.
    #[error("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}")]
    NoCommonProtocol {
        offered: Vec<String>,
        supported: Vec<String>,
    },
    /// `Connection: Upgrade` / `Upgrade: SPDY/3.1` are missing.
    #[error("unable to upgrade: missing upgrade headers in request (Connection: {connection:?}, Upgrade: {upgrade:?})")]
    NotAnUpgrade { connection: String, upgrade: String },
    /// A request field would break the request line or a header.
    #[error("invalid {what} for an upgrade request: {value:?}")]
    InvalidRequest { what: &'static str, value: String },
    /// Writing the request or reading the response failed.
    #[error("upgrade I/O failed")]
    Io(#[source] io::Error),
    /// The connection ended before the response head did.
    #[error("connection closed before the upgrade response was complete")]
    ConnectionClosed,
    /// The response head is not valid HTTP/1.1.
    #[error("invalid upgrade response")]
    BadResponse(#[source] httparse::Error),
    /// The response head is larger than we accept.
    #[error("upgrade response head exceeds {MAX_RESPONSE_HEAD} bytes")]
    ResponseTooLarge,
    /// The server answered with something other than 101.
    #[error("unable to upgrade connection: server answered {status}: {body}")]
    Rejected { status: u16, body: String },
    /// A 101 without the SPDY/3.1 upgrade headers.
    #[error("server switched protocols without Connection: Upgrade / Upgrade: SPDY/3.1")]
    NotSpdy,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with (the kubelet's choices).
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::NoCommonProtocol { .. } => StatusCode::FORBIDDEN,
            HandshakeError::MissingProtocolHeader
            | HandshakeError::NoValidProtocols { .. }
            | HandshakeError::NotAnUpgrade { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Extra headers of the error response: the server's protocols when
    /// negotiation failed, so the client can report them.
    pub fn response_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let HandshakeError::NoCommonProtocol { supported, .. } = self {
            for p in supported {
                if let Ok(v) = HeaderValue::from_str(p) {
                    h.append(ACCEPTED_PROTOCOL_VERSIONS_HEADER, v);
                }
            }
        }
        h
    }
}

fn header_values(req: &HeaderMap, name: impl http::header::AsHeaderName) -> Vec<String> {
    req.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

fn contains_token(values: &[String], token: &str) -> bool {
    values
        .iter()
        .any(|v| v.to_ascii_lowercase().contains(&token.to_ascii_lowercase()))
}

/// Server side: picks the protocol (see the module docs) and checks that the
/// request asks for a SPDY/3.1 upgrade. `supported` must not be empty.
pub fn negotiate(req: &HeaderMap, supported: &[&str]) -> Result<String, HandshakeError> {
    let values = header_values(req, PROTOCOL_VERSION_HEADER);
    if values.is_empty() {
        return Err(HandshakeError::MissingProtocolHeader);
    }
    let offered: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim_matches(' ').to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(HandshakeError::NoValidProtocols { values });
    }
    let Some(chosen) = offered.iter().find(|p| supported.contains(&p.as_str())) else {
        return Err(HandshakeError::NoCommonProtocol {
            offered,
            supported: supported.iter().map(|s| s.to_string()).collect(),
        });
    };
    let connection = header_values(req, CONNECTION);
    let upgrade = header_values(req, UPGRADE);
    if !contains_token(&connection, "upgrade") || !contains_token(&upgrade, SPDY_31) {
        return Err(HandshakeError::NotAnUpgrade {
            connection: connection.join(", "),
            upgrade: upgrade.join(", "),
        });
    }
    Ok(chosen.clone())
}

/// The headers of the 101 Switching Protocols response.
pub fn response_headers(chosen: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static(SPDY_31));
    match HeaderValue::from_str(chosen) {
        Ok(v) => {
            h.insert(HeaderName::from_static(PROTOCOL_VERSION_HEADER), v);
        }
        Err(_) => warn!(chosen, "protocol name is not a valid header value"),
    }
    h
}

fn check_field<'a>(what: &'static str, value: &'a str) -> Result<&'a str, HandshakeError> {
    if value.is_empty() || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HandshakeError::InvalidRequest {
            what,
            value: value.to_owned(),
        });
    }
    Ok(value)
}

/// Client side: sends the upgrade request over `io`, reads the 101 and starts
/// a client session. Returns the protocol the server chose (empty when the
/// server named none). Bytes the server sent after the 101 head are kept.
pub async fn client_upgrade<IO>(
    mut io: IO,
    method: &str,
    host: &str,
    path_and_query: &str,
    protocols: &[&str],
) -> Result<(Session, Incoming, String), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: {SPDY_31}\r\n",
        check_field("method", method)?,
        check_field("path", path_and_query)?,
        check_field("host", host)?,
    );
    for p in protocols {
        req.push_str(&format!(
            "X-Stream-Protocol-Version: {}\r\n",
            check_field("protocol", p)?
        ));
    }
    if !method.eq_ignore_ascii_case("GET") {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes())
        .await
        .map_err(HandshakeError::Io)?;
    io.flush().await.map_err(HandshakeError::Io)?;

    let mut buf = Vec::with_capacity(4096);
    let (head_len, status, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut slots);
        match resp.parse(&buf).map_err(HandshakeError::BadResponse)? {
            httparse::Status::Complete(n) => {
                let mut map = HeaderMap::new();
                for h in resp.headers.iter() {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(h.name.as_bytes()),
                        HeaderValue::from_bytes(h.value),
                    ) {
                        map.append(k, v);
                    }
                }
                break (n, resp.code.unwrap_or(0), map);
            }
            httparse::Status::Partial => {}
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(HandshakeError::ResponseTooLarge);
        }
        if io.read_buf(&mut buf).await.map_err(HandshakeError::Io)? == 0 {
            return Err(HandshakeError::ConnectionClosed);
        }
    };
    let rest = buf.split_off(head_len);
    if status != 101 {
        let body = read_error_body(&mut io, rest, &headers).await;
        return Err(HandshakeError::Rejected { status, body });
    }
    let connection = header_values(&headers, CONNECTION);
    let upgrade = header_values(&headers, UPGRADE);
    if !contains_token(&connection, "upgrade") || !contains_token(&upgrade, SPDY_31) {
        return Err(HandshakeError::NotSpdy);
    }
    let chosen = header_values(&headers, PROTOCOL_VERSION_HEADER)
        .into_iter()
        .next()
        .unwrap_or_default();
    let (session, incoming) = Session::client(Prefixed {
        prefix: rest,
        at: 0,
        io,
    });
    Ok((session, incoming, chosen))
}

/// Reads an error response body, bounded, for the error message.
async fn read_error_body<IO: AsyncRead + Unpin>(
    io: &mut IO,
    mut body: Vec<u8>,
    headers: &HeaderMap,
) -> String {
    let want = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(MAX_RESPONSE_HEAD)
        .min(MAX_RESPONSE_HEAD);
    while body.len() < want {
        match io.read_buf(&mut body).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    body.truncate(want);
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// An IO that first yields bytes already read past the response head.
struct Prefixed<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
