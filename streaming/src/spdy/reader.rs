//! The reader task: parses frames off the connection's read half and applies
//! them to the shared state, answering the peer where the protocol says so.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, ReadHalf};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::conn::{CloseReason, Out, Pending, Shared, StreamState, MAX_WINDOW};
use super::frame::{self, goaway, rst, Frame, FLAG_FIN, FLAG_UNIDIRECTIONAL};
use super::header_block::HeaderDecoder;
use super::session::{Role, SpdyError};
use super::Headers;

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

pub(super) async fn run<R: AsyncRead>(
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
    if reason.is_none() {
        // Ended here: keep reading (and dropping) what the peer still sends
        // until it closes too. Closing a socket with unread input makes the
        // kernel answer with a reset, and a reset makes the peer's kernel
        // discard what it had received but not yet read: the last frames we
        // sent (an exit status, a FIN) would be lost.
        linger(&r.shared, &mut rd).await;
    }
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

/// Drains the read half until the peer closes, it fails, or the close
/// grace period passes; waits for the writer first so our FIN is out.
async fn linger<R: AsyncRead>(shared: &Shared, rd: &mut ReadHalf<R>) {
    let drain = async {
        shared.writer_finished().await;
        let mut sink = [0u8; 16 * 1024];
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(shared.config.close_grace, drain).await;
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
                // A reused id is a stream error on that stream (SPDY/3.1
                // 2.3.2): if it is live here, it is reset here too.
                if let Some(s) = st.streams.get_mut(&id) {
                    s.reset.get_or_insert(rst::PROTOCOL_ERROR);
                    s.wake();
                }
                self.shared.wake_reader(&mut st);
                self.shared.maybe_remove(&mut st, id);
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
