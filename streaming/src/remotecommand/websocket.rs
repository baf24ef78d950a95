//! Remote command over WebSocket: one connection, channels by first byte
//! (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize), binary or base64
//! framing by protocol; v5 adds `[255, channel]` to half-close a channel.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    resize, Disconnected, RemoteCommandError, ReporterInner, ServerStreams, StatusReporter,
    StreamOptions, Version,
};
use crate::websocket::channel::{self, Framing};
use crate::websocket::{Message, WebSocket, WsWriter};

/// Channel numbers.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` half-closes a channel.
const CLOSE: u8 = 255;
/// Bytes buffered between the backend and the socket per direction.
const PIPE_BUFFER: usize = 64 * 1024;
/// Largest payload of one outgoing message.
const CHUNK: usize = 32 * 1024;
/// Normal closure.
const CLOSE_NORMAL: u16 = 1000;

/// Output pumps and the writer, kept until the result is sent.
pub(super) struct WsReporter {
    writer: WsWriter,
    framing: Framing,
    pumps: Vec<JoinHandle<()>>,
    reader: JoinHandle<()>,
}

impl Drop for WsReporter {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl WsReporter {
    pub(super) async fn finish(mut self, payload: Vec<u8>) -> Result<(), RemoteCommandError> {
        // Everything the backend wrote goes out before the status.
        for p in self.pumps.drain(..) {
            let _ = p.await;
        }
        if !payload.is_empty() {
            self.writer
                .send(channel::encode(self.framing, ERROR, &payload))
                .await?;
        }
        self.writer.close(CLOSE_NORMAL, "").await?;
        // Give the client a moment to answer the close before dropping.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.reader).await;
        Ok(())
    }
}

/// Serves a remote-command session on the upgraded connection `io`
/// (the 101 with `protocol` was already sent).
pub async fn serve<IO>(
    io: IO,
    protocol: &str,
    opts: StreamOptions,
) -> Result<ServerStreams, RemoteCommandError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let version = Version::of(protocol)?;
    let framing = channel::framing_for(protocol);
    let (mut reader, mut writer) = WebSocket::server(io).split();

    // The first (empty) message on the lowest writable channel tells the
    // client the streams are ready, as the kubelet does.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr && !opts.tty {
        STDERR
    } else {
        ERROR
    };
    writer.send(channel::encode(framing, first, &[])).await?;

    let mut pumps = Vec::new();
    let mut output = |ch: u8, wanted: bool| -> Option<super::OutputWriter> {
        if !wanted {
            return None;
        }
        let (backend, socket_side) = tokio::io::duplex(PIPE_BUFFER);
        pumps.push(tokio::spawn(pump_out(
            socket_side,
            writer.clone(),
            framing,
            ch,
        )));
        Some(Box::pin(backend))
    };
    let stdout = output(STDOUT, opts.stdout);
    let stderr = output(STDERR, opts.stderr && !opts.tty);

    let (stdin_backend, mut stdin_sink) = if opts.stdin {
        let (a, b) = tokio::io::duplex(PIPE_BUFFER);
        (Some(Box::pin(a) as super::StdinReader), Some(b))
    } else {
        (None, None)
    };
    let (resize_tx, resize_rx) = if opts.tty && version.has_resize() {
        let (tx, rx) = mpsc::channel(8);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (gone_tx, disconnected) = Disconnected::channel();
    let reader_task = tokio::spawn(async move {
        let mut sizes = resize::ResizeDecoder::default();
        loop {
            let msg = match reader.recv().await {
                Ok(Some(Message::Close(_))) | Ok(None) => break,
                Ok(Some(m)) => m,
                Err(err) => {
                    tracing::debug!(%err, "websocket receive");
                    break;
                }
            };
            if version >= Version::V5 {
                if let Message::Binary(b) = &msg {
                    if b.first() == Some(&CLOSE) {
                        if b.get(1) == Some(&STDIN) {
                            // EOF for the backend once buffered data is read.
                            stdin_sink = None;
                        }
                        continue;
                    }
                }
            }
            let (ch, data) = match channel::decode(framing, &msg) {
                Ok(d) => d,
                Err(err) => {
                    tracing::debug!(%err, "dropping a malformed channel message");
                    continue;
                }
            };
            match ch {
                STDIN => {
                    if let Some(s) = stdin_sink.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin_sink = None;
                        }
                    }
                }
                RESIZE => {
                    if let Some(tx) = &resize_tx {
                        match sizes.push(&data) {
                            Ok(v) => {
                                for size in v {
                                    let _ = tx.send(size).await;
                                }
                            }
                            Err(err) => tracing::debug!(%err, "bad resize message"),
                        }
                    }
                }
                _ => {}
            }
        }
        drop(stdin_sink);
        let _ = gone_tx.send(true);
    });
    Ok(ServerStreams {
        protocol: protocol.to_string(),
        stdin: stdin_backend,
        stdout,
        stderr,
        resize: resize_rx,
        disconnected,
        status: StatusReporter {
            version,
            inner: ReporterInner::WebSocket(WsReporter {
                writer,
                framing,
                pumps,
                reader: reader_task,
            }),
        },
    })
}

/// Sends what the backend writes to `from` as messages on channel `ch`.
async fn pump_out(mut from: DuplexStream, mut writer: WsWriter, framing: Framing, ch: u8) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Err(err) = writer.send(channel::encode(framing, ch, &buf[..n])).await {
            tracing::debug!(%err, channel = ch, "websocket send failed");
            // Keep reading so the backend sees a closed pipe, not a stall.
            drop(from);
            return;
        }
    }
}
