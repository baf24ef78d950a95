//! The port-forward clients against this crate's port-forward server, over
//! loopback TCP with real HTTP upgrades.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::client::exec::tests::{read_request, write_101};
use crate::portforward::{self as server, ForwardRequest, Forwarder};

/// Answers each connection with "port N: <the line it read>", and an
/// error for port 13.
async fn backend(mut f: Forwarder) {
    while let Some(r) = f.next().await {
        tokio::spawn(async move {
            let ForwardRequest {
                port,
                mut data,
                error,
            } = r;
            if port == 13 {
                error.report("connection refused").await;
                return;
            }
            // Up to a newline: plain WebSocket cannot half-close a port.
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while data.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
                got.push(b[0]);
            }
            let reply = format!("port {port}: {}", String::from_utf8_lossy(&got));
            data.write_all(reply.as_bytes()).await.unwrap();
            data.shutdown().await.unwrap();
            error.close().await;
        });
    }
}

async fn serve_one(l: TcpListener, ports: Vec<u16>) {
    let (mut s, _) = l.accept().await.unwrap();
    let req = read_request(&mut s).await;
    let f = if crate::websocket::handshake::is_websocket_request(&req) {
        let mut supported = vec![server::TUNNEL_PROTOCOL];
        supported.extend_from_slice(server::WEBSOCKET_PROTOCOLS);
        let p = crate::websocket::handshake::negotiate(&req, &supported).unwrap();
        write_101(
            &mut s,
            &crate::websocket::handshake::response_headers(&req, &p).unwrap(),
        )
        .await;
        if p == server::TUNNEL_PROTOCOL {
            server::spdy::serve_tunnel(s, Duration::from_secs(5))
        } else {
            server::websocket::serve(s, &p, ports).await.unwrap()
        }
    } else {
        let p = crate::spdy::handshake::negotiate(&req, &[server::PROTOCOL_V1]).unwrap();
        write_101(&mut s, &crate::spdy::handshake::response_headers(&p)).await;
        server::spdy::serve(s, Duration::from_secs(5))
    };
    backend(f).await;
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/portforward/token", l.local_addr().unwrap());
    (l, url)
}

async fn exercise(pf: PortForwarder) {
    // Two connections at once, then a refused one.
    let mut a = pf.open(80).await.unwrap();
    let mut b = pf.open(8080).await.unwrap();
    b.write_all(b"bee\n").await.unwrap();
    a.write_all(b"ay\n").await.unwrap();
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let (mut ra, mut rb) = (String::new(), String::new());
    a.read_to_string(&mut ra).await.unwrap();
    b.read_to_string(&mut rb).await.unwrap();
    assert_eq!(
        (ra.as_str(), rb.as_str()),
        ("port 80: ay", "port 8080: bee")
    );
    a.finish().await.unwrap();
    b.finish().await.unwrap();
    let c = pf.open(13).await.unwrap();
    let err = c.finish().await.unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
    pf.close().await;
}

#[tokio::test]
async fn spdy_port_forward() {
    let (l, url) = listener().await;
    let server = tokio::spawn(serve_one(l, Vec::new()));
    exercise(PortForwarder::connect_spdy(&url).await.unwrap()).await;
    server.abort();
}

#[tokio::test]
async fn spdy_tunnelled_in_websocket() {
    let (l, url) = listener().await;
    let server = tokio::spawn(serve_one(l, Vec::new()));
    exercise(PortForwarder::connect_tunnel(&url).await.unwrap()).await;
    server.abort();
}

#[tokio::test]
async fn websocket_channels_per_port() {
    let (l, url) = listener().await;
    let server = tokio::spawn(serve_one(l, vec![80, 13]));
    let mut pf = WsPortForward::connect(&url, &[80, 13]).await.unwrap();
    let (port, mut s) = pf.streams.remove(0);
    assert_eq!(port, 80);
    s.write_all(b"hello\n").await.unwrap();
    let mut buf = vec![0u8; 14];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"port 80: hello");
    // Port 13's refusal was sent when the connection opened; let it land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let errors = std::mem::replace(&mut pf.errors, tokio::sync::oneshot::channel().1);
    pf.close().await;
    let errors = errors.await.unwrap();
    assert_eq!(errors[0], (80, String::new()));
    assert_eq!(errors[1].0, 13);
    assert!(errors[1].1.contains("connection refused"), "{errors:?}");
    server.abort();
}
