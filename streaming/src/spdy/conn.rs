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
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tracing::{debug, warn};

use super::frame::{self, goaway, rst, Frame, Setting, FLAG_FIN, FLAG_UNIDIRECTIONAL};
use super::header_block::{HeaderDecoder, HeaderEncoder};
use super::session::{Role, SendFlowControl, SessionConfig, SpdyError};
use super::Headers;

/// The initial window of every stream and of the session (SPDY/3.1 2.6.8).
pub(super) const DEFAULT_WINDOW: i64 = 64 * 1024;
const MAX_WINDOW: i64 = 0x7fff_ffff;
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

    fn is_peer_id(&self, id: u32) -> bool {
        // Clients open odd ids, servers even ones.
        (id % 2 == 1) == (self.role == Role::Server)
    }
}

/// Everything the handles and the two tasks share.
pub(super) struct Shared {
    state: Mutex<State>,
    pub tx: mpsc::UnboundedSender<Out>,
    pub config: SessionConfig,
    control: Semaphore,
    reader_space: Notify,
    stop: watch::Sender<bool>,
    writer_done: watch::Sender<bool>,
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
    tokio::spawn(writer(Arc::clone(&shared), wr, rx));
    tokio::spawn(reader(Arc::clone(&shared), rd, incoming_tx));
    (shared, incoming_rx)
}

async fn writer<W: AsyncWrite>(
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

struct Reader {
    shared: Arc<Shared>,
    dec: HeaderDecoder,
    incoming: mpsc::Sender<Pending>,
    stop: watch::Receiver<bool>,
}

/// Why frame handling stopped the reader.
enum Halt {
    /// The session was terminated elsewhere.
    Stopped,
    /// The peer broke the protocol.
    Protocol(String),
}

async fn reader<R: AsyncRead>(
    shared: Arc<Shared>,
    mut rd: ReadHalf<R>,
    incoming: mpsc::Sender<Pending>,
) {
    let stop = shared.stop.subscribe();
    let mut r = Reader {
        dec: HeaderDecoder::new(shared.config.header_limits),
        shared,
        incoming,
        stop,
    };
    let reason = r.run(&mut rd).await;
    if let Some(reason) = reason {
        if let CloseReason::Protocol(msg) = &reason {
            warn!(%msg, "SPDY peer violated the protocol, sending GOAWAY");
            let last = r.shared.lock().last_peer_id;
            r.shared.send(Out::Frame(Frame::GoAway {
                last_good_stream_id: last,
                status: goaway::PROTOCOL_ERROR,
            }));
        }
        r.shared.terminate(reason);
    }
}

impl Reader {
    /// Reads and handles frames until the session ends; returns why, unless
    /// it was stopped from elsewhere.
    async fn run<R: AsyncRead>(&mut self, rd: &mut ReadHalf<R>) -> Option<CloseReason> {
        let max = self.shared.config.max_frame_len;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            let mut off = 0;
            loop {
                match frame::parse_with_limit(&buf[off..], max) {
                    Ok(Some((f, n))) => {
                        off += n;
                        match self.handle(f).await {
                            Ok(()) => {}
                            Err(Halt::Stopped) => return None,
                            Err(Halt::Protocol(msg)) => return Some(CloseReason::Protocol(msg)),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Some(CloseReason::Protocol(e.to_string())),
                }
            }
            buf.drain(..off);
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            let n = tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                _ = self.stop.wait_for(|s| *s) => return None,
            };
            match n {
                Ok(0) => return Some(CloseReason::PeerClosed),
                Ok(_) => {}
                Err(e) => return Some(CloseReason::Io(e.kind(), e.to_string())),
            }
        }
    }

    /// Queues a control frame answering the peer, waiting for budget first.
    async fn reply(&mut self, f: Frame) -> Result<(), Halt> {
        let permit = tokio::select! {
            p = self.shared.control.acquire() => p,
            _ = self.stop.wait_for(|s| *s) => return Err(Halt::Stopped),
        };
        // The writer hands the permit back once the frame is written.
        if let Ok(p) = permit {
            p.forget();
        }
        self.shared.send(Out::Reply(f));
        Ok(())
    }

    async fn handle(&mut self, f: Frame) -> Result<(), Halt> {
        match f {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => self.on_data(stream_id, flags & FLAG_FIN != 0, data).await,
            Frame::SynStream {
                stream_id,
                flags,
                header_block,
                ..
            } => self.on_syn_stream(stream_id, flags, &header_block).await,
            Frame::SynReply {
                stream_id,
                flags,
                header_block,
            } => {
                let headers = self.decode(stream_id, &header_block).await?;
                let mut st = self.shared.lock();
                if let Some(s) = st.streams.get_mut(&stream_id) {
                    if let (Some(r), Some(h)) = (s.reply.take(), headers) {
                        let _ = r.send(Ok(h));
                    }
                    if flags & FLAG_FIN != 0 {
                        s.remote_fin = true;
                        s.wake();
                    }
                    self.shared.maybe_remove(&mut st, stream_id);
                }
                Ok(())
            }
            Frame::Headers {
                stream_id,
                flags,
                header_block,
            } => {
                // Decoded to keep the zlib context in step; the contract
                // exposes no trailing headers, so their content is dropped.
                let _ = self.decode(stream_id, &header_block).await?;
                if flags & FLAG_FIN != 0 {
                    let mut st = self.shared.lock();
                    if let Some(s) = st.streams.get_mut(&stream_id) {
                        s.remote_fin = true;
                        s.wake();
                    }
                    self.shared.maybe_remove(&mut st, stream_id);
                }
                Ok(())
            }
            Frame::RstStream { stream_id, status } => {
                let mut st = self.shared.lock();
                if let Some(s) = st.streams.get_mut(&stream_id) {
                    debug!(stream_id, status, "SPDY stream reset by peer");
                    s.reset.get_or_insert(status);
                    if let Some(r) = s.reply.take() {
                        let _ = r.send(Err(SpdyError::Reset {
                            id: stream_id,
                            status,
                        }));
                    }
                    s.wake();
                    self.shared.wake_reader(&mut st);
                    self.shared.maybe_remove(&mut st, stream_id);
                }
                Ok(())
            }
            Frame::Settings { entries, .. } => {
                let mut st = self.shared.lock();
                for e in entries {
                    if e.id != frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        continue;
                    }
                    let new = i64::from(e.value).min(MAX_WINDOW);
                    let delta = new - st.peer_initial_window;
                    st.peer_initial_window = new;
                    st.peer_flow_control = true;
                    // SPDY/3.1 2.6.4: a changed initial window shifts every
                    // open stream's window by the difference.
                    for s in st.streams.values_mut() {
                        s.send_window += delta;
                        s.wake();
                    }
                }
                Ok(())
            }
            Frame::WindowUpdate { stream_id, delta } => {
                self.on_window_update(stream_id, delta).await
            }
            Frame::Ping { id } => {
                let ours = {
                    let mut st = self.shared.lock();
                    let ours = (id % 2 == 1) == (st.role == Role::Client);
                    if ours {
                        if let Some(w) = st.pings.remove(&id) {
                            let _ = w.send(());
                        }
                    }
                    ours
                };
                if !ours {
                    self.reply(Frame::Ping { id }).await?;
                }
                Ok(())
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                debug!(last_good_stream_id, status, "SPDY peer sent GOAWAY");
                let mut st = self.shared.lock();
                st.peer_goaway = Some(last_good_stream_id);
                let role = st.role;
                let refused: Vec<u32> = st
                    .streams
                    .keys()
                    .copied()
                    .filter(|&id| {
                        id > last_good_stream_id && (id % 2 == 1) == (role == Role::Client)
                    })
                    .collect();
                // Streams we opened past the peer's last good id were never
                // processed: fail them as refused.
                for id in refused {
                    if let Some(s) = st.streams.get_mut(&id) {
                        s.reset.get_or_insert(rst::REFUSED_STREAM);
                        if let Some(r) = s.reply.take() {
                            let _ = r.send(Err(SpdyError::GoingAway {
                                last_good: last_good_stream_id,
                            }));
                        }
                        s.wake();
                    }
                    self.shared.maybe_remove(&mut st, id);
                }
                Ok(())
            }
            Frame::Unknown { frame_type, .. } => {
                debug!(frame_type, "ignoring unknown SPDY control frame");
                Ok(())
            }
        }
    }

    /// Decodes a header block. `Ok(None)`: the block was bad but the zlib
    /// context survived, and the stream was reset.
    async fn decode(&mut self, stream_id: u32, block: &[u8]) -> Result<Option<Headers>, Halt> {
        match self.dec.decode(block) {
            Ok(h) => Ok(Some(h)),
            Err(e) if e.is_fatal() => Err(Halt::Protocol(format!(
                "header block of stream {stream_id}: {e}"
            ))),
            Err(e) => {
                debug!(stream_id, err = %e, "bad SPDY header block, resetting stream");
                {
                    let mut st = self.shared.lock();
                    if let Some(s) = st.streams.get_mut(&stream_id) {
                        s.reset.get_or_insert(rst::PROTOCOL_ERROR);
                        if let Some(r) = s.reply.take() {
                            let _ = r.send(Err(SpdyError::Reset {
                                id: stream_id,
                                status: rst::PROTOCOL_ERROR,
                            }));
                        }
                        s.wake();
                    }
                    self.shared.maybe_remove(&mut st, stream_id);
                }
                self.reply(Frame::RstStream {
                    stream_id,
                    status: rst::PROTOCOL_ERROR,
                })
                .await?;
                Ok(None)
            }
        }
    }

    async fn on_syn_stream(&mut self, id: u32, flags: u8, block: &[u8]) -> Result<(), Halt> {
        let Some(headers) = self.decode(id, block).await? else {
            return Ok(());
        };
        let refuse = {
            let mut st = self.shared.lock();
            if !st.is_peer_id(id) || id <= st.last_peer_id {
                Some(rst::PROTOCOL_ERROR)
            } else if st.sent_goaway || st.closed.is_some() {
                // SPDY/3.1 2.6.6: after GOAWAY new streams are ignored.
                None
            } else {
                st.last_peer_id = id;
                let unidirectional = flags & FLAG_UNIDIRECTIONAL != 0;
                let window = st.peer_initial_window;
                st.streams.insert(
                    id,
                    StreamState::new(window, flags & FLAG_FIN != 0, unidirectional),
                );
                let pending = Pending {
                    shared: Arc::clone(&self.shared),
                    id,
                    headers,
                    unidirectional,
                    armed: true,
                };
                drop(st);
                match self.incoming.try_send(pending) {
                    Ok(()) => None,
                    Err(e) => {
                        // Dropping it refuses the stream (RST REFUSED_STREAM).
                        debug!(id, "SPDY accept queue full or closed, refusing stream");
                        drop(e);
                        return Ok(());
                    }
                }
            }
        };
        match refuse {
            None => Ok(()),
            Some(status) => {
                self.reply(Frame::RstStream {
                    stream_id: id,
                    status,
                })
                .await
            }
        }
    }

    async fn on_data(&mut self, id: u32, fin: bool, data: Vec<u8>) -> Result<(), Halt> {
        let len = data.len();
        let cap = self.shared.config.recv_window as usize;
        let mut data = Some(data);
        let mut answer = None;
        loop {
            let notified = self.shared.reader_space.notified();
            {
                let mut st = self.shared.lock();
                if st.closed.is_some() {
                    return Err(Halt::Stopped);
                }
                let peer_id = st.is_peer_id(id);
                let known = if peer_id {
                    id <= st.last_peer_id
                } else {
                    id < st.next_id
                };
                let Some(s) = st.streams.get_mut(&id) else {
                    if !known {
                        answer = Some(rst::INVALID_STREAM);
                    }
                    break;
                };
                if s.reset.is_some() {
                    break;
                }
                if s.remote_fin {
                    answer = Some(rst::STREAM_ALREADY_CLOSED);
                    break;
                }
                if s.read_dropped {
                    // Nobody will read it: drop it but keep the peer's window open.
                    s.recv_unacked += len;
                    break;
                }
                // A peer that ignores our window (Go's spdystream does) is
                // held back here: the reader stops until the application
                // drains this stream, which pushes back through TCP.
                if s.recv_len == 0 || s.recv_len + len <= cap {
                    if let Some(d) = data.take() {
                        if !d.is_empty() {
                            s.recv_len += d.len();
                            s.recv.push_back(d);
                        }
                    }
                    if fin {
                        s.remote_fin = true;
                    }
                    s.wake();
                    break;
                }
                st.reader_waiting = true;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.stop.wait_for(|s| *s) => return Err(Halt::Stopped),
            }
        }
        let session_update = {
            let mut st = self.shared.lock();
            if fin {
                if let Some(s) = st.streams.get_mut(&id) {
                    s.remote_fin = true;
                    s.wake();
                }
                self.shared.maybe_remove(&mut st, id);
            }
            // The session window is returned on receipt, half of it at a
            // time: per-stream windows and buffers already bound what we hold.
            st.session_recv_unacked += len;
            if st.session_recv_unacked as i64 >= MAX_WINDOW / 2 {
                let n = st.session_recv_unacked;
                st.session_recv_unacked = 0;
                Some(n)
            } else {
                None
            }
        };
        if let Some(status) = answer {
            self.reply(Frame::RstStream {
                stream_id: id,
                status,
            })
            .await?;
        }
        if let Some(n) = session_update {
            self.reply(Frame::WindowUpdate {
                stream_id: 0,
                delta: n as u32,
            })
            .await?;
        }
        Ok(())
    }

    async fn on_window_update(&mut self, id: u32, delta: u32) -> Result<(), Halt> {
        let overflow = {
            let mut st = self.shared.lock();
            st.peer_flow_control = true;
            let delta = i64::from(delta);
            if id == 0 {
                st.session_send_window = (st.session_send_window + delta).min(MAX_WINDOW);
                for s in st.streams.values_mut() {
                    if let Some(w) = s.write_waker.take() {
                        w.wake();
                    }
                }
                false
            } else if let Some(s) = st.streams.get_mut(&id) {
                s.send_window += delta;
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
                s.send_window > MAX_WINDOW && s.reset.is_none()
            } else {
                false
            }
        };
        if overflow {
            // SPDY/3.1 2.6.8: a window above 2^31-1 is a FLOW_CONTROL_ERROR.
            {
                let mut st = self.shared.lock();
                if let Some(s) = st.streams.get_mut(&id) {
                    s.reset = Some(rst::FLOW_CONTROL_ERROR);
                    s.wake();
                }
                self.shared.maybe_remove(&mut st, id);
            }
            self.reply(Frame::RstStream {
                stream_id: id,
                status: rst::FLOW_CONTROL_ERROR,
            })
            .await?;
        }
        Ok(())
    }
}
