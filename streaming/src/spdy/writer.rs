//! The writer task: the only owner of the connection's write half and of
//! the outgoing zlib context, so frames leave in queue order and header
//! blocks are compressed in the order the peer will decompress them.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::conn::{CloseReason, Out, Shared};
use super::frame::{self, Frame, FLAG_FIN};
use super::header_block::HeaderEncoder;
use super::Headers;

pub(super) async fn run<W: AsyncWrite>(
    shared: Arc<Shared>,
    mut wr: WriteHalf<W>,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    let mut enc = match HeaderEncoder::new() {
        Ok(e) => Some(e),
        Err(err) => {
            warn!(?err, "SPDY header compressor failed to start");
            shared.terminate(CloseReason::Protocol(err.to_string()));
            None
        }
    };
    let mut stop = shared.stop.subscribe();
    let mut out = Vec::with_capacity(64 * 1024);
    'run: while let Some(first) = rx.recv().await {
        let (mut data_bytes, mut permits, mut shutdown) = (0usize, 0usize, false);
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            let res = match cmd {
                Out::Frame(f) => {
                    if let Frame::Data { data, .. } = &f {
                        data_bytes += data.len();
                    }
                    frame::encode(&f, &mut out).map_err(|e| e.to_string())
                }
                Out::Reply(f) => {
                    permits += 1;
                    frame::encode(&f, &mut out).map_err(|e| e.to_string())
                }
                Out::SynStream { id, headers, fin } => {
                    encode_with_headers(enc.as_mut(), &headers, &mut out, |header_block| {
                        Frame::SynStream {
                            stream_id: id,
                            associated_id: 0,
                            priority: 0,
                            slot: 0,
                            flags: if fin { FLAG_FIN } else { 0 },
                            header_block,
                        }
                    })
                }
                Out::SynReply { id, headers } => {
                    encode_with_headers(enc.as_mut(), &headers, &mut out, |header_block| {
                        Frame::SynReply {
                            stream_id: id,
                            flags: 0,
                            header_block,
                        }
                    })
                }
                Out::Shutdown => {
                    shutdown = true;
                    Ok(())
                }
            };
            if let Err(msg) = res {
                warn!(%msg, "SPDY frame could not be encoded");
                shared.terminate(CloseReason::Protocol(msg));
            }
            if !shutdown && out.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !out.is_empty() {
            // Once the session is over, a peer that stopped reading gets a
            // grace period, not forever, so the task cannot leak.
            let grace = shared.config.close_grace;
            let write = async {
                wr.write_all(&out).await?;
                wr.flush().await
            };
            let res = tokio::select! {
                r = write => r,
                _ = stopped_then(&mut stop, grace) => Err(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading during shutdown")),
            };
            out.clear();
            if let Err(e) = res {
                debug!(err = %e, "SPDY write failed");
                shared.terminate(CloseReason::Io(e.kind(), e.to_string()));
                break 'run;
            }
        }
        {
            let mut st = shared.lock();
            st.queued_bytes = st.queued_bytes.saturating_sub(data_bytes);
            for w in st.budget_waiters.drain(..) {
                w.wake();
            }
        }
        shared.control.add_permits(permits);
        if shutdown {
            let grace = shared.config.close_grace;
            let _ = tokio::time::timeout(grace, wr.shutdown()).await;
            break;
        }
    }
    shared.writer_done.send_replace(true);
}

fn encode_with_headers(
    enc: Option<&mut HeaderEncoder>,
    headers: &Headers,
    out: &mut Vec<u8>,
    build: impl FnOnce(Vec<u8>) -> Frame,
) -> Result<(), String> {
    let enc = enc.ok_or_else(|| "no header compressor".to_owned())?;
    let block = enc.encode(headers).map_err(|e| e.to_string())?;
    frame::encode(&build(block), out).map_err(|e| e.to_string())
}

async fn stopped_then(stop: &mut watch::Receiver<bool>, grace: Duration) {
    let _ = stop.wait_for(|s| *s).await;
    tokio::time::sleep(grace).await;
}
