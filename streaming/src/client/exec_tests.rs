//! The exec client against this crate's remote-command server, over
//! loopback TCP with real HTTP upgrades on both transports.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::remotecommand::{self, CommandResult, ServerStreams, StreamOptions};

/// Reads a request head off `s`; returns its headers.
pub(crate) async fn read_request(s: &mut TcpStream) -> http::HeaderMap {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        buf.push(b[0]);
    }
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Request::new(&mut hs);
    r.parse(&buf).unwrap();
    let mut map = http::HeaderMap::new();
    for h in r.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(h.value).unwrap(),
        );
    }
    map
}

/// Writes a 101 with `headers`.
pub(crate) async fn write_101(s: &mut TcpStream, headers: &http::HeaderMap) {
    let mut out = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{}: {}\r\n", n, v.to_str().unwrap()));
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes()).await.unwrap();
}

/// Accepts one connection on either transport and serves it with `opts`.
async fn serve_one(l: TcpListener, opts: StreamOptions) -> ServerStreams {
    let (mut s, _) = l.accept().await.unwrap();
    let req = read_request(&mut s).await;
    if crate::websocket::handshake::is_websocket_request(&req) {
        let p = crate::websocket::handshake::negotiate(&req, remotecommand::WEBSOCKET_PROTOCOLS)
            .unwrap();
        write_101(
            &mut s,
            &crate::websocket::handshake::response_headers(&req, &p).unwrap(),
        )
        .await;
        remotecommand::websocket::serve(s, &p, opts).await.unwrap()
    } else {
        let p = crate::spdy::handshake::negotiate(&req, remotecommand::SPDY_PROTOCOLS).unwrap();
        write_101(&mut s, &crate::spdy::handshake::response_headers(&p)).await;
        remotecommand::spdy::serve(s, &p, opts, Duration::from_secs(5))
            .await
            .unwrap()
    }
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/exec/token", l.local_addr().unwrap());
    (l, url)
}

/// A sink the test can read back after the session.
fn sink() -> (Pin<Box<dyn AsyncWrite + Send>>, tokio::io::DuplexStream) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (Box::pin(a), b)
}

async fn echo_session(transport: Transport, protocols: Option<Vec<String>>, code: i32) {
    let (l, url) = listener().await;
    let all = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let server = tokio::spawn(async move {
        let s = serve_one(l, all).await;
        let (mut i, mut o, mut e) = (s.stdin.unwrap(), s.stdout.unwrap(), s.stderr.unwrap());
        tokio::io::copy(&mut i, &mut o).await.unwrap();
        o.shutdown().await.unwrap();
        e.write_all(b"to stderr").await.unwrap();
        e.shutdown().await.unwrap();
        let r = if code == 0 {
            CommandResult::Success
        } else {
            CommandResult::ExitCode(code)
        };
        s.status.finish(r).await.unwrap();
    });
    let input: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (out, mut out_r) = sink();
    let (err, mut err_r) = sink();
    let io = ExecIo {
        stdin: Some(Box::pin(std::io::Cursor::new(input.clone()))),
        stdout: Some(out),
        stderr: Some(err),
        protocols,
        ..Default::default()
    };
    let collect = tokio::spawn(async move {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let (ro, re) = tokio::join!(out_r.read_to_end(&mut o), err_r.read_to_end(&mut e));
        ro.unwrap();
        re.unwrap();
        (o, e)
    });
    let st = exec(&url, transport, io).await.unwrap();
    assert_eq!(st, ExitStatus(code));
    let (o, e) = collect.await.unwrap();
    assert_eq!(o.len(), input.len());
    assert!(o == input, "stdout differs from stdin");
    assert_eq!(e, b"to stderr");
    server.await.unwrap();
}

#[tokio::test]
async fn spdy_echo_and_exit_codes() {
    echo_session(Transport::Spdy, None, 0).await;
    echo_session(Transport::Spdy, None, 3).await;
}

#[tokio::test]
async fn websocket_v5_and_v4_base64_echo_and_exit_codes() {
    echo_session(Transport::WebSocket, None, 42).await;
    // v4 has no close signal: the server sees stdin end only when the
    // connection does, so only the base64 framing is checked here, without
    // stdin EOF mattering.
    let (l, url) = listener().await;
    let opts = StreamOptions {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let server = tokio::spawn(async move {
        let s = serve_one(l, opts).await;
        assert_eq!(s.protocol, "v4.base64.channel.k8s.io");
        let mut o = s.stdout.unwrap();
        o.write_all(b"\x00\xffbinary").await.unwrap();
        o.shutdown().await.unwrap();
        s.status.finish(CommandResult::ExitCode(5)).await.unwrap();
    });
    let (out, mut out_r) = sink();
    let io = ExecIo {
        stdout: Some(out),
        protocols: Some(vec!["v4.base64.channel.k8s.io".into()]),
        ..Default::default()
    };
    assert_eq!(
        exec(&url, Transport::WebSocket, io).await.unwrap(),
        ExitStatus(5)
    );
    let mut o = Vec::new();
    out_r.read_to_end(&mut o).await.unwrap();
    assert_eq!(o, b"\x00\xffbinary");
    server.await.unwrap();
}

#[tokio::test]
async fn tty_resizes_reach_the_server() {
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let (l, url) = listener().await;
        let opts = StreamOptions {
            stdin: false,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let server = tokio::spawn(async move {
            let mut s = serve_one(l, opts).await;
            let mut sizes = s.resize.take().unwrap();
            let first = sizes.recv().await.unwrap();
            let second = sizes.recv().await.unwrap();
            let mut o = s.stdout.unwrap();
            o.write_all(
                format!(
                    "{}x{} {}x{}",
                    first.width, first.height, second.width, second.height
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            o.shutdown().await.unwrap();
            s.status.finish(CommandResult::Success).await.unwrap();
        });
        let (tx, rx) = mpsc::channel(4);
        tx.send(TerminalSize {
            width: 80,
            height: 24,
        })
        .await
        .unwrap();
        tx.send(TerminalSize {
            width: 132,
            height: 50,
        })
        .await
        .unwrap();
        let (out, mut out_r) = sink();
        let io = ExecIo {
            stdout: Some(out),
            tty: true,
            resize: Some(rx),
            ..Default::default()
        };
        assert!(exec(&url, transport, io).await.unwrap().success());
        let mut o = String::new();
        out_r.read_to_string(&mut o).await.unwrap();
        assert_eq!(o, "80x24 132x50", "{transport:?}");
        server.await.unwrap();
    }
}

#[tokio::test]
async fn remote_failure_is_an_error() {
    let (l, url) = listener().await;
    let opts = StreamOptions {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let server = tokio::spawn(async move {
        let mut s = serve_one(l, opts).await;
        s.stdout.take().unwrap().shutdown().await.unwrap();
        s.status
            .finish(CommandResult::Error("no such container".into()))
            .await
            .unwrap();
    });
    let (out, _o) = sink();
    let err = exec(
        &url,
        Transport::Spdy,
        ExecIo {
            stdout: Some(out),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("no such container")),
        "{err}"
    );
    server.await.unwrap();
}

#[test]
fn status_decoding() {
    let ok = br#"{"metadata":{},"status":"Success"}"#;
    assert_eq!(decode_status(Version::V4, ok).unwrap(), ExitStatus(0));
    let code = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"137"}]}}"#;
    assert_eq!(decode_status(Version::V5, code).unwrap(), ExitStatus(137));
    let nocause = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[]}}"#;
    assert!(matches!(
        decode_status(Version::V4, nocause),
        Err(ClientError::BadStatus { .. })
    ));
    assert!(matches!(
        decode_status(Version::V4, b"junk"),
        Err(ClientError::BadStatus { .. })
    ));
    assert!(
        matches!(decode_status(Version::V2, b"boom"), Err(ClientError::Remote(m)) if m == "boom")
    );
    assert_eq!(decode_status(Version::V2, b"").unwrap(), ExitStatus(0));
}

#[tokio::test]
async fn refused_upgrade_is_reported() {
    let (l, url) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nunknown token")
            .await
            .unwrap();
    });
    let err = exec(&url, Transport::WebSocket, ExecIo::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::WsHandshake(_)), "{err}");
    server.await.unwrap();
}
