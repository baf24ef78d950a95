//! One SPDY stream as a byte pipe, and the guard that ends a session once
//! nobody holds a handle to it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::{CloseReason, Out, Shared, MAX_DATA_CHUNK, QUEUE_BUDGET};
use super::frame::{goaway, rst, Frame, FLAG_FIN};
use super::Headers;

/// Held by every user-facing handle; the last one dropped ends the session.
pub(super) struct Guard {
    pub shared: Arc<Shared>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            if st.closed.is_none() && !st.sent_goaway {
                st.sent_goaway = true;
                self.shared.send(Out::Frame(Frame::GoAway {
                    last_good_stream_id: st.last_peer_id,
                    status: goaway::OK,
                }));
            }
        }
        self.shared.terminate(CloseReason::Local);
    }
}

struct Handle {
    guard: Arc<Guard>,
    id: u32,
}

impl Handle {
    fn shared(&self) -> &Shared {
        &self.guard.shared
    }

    fn reset(&self) {
        let shared = self.shared();
        let mut st = shared.lock();
        let closed = st.closed.is_some();
        if let Some(s) = st.streams.get_mut(&self.id) {
            if s.reset.is_none() {
                s.reset = Some(rst::CANCEL);
                s.recv.clear();
                s.recv_len = 0;
                s.recv_off = 0;
                s.wake();
                if !closed {
                    shared.send(Out::Frame(Frame::RstStream {
                        stream_id: self.id,
                        status: rst::CANCEL,
                    }));
                }
            }
        }
        shared.wake_reader(&mut st);
    }
}

fn reset_error(id: u32, status: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("SPDY stream {id} reset (status {status})"),
    )
}

fn closed_error(reason: &CloseReason) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("SPDY session closed: {reason}"),
    )
}

fn gone_error(id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("SPDY stream {id} is gone"),
    )
}

/// One SPDY stream: AsyncRead + AsyncWrite; `poll_shutdown` sends FIN (a
/// half close: reading goes on until the peer's FIN). Dropping the write side
/// without shutdown sends FIN too; [`SpdyStream::reset`] aborts instead.
pub struct SpdyStream {
    read: SpdyReadHalf,
    write: SpdyWriteHalf,
    headers: Headers,
    reply_headers: Headers,
}

/// The reading half of a [`SpdyStream`].
pub struct SpdyReadHalf {
    h: Handle,
}

/// The writing half of a [`SpdyStream`].
pub struct SpdyWriteHalf {
    h: Handle,
}

impl SpdyStream {
    pub(super) fn new(
        guard: Arc<Guard>,
        id: u32,
        headers: Headers,
        reply_headers: Headers,
    ) -> Self {
        SpdyStream {
            read: SpdyReadHalf {
                h: Handle {
                    guard: Arc::clone(&guard),
                    id,
                },
            },
            write: SpdyWriteHalf {
                h: Handle { guard, id },
            },
            headers,
            reply_headers,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.read.h.id
    }

    /// The headers of the SYN_STREAM that opened the stream.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of header `name` (lower-case) in [`Self::headers`].
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The headers of the peer's SYN_REPLY (streams we opened; empty otherwise).
    pub fn reply_headers(&self) -> &Headers {
        &self.reply_headers
    }

    /// Aborts the stream with RST_STREAM CANCEL.
    pub fn reset(&self) {
        self.read.h.reset();
    }

    /// Splits into halves that can move to different tasks.
    pub fn into_split(self) -> (SpdyReadHalf, SpdyWriteHalf) {
        (self.read, self.write)
    }
}

impl SpdyReadHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.h.id
    }

    /// Aborts the stream with RST_STREAM CANCEL.
    pub fn reset(&self) {
        self.h.reset();
    }
}

impl SpdyWriteHalf {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.h.id
    }

    /// Aborts the stream with RST_STREAM CANCEL.
    pub fn reset(&self) {
        self.h.reset();
    }
}

fn poll_read(h: &Handle, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return Poll::Ready(Ok(()));
    }
    let shared = h.shared();
    let mut guard = shared.lock();
    let st = &mut *guard;
    let closed = st.closed.clone();
    let Some(s) = st.streams.get_mut(&h.id) else {
        return Poll::Ready(Err(gone_error(h.id)));
    };
    if s.recv_len > 0 {
        let mut n = 0;
        while buf.remaining() > 0 {
            let Some(front) = s.recv.front() else { break };
            let avail = &front[s.recv_off..];
            let k = avail.len().min(buf.remaining());
            buf.put_slice(&avail[..k]);
            s.recv_off += k;
            n += k;
            if s.recv_off == front.len() {
                s.recv.pop_front();
                s.recv_off = 0;
            }
        }
        s.recv_len -= n;
        s.recv_unacked += n;
        // Return window in batches of half of it: one WINDOW_UPDATE per
        // half-window keeps a flow-controlled peer streaming without a frame
        // per read.
        let threshold = (shared.config.recv_window as usize / 2).max(1);
        if !s.remote_fin && s.reset.is_none() && closed.is_none() && s.recv_unacked >= threshold {
            let delta = s.recv_unacked;
            s.recv_unacked = 0;
            shared.send(Out::Frame(Frame::WindowUpdate {
                stream_id: h.id,
                delta: delta as u32,
            }));
        }
        shared.wake_reader(st);
        return Poll::Ready(Ok(()));
    }
    // A FIN means every byte arrived: a reset after it (Go's spdystream
    // resets what is left open when it closes) cannot take the end away.
    if s.remote_fin {
        return Poll::Ready(Ok(()));
    }
    if let Some(status) = s.reset {
        return Poll::Ready(Err(reset_error(h.id, status)));
    }
    if let Some(reason) = closed {
        return Poll::Ready(Err(closed_error(&reason)));
    }
    s.read_waker = Some(cx.waker().clone());
    Poll::Pending
}

fn poll_write(h: &Handle, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let shared = h.shared();
    let mut guard = shared.lock();
    let st = &mut *guard;
    if let Some(reason) = &st.closed {
        return Poll::Ready(Err(closed_error(reason)));
    }
    let enforce = st.enforce_send_window(shared.config.flow_control);
    let budget = QUEUE_BUDGET.saturating_sub(st.queued_bytes);
    let session_window = st.session_send_window;
    let Some(s) = st.streams.get_mut(&h.id) else {
        return Poll::Ready(Err(gone_error(h.id)));
    };
    if let Some(status) = s.reset {
        return Poll::Ready(Err(reset_error(h.id, status)));
    }
    if s.local_fin {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("SPDY stream {} already sent FIN", h.id),
        )));
    }
    let mut n = buf.len().min(MAX_DATA_CHUNK);
    if enforce {
        let window = s.send_window.min(session_window);
        if window <= 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        n = n.min(usize::try_from(window).unwrap_or(usize::MAX));
    }
    if budget == 0 {
        if !st.budget_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            st.budget_waiters.push(cx.waker().clone());
        }
        return Poll::Pending;
    }
    n = n.min(budget);
    s.send_window -= n as i64;
    st.session_send_window -= n as i64;
    st.queued_bytes += n;
    shared.send(Out::Frame(Frame::Data {
        stream_id: h.id,
        flags: 0,
        data: buf[..n].to_vec(),
    }));
    Poll::Ready(Ok(n))
}

fn poll_shutdown(h: &Handle) -> Poll<io::Result<()>> {
    let shared = h.shared();
    let mut st = shared.lock();
    let closed = st.closed.clone();
    let Some(s) = st.streams.get_mut(&h.id) else {
        return Poll::Ready(Ok(()));
    };
    if s.local_fin || s.reset.is_some() {
        return Poll::Ready(Ok(()));
    }
    if let Some(reason) = closed {
        return Poll::Ready(Err(closed_error(&reason)));
    }
    s.local_fin = true;
    shared.send(Out::Frame(Frame::Data {
        stream_id: h.id,
        flags: FLAG_FIN,
        data: Vec::new(),
    }));
    Poll::Ready(Ok(()))
}

impl Drop for SpdyReadHalf {
    fn drop(&mut self) {
        let shared = self.h.shared();
        let mut guard = shared.lock();
        let st = &mut *guard;
        let open = st.closed.is_none();
        if let Some(s) = st.streams.get_mut(&self.h.id) {
            s.handles = s.handles.saturating_sub(1);
            s.read_dropped = true;
            s.recv_unacked += s.recv_len;
            s.recv.clear();
            s.recv_len = 0;
            s.recv_off = 0;
            // What nobody will read still counts as consumed, so a
            // flow-controlled peer is not left stuck on a full window.
            if open && !s.remote_fin && s.reset.is_none() && s.recv_unacked > 0 {
                shared.send(Out::Frame(Frame::WindowUpdate {
                    stream_id: self.h.id,
                    delta: s.recv_unacked as u32,
                }));
                s.recv_unacked = 0;
            }
        }
        shared.wake_reader(st);
        shared.maybe_remove(st, self.h.id);
    }
}

impl Drop for SpdyWriteHalf {
    fn drop(&mut self) {
        let shared = self.h.shared();
        let mut st = shared.lock();
        let open = st.closed.is_none();
        if let Some(s) = st.streams.get_mut(&self.h.id) {
            s.handles = s.handles.saturating_sub(1);
            if open && !s.local_fin && s.reset.is_none() {
                s.local_fin = true;
                shared.send(Out::Frame(Frame::Data {
                    stream_id: self.h.id,
                    flags: FLAG_FIN,
                    data: Vec::new(),
                }));
            }
        }
        shared.maybe_remove(&mut st, self.h.id);
    }
}

impl AsyncRead for SpdyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.read.h, cx, buf)
    }
}

impl AsyncWrite for SpdyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.write.h, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is already queued, in order, for the writer task.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown(&self.write.h)
    }
}

impl AsyncRead for SpdyReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.h, cx, buf)
    }
}

impl AsyncWrite for SpdyWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.h, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown(&self.h)
    }
}
