//! Helpers shared by the conformance test binaries (each binary includes
//! this module; not every binary uses every helper).
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_conformance::client::{container_config, expect_code, match_pod_namespaces, Cri};
use berth_conformance::harness::{self, Berth};
use berth_proto::cri;
use tonic::Code;

pub use berth_proto::cri::ContainerState;

/// Logs of the harness and client on stderr (shown for failing tests).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,berth_conformance=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The binary's shared berthd (panics with the start-up error otherwise).
pub fn berth() -> (Arc<Berth>, Cri) {
    init_tracing();
    let b = harness::shared().unwrap_or_else(|e| panic!("{e}"));
    let c = b.client();
    (b, c)
}

/// Asserts `result` failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, what: &str) {
    if let Err(msg) = expect_code(result, code) {
        panic!("{what}: {msg}");
    }
}

/// A pod that stays up (a long sleep) with one container; returns
/// (pod config, pod id, container id).
pub struct PodWith {
    pub config: cri::PodSandboxConfig,
    pub pod: String,
    pub ctr: String,
}

/// Runs a pod from `config` with a started container running `cmd` in busybox.
pub async fn pod_with(
    b: &Berth,
    c: &Cri,
    config: cri::PodSandboxConfig,
    ctr_name: &str,
    cmd: &[&str],
) -> PodWith {
    let pod = c.run_pod(&config).await.unwrap();
    let mut cc = container_config(ctr_name, &b.busybox(), cmd);
    match_pod_namespaces(&mut cc, &config);
    let ctr = c.create_started(&pod, &cc, &config).await.unwrap();
    PodWith { config, pod, ctr }
}

/// A pod named `name` with one started container sleeping forever.
pub async fn sleeping_pod(b: &Berth, c: &Cri, name: &str) -> PodWith {
    pod_with(b, c, b.pod_config(name), "sleeper", &["sleep", "1000000"]).await
}

/// The container's log file on the host.
pub fn log_path(config: &cri::PodSandboxConfig, ctr_name: &str) -> PathBuf {
    Path::new(&config.log_directory).join(format!("{ctr_name}.log"))
}

/// One CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub text: String,
}

/// Parses a CRI log file strictly: `<RFC3339Nano> <stdout|stderr> <P|F> <text>`.
pub fn parse_log(path: &Path) -> Result<Vec<LogLine>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        let line = line
            .strip_suffix('\n')
            .ok_or_else(|| format!("unterminated log line {line:?}"))?;
        let mut parts = line.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("short log line {line:?}"));
        };
        chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|e| format!("bad timestamp {time:?} in {line:?}: {e}"))?;
        if stream != "stdout" && stream != "stderr" {
            return Err(format!("bad stream {stream:?} in {line:?}"));
        }
        if tag != "P" && tag != "F" {
            return Err(format!("bad tag {tag:?} in {line:?}"));
        }
        out.push(LogLine {
            time: time.into(),
            stream: stream.into(),
            tag: tag.into(),
            text: parts.next().unwrap_or("").into(),
        });
    }
    Ok(out)
}

/// The full lines of one stream (P pieces joined to their F).
pub fn stream_lines(lines: &[LogLine], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in lines.iter().filter(|l| l.stream == stream) {
        cur.push_str(&l.text);
        if l.tag == "F" {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the container's log has a full stdout line equal to `want`.
pub async fn wait_log_line(path: &Path, stream: &str, want: &str, timeout: Duration) -> bool {
    eventually(timeout, || async {
        let lines = parse_log(path).ok()?;
        stream_lines(&lines, stream)
            .iter()
            .any(|l| l == want)
            .then_some(())
    })
    .await
    .is_some()
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pod's primary IP from PodSandboxStatus.
pub async fn pod_ip(c: &Cri, pod: &str) -> String {
    let st = c.pod_status(pod, false).await.unwrap().status.unwrap();
    st.network.map(|n| n.ip).unwrap_or_default()
}

/// The host pid of the one process whose command line contains `marker`
/// (containers run `sleep <unique number>` so the host can find them).
pub fn host_pid_with(marker: &str) -> Option<u32> {
    let found = harness::procs::processes_with_arg(marker);
    match found.as_slice() {
        [one] => Some(one.pid),
        _ => None,
    }
}

/// A unique number for `sleep` markers.
pub fn unique_seconds() -> String {
    let n = u64::from_str_radix(&harness::random_hex(3), 16).unwrap();
    format!("{}", 1_000_000 + n)
}
