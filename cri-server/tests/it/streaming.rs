//! Exec, attach and port-forward through berthd's streaming server, end to
//! end: CRI RPC → URL → SPDY/3.1 or WebSocket upgrade → shim → container.
//! The clients here are deliberately small, written against the wire
//! protocols with berth-streaming's transport layers only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_proto::cri;
use berth_streaming::spdy::{self, Session, SpdyStream};
use berth_streaming::websocket::{self, channel, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pods_env::{run_pod, shim_pids, start_container, PodEnv};
use crate::support::stop_and_remove_pod;

/// `http://host:port/path` → (host:port, /path).
fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_string(), format!("/{path}"))
}

/// Output of one remote-command session.
#[derive(Debug, Default)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// What the error stream carried.
    error: Vec<u8>,
}

impl Outcome {
    /// The exit code from a v4+ status (0 for Success).
    fn exit_code(&self) -> i32 {
        let v: serde_json::Value = serde_json::from_slice(&self.error)
            .unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&self.error)));
        if v["status"] == "Success" {
            return 0;
        }
        assert_eq!(v["reason"], "NonZeroExitCode", "{v}");
        v["details"]["causes"][0]["message"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

async fn read_all(mut s: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

/// Opens a SPDY session on `url` with `protocol`.
async fn spdy_connect(url: &str, protocol: &str) -> (Session, spdy::Incoming) {
    let (host, path) = split_url(url);
    let tcp = TcpStream::connect(&host).await.unwrap();
    let (session, incoming, chosen) =
        spdy::handshake::client_upgrade(tcp, "POST", &host, &path, &[protocol])
            .await
            .unwrap();
    assert_eq!(chosen, protocol);
    (session, incoming)
}

async fn open(session: &Session, kind: &str) -> SpdyStream {
    session
        .open_stream(vec![("streamtype".to_string(), kind.to_string())])
        .await
        .unwrap()
}

/// A SPDY remote-command client: opens the streams client-go opens, sends
/// `stdin` (then half-closes it) and `resize`, collects the outputs.
async fn spdy_session(
    url: &str,
    protocol: &str,
    stdin: Option<&[u8]>,
    stderr: bool,
    resize: Option<(u16, u16)>,
) -> Outcome {
    let (session, _incoming) = spdy_connect(url, protocol).await;
    let error = open(&session, "error").await;
    let stdin_s = match stdin {
        Some(_) => Some(open(&session, "stdin").await),
        None => None,
    };
    let stdout = open(&session, "stdout").await;
    let stderr_s = if stderr {
        Some(open(&session, "stderr").await)
    } else {
        None
    };
    if let Some((w, h)) = resize {
        let mut r = open(&session, "resize").await;
        r.write_all(format!("{{\"Width\":{w},\"Height\":{h}}}\n").as_bytes())
            .await
            .unwrap();
    }
    if let (Some(mut s), Some(data)) = (stdin_s, stdin) {
        s.write_all(data).await.unwrap();
        s.shutdown().await.unwrap();
    }
    let out = tokio::spawn(read_all(stdout));
    let err = stderr_s.map(|s| tokio::spawn(read_all(s)));
    let error = read_all(error).await;
    let stdout = out.await.unwrap();
    let stderr = match err {
        Some(t) => t.await.unwrap(),
        None => Vec::new(),
    };
    session.close().await;
    Outcome {
        stdout,
        stderr,
        error,
    }
}

/// A WebSocket (v5 or v4 binary) remote-command client.
async fn ws_session(url: &str, protocol: &str, stdin: Option<&[u8]>) -> Outcome {
    let (host, path) = split_url(url);
    let tcp = TcpStream::connect(&host).await.unwrap();
    let (ws, chosen) = websocket::handshake::client_upgrade(tcp, &host, &path, &[protocol])
        .await
        .unwrap();
    assert_eq!(chosen, protocol);
    let framing = channel::framing_for(protocol);
    let (mut r, mut w) = ws.split();
    if let Some(data) = stdin {
        w.send(channel::encode(framing, 0, data)).await.unwrap();
        if protocol == "v5.channel.k8s.io" {
            w.send(Message::Binary(vec![255, 0])).await.unwrap();
        }
    }
    let mut o = Outcome::default();
    while let Ok(Some(m)) = r.recv().await {
        if let Message::Close(_) = m {
            break;
        }
        let (ch, data) = channel::decode(framing, &m).unwrap();
        match ch {
            1 => o.stdout.extend(data),
            2 => o.stderr.extend(data),
            3 => o.error.extend(data),
            _ => {}
        }
    }
    o
}

async fn exec_url(
    rt: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
    cmd: &[&str],
    stdin: bool,
    tty: bool,
) -> String {
    rt.exec(cri::ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

/// Pids whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_attach_and_port_forward_over_spdy_and_websocket() {
    let env = PodEnv::new().await;
    let mut rt = env.rt().await;
    let pod = env.pod_config("stream");
    let pod_id = run_pod(&mut rt, &pod).await.unwrap();
    let mut cfg = env.container_config("sh", &["sh"]);
    cfg.stdin = true;
    let sh = start_container(&mut rt, &pod_id, cfg, &pod).await.unwrap();

    // Validation as the kubelet's streaming server does it.
    let bad = rt
        .exec(cri::ExecRequest {
            container_id: sh.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stderr: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let empty = rt
        .exec(cri::ExecRequest {
            container_id: sh.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    let missing = rt
        .exec(cri::ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let script = ["sh", "-c", "cat; echo oops >&2; exit 3"];
    // SPDY, every protocol version: stdin reaches the command, stdout and
    // stderr come back apart, v4+ carries the exit code.
    for proto in [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ] {
        let url = exec_url(&mut rt, &sh, &script, true, false).await;
        let o = spdy_session(&url, proto, Some(b"hello spdy\n"), true, None).await;
        assert_eq!(o.stdout, b"hello spdy\n", "{proto}: {o:?}");
        assert_eq!(o.stderr, b"oops\n", "{proto}");
        if proto.starts_with("v4") || proto.starts_with("v5") {
            assert_eq!(o.exit_code(), 3, "{proto}");
        } else {
            assert!(
                String::from_utf8_lossy(&o.error).contains("exit status 3"),
                "{proto}: {o:?}"
            );
        }
        // The token was single-use.
        let (host, path) = split_url(&url);
        let mut tcp = TcpStream::connect(&host).await.unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[9..12], b"404");
    }
    // WebSocket v5 (close signal ends stdin) and v4.
    let url = exec_url(&mut rt, &sh, &script, true, false).await;
    let o = ws_session(&url, "v5.channel.k8s.io", Some(b"hello ws\n")).await;
    assert_eq!(o.stdout, b"hello ws\n", "{o:?}");
    assert_eq!(o.stderr, b"oops\n");
    assert_eq!(o.exit_code(), 3);
    let url = exec_url(&mut rt, &sh, &["sh", "-c", "echo four"], false, false).await;
    let o = ws_session(&url, "v4.channel.k8s.io", None).await;
    assert_eq!(o.stdout, b"four\n");
    assert_eq!(o.exit_code(), 0);

    // A tty: one output, the window size arrives through ResizePty.
    let url = exec_url(
        &mut rt,
        &sh,
        &["sh", "-c", "sleep 1; stty size"],
        false,
        true,
    )
    .await;
    let o = spdy_session(&url, "v4.channel.k8s.io", None, false, Some((123, 45))).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("45 123"),
        "{o:?}"
    );
    assert_eq!(o.exit_code(), 0);

    // A client that leaves mid-stream: the process, its exec dir and every
    // descriptor berthd and the shim opened for it go.
    let berthd = env.daemon.as_ref().unwrap().child.id() as i32;
    let shims = shim_pids(&env);
    let fds = |pids: &[i32]| -> usize {
        pids.iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).unwrap().count())
            .sum()
    };
    let (berthd_fds, shim_fds) = (fds(&[berthd]), fds(&shims));
    let url = exec_url(&mut rt, &sh, &["sleep", "4242"], false, false).await;
    let (session, _incoming) = spdy_connect(&url, "v4.channel.k8s.io").await;
    let _e = open(&session, "error").await;
    let _o = open(&session, "stdout").await;
    let _s = open(&session, "stderr").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids_with("sleep 4242").is_empty() {
        assert!(Instant::now() < deadline, "exec never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.close().await;
    drop((_e, _o, _s));
    let exec_dirs = || {
        std::fs::read_dir(env.dirs.state().join("containers").join(&sh))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("exec-"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pids_with("sleep 4242").is_empty()
        || exec_dirs() > 0
        || fds(&[berthd]) > berthd_fds
        || fds(&shims) > shim_fds
    {
        assert!(
            Instant::now() < deadline,
            "abandoned exec left behind: pids {:?}, {} exec dirs, berthd fds {} (before {berthd_fds}), shim fds {} (before {shim_fds})",
            pids_with("sleep 4242"),
            exec_dirs(),
            fds(&[berthd]),
            fds(&shims),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Attach to the shell: input runs, its output comes back; the end of
    // the client's stdin ends the attach (the container has no stdinOnce).
    let url = rt
        .attach(cri::AttachRequest {
            container_id: sh.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let (session, _incoming) = spdy_connect(&url, "v4.channel.k8s.io").await;
    let error = open(&session, "error").await;
    let mut stdin = open(&session, "stdin").await;
    let mut stdout = open(&session, "stdout").await;
    let stderr = open(&session, "stderr").await;
    // The tee delivers only what is written after the attach connected.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains("attached-ok") {
        assert!(Instant::now() < deadline, "no attach output: {seen:?}");
        stdin.write_all(b"echo attached-ok\n").await.unwrap();
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), stdout.read(&mut buf)).await
        {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    stdin.shutdown().await.unwrap();
    let err_task = tokio::spawn(read_all(stderr));
    let status = tokio::time::timeout(Duration::from_secs(10), read_all(error))
        .await
        .expect("attach did not end with the client's stdin");
    let v: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(v["status"], "Success", "{v}");
    assert!(err_task.await.unwrap().is_empty());
    session.close().await;
    // The shell is still alive (no stdinOnce): exec still works in it.
    let url = exec_url(&mut rt, &sh, &["echo", "alive"], false, false).await;
    let o = spdy_session(&url, "v4.channel.k8s.io", None, true, None).await;
    assert_eq!(o.stdout, b"alive\n");

    // stdinOnce: the end of the first attach's stdin closes the
    // container's stdin; the rest of its output still arrives.
    let mut once = env.container_config("once", &["sh", "-c", "cat; echo CAT-DONE"]);
    once.stdin = true;
    once.stdin_once = true;
    let once_id = start_container(&mut rt, &pod_id, once, &pod).await.unwrap();
    let url = rt
        .attach(cri::AttachRequest {
            container_id: once_id.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let o = spdy_session(&url, "v4.channel.k8s.io", Some(b"x-once\n"), true, None).await;
    assert_eq!(o.stdout, b"x-once\nCAT-DONE\n", "{o:?}");
    assert_eq!(o.exit_code(), 0);
    assert_eq!(
        crate::pods_env::wait_exited(&mut rt, &once_id)
            .await
            .exit_code,
        0
    );

    // Port-forward to a listener inside the pod's network namespace.
    let server = env.container_config(
        "srv",
        &["sh", "-c", "while true; do echo pong | nc -l -p 8089; done"],
    );
    start_container(&mut rt, &pod_id, server, &pod)
        .await
        .unwrap();
    let pf_url = |rt: &mut cri::runtime_service_client::RuntimeServiceClient<_>| {
        let mut rt = rt.clone();
        let pod_id = pod_id.clone();
        async move {
            rt.port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod_id,
                port: vec![8089],
            })
            .await
            .unwrap()
            .into_inner()
            .url
        }
    };
    // SPDY: data + error stream pair per connection.
    let url = pf_url(&mut rt).await;
    let (session, _incoming) = spdy_connect(&url, "portforward.k8s.io").await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for request_id in 0.. {
        let headers = |kind: &str| {
            vec![
                ("streamtype".to_string(), kind.to_string()),
                ("port".to_string(), "8089".to_string()),
                ("requestid".to_string(), request_id.to_string()),
            ]
        };
        let mut err = session.open_stream(headers("error")).await.unwrap();
        err.shutdown().await.unwrap();
        let data = session.open_stream(headers("data")).await.unwrap();
        got = read_all(data).await;
        let msg = read_all(err).await;
        if got == b"pong\n" {
            assert!(msg.is_empty(), "{}", String::from_utf8_lossy(&msg));
            break;
        }
        // nc may not be listening yet.
        assert!(
            Instant::now() < deadline,
            "port-forward never connected: {}",
            String::from_utf8_lossy(&msg)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(got, b"pong\n");
    // A closed port reports on the error stream.
    let headers = |kind: &str| {
        vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), "1".to_string()),
            ("requestid".to_string(), "refused".to_string()),
        ]
    };
    let mut err = session.open_stream(headers("error")).await.unwrap();
    err.shutdown().await.unwrap();
    let _data = session.open_stream(headers("data")).await.unwrap();
    let msg = String::from_utf8_lossy(&read_all(err).await).into_owned();
    assert!(msg.contains("localhost:1"), "{msg}");
    session.close().await;

    // WebSocket, kubelet style: the port in the query, channel pair 0/1,
    // each channel starting with the port number.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = pf_url(&mut rt).await;
        let (host, path) = split_url(&url);
        let tcp = TcpStream::connect(&host).await.unwrap();
        let (ws, _) = websocket::handshake::client_upgrade(
            tcp,
            &host,
            &format!("{path}?port=8089"),
            &["v4.channel.k8s.io"],
        )
        .await
        .unwrap();
        let (mut r, _w) = ws.split();
        let mut channels: HashMap<u8, Vec<u8>> = HashMap::new();
        while let Ok(Some(m)) = r.recv().await {
            if let Message::Close(_) = m {
                break;
            }
            let (ch, data) = channel::decode(channel::Framing::Binary, &m).unwrap();
            channels.entry(ch).or_default().extend(data);
        }
        assert_eq!(channels[&0][..2], 8089u16.to_le_bytes());
        assert_eq!(channels[&1][..2], 8089u16.to_le_bytes());
        if &channels[&0][2..] == b"pong\n" {
            assert_eq!(channels[&1].len(), 2, "{channels:?}");
            break;
        }
        // nc restarts its listener after every connection: retry.
        let err = String::from_utf8_lossy(&channels[&1][2..]).into_owned();
        assert!(err.contains("localhost:8089"), "{err}");
        assert!(Instant::now() < deadline, "no pong over websocket: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stop_and_remove_pod(&mut rt, &pod_id).await;
}

/// `[streaming] tls_cert_file`/`tls_key_file`: the URLs are https and the
/// server speaks TLS only.
#[tokio::test(flavor = "multi_thread")]
async fn streaming_server_serves_tls_when_configured() {
    let dirs = crate::support::Dirs::new();
    let pki = dirs.tmp.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(&pki)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mut config = dirs.config();
    config.streaming.tls_cert_file = Some(pki.join("cert.pem"));
    config.streaming.tls_key_file = Some(pki.join("key.pem"));
    let daemon = berth_cri_server::server::Daemon::bind(&config)
        .await
        .unwrap();
    let base = daemon.streaming_url().to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(daemon.serve(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = client
        .get(format!("{base}/exec/0123"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(resp.text().await.unwrap().contains("unknown or expired"));
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = base.replacen("https://", "http://", 1);
    assert!(client
        .get(format!("{plain}/exec/0123"))
        .send()
        .await
        .is_err());
    // A bad key file is refused at start-up.
    let mut bad = dirs.config();
    bad.streaming.tls_cert_file = Some(pki.join("cert.pem"));
    bad.streaming.tls_key_file = Some(pki.join("cert.pem"));
    let _ = tx.send(());
    serve.await.unwrap().unwrap();
    let err = berth_cri_server::server::Daemon::bind(&bad)
        .await
        .unwrap_err();
    assert!(
        berth_cri_server::error::chain(&err).contains("private key"),
        "{}",
        berth_cri_server::error::chain(&err)
    );
}

/// A session without traffic is closed after `[streaming] idle_timeout_secs`
/// and its exec process goes with it; one with traffic stays.
#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_are_closed_and_their_exec_killed() {
    let mut env = PodEnv::new().await;
    env.kill9();
    let config = env.dirs.tmp.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[streaming]\nidle_timeout_secs = 2\n");
    std::fs::write(&config, text).unwrap();
    env.start();
    let mut rt = env.rt().await;
    let pod = env.pod_config("idle");
    let pod_id = run_pod(&mut rt, &pod).await.unwrap();
    let sh = start_container(
        &mut rt,
        &pod_id,
        env.container_config("sh", &["sleep", "100000"]),
        &pod,
    )
    .await
    .unwrap();

    // Busy: a command that prints every 500 ms outlives the timeout.
    let url = exec_url(
        &mut rt,
        &sh,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.5; done",
        ],
        false,
        false,
    )
    .await;
    let o = spdy_session(&url, "v4.channel.k8s.io", None, true, None).await;
    assert_eq!(o.stdout, b"1\n2\n3\n4\n5\n6\n7\n8\n", "{o:?}");
    assert_eq!(o.exit_code(), 0);

    // Idle: closed after about 2 s, the process killed.
    let url = exec_url(&mut rt, &sh, &["sleep", "4343"], false, false).await;
    let started = Instant::now();
    let (session, _incoming) = spdy_connect(&url, "v4.channel.k8s.io").await;
    let error = open(&session, "error").await;
    let _o = open(&session, "stdout").await;
    let _s = open(&session, "stderr").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), read_all(error)).await;
    assert!(ended.is_ok(), "the idle session was never closed");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed too early"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pids_with("sleep 4343").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the idle session's process still runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(session);
    stop_and_remove_pod(&mut rt, &pod_id).await;
}
