//! Port-forward over SPDY (plain or tunnelled in WebSocket): pair each
//! connection's `data` and `error` streams by `requestID`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{
    parse_port, ErrorInner, ErrorReporter, ForwardRequest, Forwarder, PORT_HEADER,
    REQUEST_ID_HEADER,
};
use crate::remotecommand::STREAM_TYPE_HEADER;
use crate::spdy::{Incoming, Session, SpdyStream};
use crate::websocket::tunnel::WsByteStream;
use crate::websocket::WebSocket;

/// Half-opened connections are dropped after this long.
const PAIR_SWEEP: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
    since: Option<Instant>,
}

/// Serves port-forward on a SPDY session over `io` (the 101 was sent).
/// A connection whose second stream does not arrive within `timeout` is
/// dropped.
pub fn serve<IO>(io: IO, timeout: Duration) -> Forwarder
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (session, incoming) = Session::server(io);
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(run(session, incoming, tx, timeout));
    Forwarder { rx, task }
}

/// Serves port-forward on a SPDY session carried in WebSocket binary
/// messages (`SPDY/3.1+portforward.k8s.io`).
pub fn serve_tunnel<IO>(io: IO, timeout: Duration) -> Forwarder
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = WebSocket::server(io).split();
    serve(WsByteStream::new(r, w), timeout)
}

/// The key pairing a stream with its partner: the `requestID`, or for
/// old clients without one, the data stream's id (its error stream was
/// opened just before it, two ids lower).
fn pair_key(s: &SpdyStream, is_error: bool) -> String {
    match s.header(REQUEST_ID_HEADER) {
        Some(id) => id.to_string(),
        None if is_error => format!("#{}", s.id().saturating_add(2)),
        None => format!("#{}", s.id()),
    }
}

async fn run(
    session: Session,
    mut incoming: Incoming,
    tx: mpsc::Sender<ForwardRequest>,
    timeout: Duration,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut sweep = tokio::time::interval(PAIR_SWEEP);
    loop {
        let stream = tokio::select! {
            s = incoming.accept() => match s {
                Some(s) => s,
                None => break,
            },
            _ = sweep.tick() => {
                pending.retain(|id, p| {
                    let fresh = p.since.is_some_and(|t| t.elapsed() < timeout);
                    if !fresh {
                        tracing::debug!(request_id = %id, "port-forward stream pair timed out");
                        for s in p.data.iter().chain(p.error.iter()) {
                            s.reset();
                        }
                    }
                    fresh
                });
                continue;
            }
            _ = tx.closed() => break,
        };
        let kind = stream.header(STREAM_TYPE_HEADER).unwrap_or("").to_string();
        let is_error = match kind.as_str() {
            "error" => true,
            "data" => false,
            other => {
                tracing::debug!(stream_type = %other, "resetting an unknown port-forward stream");
                stream.reset();
                continue;
            }
        };
        let key = pair_key(&stream, is_error);
        let p = pending.entry(key.clone()).or_default();
        p.since.get_or_insert_with(Instant::now);
        let slot = if is_error { &mut p.error } else { &mut p.data };
        if slot.is_some() {
            tracing::debug!(request_id = %key, "duplicate port-forward stream");
            stream.reset();
            continue;
        }
        *slot = Some(stream);
        if p.data.is_none() || p.error.is_none() {
            continue;
        }
        let Some(Pending {
            data: Some(data),
            error: Some(error),
            ..
        }) = pending.remove(&key)
        else {
            continue;
        };
        let port = match data.header(PORT_HEADER).map(parse_port) {
            Some(Ok(p)) => p,
            bad => {
                let msg = match bad {
                    Some(Err(e)) => e.to_string(),
                    _ => "port header is missing".to_string(),
                };
                let mut error = error;
                let _ = error.write_all(msg.as_bytes()).await;
                let _ = error.shutdown().await;
                data.reset();
                continue;
            }
        };
        let req = ForwardRequest {
            port,
            data: Box::pin(data),
            error: ErrorReporter(ErrorInner::Spdy(error)),
        };
        if tx.send(req).await.is_err() {
            break;
        }
    }
    for p in pending.values() {
        for s in p.data.iter().chain(p.error.iter()) {
            s.reset();
        }
    }
    session.close().await;
}
