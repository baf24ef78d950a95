//! The port-forward client.
//!
//! SPDY (`portforward.k8s.io`, also tunnelled through WebSocket as
//! `SPDY/3.1+portforward.k8s.io`): one session, and per forwarded
//! connection an error stream and a data stream sharing `port` and
//! `requestid` headers. WebSocket (`v4.channel.k8s.io` style): one
//! connection per set of ports, channel `2i` carrying port i's data and
//! `2i+1` its errors, each starting with the port number.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{ClientError, Target};
use crate::spdy::{handshake as spdy_hs, Headers, Session, SpdyStream};
use crate::websocket::channel::{self, Framing};
use crate::websocket::tunnel::WsByteStream;
use crate::websocket::{handshake as ws_hs, Message, WsWriter};

/// The SPDY port-forward protocol.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// Port-forward protocols offered over plain WebSocket.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// A port-forward session over SPDY (direct or tunnelled through WebSocket).
pub struct PortForwarder {
    session: Session,
    next_id: AtomicU32,
}

impl PortForwarder {
    /// Upgrades to SPDY at `url` (from CRI PortForward).
    pub async fn connect_spdy(url: &str) -> Result<PortForwarder, ClientError> {
        let t = Target::parse(url)?;
        let tcp = t.connect().await?;
        let (session, _incoming, proto) =
            spdy_hs::client_upgrade(tcp, "POST", &t.host, &t.path_and_query, &[PROTOCOL])
                .await
                .map_err(ClientError::SpdyHandshake)?;
        if proto != PROTOCOL {
            session.close().await;
            return Err(ClientError::UnexpectedProtocol(proto));
        }
        Ok(PortForwarder {
            session,
            next_id: AtomicU32::new(0),
        })
    }

    /// Upgrades to WebSocket at `url` asking for `SPDY/3.1+portforward.k8s.io`
    /// and runs SPDY inside it (`crictl port-forward --transport websocket`).
    pub async fn connect_tunnel(url: &str) -> Result<PortForwarder, ClientError> {
        let t = Target::parse(url)?;
        let tcp = t.connect().await?;
        let (ws, proto) = ws_hs::client_upgrade(
            tcp,
            &t.host,
            &t.path_and_query,
            &[channel::PORT_FORWARD_TUNNEL],
        )
        .await
        .map_err(ClientError::WsHandshake)?;
        if proto != channel::PORT_FORWARD_TUNNEL {
            return Err(ClientError::UnexpectedProtocol(proto));
        }
        let (r, w) = ws.split();
        let (session, _incoming) = Session::client(WsByteStream::new(r, w));
        Ok(PortForwarder {
            session,
            next_id: AtomicU32::new(0),
        })
    }

    /// Opens one forwarded connection to `port` inside the pod.
    pub async fn open(&self, port: u16) -> Result<PortStream, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let headers = |kind: &str| -> Headers {
            vec![
                ("streamtype".to_owned(), kind.to_owned()),
                ("port".to_owned(), port.to_string()),
                ("requestid".to_owned(), id.to_string()),
            ]
        };
        let error = self
            .session
            .open_stream(headers("error"))
            .await
            .map_err(ClientError::Spdy)?;
        let (mut er, mut ew) = error.into_split();
        // We never write errors: half-close at once, as client-go does.
        let _ = ew.shutdown().await;
        let data = self
            .session
            .open_stream(headers("data"))
            .await
            .map_err(ClientError::Spdy)?;
        let error = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _keep = ew;
            er.read_to_end(&mut buf).await.map(|_| buf)
        });
        Ok(PortStream { port, data, error })
    }

    /// Ends the session.
    pub async fn close(&self) {
        self.session.close().await;
    }
}

/// One forwarded connection: read and write it like a socket; shut it down
/// to half-close towards the pod.
pub struct PortStream {
    port: u16,
    data: SpdyStream,
    error: JoinHandle<std::io::Result<Vec<u8>>>,
}

impl PortStream {
    /// The remote port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the error stream to end: `Ok` if the server reported no
    /// error for this connection.
    pub async fn finish(self) -> Result<(), ClientError> {
        self.data.reset();
        let port = self.port;
        let msg = match self.error.await {
            Ok(Ok(buf)) => String::from_utf8_lossy(&buf).into_owned(),
            Ok(Err(e)) => format!("reading the error stream: {e}"),
            Err(e) => format!("error stream task: {e}"),
        };
        if msg.is_empty() {
            Ok(())
        } else {
            Err(ClientError::PortForward { port, message: msg })
        }
    }
}

impl AsyncRead for PortStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.data).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.data).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.data).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.data).poll_shutdown(cx)
    }
}

/// A port-forward over plain WebSocket channels: one local stream per port.
pub struct WsPortForward {
    /// One stream per requested port, in request order.
    pub streams: Vec<(u16, DuplexStream)>,
    /// What each port's error channel carried (empty: no error), once the
    /// connection has ended.
    pub errors: oneshot::Receiver<Vec<(u16, String)>>,
    writer: WsWriter,
    tasks: Vec<JoinHandle<()>>,
}

/// Bytes buffered per direction between a local stream and the connection.
const PIPE: usize = 64 << 10;

impl WsPortForward {
    /// Connects to `url` and forwards `ports` (sent as `port` query
    /// parameters, the order fixing the channel numbers).
    pub async fn connect(url: &str, ports: &[u16]) -> Result<WsPortForward, ClientError> {
        let mut t = Target::parse(url)?;
        // The kubelet-style server reads the ports from `port` parameters.
        for (i, p) in ports.iter().enumerate() {
            let sep = if i == 0 && !t.path_and_query.contains('?') {
                '?'
            } else {
                '&'
            };
            t.path_and_query.push_str(&format!("{sep}port={p}"));
        }
        let tcp = t.connect().await?;
        let (ws, proto) =
            ws_hs::client_upgrade(tcp, &t.host, &t.path_and_query, WEBSOCKET_PROTOCOLS)
                .await
                .map_err(ClientError::WsHandshake)?;
        let framing = channel::framing_for(&proto);
        let (mut reader, writer) = ws.split();
        let mut streams = Vec::new();
        let mut sinks = Vec::new();
        let mut tasks = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let ch = channel::port_data_channel(i).ok_or(ClientError::PortForward {
                port,
                message: "too many ports for one connection".into(),
            })?;
            let (user, ours) = tokio::io::duplex(PIPE);
            let (mut from_user, to_user) = tokio::io::split(ours);
            let mut w = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 << 10];
                while let Ok(n) = from_user.read(&mut buf).await {
                    if n == 0
                        || w.send(channel::encode(framing, ch, &buf[..n]))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            }));
            streams.push((port, user));
            sinks.push(PortSink {
                port,
                data: Some(to_user),
                seen_data: false,
                seen_err: false,
                error: Vec::new(),
            });
        }
        let (tx, errors) = oneshot::channel();
        tasks.push(tokio::spawn(async move {
            demux(&mut reader, framing, &mut sinks).await;
            let errs = sinks
                .into_iter()
                .map(|s| (s.port, String::from_utf8_lossy(&s.error).into_owned()))
                .collect();
            let _ = tx.send(errs);
        }));
        Ok(WsPortForward {
            streams,
            errors,
            writer,
            tasks,
        })
    }

    /// Closes the connection (normal closure) and waits briefly for the
    /// server's answer, so that [`WsPortForward::errors`] completes.
    pub async fn close(mut self) {
        let _ = self.writer.close(1000, "").await;
        if let Some(demux) = self.tasks.pop() {
            let abort = demux.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), demux)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

struct PortSink {
    port: u16,
    data: Option<tokio::io::WriteHalf<DuplexStream>>,
    seen_data: bool,
    seen_err: bool,
    error: Vec<u8>,
}

/// Routes channel messages to the port streams until the connection ends.
async fn demux(reader: &mut crate::websocket::WsReader, framing: Framing, sinks: &mut [PortSink]) {
    loop {
        let m = match reader.recv().await {
            Ok(Some(Message::Close(_))) | Ok(None) => break,
            Ok(Some(m)) => m,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward websocket ended");
                break;
            }
        };
        let Ok((ch, mut data)) = channel::decode(framing, &m) else {
            continue;
        };
        let Some(sink) = sinks.get_mut(usize::from(ch / 2)) else {
            continue;
        };
        let is_error = ch % 2 == 1;
        let seen = if is_error {
            &mut sink.seen_err
        } else {
            &mut sink.seen_data
        };
        if !*seen {
            // The server's first message on each channel names the port.
            *seen = true;
            if data.len() < 2 || data[..2] != channel::port_prefix(sink.port) {
                sink.error
                    .extend_from_slice(b"server did not start the channel with its port");
                sink.data = None;
                continue;
            }
            data.drain(..2);
        }
        if is_error {
            sink.error.extend_from_slice(&data);
        } else if let Some(d) = sink.data.as_mut() {
            if !data.is_empty() && d.write_all(&data).await.is_err() {
                sink.data = None;
            }
        }
    }
    for s in sinks.iter_mut() {
        if let Some(mut d) = s.data.take() {
            let _ = d.shutdown().await;
        }
    }
}

#[cfg(test)]
#[path = "portforward_tests.rs"]
mod tests;
