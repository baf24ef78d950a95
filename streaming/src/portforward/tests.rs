//! The port-forward server against in-memory clients.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::spdy::{Headers, Session};
use crate::websocket::tunnel::WsByteStream;
use crate::websocket::{channel, Message, WebSocket};

fn headers(kind: &str, port: &str, id: &str) -> Headers {
    vec![
        ("streamtype".into(), kind.into()),
        (PORT_HEADER.into(), port.into()),
        (REQUEST_ID_HEADER.into(), id.into()),
    ]
}

/// Backend: answers each connection with "port N", or an error for 13.
async fn backend(mut f: Forwarder) {
    while let Some(r) = f.next().await {
        tokio::spawn(async move {
            let ForwardRequest {
                port,
                mut data,
                error,
            } = r;
            if port == 13 {
                error.report("refused").await;
                return;
            }
            let mut got = vec![0u8; 2];
            data.read_exact(&mut got).await.unwrap();
            data.write_all(format!("port {port} got {}", String::from_utf8_lossy(&got)).as_bytes())
                .await
                .unwrap();
            data.shutdown().await.unwrap();
            error.close().await;
        });
    }
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}

async fn exercise(client: Session) {
    // Error stream first (as client-go does), then data; two requests
    // interleaved to check the pairing.
    let mut e1 = client
        .open_stream(headers("error", "80", "1"))
        .await
        .unwrap();
    let mut e2 = client
        .open_stream(headers("error", "13", "2"))
        .await
        .unwrap();
    e1.shutdown().await.unwrap();
    e2.shutdown().await.unwrap();
    let _d2 = client
        .open_stream(headers("data", "13", "2"))
        .await
        .unwrap();
    let mut d1 = client
        .open_stream(headers("data", "80", "1"))
        .await
        .unwrap();
    d1.write_all(b"hi").await.unwrap();
    assert_eq!(read_all(d1).await, b"port 80 got hi");
    assert!(read_all(e1).await.is_empty());
    assert_eq!(read_all(e2).await, b"refused");
    // A bad port is reported on the error stream.
    let mut e3 = client
        .open_stream(headers("error", "x", "3"))
        .await
        .unwrap();
    e3.shutdown().await.unwrap();
    let _d3 = client.open_stream(headers("data", "x", "3")).await.unwrap();
    assert!(String::from_utf8_lossy(&read_all(e3).await).contains("invalid port"));
}

#[tokio::test]
async fn spdy_pairs_streams_by_request_id() {
    let (a, b) = tokio::io::duplex(1 << 16);
    tokio::spawn(backend(spdy::serve(a, Duration::from_secs(5))));
    let (client, _incoming) = Session::client(b);
    exercise(client).await;
}

#[tokio::test]
async fn spdy_tunnelled_in_websocket() {
    let (a, b) = tokio::io::duplex(1 << 16);
    tokio::spawn(backend(spdy::serve_tunnel(a, Duration::from_secs(5))));
    let (r, w) = WebSocket::client(b).split();
    let (client, _incoming) = Session::client(WsByteStream::new(r, w));
    exercise(client).await;
}

#[tokio::test]
async fn native_websocket_channel_pairs() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let f = websocket::serve(a, "v4.channel.k8s.io", vec![80, 13])
            .await
            .unwrap();
        backend(f).await;
    });
    let (mut r, mut w) = WebSocket::client(b).split();
    let fr = channel::Framing::Binary;
    w.send(channel::encode(fr, 0, b"yo")).await.unwrap();
    let mut ch = std::collections::HashMap::<u8, Vec<u8>>::new();
    while let Ok(Some(m)) = r.recv().await {
        if let Message::Close(_) = m {
            break;
        }
        let (c, d) = channel::decode(fr, &m).unwrap();
        ch.entry(c).or_default().extend(d);
    }
    assert_eq!(
        ch[&0],
        [&80u16.to_le_bytes()[..], b"port 80 got yo"].concat()
    );
    assert_eq!(ch[&1], 80u16.to_le_bytes());
    assert_eq!(ch[&2], 13u16.to_le_bytes());
    assert_eq!(ch[&3], [&13u16.to_le_bytes()[..], b"refused"].concat());
    server.await.unwrap();
}
