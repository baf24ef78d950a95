//! A byte stream carried in binary WebSocket messages.
//!
//! This is how client-go tunnels SPDY through WebSocket
//! (`SPDY/3.1+portforward.k8s.io`): every write is one binary message with
//! no channel byte, and the reader concatenates message payloads. A normal
//! close frame is end of stream; a text message is an error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::close_code;
use super::{Message, WsError, WsReader, WsWriter};

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum ReadState {
    Idle(WsReader),
    Receiving(BoxFut<(WsReader, Result<Option<Message>, WsError>)>),
    Eof,
    /// Only while a state transition is in progress.
    Gone,
}

/// AsyncRead + AsyncWrite over binary messages.
pub struct WsByteStream {
    read: ReadState,
    /// Payload of the current message not yet handed out.
    pending: Vec<u8>,
    pending_pos: usize,
    writer: WsWriter,
    /// A send still in flight; its error surfaces on the next write or flush.
    sending: Option<BoxFut<Result<(), WsError>>>,
    closed: bool,
}

impl WsByteStream {
    /// Wraps both halves of a connection.
    pub fn new(reader: WsReader, writer: WsWriter) -> Self {
        WsByteStream {
            read: ReadState::Idle(reader),
            pending: Vec::new(),
            pending_pos: 0,
            writer,
            sending: None,
            closed: false,
        }
    }

    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(fut) = self.sending.as_mut() {
            let r = ready!(fut.as_mut().poll(cx));
            self.sending = None;
            r?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for WsByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_pos < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_pos);
                buf.put_slice(&this.pending[this.pending_pos..this.pending_pos + n]);
                this.pending_pos += n;
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.read, ReadState::Gone) {
                ReadState::Idle(mut r) => {
                    this.read = ReadState::Receiving(Box::pin(async move {
                        let m = r.recv().await;
                        (r, m)
                    }));
                }
                ReadState::Receiving(mut fut) => {
                    let (r, m) = match fut.as_mut().poll(cx) {
                        Poll::Pending => {
                            this.read = ReadState::Receiving(fut);
                            return Poll::Pending;
                        }
                        Poll::Ready(v) => v,
                    };
                    match m {
                        Ok(Some(Message::Binary(b))) => {
                            this.pending = b;
                            this.pending_pos = 0;
                            this.read = ReadState::Idle(r);
                        }
                        Ok(Some(Message::Text(_))) => {
                            this.read = ReadState::Eof;
                            return Poll::Ready(Err(WsError::TextInTunnel.into()));
                        }
                        Ok(Some(Message::Close(c))) => {
                            this.read = ReadState::Eof;
                            if let Some((code, reason)) =
                                c.filter(|(code, _)| *code != close_code::NORMAL)
                            {
                                let msg =
                                    format!("websocket tunnel closed with code {code}: {reason}");
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::ConnectionAborted,
                                    msg,
                                )));
                            }
                        }
                        Ok(None) => this.read = ReadState::Eof,
                        Err(e) => {
                            this.read = ReadState::Eof;
                            return Poll::Ready(Err(e.into()));
                        }
                    }
                }
                ReadState::Eof | ReadState::Gone => {
                    this.read = ReadState::Eof;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for WsByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_sending(cx))?;
        if this.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                WsError::Closed,
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut w = this.writer.clone();
        let owned = data.to_vec();
        let mut fut: BoxFut<Result<(), WsError>> =
            Box::pin(async move { w.send_binary(&owned).await });
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => r?,
            // The bytes are owned by the send now; the next write or flush
            // waits for it, which keeps messages in order.
            Poll::Pending => this.sending = Some(fut),
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_sending(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_sending(cx))?;
        if !this.closed {
            this.closed = true;
            let mut w = this.writer.clone();
            this.sending = Some(Box::pin(
                async move { w.close(close_code::NORMAL, "").await },
            ));
            ready!(this.poll_sending(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::WebSocket;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_in_order_and_shutdown_is_eof() {
        let (a, b) = duplex(1 << 12);
        let (sr, sw) = WebSocket::server(a).split();
        let (cr, cw) = WebSocket::client(b).split();
        let mut server = WsByteStream::new(sr, sw);
        let mut client = WsByteStream::new(cr, cw);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(7000) {
                client.write_all(chunk).await.unwrap();
            }
            client.shutdown().await.unwrap();
            // The server's close answer ends the client's read side too.
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expect);
        assert!(writer.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn text_message_is_an_error() {
        let (a, b) = duplex(1 << 12);
        let (sr, sw) = WebSocket::server(a).split();
        let (_cr, mut cw) = WebSocket::client(b).split();
        cw.send(Message::Text("x".into())).await.unwrap();
        let mut s = WsByteStream::new(sr, sw);
        let mut buf = [0u8; 4];
        assert_eq!(
            s.read(&mut buf).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
