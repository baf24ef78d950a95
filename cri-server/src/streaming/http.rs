//! The HTTP/1.1 side: route `/<kind>/<token>`, negotiate the upgrade
//! (SPDY/3.1 or WebSocket) and hand the upgraded connection to the
//! protocol server and its backend.

use std::convert::Infallible;
use std::sync::Arc;

use berth_streaming::idle::IdleTimeout;
use berth_streaming::portforward as pf;
use berth_streaming::remotecommand::{self as rc, StreamOptions};
use berth_streaming::{spdy, websocket};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::requests::StreamRequest;
use super::{StreamingService, STREAM_CREATION_TIMEOUT};

type Body = Full<Bytes>;
/// The upgraded connection, closed when idle.
type UpgradedIo = IdleTimeout<TokioIo<hyper::upgrade::Upgraded>>;

/// Stands for "never" (about 30 years: far enough for any session, near
/// enough for tokio's timer).
const NO_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 86400);

/// How long a client may take for the TLS handshake and for the request
/// headers (the upgraded session has its own stream-creation timeout).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: Arc<StreamingService>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(err) => {
                    warn!(%err, "accepting a streaming connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let service = service.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(route(service, req)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                        .await
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
                        .and_then(|r| r)
                    {
                        Ok(stream) => {
                            builder
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await
                        }
                        Err(err) => {
                            debug!(%err, %peer, "TLS handshake failed");
                            return;
                        }
                    }
                }
                None => {
                    builder
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await
                }
            };
            if let Err(err) = result {
                debug!(%err, %peer, "streaming connection ended with an error");
            }
        });
    }
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())));
    *r.status_mut() = status;
    r
}

fn switching(headers: http::HeaderMap) -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *r.headers_mut() = headers;
    r
}

/// Which upgrade the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    Spdy,
    WebSocket,
}

fn upgrade_kind(headers: &http::HeaderMap) -> Option<Upgrade> {
    let up = headers.get(http::header::UPGRADE)?.to_str().ok()?;
    if up.eq_ignore_ascii_case("websocket") {
        Some(Upgrade::WebSocket)
    } else if up.to_ascii_lowercase().starts_with("spdy/3") {
        Some(Upgrade::Spdy)
    } else {
        None
    }
}

/// Splits `/<kind>/<token>`.
fn parse_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (kind, token) = rest.split_once('/')?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    Some((kind, token))
}

fn route(service: Arc<StreamingService>, mut req: Request<Incoming>) -> Response<Body> {
    let Some((kind, token)) = parse_path(req.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let Some(sreq) = service.cache.take(token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
    };
    if sreq.kind() != kind {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
    }
    let Some(upgrade) = upgrade_kind(req.headers()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "a SPDY/3.1 or WebSocket upgrade is required",
        );
    };
    let query = req.uri().query().unwrap_or("").to_string();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let headers = req.headers().clone();
    let (response, session) = match negotiate(&sreq, upgrade, &headers, &query) {
        Ok(ok) => ok,
        Err(refusal) => return plain(refusal.status, refusal.message),
    };
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            // No timeout configured: a deadline no session reaches.
            Ok(u) => IdleTimeout::new(
                TokioIo::new(u),
                service.idle_timeout.unwrap_or(NO_IDLE_TIMEOUT),
            ),
            Err(err) => {
                debug!(%err, "the client never completed the upgrade");
                return;
            }
        };
        run(service, sreq, session, io).await;
    });
    response
}

/// What to run on the upgraded connection.
#[derive(Debug)]
enum Session {
    RemoteCommand {
        upgrade: Upgrade,
        protocol: String,
        opts: StreamOptions,
    },
    PortForwardSpdy,
    PortForwardTunnel,
    PortForwardWebSocket {
        protocol: String,
        ports: Vec<u16>,
    },
}

/// Why an upgrade is refused.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn negotiate(
    sreq: &StreamRequest,
    upgrade: Upgrade,
    headers: &http::HeaderMap,
    query: &str,
) -> Result<(Response<Body>, Session), Refusal> {
    let forbidden = |e: &dyn std::fmt::Display| {
        refuse(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: unable to negotiate protocol: {e}"),
        )
    };
    let ws_response = |protocol: &str| {
        websocket::handshake::response_headers(headers, protocol)
            .map(switching)
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))
    };
    match sreq {
        StreamRequest::Exec(..) | StreamRequest::Attach(_) => {
            let opts = match sreq {
                StreamRequest::Exec(r, _) => StreamOptions {
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                    tty: r.tty,
                },
                StreamRequest::Attach(r) => StreamOptions {
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                    tty: r.tty,
                },
                StreamRequest::PortForward(_) => StreamOptions::default(),
            };
            let (resp, protocol) = match upgrade {
                Upgrade::Spdy => {
                    let p = spdy::handshake::negotiate(headers, rc::SPDY_PROTOCOLS)
                        .map_err(|e| forbidden(&e))?;
                    (switching(spdy::handshake::response_headers(&p)), p)
                }
                Upgrade::WebSocket => {
                    let p = websocket::handshake::negotiate(headers, rc::WEBSOCKET_PROTOCOLS)
                        .map_err(|e| forbidden(&e))?;
                    (ws_response(&p)?, p)
                }
            };
            Ok((
                resp,
                Session::RemoteCommand {
                    upgrade,
                    protocol,
                    opts,
                },
            ))
        }
        StreamRequest::PortForward(_) => match upgrade {
            Upgrade::Spdy => {
                let p = spdy::handshake::negotiate(headers, &[pf::PROTOCOL_V1])
                    .map_err(|e| forbidden(&e))?;
                Ok((
                    switching(spdy::handshake::response_headers(&p)),
                    Session::PortForwardSpdy,
                ))
            }
            Upgrade::WebSocket => {
                let mut supported = vec![pf::TUNNEL_PROTOCOL];
                supported.extend_from_slice(pf::WEBSOCKET_PROTOCOLS);
                let p = websocket::handshake::negotiate(headers, &supported)
                    .map_err(|e| forbidden(&e))?;
                if p == pf::TUNNEL_PROTOCOL {
                    return Ok((ws_response(&p)?, Session::PortForwardTunnel));
                }
                let ports = pf::websocket::ports_from_query(query)
                    .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
                Ok((
                    ws_response(&p)?,
                    Session::PortForwardWebSocket { protocol: p, ports },
                ))
            }
        },
    }
}

async fn run(
    service: Arc<StreamingService>,
    sreq: StreamRequest,
    session: Session,
    io: UpgradedIo,
) {
    let pods = service.pods.clone();
    match session {
        Session::RemoteCommand {
            upgrade,
            protocol,
            opts,
        } => {
            let streams = match upgrade {
                Upgrade::Spdy => {
                    rc::spdy::serve(io, &protocol, opts, STREAM_CREATION_TIMEOUT).await
                }
                Upgrade::WebSocket => rc::websocket::serve(io, &protocol, opts).await,
            };
            let streams = match streams {
                Ok(s) => s,
                Err(err) => {
                    debug!(error = %crate::error::chain(&err), "remote-command set-up failed");
                    return;
                }
            };
            match sreq {
                StreamRequest::Exec(r, o) => super::exec::run(pods, r, o, streams).await,
                StreamRequest::Attach(r) => super::attach::run(pods, r, streams).await,
                StreamRequest::PortForward(_) => {}
            }
        }
        Session::PortForwardSpdy => {
            if let StreamRequest::PortForward(r) = sreq {
                let f = pf::spdy::serve(io, STREAM_CREATION_TIMEOUT);
                super::portforward::run(pods, r, f).await;
            }
        }
        Session::PortForwardTunnel => {
            if let StreamRequest::PortForward(r) = sreq {
                let f = pf::spdy::serve_tunnel(io, STREAM_CREATION_TIMEOUT);
                super::portforward::run(pods, r, f).await;
            }
        }
        Session::PortForwardWebSocket { protocol, ports } => {
            if let StreamRequest::PortForward(r) = sreq {
                match pf::websocket::serve(io, &protocol, ports).await {
                    Ok(f) => super::portforward::run(pods, r, f).await,
                    Err(err) => debug!(%err, "websocket port-forward set-up failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_upgrades() {
        assert_eq!(parse_path("/exec/abc"), Some(("exec", "abc")));
        assert_eq!(parse_path("/exec/"), None);
        assert_eq!(parse_path("/exec/a/b"), None);
        assert_eq!(parse_path("exec/a"), None);
        let mut h = http::HeaderMap::new();
        assert_eq!(upgrade_kind(&h), None);
        h.insert(
            http::header::UPGRADE,
            "WebSocket".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(upgrade_kind(&h), Some(Upgrade::WebSocket));
        h.insert(
            http::header::UPGRADE,
            "SPDY/3.1".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(upgrade_kind(&h), Some(Upgrade::Spdy));
        h.insert(
            http::header::UPGRADE,
            "h2c".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(upgrade_kind(&h), None);
    }
}
