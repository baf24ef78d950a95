use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use super::*;
use crate::spdy::frame::{self, Frame};

const T: Duration = Duration::from_secs(20);
const SUPPORTED: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

fn req(protocol_lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    for p in protocol_lines {
        h.append(PROTOCOL_VERSION_HEADER, HeaderValue::from_str(p).unwrap());
    }
    h
}

#[test]
fn the_clients_first_supported_protocol_wins() {
    // kubectl lists its newest protocol first; the server's order does not matter.
    let h = req(&["v4.channel.k8s.io", "v3.channel.k8s.io"]);
    assert_eq!(negotiate(&h, SUPPORTED).unwrap(), "v4.channel.k8s.io");
    let h = req(&["v2.channel.k8s.io", "v5.channel.k8s.io"]);
    assert_eq!(negotiate(&h, SUPPORTED).unwrap(), "v2.channel.k8s.io");
    // Unknown offers are skipped.
    let h = req(&["v9.channel.k8s.io", "channel.k8s.io"]);
    assert_eq!(negotiate(&h, SUPPORTED).unwrap(), "channel.k8s.io");
}

#[test]
fn comma_joined_and_repeated_headers_are_split() {
    let h = req(&["v9.x, ,v3.channel.k8s.io", "v4.channel.k8s.io"]);
    assert_eq!(negotiate(&h, SUPPORTED).unwrap(), "v3.channel.k8s.io");
    let h = req(&["portforward.k8s.io"]);
    assert_eq!(
        negotiate(&h, &["portforward.k8s.io"]).unwrap(),
        "portforward.k8s.io"
    );
}

#[test]
fn failures_map_to_the_kubelets_statuses() {
    let e = negotiate(&req(&[]), SUPPORTED).unwrap_err();
    assert!(matches!(e, HandshakeError::MissingProtocolHeader));
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);

    let e = negotiate(&req(&[" , "]), SUPPORTED).unwrap_err();
    assert!(matches!(e, HandshakeError::NoValidProtocols { .. }));
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);

    let e = negotiate(&req(&["v9.channel.k8s.io"]), SUPPORTED).unwrap_err();
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    let accepted: Vec<_> = e
        .response_headers()
        .get_all(ACCEPTED_PROTOCOL_VERSIONS_HEADER)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(accepted, SUPPORTED);
    assert!(e.to_string().contains("v9.channel.k8s.io"));

    let mut h = req(&["v4.channel.k8s.io"]);
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let e = negotiate(&h, SUPPORTED).unwrap_err();
    assert!(matches!(e, HandshakeError::NotAnUpgrade { .. }));
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn connection_may_list_several_tokens() {
    let mut h = req(&["v4.channel.k8s.io"]);
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive, upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("spdy/3.1"));
    assert_eq!(negotiate(&h, SUPPORTED).unwrap(), "v4.channel.k8s.io");
}

#[test]
fn the_101_names_the_upgrade_and_the_choice() {
    let h = response_headers("v4.channel.k8s.io");
    assert_eq!(h.get(CONNECTION).unwrap(), "Upgrade");
    assert_eq!(h.get(UPGRADE).unwrap(), "SPDY/3.1");
    assert_eq!(h.get(PROTOCOL_VERSION_HEADER).unwrap(), "v4.channel.k8s.io");
}

/// Reads a request head byte by byte (so nothing past it is consumed) and
/// returns the request line and headers.
async fn read_request(io: &mut DuplexStream) -> (String, HeaderMap) {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        buf.push(io.read_u8().await.unwrap());
    }
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Request::new(&mut slots);
    assert!(r.parse(&buf).unwrap().is_complete());
    let line = format!("{} {}", r.method.unwrap(), r.path.unwrap());
    let mut map = HeaderMap::new();
    for h in r.headers.iter() {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(h.value).unwrap(),
        );
    }
    (line, map)
}

fn head_101(chosen: &str) -> Vec<u8> {
    let mut out = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
    for (k, v) in response_headers(chosen).iter() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[tokio::test]
async fn client_upgrade_then_a_full_session() {
    let (a, mut b) = duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let (line, h) = read_request(&mut b).await;
        assert_eq!(line, "POST /exec/abc?cmd=sh");
        assert_eq!(h.get("host").unwrap(), "127.0.0.1:1234");
        let chosen = negotiate(&h, SUPPORTED).unwrap();
        b.write_all(&head_101(&chosen)).await.unwrap();
        let (_session, mut incoming) = Session::server(b);
        let mut s = incoming.accept().await.unwrap();
        assert_eq!(s.header("streamtype"), Some("stdout"));
        s.write_all(b"from server").await.unwrap();
        s.shutdown().await.unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        v
    });
    let (session, _incoming, chosen) = timeout(
        T,
        client_upgrade(
            a,
            "POST",
            "127.0.0.1:1234",
            "/exec/abc?cmd=sh",
            &["v4.channel.k8s.io", "v3.channel.k8s.io"],
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(chosen, "v4.channel.k8s.io");
    let mut s = session
        .open_stream(vec![("streamtype".into(), "stdout".into())])
        .await
        .unwrap();
    let mut v = Vec::new();
    timeout(T, s.read_to_end(&mut v)).await.unwrap().unwrap();
    assert_eq!(v, b"from server");
    s.write_all(b"from client").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(timeout(T, server).await.unwrap().unwrap(), b"from client");
}

#[tokio::test]
async fn bytes_right_after_the_101_are_not_lost() {
    let (a, mut b) = duplex(64 * 1024);
    let server = tokio::spawn(async move {
        read_request(&mut b).await;
        // The head and a PING in one write: the client reads both at once.
        let mut out = head_101("v4.channel.k8s.io");
        frame::encode(&Frame::Ping { id: 2 }, &mut out).unwrap();
        b.write_all(&out).await.unwrap();
        let mut buf = Vec::new();
        loop {
            if let Some((f, n)) = frame::parse(&buf).unwrap() {
                buf.drain(..n);
                if let Frame::Ping { id } = f {
                    return id;
                }
                continue;
            }
            assert!(b.read_buf(&mut buf).await.unwrap() > 0);
        }
    });
    let (_s, _i, _p) = client_upgrade(a, "GET", "h", "/", &["v4.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(timeout(T, server).await.unwrap().unwrap(), 2, "PING echoed");
}

#[tokio::test]
async fn a_refusal_carries_status_and_body() {
    let (a, mut b) = duplex(64 * 1024);
    tokio::spawn(async move {
        read_request(&mut b).await;
        let body = "unable to upgrade: unable to negotiate protocol";
        let head = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n{body}\n",
            body.len() + 1
        );
        b.write_all(head.as_bytes()).await.unwrap();
        // Keep the connection open: the body length alone ends the read.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let e = timeout(T, client_upgrade(a, "POST", "h", "/", &["v9"]))
        .await
        .unwrap()
        .err()
        .unwrap();
    match e {
        HandshakeError::Rejected { status, body } => {
            assert_eq!(status, 403);
            assert_eq!(body, "unable to upgrade: unable to negotiate protocol");
        }
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_101_without_spdy_and_early_eof_are_errors() {
    let (a, mut b) = duplex(4096);
    tokio::spawn(async move {
        read_request(&mut b).await;
        b.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
    });
    let e = client_upgrade(a, "GET", "h", "/", &["x"])
        .await
        .err()
        .unwrap();
    assert!(matches!(e, HandshakeError::NotSpdy), "{e:?}");

    let (a, mut b) = duplex(4096);
    tokio::spawn(async move {
        read_request(&mut b).await;
        b.write_all(b"HTTP/1.1 101 Swi").await.unwrap();
    });
    let e = client_upgrade(a, "GET", "h", "/", &["x"])
        .await
        .err()
        .unwrap();
    assert!(matches!(e, HandshakeError::ConnectionClosed), "{e:?}");
}

#[tokio::test]
async fn header_injection_is_refused() {
    let (a, _b) = duplex(4096);
    let e = client_upgrade(a, "GET", "h\r\nEvil: 1", "/", &["x"])
        .await
        .err()
        .unwrap();
    assert!(matches!(
        e,
        HandshakeError::InvalidRequest { what: "host", .. }
    ));
}
