//! The remote-command server against in-memory clients on both transports.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::spdy::Session;
use crate::websocket::{channel, Message, WebSocket};

async fn read_all<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}

/// A backend that echoes stdin to stdout, writes "e" to stderr and exits 7.
async fn echo_backend(s: ServerStreams) {
    let ServerStreams {
        stdin,
        stdout,
        stderr,
        status,
        ..
    } = s;
    let (mut stdin, mut stdout, mut stderr) = (stdin.unwrap(), stdout.unwrap(), stderr.unwrap());
    tokio::io::copy(&mut stdin, &mut stdout).await.unwrap();
    stdout.shutdown().await.unwrap();
    stderr.write_all(b"e").await.unwrap();
    stderr.shutdown().await.unwrap();
    status.finish(CommandResult::ExitCode(7)).await.unwrap();
}

const ALL: StreamOptions = StreamOptions {
    stdin: true,
    stdout: true,
    stderr: true,
    tty: false,
};

#[tokio::test]
async fn spdy_streams_by_type_and_status_with_exit_code() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let s = spdy::serve(a, PROTOCOL_V4, ALL, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(s.protocol, PROTOCOL_V4);
        assert!(s.resize.is_none());
        echo_backend(s).await;
    });
    let (client, _incoming) = Session::client(b);
    let open = |t: &str| {
        let client = client.clone();
        let h = vec![(STREAM_TYPE_HEADER.to_string(), t.to_string())];
        async move { client.open_stream(h).await.unwrap() }
    };
    // An unknown stream type is refused, the rest in client-go's order.
    let error = open("error").await;
    let mut stdin = open("stdin").await;
    let stdout = open("stdout").await;
    let stderr = open("stderr").await;
    stdin.write_all(b"ping").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(read_all(stdout).await, b"ping");
    assert_eq!(read_all(stderr).await, b"e");
    let status: serde_json::Value = serde_json::from_slice(&read_all(error).await).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "7");
    server.await.unwrap();
}

#[tokio::test]
async fn spdy_missing_streams_time_out() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (client, _incoming) = Session::client(b);
    let server =
        tokio::spawn(
            async move { spdy::serve(a, PROTOCOL_V2, ALL, Duration::from_millis(300)).await },
        );
    let _e = client
        .open_stream(vec![(STREAM_TYPE_HEADER.into(), "error".into())])
        .await
        .unwrap();
    match server.await.unwrap() {
        Err(RemoteCommandError::StreamTimeout { have, want }) => {
            assert_eq!(have, vec!["error".to_string()]);
            assert_eq!(want, vec!["error", "stdin", "stdout", "stderr"]);
        }
        other => panic!("{:?}", other.map(|s| s.protocol)),
    }
}

#[tokio::test]
async fn spdy_tty_resizes_and_disconnect() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let opts = StreamOptions {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let server = tokio::spawn(async move {
        spdy::serve(a, PROTOCOL_V3, opts, Duration::from_secs(5))
            .await
            .unwrap()
    });
    let (client, _incoming) = Session::client(b);
    let mut ids = Vec::new();
    for t in ["error", "stdout", "resize"] {
        ids.push(
            client
                .open_stream(vec![(STREAM_TYPE_HEADER.into(), t.into())])
                .await
                .unwrap(),
        );
    }
    let mut s = server.await.unwrap();
    ids[2]
        .write_all(b"{\"Width\":10,\"Height\":20}\n{\"Width\":11,\"Height\":21}\n")
        .await
        .unwrap();
    let mut rx = s.resize.take().unwrap();
    assert_eq!(
        rx.recv().await,
        Some(TerminalSize {
            width: 10,
            height: 20
        })
    );
    assert_eq!(rx.recv().await.map(|t| t.width), Some(11));
    assert!(!s.disconnected.is_gone());
    client.close().await;
    drop(ids);
    tokio::time::timeout(Duration::from_secs(5), s.disconnected.wait())
        .await
        .expect("disconnect not noticed");
}

#[tokio::test]
async fn websocket_channels_close_signal_and_status() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let s = websocket::serve(a, PROTOCOL_V5, ALL).await.unwrap();
        echo_backend(s).await;
    });
    let (mut r, mut w) = WebSocket::client(b).split();
    let f = channel::Framing::Binary;
    w.send(channel::encode(f, 0, b"abc")).await.unwrap();
    w.send(Message::Binary(vec![255, 0])).await.unwrap();
    let mut out = std::collections::HashMap::<u8, Vec<u8>>::new();
    let mut first = None;
    while let Ok(Some(m)) = r.recv().await {
        if let Message::Close(c) = m {
            assert_eq!(c.map(|c| c.0), Some(1000));
            break;
        }
        let (ch, data) = channel::decode(f, &m).unwrap();
        first.get_or_insert(ch);
        out.entry(ch).or_default().extend(data);
    }
    // The ready signal: an empty message on stdout first.
    assert_eq!(first, Some(1));
    assert_eq!(out[&1], b"abc");
    assert_eq!(out[&2], b"e");
    let status: serde_json::Value = serde_json::from_slice(&out[&3]).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    server.await.unwrap();
}

#[tokio::test]
async fn websocket_base64_v4() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let opts = StreamOptions {
        stdout: true,
        ..Default::default()
    };
    let server = tokio::spawn(async move {
        let s = websocket::serve(a, PROTOCOL_BASE64_V4, opts).await.unwrap();
        let mut out = s.stdout.unwrap();
        out.write_all(b"\x00\xffbin").await.unwrap();
        out.shutdown().await.unwrap();
        s.status.finish(CommandResult::Success).await.unwrap();
    });
    let (mut r, _w) = WebSocket::client(b).split();
    let f = channel::Framing::Base64;
    let mut out = std::collections::HashMap::<u8, Vec<u8>>::new();
    while let Ok(Some(m)) = r.recv().await {
        if let Message::Close(_) = m {
            break;
        }
        assert!(matches!(m, Message::Text(_)), "{m:?}");
        let (ch, data) = channel::decode(f, &m).unwrap();
        out.entry(ch).or_default().extend(data);
    }
    assert_eq!(out[&1], b"\x00\xffbin");
    let status: serde_json::Value = serde_json::from_slice(&out[&3]).unwrap();
    assert_eq!(status["status"], "Success");
    server.await.unwrap();
}
