#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn cri_auth_precedence_and_decoding() {
    let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
    assert_eq!(
        Credentials::from_cri("", "", &b64, "", "").unwrap(),
        Credentials::Basic {
            username: "alice".into(),
            password: "s3:cret".into()
        }
    );
    assert_eq!(
        Credentials::from_cri("bob", "pw", &b64, "", "").unwrap(),
        Credentials::Basic {
            username: "bob".into(),
            password: "pw".into()
        }
    );
    assert_eq!(
        Credentials::from_cri("bob", "pw", "", "idt", "").unwrap(),
        Credentials::IdentityToken {
            token: "idt".into()
        }
    );
    assert_eq!(
        Credentials::from_cri("bob", "pw", "", "idt", "rt").unwrap(),
        Credentials::RegistryToken { token: "rt".into() }
    );
    assert_eq!(
        Credentials::from_cri("", "", "", "", "").unwrap(),
        Credentials::Anonymous
    );
    assert!(Credentials::from_cri("", "", "!!!", "", "").is_err());
    let no_colon = base64::engine::general_purpose::STANDARD.encode("alice");
    assert!(Credentials::from_cri("", "", &no_colon, "", "").is_err());
    assert_eq!(
        format!(
            "{:?}",
            Credentials::RegistryToken {
                token: "secret".into()
            }
        ),
        "RegistryToken"
    );
}

#[test]
fn challenge_parsing() {
    assert_eq!(
        Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
        ),
        Some(Challenge::Bearer {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scope: Some("repository:library/busybox:pull".into()),
        })
    );
    assert_eq!(
        Challenge::parse(r#"bearer realm="http://127.0.0.1:1/t""#),
        Some(Challenge::Bearer {
            realm: "http://127.0.0.1:1/t".into(),
            service: None,
            scope: None
        })
    );
    assert_eq!(
        Challenge::parse(r#"Basic realm="Registry Realm""#),
        Some(Challenge::Basic)
    );
    assert_eq!(Challenge::parse("Negotiate"), None);
    assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
}

/// A one-request-per-connection fake registry with a bearer token
/// service on 127.0.0.1, recording what it was asked.
fn fake_registry(
    accept: fn(&str) -> bool,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log2, addr2) = (log.clone(), addr.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut auth = String::new();
            let mut extra_headers = String::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = h["authorization:".len()..].trim().to_string();
                }
                if lower.starts_with("x-berth-test:") {
                    extra_headers.push_str(&format!(" [{}]", h["x-berth-test:".len()..].trim()));
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let line = request_line.trim().to_string();
            log2.lock()
                .unwrap()
                .push(format!("{line} | {auth} | {body}{extra_headers}"));
            let (status, extra, payload) = if line.contains("/token") {
                if accept(&format!("{auth} {body}")) {
                    (
                        "200 OK",
                        String::new(),
                        r#"{"access_token":"T1"}"#.to_string(),
                    )
                } else {
                    ("401 Unauthorized", String::new(), String::new())
                }
            } else if auth == "Bearer T1" || auth == "Bearer GIVEN" {
                (
                    "200 OK",
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".to_string(),
                    "{}".to_string(),
                )
            } else {
                (
                    "401 Unauthorized",
                    format!("WWW-Authenticate: Bearer realm=\"http://{addr2}/token\",service=\"fake\"\r\n"),
                    String::new(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
            conn.write_all(resp.as_bytes()).unwrap();
        }
    });
    (addr, log)
}

fn endpoint(addr: &str) -> Endpoint {
    let mut e = Endpoint::default_origin(addr);
    e.scheme = crate::hosts::Scheme::Http;
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_flow_with_basic_credentials() {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    let (addr, log) = fake_registry(|req| req.starts_with("Basic YWxpY2U6cHc="));
    let creds = Credentials::Basic {
        username: "alice".into(),
        password: "pw".into(),
    };
    let c = RegistryClient::new(&endpoint(&addr), "team/app", creds).unwrap();
    let doc = c.fetch_manifest("v1").await.unwrap();
    assert_eq!(&doc.bytes[..], b"{}");
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].starts_with("GET /v2/team/app/manifests/v1 HTTP/1.1 |  |"));
    assert!(
        log[1].starts_with("GET /token?scope=repository%3Ateam%2Fapp%3Apull&service=fake"),
        "{}",
        log[1]
    );
    assert!(log[1].contains(&basic));
    assert!(log[2].contains("| Bearer T1 |"));
    // Later requests reuse the token without a new challenge.
    c.fetch_manifest("v2").await.unwrap();
    // Wrong credentials: the token service refuses, reported as Unauthorized.
    let bad = Credentials::Basic {
        username: "alice".into(),
        password: "no".into(),
    };
    let c = RegistryClient::new(&endpoint(&addr), "team/app", bad).unwrap();
    assert!(matches!(
        c.fetch_manifest("v1").await,
        Err(RegistryError::Unauthorized { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_and_registry_tokens() {
    let (addr, log) =
        fake_registry(|req| req.contains("grant_type=refresh_token&refresh_token=RT"));
    let c = RegistryClient::new(
        &endpoint(&addr),
        "x",
        Credentials::IdentityToken { token: "RT".into() },
    )
    .unwrap();
    c.fetch_manifest("v1").await.unwrap();
    let l = log.lock().unwrap().clone();
    assert!(l[1].starts_with("POST /token"), "{l:?}");
    assert!(l[1].contains("client_id=berth"));
    // A registry token is sent as is, with no token exchange.
    let c = RegistryClient::new(
        &endpoint(&addr),
        "x",
        Credentials::RegistryToken {
            token: "GIVEN".into(),
        },
    )
    .unwrap();
    let before = log.lock().unwrap().len();
    c.fetch_manifest("v1").await.unwrap();
    let l = log.lock().unwrap().clone();
    assert_eq!(l.len(), before + 1);
    assert!(l[before].contains("| Bearer GIVEN |"));
    // Anonymous gets a token without credentials (public repositories).
    let (addr, _) = fake_registry(|req| req.trim().is_empty());
    let c = RegistryClient::new(&endpoint(&addr), "x", Credentials::Anonymous).unwrap();
    c.fetch_manifest("v1").await.unwrap();
    // A digest reference must match the body.
    let wrong = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        c.fetch_manifest(&wrong).await,
        Err(RegistryError::DigestMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_headers_are_sent_on_every_request() {
    let (addr, log) = fake_registry(|_| false);
    let mut ep = endpoint(&addr);
    ep.headers = vec![
        ("x-berth-test".to_string(), "a".to_string()),
        ("x-berth-test".to_string(), "b".to_string()),
    ];
    let c = RegistryClient::new(
        &ep,
        "x",
        Credentials::RegistryToken {
            token: "GIVEN".into(),
        },
    )
    .unwrap();
    c.fetch_manifest("v1").await.unwrap();
    let l = log.lock().unwrap().clone();
    assert!(l[0].contains("Bearer GIVEN |  [a] [b]"), "{l:?}");
    ep.headers = vec![("bad header".to_string(), "x".to_string())];
    assert!(matches!(
        RegistryClient::new(&ep, "x", Credentials::Anonymous),
        Err(RegistryError::Header { .. })
    ));
}

#[test]
fn digests_and_encoding() {
    assert_eq!(
        sha256_digest(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        form_encode("repository:a/b:pull"),
        "repository%3Aa%2Fb%3Apull"
    );
}
