//! The remote-command client (exec and attach), over SPDY or WebSocket.
//!
//! SPDY: one stream per role, opened in client-go's order (error, stdin,
//! stdout, stderr, resize) with a `streamtype` header; stdin's end is a FIN.
//! WebSocket: channel messages on one connection; stdin's end is the v5
//! close signal (v4 cannot say it). Either way the session ends when the
//! server closes it, and the error stream's payload says how the command
//! ended: a `metav1.Status` from v4 on, free text before.

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ClientError, Target, Transport};
use crate::remotecommand::{TerminalSize, Version};
use crate::spdy::{handshake as spdy_hs, Headers, Session};
use crate::websocket::channel::{self, Framing};
use crate::websocket::{handshake as ws_hs, Message, WsWriter};

/// Protocols offered over SPDY, most preferred first (client-go's list).
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// Protocols offered over WebSocket, most preferred first.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Largest stdin chunk sent in one message.
const CHUNK: usize = 32 << 10;

/// The local ends of a remote command's streams.
#[derive(Default)]
pub struct ExecIo {
    /// Sent to the command's stdin; its EOF closes the remote stdin.
    pub stdin: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Receives the command's stdout (the terminal, with `tty`).
    pub stdout: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Receives the command's stderr (unused with `tty`).
    pub stderr: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// The session has a terminal.
    pub tty: bool,
    /// Terminal sizes to send (tty sessions, v3 and later).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Protocols to offer instead of the defaults (most preferred first).
    pub protocols: Option<Vec<String>>,
}

/// How the remote command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus(pub i32);

impl ExitStatus {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self.0 == 0
    }
}

/// Runs a remote-command session at `url` (from CRI Exec or Attach).
pub async fn exec(url: &str, transport: Transport, io: ExecIo) -> Result<ExitStatus, ClientError> {
    let target = Target::parse(url)?;
    let tcp = target.connect().await?;
    let offered: Vec<String> = match (&io.protocols, transport) {
        (Some(p), _) => p.clone(),
        (None, Transport::Spdy) => SPDY_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
        (None, Transport::WebSocket) => WEBSOCKET_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
    };
    let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
    match transport {
        Transport::Spdy => {
            let (session, _incoming, proto) = spdy_hs::client_upgrade(
                tcp,
                "POST",
                &target.host,
                &target.path_and_query,
                &offered,
            )
            .await
            .map_err(ClientError::SpdyHandshake)?;
            let r = exec_spdy(&session, &proto, io).await;
            session.close().await;
            r
        }
        Transport::WebSocket => {
            let (ws, proto) =
                ws_hs::client_upgrade(tcp, &target.host, &target.path_and_query, &offered)
                    .await
                    .map_err(ClientError::WsHandshake)?;
            let (reader, writer) = ws.split();
            exec_ws(reader, writer, &proto, io).await
        }
    }
}

fn version_of(proto: &str) -> Result<Version, ClientError> {
    Version::of(proto).map_err(|_| ClientError::UnexpectedProtocol(proto.to_owned()))
}

/// Drives a session on an upgraded SPDY connection.
async fn exec_spdy(session: &Session, proto: &str, io: ExecIo) -> Result<ExitStatus, ClientError> {
    let version = version_of(proto)?;
    let open = |kind: &'static str| {
        let headers: Headers = vec![("streamtype".to_owned(), kind.to_owned())];
        async move {
            session
                .open_stream(headers)
                .await
                .map_err(ClientError::Spdy)
        }
    };
    let error = open("error").await?;
    let stdin = match io.stdin {
        Some(_) => Some(open("stdin").await?),
        None => None,
    };
    let stdout = match io.stdout {
        Some(_) => Some(open("stdout").await?),
        None => None,
    };
    let stderr = match io.stderr {
        Some(_) if !io.tty => Some(open("stderr").await?),
        _ => None,
    };
    let resize = if io.tty && version.has_resize() {
        Some(open("resize").await?)
    } else {
        None
    };

    let mut background: Vec<JoinHandle<()>> = Vec::new();
    if let (Some(mut src), Some(s)) = (io.stdin, stdin) {
        let (_r, mut w) = s.into_split();
        background.push(tokio::spawn(async move {
            // The FIN after stdin's EOF is how the command learns its end.
            if tokio::io::copy(&mut src, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        }));
    }
    if let (Some(mut sizes), Some(s)) = (io.resize, resize) {
        let (_r, mut w) = s.into_split();
        background.push(tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if w.write_all(&resize_json(size)).await.is_err() {
                    break;
                }
            }
        }));
    }
    let out = copy_out("stdout", stdout, io.stdout);
    let err = copy_out("stderr", stderr, io.stderr);
    let status = async {
        let mut buf = Vec::new();
        let (mut r, _w) = error.into_split();
        match r.read_to_end(&mut buf).await {
            Ok(_) => Ok(buf),
            // Go servers (spdystream) reset the streams still open on our
            // side when they close the connection, after their FIN: that
            // reset is the end. But from v4 on a finished command always
            // leaves a status, so a reset before any is a broken session.
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionReset
                    && !(buf.is_empty() && version.has_status()) =>
            {
                tracing::debug!("error stream reset after its status; taken as its end");
                Ok(buf)
            }
            Err(source) => Err(ClientError::Io {
                what: "error",
                source,
            }),
        }
    };
    let (out, err, status) = tokio::join!(out, err, status);
    for t in background {
        t.abort();
    }
    let status = status?;
    out?;
    err?;
    decode_status(version, &status)
}

async fn copy_out(
    what: &'static str,
    stream: Option<crate::spdy::SpdyStream>,
    sink: Option<Pin<Box<dyn AsyncWrite + Send>>>,
) -> Result<(), ClientError> {
    let (Some(s), Some(mut sink)) = (stream, sink) else {
        return Ok(());
    };
    let (mut r, _w) = s.into_split();
    let io = |source| ClientError::Io { what, source };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                tracing::debug!(
                    stream = what,
                    "stream reset after its data; taken as its end"
                );
                break;
            }
            Err(e) => return Err(io(e)),
        };
        sink.write_all(&buf[..n]).await.map_err(io)?;
    }
    sink.flush().await.map_err(io)
}

/// The resize stream's encoding of one size (as client-go's JSON encoder).
pub fn resize_json(size: TerminalSize) -> Vec<u8> {
    format!("{{\"Width\":{},\"Height\":{}}}\n", size.width, size.height).into_bytes()
}

/// Drives a session on an upgraded WebSocket connection.
async fn exec_ws(
    mut reader: crate::websocket::WsReader,
    writer: WsWriter,
    proto: &str,
    io: ExecIo,
) -> Result<ExitStatus, ClientError> {
    let version = version_of(proto)?;
    let framing = channel::framing_for(proto);
    let close_signal = channel::supports_close_signal(proto);
    let mut background: Vec<JoinHandle<()>> = Vec::new();
    if let Some(mut src) = io.stdin {
        let mut w = writer.clone();
        background.push(tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match src.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.send(channel::encode(framing, channel::STDIN, &buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            if close_signal {
                let _ = w.send(channel::close_signal(channel::STDIN)).await;
            }
        }));
    }
    if let (Some(mut sizes), true) = (io.resize, io.tty) {
        let mut w = writer.clone();
        background.push(tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if w.send(channel::encode(
                    framing,
                    channel::RESIZE,
                    &resize_json(size),
                ))
                .await
                .is_err()
                {
                    break;
                }
            }
        }));
    }
    let result = pump_ws(&mut reader, framing, io.stdout, io.stderr).await;
    for t in background {
        t.abort();
    }
    let status = result?;
    decode_status(version, &status)
}

/// Copies stdout/stderr channel data out until the server closes; returns
/// the error channel's payload.
async fn pump_ws(
    reader: &mut crate::websocket::WsReader,
    framing: Framing,
    mut stdout: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    mut stderr: Option<Pin<Box<dyn AsyncWrite + Send>>>,
) -> Result<Vec<u8>, ClientError> {
    let mut status = Vec::new();
    loop {
        let m = match reader.recv().await.map_err(ClientError::Ws)? {
            None | Some(Message::Close(_)) => break,
            Some(m) => m,
        };
        let (ch, data) = channel::decode(framing, &m).map_err(ClientError::Ws)?;
        let (sink, what) = match ch {
            channel::STDOUT => (stdout.as_mut(), "stdout"),
            channel::STDERR => (stderr.as_mut(), "stderr"),
            channel::ERROR => {
                status.extend_from_slice(&data);
                continue;
            }
            _ => continue,
        };
        if let (Some(s), false) = (sink, data.is_empty()) {
            s.write_all(&data)
                .await
                .map_err(|source| ClientError::Io { what, source })?;
        }
    }
    for (s, what) in [(stdout.as_mut(), "stdout"), (stderr.as_mut(), "stderr")] {
        if let Some(s) = s {
            s.flush()
                .await
                .map_err(|source| ClientError::Io { what, source })?;
        }
    }
    Ok(status)
}

/// How the command ended, from the error stream's payload.
pub fn decode_status(version: Version, payload: &[u8]) -> Result<ExitStatus, ClientError> {
    if payload.is_empty() {
        return Ok(ExitStatus(0));
    }
    let text = String::from_utf8_lossy(payload).into_owned();
    if !version.has_status() {
        return Err(ClientError::Remote(text));
    }
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ClientError::BadStatus {
            payload: text.clone(),
            source: Some(e),
        })?;
    let bad = || ClientError::BadStatus {
        payload: text.clone(),
        source: None,
    };
    match v.get("status").and_then(|s| s.as_str()) {
        Some("Success") => Ok(ExitStatus(0)),
        Some("Failure") if v.get("reason").and_then(|r| r.as_str()) == Some("NonZeroExitCode") => {
            let causes = v
                .pointer("/details/causes")
                .and_then(|c| c.as_array())
                .ok_or_else(bad)?;
            let code = causes
                .iter()
                .find(|c| c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))
                .and_then(|c| c.get("message")?.as_str()?.parse::<i32>().ok())
                .ok_or_else(bad)?;
            Ok(ExitStatus(code))
        }
        Some("Failure") => {
            let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or(&text);
            Err(ClientError::Remote(msg.to_owned()))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
pub(crate) mod tests;
