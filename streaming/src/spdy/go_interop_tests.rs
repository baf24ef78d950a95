//! Interop with moby/spdystream, the Go SPDY library of the kubelet, kubectl,
//! crictl and containerd's streaming server, through `go_interop/main.go`.
//! Ignored by default: it needs a Go toolchain and the spdystream sources
//! (`BERTH_SPDYSTREAM_SRC`, default: the copy vendored by cri-tools in
//! /work/critest). Run with `cargo test -p berth-streaming go_spdystream -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::{Session, SpdyStream};

const T: Duration = Duration::from_secs(120);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Builds the Go driver offline against the vendored spdystream.
fn build_driver(dir: &Path) -> PathBuf {
    let src = std::env::var_os("BERTH_SPDYSTREAM_SRC").map_or_else(
        || PathBuf::from("/work/critest/cri-tools/vendor/github.com/moby/spdystream"),
        PathBuf::from,
    );
    assert!(
        src.join("connection.go").exists(),
        "no spdystream sources at {src:?}"
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spdy/go_interop/main.go");
    std::fs::copy(here, dir.join("main.go")).unwrap();
    std::fs::write(
        dir.join("go.mod"),
        "module interop\n\ngo 1.22\n\nrequire github.com/moby/spdystream v0.5.1\n",
    )
    .unwrap();
    copy_dir(&src, &dir.join("vendor/github.com/moby/spdystream"));
    std::fs::write(
        dir.join("vendor/modules.txt"),
        "# github.com/moby/spdystream v0.5.1\n## explicit; go 1.13\ngithub.com/moby/spdystream\ngithub.com/moby/spdystream/spdy\n",
    )
    .unwrap();
    let bin = dir.join("interop");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(dir)
        .env("GOFLAGS", "-mod=vendor")
        .env("GOTOOLCHAIN", "local")
        .status()
        .expect("go toolchain");
    assert!(status.success(), "go build failed");
    bin
}

/// Runs the driver in `mode` against a fresh loopback listener; returns the
/// accepted connection and the running child.
async fn start(
    mode: &str,
) -> (
    tokio::net::TcpStream,
    std::process::Child,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_driver(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let child = Command::new(bin)
        .arg(mode)
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tcp, _) = timeout(T, listener.accept()).await.unwrap().unwrap();
    (tcp, child, dir)
}

async fn finish(child: std::process::Child) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "Go side failed: {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

async fn echo(mut s: SpdyStream) {
    let (mut r, mut w) = tokio::io::split(&mut s);
    tokio::io::copy(&mut r, &mut w).await.unwrap();
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the moby/spdystream sources"]
async fn go_spdystream_client_against_berth_server() {
    let (tcp, child, _dir) = start("client").await;
    let (_session, mut incoming) = Session::server(tcp);
    let mut resets = 0;
    let mut echoes = Vec::new();
    while let Some(s) = timeout(T, incoming.accept()).await.unwrap() {
        match s.header("mode") {
            Some("echo") => echoes.push(tokio::spawn(echo(s))),
            Some("reset") => {
                let mut s = s;
                let mut v = Vec::new();
                let err = timeout(T, s.read_to_end(&mut v))
                    .await
                    .unwrap()
                    .unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
                assert_eq!(v, b"x");
                resets += 1;
            }
            other => panic!("unexpected mode {other:?}"),
        }
    }
    for e in echoes {
        e.await.unwrap();
    }
    assert_eq!(resets, 1);
    finish(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Go and the moby/spdystream sources"]
async fn berth_client_against_go_spdystream_server() {
    let (tcp, child, _dir) = start("server").await;
    let (session, _incoming) = Session::client(tcp);
    timeout(T, session.ping()).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..10usize {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let s = session
                .open_stream(vec![("n".into(), i.to_string())])
                .await
                .unwrap();
            let len = if i == 0 { 8 << 20 } else { 300 * 1024 };
            let data: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let (mut r, mut w) = s.into_split();
            let expect = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            timeout(T, r.read_to_end(&mut got)).await.unwrap().unwrap();
            writer.await.unwrap();
            assert!(got == expect, "stream {i}: echo differs");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    timeout(T, session.close()).await.unwrap();
    finish(child).await;
}
