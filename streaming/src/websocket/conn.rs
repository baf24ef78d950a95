//! An async WebSocket connection split into a reader and a shareable writer.
//!
//! The reader reassembles fragmented messages, answers pings and close frames
//! (through a clone of the writer), and enforces the role's masking rule; the
//! writer sends each message as one frame under a lock, so any number of
//! tasks may hold a clone and send.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tracing::debug;

use super::frame::{self, OpCode};
use super::{Message, WsError};

/// Default cap on one message (and so on one frame).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// How much the reader asks the transport for at a time.
const READ_CHUNK: usize = 64 << 10;

/// Close status codes (RFC 6455 7.4.1) the connection itself sends.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message was not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message was over the size cap.
    pub const TOO_BIG: u16 = 1009;
}

/// Which end of the connection we are (decides masking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections; receives masked frames, sends unmasked ones.
    Server,
    /// Opens connections; sends masked frames.
    Client,
}

/// A WebSocket connection over `IO`, before it is split.
pub struct WebSocket<IO> {
    io: IO,
    role: Role,
    buffered: Vec<u8>,
    max_message: usize,
}

impl<IO> WebSocket<IO>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Server end over an upgraded transport.
    pub fn server(io: IO) -> Self {
        Self::from_parts(io, Role::Server, Vec::new())
    }

    /// Client end over an upgraded transport.
    pub fn client(io: IO) -> Self {
        Self::from_parts(io, Role::Client, Vec::new())
    }

    /// A connection whose first bytes were already read off `io` (bytes that
    /// arrived behind the handshake's headers).
    pub fn from_parts(io: IO, role: Role, buffered: Vec<u8>) -> Self {
        WebSocket {
            io,
            role,
            buffered,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// Caps the size of one received message (default 64 MiB).
    pub fn with_max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Splits into a reader and a cloneable writer.
    pub fn split(self) -> (WsReader, WsWriter) {
        let (r, w) = tokio::io::split(self.io);
        let writer = WsWriter {
            shared: Arc::new(Mutex::new(WriteState {
                io: Box::new(w),
                close_sent: false,
                shut_down: false,
            })),
            role: self.role,
        };
        let reader = WsReader {
            io: Box::new(r),
            buf: self.buffered,
            pos: 0,
            role: self.role,
            max_message: self.max_message,
            partial: None,
            done: false,
            writer: writer.clone(),
        };
        (reader, writer)
    }
}

/// The receiving half.
pub struct WsReader {
    io: Box<dyn AsyncRead + Send + Unpin>,
    buf: Vec<u8>,
    pos: usize,
    role: Role,
    max_message: usize,
    /// Opcode and data of a fragmented message still arriving.
    partial: Option<(OpCode, Vec<u8>)>,
    done: bool,
    writer: WsWriter,
}

impl WsReader {
    /// The next message; `None` once the connection is closed (after the
    /// peer's close frame has been returned, or at a clean end of stream).
    pub async fn recv(&mut self) -> Result<Option<Message>, WsError> {
        match self.recv_inner().await {
            Ok(m) => Ok(m),
            Err(e) => {
                self.done = true;
                self.fail(&e).await;
                Err(e)
            }
        }
    }

    /// A handle that sends on this connection.
    pub fn writer(&self) -> WsWriter {
        self.writer.clone()
    }

    async fn recv_inner(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(f) = self.next_frame().await? else {
                self.done = true;
                if self.partial.is_some() {
                    return Err(WsError::UnexpectedEof);
                }
                debug!("websocket transport ended without a close frame");
                return Ok(None);
            };
            let want_masked = self.role == Role::Server;
            if f.masked != want_masked {
                let from = match self.role {
                    Role::Server => Role::Client,
                    Role::Client => Role::Server,
                };
                return Err(WsError::BadMasking { from });
            }
            match f.opcode {
                OpCode::Ping => self.writer.send_control(OpCode::Pong, &f.payload).await?,
                OpCode::Pong => {}
                OpCode::Close => return self.on_close(&f.payload).await.map(Some),
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(WsError::ExpectedContinuation(f.opcode));
                    }
                    if f.fin {
                        return finish(f.opcode, f.payload).map(Some);
                    }
                    self.partial = Some((f.opcode, f.payload));
                }
                OpCode::Continuation => {
                    let Some((op, mut data)) = self.partial.take() else {
                        return Err(WsError::UnexpectedContinuation);
                    };
                    if data.len() + f.payload.len() > self.max_message {
                        return Err(WsError::MessageTooLarge {
                            max: self.max_message,
                        });
                    }
                    data.extend_from_slice(&f.payload);
                    if f.fin {
                        return finish(op, data).map(Some);
                    }
                    self.partial = Some((op, data));
                }
            }
        }
    }

    /// Reads until one whole frame is buffered; `None` at a clean end of
    /// stream (no partial frame).
    async fn next_frame(&mut self) -> Result<Option<frame::Frame>, WsError> {
        loop {
            if let Some((f, used)) = frame::parse(&self.buf[self.pos..], self.max_message)? {
                self.pos += used;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                return Ok(Some(f));
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let have = self.buf.len();
            // Read the whole rest of a large frame at once when its header
            // says how long it is.
            let want = match frame::parse_header(&self.buf, self.max_message)? {
                Some(h) => (h.header_len + h.payload_len - have).max(READ_CHUNK),
                None => READ_CHUNK,
            };
            self.buf.resize(have + want, 0);
            let n = self
                .io
                .read(&mut self.buf[have..])
                .await
                .map_err(WsError::Io);
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            };
            self.buf.truncate(have + n);
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(WsError::UnexpectedEof);
            }
        }
    }

    async fn on_close(&mut self, payload: &[u8]) -> Result<Message, WsError> {
        let parsed = parse_close(payload)?;
        self.done = true;
        let mut w = self.writer.shared.lock().await;
        if !w.close_sent {
            // Echo the peer's code (5.5.1); an empty close answers an empty one.
            let mut reply = Vec::new();
            let code = parsed.as_ref().map(|(c, _)| c.to_be_bytes());
            let body: &[u8] = code.as_ref().map_or(&[], |c| &c[..]);
            frame::encode(true, OpCode::Close, body, self.writer.mask(), &mut reply);
            w.close_sent = true;
            if let Err(e) = w.io.write_all(&reply).await {
                debug!(error = %e, "could not answer websocket close frame");
            }
        }
        // Both close frames have now crossed: end our side of the transport.
        w.shut_down().await;
        Ok(Message::Close(parsed))
    }

    /// Best effort: tell the peer why we stop reading, then end the transport.
    async fn fail(&mut self, e: &WsError) {
        let code = match e {
            WsError::Io(_) | WsError::UnexpectedEof => {
                self.writer.shared.lock().await.shut_down().await;
                return;
            }
            WsError::InvalidUtf8(_) => close_code::INVALID_DATA,
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => close_code::TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        };
        debug!(error = %e, code, "closing websocket after a protocol error");
        let mut w = self.writer.clone();
        let _ = w.close(code, "").await;
        self.writer.shared.lock().await.shut_down().await;
    }
}

fn finish(op: OpCode, data: Vec<u8>) -> Result<Message, WsError> {
    if op == OpCode::Text {
        return String::from_utf8(data)
            .map(Message::Text)
            .map_err(|e| WsError::InvalidUtf8(e.utf8_error()));
    }
    Ok(Message::Binary(data))
}

/// Code and reason of a close frame's payload (RFC 6455 5.5.1, 7.4).
fn parse_close(p: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match p {
        [] => Ok(None),
        [_] => Err(WsError::BadClose { code: None, len: 1 }),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // 1005, 1006 and 1015 are for local reporting only; below 1000
            // and 1016..=2999 are unassigned.
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(WsError::BadClose {
                    code: Some(code),
                    len: p.len(),
                });
            }
            let reason = std::str::from_utf8(reason).map_err(WsError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

struct WriteState {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    close_sent: bool,
    shut_down: bool,
}

impl WriteState {
    async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.io.write_all(bytes).await.map_err(WsError::Io)?;
        self.io.flush().await.map_err(WsError::Io)
    }

    async fn shut_down(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            if let Err(e) = self.io.shutdown().await {
                debug!(error = %e, "websocket transport shutdown failed");
            }
        }
    }
}

/// The sending half; clones share the connection.
#[derive(Clone)]
pub struct WsWriter {
    shared: Arc<Mutex<WriteState>>,
    role: Role,
}

impl WsWriter {
    /// Sends one message (as a single frame).
    pub async fn send(&mut self, m: Message) -> Result<(), WsError> {
        match m {
            Message::Binary(b) => self.send_data(OpCode::Binary, &b).await,
            Message::Text(t) => self.send_data(OpCode::Text, t.as_bytes()).await,
            Message::Close(None) => self.close_frame(&[]).await,
            Message::Close(Some((code, reason))) => self.close(code, &reason).await,
        }
    }

    /// Sends a binary message from a borrowed buffer.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), WsError> {
        self.send_data(OpCode::Binary, data).await
    }

    /// Sends a ping (the reader drops the pong).
    pub async fn ping(&mut self, data: &[u8]) -> Result<(), WsError> {
        self.send_control(OpCode::Ping, data).await
    }

    /// Starts the close handshake; the reader returns the peer's answer.
    /// The reason is cut to fit the 125-byte control frame.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WsError> {
        let mut body = code.to_be_bytes().to_vec();
        let mut cut = reason.len().min(frame::MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        body.extend_from_slice(&reason.as_bytes()[..cut]);
        self.close_frame(&body).await
    }

    /// Whether a close frame has been sent on this connection.
    pub async fn is_closing(&self) -> bool {
        self.shared.lock().await.close_sent
    }

    async fn close_frame(&mut self, body: &[u8]) -> Result<(), WsError> {
        let mut out = Vec::new();
        frame::encode(true, OpCode::Close, body, self.mask(), &mut out);
        let mut w = self.shared.lock().await;
        if w.close_sent {
            return Ok(());
        }
        w.close_sent = true;
        w.write_frame(&out).await
    }

    async fn send_data(&mut self, op: OpCode, data: &[u8]) -> Result<(), WsError> {
        let mut out = Vec::new();
        frame::encode(true, op, data, self.mask(), &mut out);
        let mut w = self.shared.lock().await;
        if w.close_sent {
            return Err(WsError::Closed);
        }
        w.write_frame(&out).await
    }

    async fn send_control(&mut self, op: OpCode, data: &[u8]) -> Result<(), WsError> {
        let mut out = Vec::new();
        frame::encode(true, op, data, self.mask(), &mut out);
        let mut w = self.shared.lock().await;
        if w.close_sent {
            // No frame may follow our close (5.5.1); a late ping goes unanswered.
            return Ok(());
        }
        w.write_frame(&out).await
    }

    /// A fresh masking key for a client frame (RFC 6455 5.3: unpredictable).
    fn mask(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => {
                let mut key = [0u8; 4];
                if let Err(e) = getrandom::fill(&mut key) {
                    // The kernel's generator does not fail once initialised;
                    // a fixed key stays valid framing if it ever did.
                    debug!(error = %e, "getrandom failed for a websocket mask");
                }
                Some(key)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, DuplexStream};

    fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
        let (a, b) = duplex(1 << 16);
        (WebSocket::server(a), WebSocket::client(b))
    }

    #[tokio::test]
    async fn messages_both_ways_and_close_handshake() {
        let (s, c) = pair();
        let (mut sr, mut sw) = s.split();
        let (mut cr, mut cw) = c.split();
        // Larger than the pipe: the reader must run while the writer writes.
        let mut cw2 = cw.clone();
        let sender = tokio::spawn(async move {
            cw2.send(Message::Text("héllo".into())).await.unwrap();
            cw2.send(Message::Binary(vec![0; 200_000])).await.unwrap();
        });
        assert_eq!(
            sr.recv().await.unwrap(),
            Some(Message::Text("héllo".into()))
        );
        assert_eq!(
            sr.recv().await.unwrap(),
            Some(Message::Binary(vec![0; 200_000]))
        );
        sender.await.unwrap();
        sw.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(
            cr.recv().await.unwrap(),
            Some(Message::Binary(vec![1, 2, 3]))
        );
        // Client closes; the server sees it and echoes; the client sees the echo.
        cw.close(1000, "bye").await.unwrap();
        assert!(matches!(
            cw.send(Message::Binary(vec![])).await,
            Err(WsError::Closed)
        ));
        assert_eq!(
            sr.recv().await.unwrap(),
            Some(Message::Close(Some((1000, "bye".into()))))
        );
        assert_eq!(sr.recv().await.unwrap(), None);
        assert_eq!(
            cr.recv().await.unwrap(),
            Some(Message::Close(Some((1000, String::new()))))
        );
        assert_eq!(cr.recv().await.unwrap(), None);
    }

    #[tokio::test]
    async fn writer_clones_send_from_many_tasks() {
        let (s, c) = pair();
        let (mut sr, _sw) = s.split();
        let (_cr, cw) = c.split();
        let mut tasks = Vec::new();
        for t in 0u8..8 {
            let mut w = cw.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u8..50 {
                    w.send(Message::Binary([t, i, 0xAA].repeat(100)))
                        .await
                        .unwrap();
                }
            }));
        }
        let mut next = [0u8; 8];
        for _ in 0..400 {
            let Some(Message::Binary(b)) = sr.recv().await.unwrap() else {
                panic!("not binary")
            };
            assert_eq!(b.len(), 300);
            let (t, i) = (b[0], b[1]);
            assert_eq!(b, [t, i, 0xAA].repeat(100), "frames interleaved");
            assert_eq!(next[t as usize], i, "order within one task kept");
            next[t as usize] += 1;
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    type RawFrame<'a> = (bool, OpCode, &'a [u8], bool);

    /// Writes raw frames as a client would, to test the server's reader.
    async fn raw_to_server(frames: &[RawFrame<'_>]) -> (WsReader, DuplexStream) {
        let (a, mut b) = duplex(1 << 16);
        let mut out = Vec::new();
        for (fin, op, p, masked) in frames {
            frame::encode(*fin, *op, p, masked.then_some([1, 2, 3, 4]), &mut out);
        }
        b.write_all(&out).await.unwrap();
        let (r, _w) = WebSocket::server(a).split();
        (r, b)
    }

    #[tokio::test]
    async fn reassembles_fragments_around_a_ping() {
        let (mut r, mut peer) = raw_to_server(&[
            (false, OpCode::Text, b"ab", true),
            (true, OpCode::Ping, b"p!", true),
            (false, OpCode::Continuation, "c\u{e9}".as_bytes(), true),
            (true, OpCode::Continuation, b"d", true),
        ])
        .await;
        assert_eq!(
            r.recv().await.unwrap(),
            Some(Message::Text("abc\u{e9}d".into()))
        );
        // The ping was answered with an unmasked pong carrying its payload.
        let mut pong = [0u8; 4];
        peer.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 0x02, b'p', b'!']);
    }

    #[tokio::test]
    async fn protocol_errors_close_with_a_code() {
        let cases: Vec<(Vec<RawFrame>, u16)> = vec![
            (
                vec![(true, OpCode::Binary, b"x", false)],
                close_code::PROTOCOL_ERROR,
            ),
            (
                vec![(true, OpCode::Continuation, b"x", true)],
                close_code::PROTOCOL_ERROR,
            ),
            (
                vec![
                    (false, OpCode::Binary, b"x", true),
                    (true, OpCode::Text, b"y", true),
                ],
                close_code::PROTOCOL_ERROR,
            ),
            (
                vec![(true, OpCode::Text, &[0xFF, 0xFE], true)],
                close_code::INVALID_DATA,
            ),
            (
                vec![(true, OpCode::Close, &[0x03], true)],
                close_code::PROTOCOL_ERROR,
            ),
            (
                vec![(true, OpCode::Close, &[0x03, 0xED], true)],
                close_code::PROTOCOL_ERROR,
            ),
        ];
        for (frames, code) in cases {
            let (mut r, mut peer) = raw_to_server(&frames).await;
            assert!(r.recv().await.is_err(), "{frames:?}");
            let mut reply = Vec::new();
            peer.read_to_end(&mut reply).await.unwrap();
            let (f, _) = frame::parse(&reply, 125).unwrap().unwrap();
            assert_eq!(f.opcode, OpCode::Close);
            assert_eq!(&f.payload[..2], &code.to_be_bytes(), "{frames:?}");
        }
    }

    #[tokio::test]
    async fn message_cap_applies_to_reassembly() {
        let (a, mut b) = duplex(1 << 16);
        let mut out = Vec::new();
        frame::encode(false, OpCode::Binary, &[0; 60], Some([0; 4]), &mut out);
        frame::encode(true, OpCode::Continuation, &[0; 60], Some([0; 4]), &mut out);
        b.write_all(&out).await.unwrap();
        let (mut r, _w) = WebSocket::server(a).with_max_message(100).split();
        assert!(matches!(
            r.recv().await,
            Err(WsError::MessageTooLarge { max: 100 })
        ));
    }

    #[tokio::test]
    async fn eof_between_frames_is_end_and_inside_a_frame_is_error() {
        let (a, b) = duplex(1024);
        drop(b);
        let (mut r, _w) = WebSocket::client(a).split();
        assert_eq!(r.recv().await.unwrap(), None);
        let (a, mut b) = duplex(1024);
        b.write_all(&[0x82, 0x05, 1, 2]).await.unwrap();
        drop(b);
        let (mut r, _w) = WebSocket::client(a).split();
        assert!(matches!(r.recv().await, Err(WsError::UnexpectedEof)));
    }

    #[tokio::test]
    async fn buffered_bytes_are_read_first() {
        let (a, mut b) = duplex(1024);
        let mut first = Vec::new();
        frame::encode(true, OpCode::Binary, b"early", None, &mut first);
        let mut second = Vec::new();
        frame::encode(true, OpCode::Binary, b"late", None, &mut second);
        // Half of the second frame was read with the handshake too.
        first.extend_from_slice(&second[..3]);
        b.write_all(&second[3..]).await.unwrap();
        let (mut r, _w) = WebSocket::from_parts(a, Role::Client, first).split();
        assert_eq!(
            r.recv().await.unwrap(),
            Some(Message::Binary(b"early".to_vec()))
        );
        assert_eq!(
            r.recv().await.unwrap(),
            Some(Message::Binary(b"late".to_vec()))
        );
    }
}
