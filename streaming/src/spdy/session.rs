//! An async SPDY/3.1 session over one connection.
//!
//! ## Flow control and Go peers
//! moby/spdystream, the SPDY library of the kubelet, kubectl and crictl,
//! implements no flow control: it never sends WINDOW_UPDATE, ignores the ones
//! it receives and writes DATA regardless of windows. A sender that honours
//! windows strictly would stall after 64 KiB against it. So by default
//! ([`SendFlowControl::Auto`]) a session enforces the peer's windows only once
//! the peer has shown it does flow control (SETTINGS INITIAL_WINDOW_SIZE or a
//! WINDOW_UPDATE). Every session sends that SETTINGS frame first, so two
//! berth peers always run with full flow control. Receiving, we always send
//! WINDOW_UPDATEs (Go ignores them) and bound what we buffer per stream: a
//! peer that overruns its window is held back by no longer reading the
//! connection, which pushes back through TCP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::conn::{self, CloseReason, Out, Pending, Shared, StreamState};
use super::frame::{goaway, rst, Frame, DEFAULT_MAX_FRAME_LEN};
use super::header_block::{self, HeaderBlockError, HeaderLimits};
use super::stream::{Guard, SpdyStream};
use super::Headers;

/// Errors of a SPDY session.
#[derive(Debug, Error, Clone)]
pub enum SpdyError {
    /// The session is over.
    #[error("SPDY session closed: {0}")]
    Closed(CloseReason),
    /// The peer sent GOAWAY: no new streams.
    #[error("SPDY peer is going away (last good stream {last_good})")]
    GoingAway { last_good: u32 },
    /// The peer reset the stream (REFUSED_STREAM when it would not take it).
    #[error("SPDY stream {id} reset by peer with status {status}")]
    Reset { id: u32, status: u32 },
    /// The headers cannot be encoded.
    #[error("invalid SPDY headers: {0}")]
    InvalidHeaders(String),
    /// All 2^31 stream ids of our parity are used.
    #[error("SPDY stream ids exhausted")]
    StreamIdsExhausted,
}

impl From<HeaderBlockError> for SpdyError {
    fn from(e: HeaderBlockError) -> Self {
        SpdyError::InvalidHeaders(e.to_string())
    }
}

/// Which side of the connection this session is: it fixes stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd stream ids.
    Client,
    /// Opens even stream ids.
    Server,
}

/// When to honour the peer's flow-control windows while sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFlowControl {
    /// Once the peer has shown it does flow control (see the module docs).
    Auto,
    /// Always, as the spec says; stalls against moby/spdystream.
    Strict,
}

/// Tunables of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The per-stream window we advertise, which also caps what we buffer
    /// for one stream.
    pub recv_window: u32,
    /// Send-side flow control policy.
    pub flow_control: SendFlowControl,
    /// Largest frame payload accepted from the peer.
    pub max_frame_len: usize,
    /// Limits on the peer's header blocks.
    pub header_limits: HeaderLimits,
    /// Peer-opened streams that may wait for `accept`; more are refused.
    pub accept_backlog: usize,
    /// How long a closing session keeps writing to a peer that stopped
    /// reading, and reading from a peer that has not closed yet.
    pub close_grace: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            recv_window: 256 * 1024,
            flow_control: SendFlowControl::Auto,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            header_limits: HeaderLimits::default(),
            accept_backlog: 128,
            close_grace: Duration::from_secs(5),
        }
    }
}

/// A cloneable handle to one SPDY connection. Must be created inside a tokio
/// runtime (it spawns a reader and a writer task). The session ends on
/// [`Session::close`], when the connection fails, or when every `Session`,
/// `Incoming` and stream handle is dropped.
#[derive(Clone)]
pub struct Session {
    guard: Arc<Guard>,
}

/// The streams the peer opens.
pub struct Incoming {
    guard: Arc<Guard>,
    rx: mpsc::Receiver<Pending>,
}

impl Session {
    /// Starts a server-role session (opens even stream ids).
    pub fn server<IO>(io: IO) -> (Session, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::with_config(io, Role::Server, SessionConfig::default())
    }

    /// Starts a client-role session (opens odd stream ids).
    pub fn client<IO>(io: IO) -> (Session, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::with_config(io, Role::Client, SessionConfig::default())
    }

    /// Starts a session with explicit tunables.
    pub fn with_config<IO>(io: IO, role: Role, config: SessionConfig) -> (Session, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (shared, rx) = conn::start(io, role, config);
        let guard = Arc::new(Guard { shared });
        (
            Session {
                guard: Arc::clone(&guard),
            },
            Incoming { guard, rx },
        )
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.guard.shared
    }

    /// Opens a stream and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<SpdyStream, SpdyError> {
        // Validate here: the writer task has nobody to report a bad header to.
        header_block::encode_raw(&headers)?;
        let shared = self.shared();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = shared.lock();
            if let Some(reason) = &st.closed {
                return Err(SpdyError::Closed(reason.clone()));
            }
            if let Some(last_good) = st.peer_goaway {
                return Err(SpdyError::GoingAway { last_good });
            }
            if st.sent_goaway {
                return Err(SpdyError::Closed(CloseReason::Local));
            }
            let id = st.next_id;
            if id > 0x7fff_ffff {
                return Err(SpdyError::StreamIdsExhausted);
            }
            st.next_id += 2;
            let mut s = StreamState::new(st.peer_initial_window, false, false);
            s.reply = Some(tx);
            st.streams.insert(id, s);
            // Queued under the lock so SYN_STREAMs leave in id order.
            shared.send(Out::SynStream {
                id,
                headers: headers.clone(),
                fin: false,
            });
            id
        };
        let mut cancel = CancelOpen {
            shared,
            id,
            armed: true,
        };
        let reply = rx.await;
        cancel.armed = false;
        let reply_headers = match reply {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                release(shared, id);
                return Err(e);
            }
            Err(_) => {
                release(shared, id);
                let reason = shared.lock().closed.clone();
                return Err(SpdyError::Closed(reason.unwrap_or(CloseReason::Local)));
            }
        };
        Ok(SpdyStream::new(
            Arc::clone(&self.guard),
            id,
            headers,
            reply_headers,
        ))
    }

    /// Sends a PING and waits for the peer's echo.
    pub async fn ping(&self) -> Result<Duration, SpdyError> {
        let shared = self.shared();
        let (tx, rx) = oneshot::channel();
        {
            let mut st = shared.lock();
            if let Some(reason) = &st.closed {
                return Err(SpdyError::Closed(reason.clone()));
            }
            let id = st.next_ping_id;
            st.next_ping_id = st.next_ping_id.wrapping_add(2);
            st.pings.insert(id, tx);
            shared.send(Out::Frame(Frame::Ping { id }));
        }
        let start = Instant::now();
        rx.await.map_err(|_| {
            SpdyError::Closed(shared.lock().closed.clone().unwrap_or(CloseReason::Local))
        })?;
        Ok(start.elapsed())
    }

    /// Sends GOAWAY, flushes and shuts the connection down. Streams still
    /// open end with an error; data already written is flushed first.
    pub async fn close(&self) {
        let shared = self.shared();
        {
            let mut st = shared.lock();
            if st.closed.is_none() && !st.sent_goaway {
                st.sent_goaway = true;
                shared.send(Out::Frame(Frame::GoAway {
                    last_good_stream_id: st.last_peer_id,
                    status: goaway::OK,
                }));
            }
        }
        shared.terminate(CloseReason::Local);
        shared.writer_finished().await;
    }

    /// Resolves once the session has ended, for whatever reason.
    pub async fn closed(&self) {
        self.shared().stopped().await;
    }

    /// Why the session ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared().lock().closed.clone()
    }
}

/// Forgets a stream whose opening failed.
fn release(shared: &Shared, id: u32) {
    let mut st = shared.lock();
    if let Some(s) = st.streams.get_mut(&id) {
        s.handles = 0;
        s.reset.get_or_insert(rst::CANCEL);
    }
    shared.maybe_remove(&mut st, id);
}

/// Resets a stream whose `open_stream` future was dropped before the reply.
struct CancelOpen<'a> {
    shared: &'a Shared,
    id: u32,
    armed: bool,
}

impl Drop for CancelOpen<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.shared.lock();
        let open = st.closed.is_none();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.handles = 0;
            s.reply = None;
            if s.reset.is_none() && open {
                s.reset = Some(rst::CANCEL);
                self.shared.send(Out::Frame(Frame::RstStream {
                    stream_id: self.id,
                    status: rst::CANCEL,
                }));
            }
        }
        self.shared.maybe_remove(&mut st, self.id);
    }
}

impl Incoming {
    /// The next stream the peer opened; SYN_REPLY is sent on accept. `None`
    /// once the session has ended.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        loop {
            let mut pending = self.rx.recv().await?;
            let shared = &self.guard.shared;
            {
                let st = shared.lock();
                if st.closed.is_some() {
                    return None;
                }
                let alive = st
                    .streams
                    .get(&pending.id)
                    .is_some_and(|s| s.reset.is_none());
                if !alive {
                    // Reset by the peer while queued: nothing to hand out.
                    continue;
                }
                if !pending.unidirectional {
                    shared.send(Out::SynReply {
                        id: pending.id,
                        headers: Vec::new(),
                    });
                }
            }
            pending.armed = false;
            let headers = std::mem::take(&mut pending.headers);
            return Some(SpdyStream::new(
                Arc::clone(&self.guard),
                pending.id,
                headers,
                Vec::new(),
            ));
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
