//! Exec, Attach and PortForward through berthd's streaming server, with
//! berth_streaming's clients on both transports (SPDY/3.1 and WebSocket),
//! and with crictl when /opt/bin/crictl is installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::pin::Pin;
use std::time::{Duration, Instant};

use berth_conformance::client::container_config;
use berth_conformance::streaming::{self as st, Streams};
use berth_streaming::client::{self, ExecIo, PortForwarder, Transport, WsPortForward};
use berth_streaming::remotecommand::TerminalSize;
use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const BOTH: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

fn boxed<R: AsyncRead + Send + 'static>(r: R) -> Option<Pin<Box<dyn AsyncRead + Send>>> {
    Some(Box::pin(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_and_output_on_both_transports() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "stream-exit").await;
    for t in BOTH {
        let cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"];
        let o = st::exec(&c, &p.ctr, &cmd, t, Streams::OUTPUT, None)
            .await
            .unwrap();
        assert_eq!(o.status.0, 3, "{t:?}");
        assert_eq!(
            (o.stdout.as_slice(), o.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..]),
            "{t:?}"
        );
        let o = st::exec(&c, &p.ctr, &["true"], t, Streams::OUTPUT, None)
            .await
            .unwrap();
        assert!(o.status.success(), "{t:?}");
        // stdin reaches the command and its end is seen (v5 close / SPDY FIN).
        let o = st::exec(
            &c,
            &p.ctr,
            &["sh", "-c", "cat; exit 9"],
            t,
            Streams::ALL,
            boxed(&b"piped\n"[..]),
        )
        .await
        .unwrap();
        assert_eq!(
            (o.status.0, o.stdout.as_slice()),
            (9, &b"piped\n"[..]),
            "{t:?}"
        );
    }
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_tty_follows_resizes() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "stream-tty").await;
    for t in BOTH {
        let s = Streams {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let url = st::exec_url(
            &c,
            &p.ctr,
            &["sh", "-c", "sleep 0.5; stty size; read x; stty size"],
            s,
        )
        .await
        .unwrap();
        let (mut stdin_w, stdin_r) = tokio::io::duplex(1024);
        let (out_w, mut out_r) = tokio::io::duplex(1 << 16);
        let (sizes, rx) = tokio::sync::mpsc::channel(4);
        sizes
            .send(TerminalSize {
                width: 80,
                height: 24,
            })
            .await
            .unwrap();
        let io = ExecIo {
            stdin: boxed(stdin_r),
            stdout: Some(Box::pin(out_w)),
            tty: true,
            resize: Some(rx),
            ..Default::default()
        };
        let session = tokio::spawn(async move { client::exec(&url, t, io).await });
        let mut seen = String::new();
        let mut wait_for = async |want: &str| {
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut buf = [0u8; 256];
            while !seen.contains(want) {
                assert!(Instant::now() < deadline, "{t:?}: no {want:?} in {seen:?}");
                let n = tokio::time::timeout(Duration::from_secs(15), out_r.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "{t:?}: output ended before {want:?}: {seen:?}");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        wait_for("24 80").await;
        sizes
            .send(TerminalSize {
                width: 132,
                height: 50,
            })
            .await
            .unwrap();
        // The resize travels on its own stream: give it time to land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stdin_w.write_all(b"go\n").await.unwrap();
        wait_for("50 132").await;
        let status = session.await.unwrap().unwrap();
        assert!(status.success(), "{t:?}: {status:?}");
    }
    c.cleanup_pod(&p.pod).await;
}

/// 100 MB of a deterministic pseudo-random stream.
struct Noise {
    left: usize,
    x: u64,
}

impl AsyncRead for Noise {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.left).min(64 << 10) & !7;
        let n = if n == 0 {
            buf.remaining().min(self.left)
        } else {
            n
        };
        let mut chunk = vec![0u8; n];
        for c in chunk.chunks_mut(8) {
            // xorshift64: cheap, and any reordering or loss changes the hash.
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            c.copy_from_slice(&self.x.to_le_bytes()[..c.len()]);
        }
        self.left -= n;
        buf.put_slice(&chunk);
        std::task::Poll::Ready(Ok(()))
    }
}

fn noise_hash(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut h = Sha256::new();
    let mut left = len;
    let mut chunk = Vec::with_capacity(64 << 10);
    while left > 0 {
        let n = left.min(64 << 10);
        chunk.clear();
        for _ in 0..n.div_ceil(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.extend_from_slice(&x.to_le_bytes());
        }
        h.update(&chunk[..n]);
        left -= n;
    }
    h.finalize().to_vec()
}

async fn hundred_mb_through_cat(t: Transport) {
    const LEN: usize = 100 << 20;
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, &format!("stream-100mb-{t:?}").to_lowercase()).await;
    let url = st::exec_url(&c, &p.ctr, &["cat"], Streams::ALL)
        .await
        .unwrap();
    let (out_w, mut out_r) = tokio::io::duplex(1 << 20);
    let hasher = tokio::spawn(async move {
        let mut h = Sha256::new();
        let mut n = 0usize;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let k = out_r.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k;
        }
        (n, h.finalize().to_vec())
    });
    let io = ExecIo {
        stdin: boxed(Noise {
            left: LEN,
            x: 0x9E37_79B9_7F4A_7C15,
        }),
        stdout: Some(Box::pin(out_w)),
        stderr: Some(Box::pin(tokio::io::sink())),
        ..Default::default()
    };
    let start = Instant::now();
    let status = client::exec(&url, t, io).await.unwrap();
    let took = start.elapsed();
    let (n, hash) = hasher.await.unwrap();
    assert!(status.success(), "{t:?}: {status:?}");
    assert_eq!(n, LEN, "{t:?}: byte count");
    assert!(hash == noise_hash(LEN), "{t:?}: stdout differs from stdin");
    eprintln!("{t:?}: 100 MiB through cat in {took:?}");
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mb_stdin_to_stdout_spdy() {
    hundred_mb_through_cat(Transport::Spdy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mb_stdin_to_stdout_websocket() {
    hundred_mb_through_cat(Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_exec_sessions() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "stream-50").await;
    let mut tasks = Vec::new();
    for i in 0..50usize {
        let (c, ctr) = (c.clone(), p.ctr.clone());
        let t = BOTH[i % 2];
        tasks.push(tokio::spawn(async move {
            let script = format!("read x; echo \"$x-{i}\"; exit {}", i % 7);
            let input = format!("hello{i}\n").into_bytes();
            let o = st::exec(
                &c,
                &ctr,
                &["sh", "-c", &script],
                t,
                Streams::ALL,
                boxed(std::io::Cursor::new(input)),
            )
            .await
            .unwrap();
            assert_eq!(o.status.0, (i % 7) as i32, "session {i} {t:?}");
            assert_eq!(
                String::from_utf8(o.stdout).unwrap(),
                format!("hello{i}-{i}\n"),
                "session {i} {t:?}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_leaves_no_process_or_fd() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "stream-drop").await;
    let berthd = b.pid().unwrap();
    // One warm-up session so lazily opened fds (shim connection) exist.
    st::exec(
        &c,
        &p.ctr,
        &["true"],
        Transport::Spdy,
        Streams::OUTPUT,
        None,
    )
    .await
    .unwrap();
    let baseline = st::fd_count(berthd);
    for t in BOTH {
        let marker = unique_seconds();
        let cmd = format!("echo started; exec sleep {marker}");
        let url = st::exec_url(&c, &p.ctr, &["sh", "-c", &cmd], Streams::ALL)
            .await
            .unwrap();
        let (stdin_w, stdin_r) = tokio::io::duplex(64);
        let (out_w, mut out_r) = tokio::io::duplex(1024);
        let io = ExecIo {
            stdin: boxed(stdin_r),
            stdout: Some(Box::pin(out_w)),
            stderr: Some(Box::pin(tokio::io::sink())),
            ..Default::default()
        };
        let session = tokio::spawn(async move { client::exec(&url, t, io).await });
        let mut buf = [0u8; 8];
        out_r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"started\n");
        let found = eventually(Duration::from_secs(5), || async {
            host_pid_with(&format!("sleep {marker}"))
        })
        .await;
        assert!(found.is_some(), "{t:?}: exec process not found");
        // Drop the client mid-stream: the task owns the socket.
        session.abort();
        let _ = session.await;
        drop(stdin_w);
        let gone = eventually(Duration::from_secs(10), || async {
            host_pid_with(&format!("sleep {marker}"))
                .is_none()
                .then_some(())
        })
        .await;
        assert!(gone.is_some(), "{t:?}: exec process survived its client");
        let fds = eventually(Duration::from_secs(10), || async {
            (st::fd_count(berthd) <= baseline).then_some(())
        })
        .await;
        assert!(
            fds.is_some(),
            "{t:?}: berthd fds {} > baseline {baseline}",
            st::fd_count(berthd)
        );
        // No process of the exec left in the container either.
        let ps = c.exec_ok(&p.ctr, &["ps", "-o", "args"]).await.unwrap();
        assert!(!ps.contains(&marker), "{t:?}: left in the container: {ps}");
    }
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_container_with_stdin() {
    let (b, c) = berth();
    let config = b.pod_config("stream-attach");
    let pod = c.run_pod(&config).await.unwrap();
    let mut cc = container_config(
        "cat",
        &b.busybox(),
        &["sh", "-c", "while read l; do echo \"got $l\"; done"],
    );
    cc.stdin = true;
    berth_conformance::client::match_pod_namespaces(&mut cc, &config);
    let ctr = c.create_started(&pod, &cc, &config).await.unwrap();
    for t in BOTH {
        let s = Streams {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let url = st::attach_url(&c, &ctr, s).await.unwrap();
        let (mut stdin_w, stdin_r) = tokio::io::duplex(1024);
        let (out_w, mut out_r) = tokio::io::duplex(1024);
        let io = ExecIo {
            stdin: boxed(stdin_r),
            stdout: Some(Box::pin(out_w)),
            stderr: Some(Box::pin(tokio::io::sink())),
            ..Default::default()
        };
        let session = tokio::spawn(async move { client::exec(&url, t, io).await });
        let line = format!("hello-{t:?}\n");
        stdin_w.write_all(line.as_bytes()).await.unwrap();
        let want = format!("got {line}");
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(Duration::from_secs(15), out_r.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "{t:?}");
        // Detach; the container keeps running (stdin_once is false).
        session.abort();
        let _ = session.await;
        let state = c.container_status(&ctr).await.unwrap().state;
        assert_eq!(
            state,
            ContainerState::ContainerRunning as i32,
            "{t:?}: attach ended the container"
        );
    }
    c.cleanup_pod(&pod).await;
}

const HTTP_PORT: u16 = 8080;

async fn http_pod(
    b: &berth_conformance::harness::Berth,
    c: &berth_conformance::client::Cri,
    name: &str,
) -> PodWith {
    let script = format!(
        "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && exec httpd -f -p {HTTP_PORT} -h /tmp/www"
    );
    let p = pod_with(b, c, b.pod_config(name), "httpd", &["sh", "-c", &script]).await;
    // Wait for the server inside the pod.
    let up = eventually(Duration::from_secs(10), || async {
        let r = c
            .exec_sync(
                &p.ctr,
                &[
                    "wget",
                    "-q",
                    "-O",
                    "-",
                    &format!("http://127.0.0.1:{HTTP_PORT}/"),
                ],
                5,
            )
            .await;
        r.ok().filter(|r| r.exit_code == 0).map(|_| ())
    })
    .await;
    assert!(up.is_some(), "httpd did not come up in the pod");
    p
}

const GET: &[u8] = b"GET /index.html HTTP/1.0\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_to_httpd_in_the_pod() {
    let (b, c) = berth();
    let p = http_pod(&b, &c, "stream-pf").await;
    for tunnel in [false, true] {
        let url = st::port_forward_url(&c, &p.pod, &[HTTP_PORT])
            .await
            .unwrap();
        let pf = if tunnel {
            PortForwarder::connect_tunnel(&url).await.unwrap()
        } else {
            PortForwarder::connect_spdy(&url).await.unwrap()
        };
        // Two connections over one session.
        for _ in 0..2 {
            let mut s = pf.open(HTTP_PORT).await.unwrap();
            s.write_all(GET).await.unwrap();
            let mut resp = String::new();
            tokio::time::timeout(Duration::from_secs(15), s.read_to_string(&mut resp))
                .await
                .unwrap()
                .unwrap();
            assert!(
                resp.starts_with("HTTP/1.") && resp.contains("hello-from-pod"),
                "tunnel {tunnel}: {resp:?}"
            );
            s.finish().await.unwrap();
        }
        // A closed port is an error on the error stream, not a hang.
        let mut s = pf.open(HTTP_PORT + 1).await.unwrap();
        let _ = s.write_all(GET).await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut sink))
            .await
            .unwrap();
        assert!(
            s.finish().await.is_err(),
            "tunnel {tunnel}: refused port reported no error"
        );
        pf.close().await;
    }
    // Native WebSocket channels.
    let url = st::port_forward_url(&c, &p.pod, &[HTTP_PORT])
        .await
        .unwrap();
    let mut pf = WsPortForward::connect(&url, &[HTTP_PORT]).await.unwrap();
    let (_, mut s) = pf.streams.remove(0);
    s.write_all(GET).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.contains("hello-from-pod"), "websocket: {resp:?}");
    pf.close().await;
    c.cleanup_pod(&p.pod).await;
}

// ---- crictl (v1.36 in /opt/bin; not installed in CI) ----

const CRICTL: &str = "/opt/bin/crictl";

fn crictl_present() -> bool {
    if std::path::Path::new(CRICTL).exists() {
        return true;
    }
    eprintln!("SKIPPED: {CRICTL} is not installed; the crictl streaming checks need it");
    false
}

/// Runs crictl against this berthd; with `pty`, under script(1) so that
/// crictl's stdin is a terminal (`-t` needs one).
async fn crictl(
    b: &berth_conformance::harness::Berth,
    args: &[&str],
    input: &[u8],
    pty: bool,
) -> std::process::Output {
    let endpoint = format!("unix://{}", b.fp.socket.display());
    let mut full = vec![
        "--runtime-endpoint".to_string(),
        endpoint.clone(),
        "--image-endpoint".to_string(),
        endpoint,
        "--timeout".into(),
        "30s".into(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let mut cmd = if pty {
        let line = std::iter::once(CRICTL.to_string())
            .chain(full)
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = tokio::process::Command::new("script");
        c.args(["-q", "-e", "-c", &line, "/dev/null"]);
        c
    } else {
        let mut c = tokio::process::Command::new(CRICTL);
        c.args(&full);
        c
    };
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_exec_attach_and_port_forward() {
    if !crictl_present() {
        return;
    }
    let (b, c) = berth();
    let p = http_pod(&b, &c, "stream-crictl").await;
    // Plain exec (SPDY), exit code propagated.
    let o = crictl(
        &b,
        &["exec", &p.ctr, "sh", "-c", "echo plain; exit 4"],
        b"",
        false,
    )
    .await;
    // crictl reports a non-zero exit as its own failure with the code.
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exit code 4"),
        "{o:?}"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "plain\n");
    // exec -i over WebSocket.
    let o = crictl(
        &b,
        &["exec", "-i", "--transport", "websocket", &p.ctr, "cat"],
        b"over-websocket\n",
        false,
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "over-websocket\n");
    // exec -i -t with a terminal: the command sees a tty.
    let o = crictl(
        &b,
        &["exec", "-i", "-t", &p.ctr, "sh", "-c", "tty && stty size"],
        b"",
        true,
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("/dev/pts/"), "{o:?}");
    // port-forward (SPDY and SPDY-over-WebSocket) to the pod's httpd.
    let endpoint = format!("unix://{}", b.fp.socket.display());
    for transport in ["spdy", "websocket"] {
        let local = free_port();
        let mut child = tokio::process::Command::new(CRICTL)
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
            ])
            .args([
                "port-forward",
                "--transport",
                transport,
                &p.pod,
                &format!("{local}:{HTTP_PORT}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let resp = eventually(Duration::from_secs(15), || async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", local))
                .await
                .ok()?;
            s.write_all(GET).await.ok()?;
            let mut r = String::new();
            s.read_to_string(&mut r).await.ok()?;
            r.contains("hello-from-pod").then_some(r)
        })
        .await;
        let _ = child.kill().await;
        assert!(
            resp.is_some(),
            "crictl port-forward --transport {transport} gave no response"
        );
    }
    // attach to a container created with stdin.
    let mut cc = container_config(
        "attached",
        &b.busybox(),
        &["sh", "-c", "while read l; do echo \"got $l\"; done"],
    );
    cc.stdin = true;
    cc.stdin_once = true;
    berth_conformance::client::match_pod_namespaces(&mut cc, &p.config);
    let ctr = c.create_started(&p.pod, &cc, &p.config).await.unwrap();
    let o = crictl(&b, &["attach", "-i", &ctr], b"via-attach\n", false).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("got via-attach"),
        "{o:?}"
    );
    c.cleanup_pod(&p.pod).await;
}
