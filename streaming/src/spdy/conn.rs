//! The state one SPDY session shares between its handles, and the reader and
//! writer tasks that own the two halves of the connection.
//!
//! One `std::sync::Mutex<State>` guards all stream state; it is never held
//! across an await. The writer task is the only place that touches the write
//! half and the outgoing zlib context, so frames reach the wire in the order
//! they were queued, and header blocks are compressed in that same order.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tracing::debug;

use super::frame::{self, rst, Frame, Setting};
use super::reader;
use super::session::{Role, SendFlowControl, SessionConfig, SpdyError};
use super::writer;
use super::Headers;

/// The initial window of every stream and of the session (SPDY/3.1 2.6.8).
pub(super) const DEFAULT_WINDOW: i64 = 64 * 1024;
pub(super) const MAX_WINDOW: i64 = 0x7fff_ffff;
/// Largest DATA payload we send; small enough to interleave streams fairly.
pub(super) const MAX_DATA_CHUNK: usize = 16 * 1024;
/// DATA bytes that may wait in the writer queue before writers must wait:
/// this is what stops a fast producer over a slow socket from growing memory.
pub(super) const QUEUE_BUDGET: usize = 256 * 1024;
/// Control frames the reader may queue in reply to the peer (PING echoes,
/// RST, WINDOW_UPDATE) before it stops reading: a peer that floods PINGs
/// without reading our answers stalls itself instead of growing our queue.
const CONTROL_BUDGET: usize = 256;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// `Session::close` or every handle dropped.
    Local,
    /// The peer closed the connection.
    PeerClosed,
    /// Reading or writing the connection failed.
    Io(io::ErrorKind, String),
    /// The peer broke the protocol; we sent GOAWAY PROTOCOL_ERROR.
    Protocol(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => write!(f, "closed locally"),
            CloseReason::PeerClosed => write!(f, "connection closed by peer"),
            CloseReason::Io(kind, msg) => write!(f, "connection error ({kind:?}): {msg}"),
            CloseReason::Protocol(msg) => write!(f, "protocol error: {msg}"),
        }
    }
}

/// What the writer task is asked to put on the wire.
pub(super) enum Out {
    /// A frame without a header block.
    Frame(Frame),
    /// Like `Frame`, queued by the reader: returns one control permit.
    Reply(Frame),
    SynStream {
        id: u32,
        headers: Headers,
        fin: bool,
    },
    SynReply {
        id: u32,
        headers: Headers,
    },
    /// Flush what is queued, shut the write half down and stop.
    Shutdown,
}

/// Per-stream state.
pub(super) struct StreamState {
    pub recv: VecDeque<Vec<u8>>,
    /// Bytes of `recv.front()` already read.
    pub recv_off: usize,
    pub recv_len: usize,
    /// Bytes read by the application not yet returned with WINDOW_UPDATE.
    pub recv_unacked: usize,
    pub remote_fin: bool,
    pub local_fin: bool,
    /// RST_STREAM status, sent or received.
    pub reset: Option<u32>,
    pub send_window: i64,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    /// For streams we open: resolved by SYN_REPLY or RST_STREAM.
    pub reply: Option<oneshot::Sender<Result<Headers, SpdyError>>>,
    /// Live handles (read half, write half); a stream being opened or waiting
    /// in the accept queue counts its future halves.
    pub handles: u8,
    pub read_dropped: bool,
}

impl StreamState {
    pub fn new(send_window: i64, remote_fin: bool, local_fin: bool) -> Self {
        StreamState {
            recv: VecDeque::new(),
            recv_off: 0,
            recv_len: 0,
            recv_unacked: 0,
            remote_fin,
            local_fin,
            reset: None,
            send_window,
            read_waker: None,
            write_waker: None,
            reply: None,
            handles: 2,
            read_dropped: false,
        }
    }

    pub fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    fn finished(&self) -> bool {
        self.reset.is_some() || (self.local_fin && self.remote_fin)
    }
}

pub(super) struct State {
    pub role: Role,
    pub streams: HashMap<u32, StreamState>,
    pub next_id: u32,
    /// Highest stream id the peer opened that we took.
    pub last_peer_id: u32,
    pub peer_initial_window: i64,
    pub session_send_window: i64,
    /// The peer sent SETTINGS INITIAL_WINDOW_SIZE or a WINDOW_UPDATE, so it
    /// does flow control (see `SendFlowControl::Auto`).
    pub peer_flow_control: bool,
    pub queued_bytes: usize,
    pub budget_waiters: Vec<Waker>,
    /// We sent GOAWAY: refuse new peer streams.
    pub sent_goaway: bool,
    /// The peer sent GOAWAY with this last-good id: open no more streams.
    pub peer_goaway: Option<u32>,
    pub closed: Option<CloseReason>,
    pub session_recv_unacked: usize,
    pub pings: HashMap<u32, oneshot::Sender<()>>,
    pub next_ping_id: u32,
    /// The reader waits for room in a stream buffer.
    pub reader_waiting: bool,
}

impl State {
    pub fn enforce_send_window(&self, mode: SendFlowControl) -> bool {
        match mode {
            SendFlowControl::Strict => true,
            SendFlowControl::Auto => self.peer_flow_control,
        }
    }

    pub fn is_peer_id(&self, id: u32) -> bool {
        // Clients open odd ids, servers even ones.
        (id % 2 == 1) == (self.role == Role::Server)
    }
}

/// Everything the handles and the two tasks share.
pub(super) struct Shared {
    state: Mutex<State>,
    pub tx: mpsc::UnboundedSender<Out>,
    pub config: SessionConfig,
    pub control: Semaphore,
    pub reader_space: Notify,
    pub stop: watch::Sender<bool>,
    pub writer_done: watch::Sender<bool>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; the
        // session can still shut down cleanly with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame; a closed writer means the session is over, which every
    /// caller learns from `State::closed`.
    pub fn send(&self, out: Out) {
        let _ = self.tx.send(out);
    }

    /// Lets a reader blocked on a full stream buffer look again.
    pub fn wake_reader(&self, st: &mut State) {
        if st.reader_waiting {
            st.reader_waiting = false;
            self.reader_space.notify_one();
        }
    }

    /// Ends the session: fails waiters, wakes every handle, stops both tasks
    /// (the writer first drains what is already queued).
    pub fn terminate(&self, reason: CloseReason) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        debug!(%reason, "SPDY session ending");
        st.closed = Some(reason.clone());
        for s in st.streams.values_mut() {
            if let Some(r) = s.reply.take() {
                let _ = r.send(Err(SpdyError::Closed(reason.clone())));
            }
            s.wake();
        }
        st.pings.clear();
        for w in st.budget_waiters.drain(..) {
            w.wake();
        }
        drop(st);
        self.send(Out::Shutdown);
        self.stop.send_replace(true);
    }

    /// Drops a stream's entry once nothing can use it any more.
    pub fn maybe_remove(&self, st: &mut State, id: u32) {
        let gone = st
            .streams
            .get(&id)
            .is_some_and(|s| s.handles == 0 && (s.finished() || st.closed.is_some()));
        if gone {
            st.streams.remove(&id);
        }
    }

    /// Resolves once the writer task has stopped.
    pub async fn writer_finished(&self) {
        let mut rx = self.writer_done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Resolves once the session has ended.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A stream the peer opened, waiting in the accept queue.
pub(super) struct Pending {
    pub shared: Arc<Shared>,
    pub id: u32,
    pub headers: Headers,
    pub unidirectional: bool,
    pub armed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Never accepted (Incoming dropped or session ending): refuse it.
        let mut st = self.shared.lock();
        let open = st.closed.is_none();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.handles = 0;
            if s.reset.is_none() && open {
                s.reset = Some(rst::REFUSED_STREAM);
                self.shared.send(Out::Frame(Frame::RstStream {
                    stream_id: self.id,
                    status: rst::REFUSED_STREAM,
                }));
            }
            self.shared.maybe_remove(&mut st, self.id);
        }
    }
}

/// Starts the reader and writer tasks for `io`.
pub(super) fn start<IO>(
    io: IO,
    role: Role,
    config: SessionConfig,
) -> (Arc<Shared>, mpsc::Receiver<Pending>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let (incoming_tx, incoming_rx) = mpsc::channel(config.accept_backlog.max(1));
    let state = State {
        role,
        streams: HashMap::new(),
        next_id: if role == Role::Client { 1 } else { 2 },
        last_peer_id: 0,
        peer_initial_window: DEFAULT_WINDOW,
        session_send_window: DEFAULT_WINDOW,
        peer_flow_control: false,
        queued_bytes: 0,
        budget_waiters: Vec::new(),
        sent_goaway: false,
        peer_goaway: None,
        closed: None,
        session_recv_unacked: 0,
        pings: HashMap::new(),
        next_ping_id: if role == Role::Client { 1 } else { 2 },
        reader_waiting: false,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        tx,
        config,
        control: Semaphore::new(CONTROL_BUDGET),
        reader_space: Notify::new(),
        stop: watch::channel(false).0,
        writer_done: watch::channel(false).0,
    });
    // Advertise our receive window first: it is also how a berth peer learns
    // that we do flow control (see `SendFlowControl::Auto`).
    shared.send(Out::Frame(Frame::Settings {
        flags: 0,
        entries: vec![Setting {
            flags: 0,
            id: frame::SETTINGS_INITIAL_WINDOW_SIZE,
            value: shared.config.recv_window,
        }],
    }));
    // Open the session window (SPDY/3.1: fixed at 64 KiB initially) all the
    // way: per-stream windows and buffers already bound our memory, and a
    // small session window would make the sender wait for a WINDOW_UPDATE
    // every 32 KiB, which Nagle and delayed ACKs turn into 40 ms stalls.
    shared.send(Out::Frame(Frame::WindowUpdate {
        stream_id: 0,
        delta: (MAX_WINDOW - DEFAULT_WINDOW) as u32,
    }));
    let (rd, wr) = tokio::io::split(io);
    tokio::spawn(writer::run(Arc::clone(&shared), wr, rx));
    tokio::spawn(reader::run(Arc::clone(&shared), rd, incoming_tx));
    (shared, incoming_rx)
}
