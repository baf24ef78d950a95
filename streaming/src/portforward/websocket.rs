//! The kubelet's native WebSocket port-forward: one connection per port
//! listed in the `port` query parameters; port `i` uses channel `2i` for
//! data and `2i+1` for errors; the first message the server sends on each
//! channel is the port number (two bytes, little-endian).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, Mutex};

use super::{ErrorInner, ErrorReporter, ForwardRequest, Forwarder, PortForwardError};
use crate::websocket::channel::{self, Framing};
use crate::websocket::{Message, WebSocket, WsWriter};

/// Bytes buffered between the backend and the socket per direction.
const PIPE_BUFFER: usize = 64 * 1024;
/// Largest payload of one outgoing message.
const CHUNK: usize = 32 * 1024;

/// Sends on one channel of a shared connection.
pub(super) struct ChannelSender {
    writer: Arc<Mutex<WsWriter>>,
    framing: Framing,
    channel: u8,
}

impl ChannelSender {
    pub(super) async fn send(&self, data: &[u8]) {
        let mut w = self.writer.lock().await;
        if let Err(err) = w
            .send(channel::encode(self.framing, self.channel, data))
            .await
        {
            tracing::debug!(%err, channel = self.channel, "websocket send failed");
        }
    }
}

/// Parses the `port` query parameters of the request.
pub fn ports_from_query(query: &str) -> Result<Vec<u16>, PortForwardError> {
    let ports = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port")
        .map(|(_, v)| super::parse_port(v))
        .collect::<Result<Vec<_>, _>>()?;
    if ports.is_empty() {
        return Err(PortForwardError::NoPorts);
    }
    Ok(ports)
}

/// Serves the native WebSocket port-forward for `ports` on `io` (the 101
/// with `protocol` was sent). Channel numbers fit a byte: at most 127 ports.
pub async fn serve<IO>(
    io: IO,
    protocol: &str,
    ports: Vec<u16>,
) -> Result<Forwarder, PortForwardError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if ports.is_empty() || ports.len() > 127 {
        return Err(PortForwardError::NoPorts);
    }
    let framing = channel::framing_for(protocol);
    let (mut reader, writer) = WebSocket::server(io).split();
    let writer = Arc::new(Mutex::new(writer));
    let (tx, rx) = mpsc::channel(ports.len());
    let mut inbound: Vec<Option<tokio::io::WriteHalf<DuplexStream>>> = Vec::new();
    let mut pumps = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data_ch = u8::try_from(2 * i).unwrap_or(u8::MAX);
        let sender = |channel| ChannelSender {
            writer: writer.clone(),
            framing,
            channel,
        };
        let (data_out, err_out) = (sender(data_ch), sender(data_ch + 1));
        data_out.send(&port.to_le_bytes()).await;
        err_out.send(&port.to_le_bytes()).await;
        let (backend, socket_side) = tokio::io::duplex(PIPE_BUFFER);
        let (from_backend, to_backend) = tokio::io::split(socket_side);
        pumps.push(tokio::spawn(pump_out(from_backend, data_out)));
        inbound.push(Some(to_backend));
        let req = ForwardRequest {
            port: *port,
            data: Box::pin(backend),
            error: ErrorReporter(ErrorInner::WebSocket(err_out)),
        };
        // Capacity is ports.len(): never blocks.
        let _ = tx.send(req).await;
    }
    let closer = writer.clone();
    let task = tokio::spawn(async move {
        // Held until the connection ends: `Forwarder::next` returns None
        // only then (dropping the Forwarder aborts this task).
        let _tx = tx;
        let route = async {
            loop {
                let msg = match reader.recv().await {
                    Ok(Some(Message::Close(_))) | Ok(None) | Err(_) => return,
                    Ok(Some(m)) => m,
                };
                let Ok((ch, data)) = channel::decode(framing, &msg) else {
                    continue;
                };
                // Only data channels carry client bytes.
                if ch % 2 != 0 {
                    continue;
                }
                let slot = inbound.get_mut(usize::from(ch / 2));
                if let Some(Some(sink)) = slot {
                    if sink.write_all(&data).await.is_err() {
                        if let Some(s) = inbound.get_mut(usize::from(ch / 2)) {
                            *s = None;
                        }
                    }
                }
            }
        };
        let all_done = async {
            for p in pumps {
                let _ = p.await;
            }
        };
        // The connection ends when the client leaves or every forwarded
        // connection's pod side has closed.
        tokio::select! {
            _ = route => {}
            _ = all_done => {}
        }
        let _ = closer.lock().await.close(1000, "").await;
    });
    Ok(Forwarder { rx, task })
}

/// Sends what the backend writes as data-channel messages.
async fn pump_out(mut from: tokio::io::ReadHalf<DuplexStream>, to: ChannelSender) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => to.send(&buf[..n]).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ports() {
        assert_eq!(
            ports_from_query("port=80&x=1&port=8080").ok(),
            Some(vec![80, 8080])
        );
        assert!(matches!(
            ports_from_query("x=1"),
            Err(PortForwardError::NoPorts)
        ));
        assert!(ports_from_query("port=abc").is_err());
    }
}
