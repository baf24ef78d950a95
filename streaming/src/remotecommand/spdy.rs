//! Remote command over SPDY/3.1: the client opens one stream per role,
//! named by its `streamType` header; the server waits (bounded) for the
//! set the request implies, then hands them out as [`ServerStreams`].

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{
    expected_streams, resize, Disconnected, RemoteCommandError, ReporterInner, ServerStreams,
    StatusReporter, StreamOptions, Version, STREAM_TYPE_HEADER,
};
use crate::spdy::{Incoming, Session, SpdyStream};

/// The error stream and the session, kept until the result is sent.
pub(super) struct SpdyReporter {
    session: Session,
    error: SpdyStream,
    /// Stream halves the backend does not hold (kept open until the end).
    _keep: Vec<Box<dyn Send>>,
    incoming_task: tokio::task::JoinHandle<()>,
}

impl Drop for SpdyReporter {
    fn drop(&mut self) {
        self.incoming_task.abort();
        // Dropped without a result (the backend gave up): end the session
        // so that nothing waits on it any longer.
        let session = self.session.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { session.close().await });
        }
    }
}

impl SpdyReporter {
    pub(super) async fn finish(mut self, payload: Vec<u8>) -> Result<(), RemoteCommandError> {
        let io = |source| RemoteCommandError::Io {
            what: "error stream",
            source,
        };
        let result = async {
            if !payload.is_empty() {
                self.error.write_all(&payload).await.map_err(io)?;
            }
            self.error.shutdown().await.map_err(io)
        }
        .await;
        self.session.close().await;
        result
    }
}

/// Waits for the client's streams on a SPDY session over `io` (the
/// upgraded connection) after `protocol` was negotiated.
pub async fn serve<IO>(
    io: IO,
    protocol: &str,
    opts: StreamOptions,
    timeout: Duration,
) -> Result<ServerStreams, RemoteCommandError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let version = Version::of(protocol)?;
    let (session, mut incoming) = Session::server(io);
    let want = expected_streams(opts, version);
    let mut got = HashMap::new();
    match tokio::time::timeout(timeout, collect(&mut incoming, &want, &mut got)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            session.close().await;
            return Err(e);
        }
        Err(_) => {
            session.close().await;
            return Err(RemoteCommandError::StreamTimeout {
                have: got.keys().map(|s| s.to_string()).collect(),
                want: want.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    build(session, incoming, got, protocol, version)
}

/// Accepts streams until every wanted type arrived; extra or unknown
/// streams are reset.
async fn collect(
    incoming: &mut Incoming,
    want: &[&'static str],
    got: &mut HashMap<&'static str, SpdyStream>,
) -> Result<(), RemoteCommandError> {
    while got.len() < want.len() {
        let Some(stream) = incoming.accept().await else {
            return Err(RemoteCommandError::ClosedEarly);
        };
        let kind = stream.header(STREAM_TYPE_HEADER).unwrap_or("").to_string();
        match want.iter().find(|w| **w == kind) {
            Some(w) if !got.contains_key(w) => {
                got.insert(w, stream);
            }
            _ => {
                tracing::debug!(stream_type = %kind, "resetting an unexpected stream");
                stream.reset();
            }
        }
    }
    Ok(())
}

fn build(
    session: Session,
    mut incoming: Incoming,
    mut streams: HashMap<&'static str, SpdyStream>,
    protocol: &str,
    version: Version,
) -> Result<ServerStreams, RemoteCommandError> {
    let Some(error) = streams.remove("error") else {
        return Err(RemoteCommandError::ClosedEarly);
    };
    let mut keep: Vec<Box<dyn Send>> = Vec::new();
    let stdin = streams.remove("stdin").map(|s| {
        let (r, w) = s.into_split();
        // The write half stays open until the end: closing it early would
        // tell client-go to stop copying stdin.
        keep.push(Box::new(w));
        Box::pin(r) as super::StdinReader
    });
    let out = |s: SpdyStream| {
        let (r, w) = s.into_split();
        drain_half(r);
        Box::pin(w) as super::OutputWriter
    };
    let stdout = streams.remove("stdout").map(out);
    let stderr = streams.remove("stderr").map(out);
    let resize = streams.remove("resize").map(|s| {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(resize::pump(s, tx));
        rx
    });
    keep.extend(streams.into_values().map(|s| Box::new(s) as Box<dyn Send>));
    let (gone_tx, disconnected) = Disconnected::channel();
    let watch = session.clone();
    // Streams opened after set-up have no role: reset them, and notice the
    // end of the session.
    let incoming_task = tokio::spawn(async move {
        let ended = async {
            while let Some(s) = incoming.accept().await {
                s.reset();
            }
        };
        tokio::select! {
            _ = ended => {}
            _ = watch.closed() => {}
        }
        watch.closed().await;
        let _ = gone_tx.send(true);
    });
    Ok(ServerStreams {
        protocol: protocol.to_string(),
        stdin,
        stdout,
        stderr,
        resize,
        disconnected,
        status: StatusReporter {
            version,
            inner: ReporterInner::Spdy(SpdyReporter {
                session,
                error,
                _keep: keep,
                incoming_task,
            }),
        },
    })
}

/// Reads and discards what the client sends on an output stream (nothing,
/// normally) so flow control never stalls it.
fn drain_half<R: AsyncRead + Send + Unpin + 'static>(mut r: R) {
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    });
}
