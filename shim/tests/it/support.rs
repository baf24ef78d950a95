//! Test harness: drives the built `berth-shim` the way berthd does — an
//! Events ttrpc service for TTRPC_ADDRESS, `berth-shim ... start` in the
//! pod's directory, a TaskClient on the printed address — plus busybox
//! bundles, a pinned netns and FIFO helpers. Everything is removed on drop.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    ConnectRequest, CreateTaskRequest, DeleteRequest, ForwardRequest, KillRequest, ShutdownRequest,
    StartRequest, WaitRequest,
};
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::ttrpc::context::Context;
use containerd_shim_protos::ttrpc::{self, Server};
use containerd_shim_protos::types::mount::Mount;
use containerd_shim_protos::{create_events, Client, Events, TaskClient};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

/// The shim binary to drive: `BERTH_SHIM_BIN` (e.g. a release build, to
/// measure memory) or the one cargo built with the tests.
pub fn shim_bin() -> String {
    std::env::var("BERTH_SHIM_BIN").unwrap_or_else(|_| SHIM.to_string())
}

/// A unique short suffix for ids, cgroups and netns names.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Records every event topic the shim forwards.
#[derive(Default)]
pub struct Recorder {
    pub topics: Mutex<Vec<String>>,
}

impl Events for Recorder {
    fn forward(&self, _ctx: &ttrpc::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        self.topics.lock().unwrap().push(req.envelope.topic.clone());
        Ok(Empty::new())
    }
}

/// Applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "hostname", "true", "false", "ls", "ps", "head", "dd", "seq",
    "tty", "stty", "grep",
];

/// Writes a busybox-static rootfs into `dir`.
pub fn busybox_rootfs(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    fs::set_permissions(dir.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for a in APPLETS {
        symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// A pinned network namespace made with `ip netns add`.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("bshim");
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// One pod: a temp state dir, a running shim and a client.
pub struct Pod {
    pub id: String,
    pub dir: TempDir,
    pub client: TaskClient,
    pub recorder: Arc<Recorder>,
    pub shim_pid: i32,
    pub address: String,
    events: Option<Server>,
}

impl Pod {
    /// Starts a shim for a new pod id.
    pub fn start() -> Pod {
        let id = unique("pod");
        let dir = tempfile::Builder::new()
            .prefix("berth-shim-it")
            .tempdir()
            .unwrap();
        let events_sock = dir.path().join("events.sock");
        let recorder = Arc::new(Recorder::default());
        let mut events = Server::new()
            .bind(&format!("unix://{}", events_sock.display()))
            .unwrap()
            .register_service(create_events(recorder.clone()));
        events.start().unwrap();
        let pod_dir = dir.path().join("pods").join(&id);
        fs::create_dir_all(&pod_dir).unwrap();
        // A descriptor berthd might leak (no CLOEXEC): the shim server must
        // not keep it (it would reach every helper and container).
        let canary_path = dir.path().join("leaked-fd");
        let canary = fs::File::create(&canary_path).unwrap();
        nix::fcntl::fcntl(
            &canary,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        let out = Command::new(shim_bin())
            .args([
                "-namespace",
                "berth",
                "-id",
                &id,
                "-address",
                &dir.path().join("berth.sock").display().to_string(),
                "start",
            ])
            .current_dir(&pod_dir)
            .env("TTRPC_ADDRESS", &events_sock)
            .env("BERTH_SHIM_LOG", "debug")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shim start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let sock_dir = format!("unix://{}/s/", dir.path().display());
        assert!(address.starts_with(&sock_dir), "{address}");
        let mode = fs::metadata(dir.path().join("s"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "socket dir mode {mode:o}");
        let client = TaskClient::new(Client::connect(&address).unwrap());
        let shim_pid = peer_pid(&address);
        drop(canary);
        // From here on Drop stops the shim even when a check fails.
        let pod = Pod {
            id,
            dir,
            client,
            recorder,
            shim_pid,
            address,
            events: Some(events),
        };
        // No task yet: Connect names an unknown task.
        let resp = pod
            .client
            .connect(Context::default(), &ConnectRequest::new());
        assert!(resp.is_err());
        let leaked = fs::read_dir(format!("/proc/{shim_pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .any(|t| t == canary_path);
        assert!(
            !leaked,
            "the shim server kept a descriptor leaked by its starter"
        );
        pod
    }

    pub fn pod_dir(&self) -> PathBuf {
        self.dir.path().join("pods").join(&self.id)
    }

    pub fn shim_log(&self) -> String {
        fs::read_to_string(self.pod_dir().join("shim.log")).unwrap_or_default()
    }

    /// A bundle dir for `id` with `spec` as config.json.
    pub fn bundle(&self, id: &str, spec: &Value) -> PathBuf {
        let b = self.dir.path().join("containers").join(id).join("bundle");
        fs::create_dir_all(&b).unwrap();
        fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
        b
    }

    pub fn sandbox_bundle(&self, spec: &Value) -> PathBuf {
        let b = self.pod_dir().join("bundle");
        fs::create_dir_all(&b).unwrap();
        fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
        b
    }

    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        rootfs: Option<&Path>,
        stdio: [&str; 3],
    ) -> ttrpc::Result<u32> {
        let mut req = CreateTaskRequest::new();
        req.id = id.to_string();
        req.bundle = bundle.display().to_string();
        if let Some(r) = rootfs {
            let mut m = Mount::new();
            m.type_ = "bind".into();
            m.source = r.display().to_string();
            m.options = vec!["rbind".into(), "rw".into()];
            req.rootfs = vec![m];
        }
        req.stdin = stdio[0].into();
        req.stdout = stdio[1].into();
        req.stderr = stdio[2].into();
        self.client.create(Context::default(), &req).map(|r| r.pid)
    }

    pub fn start_task(&self, id: &str, exec_id: &str) -> ttrpc::Result<u32> {
        let mut req = StartRequest::new();
        req.id = id.into();
        req.exec_id = exec_id.into();
        self.client.start(Context::default(), &req).map(|r| r.pid)
    }

    pub fn wait(&self, id: &str, exec_id: &str) -> u32 {
        let mut req = WaitRequest::new();
        req.id = id.into();
        req.exec_id = exec_id.into();
        self.client
            .wait(ttrpc::context::with_timeout(30_000_000_000), &req)
            .unwrap_or_else(|e| panic!("wait {id}: {e}\n{}", self.shim_log()))
            .exit_status
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> ttrpc::Result<()> {
        let mut req = KillRequest::new();
        req.id = id.into();
        req.exec_id = exec_id.into();
        req.signal = signal;
        req.all = all;
        self.client.kill(Context::default(), &req).map(|_| ())
    }

    pub fn delete(&self, id: &str, exec_id: &str) -> ttrpc::Result<u32> {
        let mut req = DeleteRequest::new();
        req.id = id.into();
        req.exec_id = exec_id.into();
        self.client
            .delete(Context::default(), &req)
            .map(|r| r.exit_status)
    }

    /// Shutdown, then waits until the shim process is gone.
    pub fn shutdown(&self) {
        self.client
            .shutdown(Context::default(), &ShutdownRequest::new())
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || !pid_alive(self.shim_pid)),
            "shim {} still alive after Shutdown",
            self.shim_pid
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- shim log of {} ----\n{}", self.id, self.shim_log());
        }
        if pid_alive(self.shim_pid) {
            let _ = self.client.shutdown(
                Context::default(),
                &ShutdownRequest {
                    now: true,
                    ..Default::default()
                },
            );
            if !wait_until(Duration::from_secs(3), || !pid_alive(self.shim_pid)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.shim_pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(s) = self.events.take() {
            s.shutdown();
        }
        // Lazy-unmount anything left below the temp dir before it is removed.
        for m in mounts_under(self.dir.path()).into_iter().rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let path = self.address.trim_start_matches("unix://");
        let _ = fs::remove_file(path);
    }
}

/// Pid of the process listening on a unix socket (SO_PEERCRED).
pub fn peer_pid(address: &str) -> i32 {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let s = std::os::unix::net::UnixStream::connect(address.trim_start_matches("unix://")).unwrap();
    getsockopt(&s, PeerCredentials).unwrap().pid()
}

pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// The sandbox spec berthd would write: pod namespaces, no process.
pub fn sandbox_spec(netns: Option<&Path>, hostname: &str, pid_ns: bool) -> Value {
    let mut ns = vec![json!({"type": "ipc"}), json!({"type": "uts"})];
    if let Some(p) = netns {
        ns.push(json!({"type": "network", "path": p}));
    }
    if pid_ns {
        ns.push(json!({"type": "pid"}));
    }
    json!({
        "ociVersion": "1.2.0",
        "hostname": hostname,
        "annotations": {"io.kubernetes.cri.container-type": "sandbox"},
        "linux": {"namespaces": ns}
    })
}

/// A container spec (berth-runtime's default) running `args` inside the
/// sandbox's pinned namespaces.
pub fn container_spec(id: &str, sandbox_bundle: &Path, netns: &Path, args: &[&str]) -> Value {
    let spec = berth_runtime::default_spec::default_spec(false);
    let mut v = serde_json::to_value(&spec).unwrap();
    v["process"]["args"] = json!(args);
    v["process"]["terminal"] = json!(false);
    v.as_object_mut().unwrap().remove("hostname");
    let ns = sandbox_bundle.join("ns");
    v["linux"]["namespaces"] = json!([
        {"type": "pid"},
        {"type": "network", "path": netns},
        {"type": "ipc", "path": ns.join("ipc")},
        {"type": "uts", "path": ns.join("uts")},
        {"type": "mount"},
    ]);
    v["linux"]["cgroupsPath"] = json!(format!("/berth-shim-it-{id}"));
    v
}

pub fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Reads a FIFO to EOF in a thread (opening blocks until a writer comes).
pub fn read_fifo(path: &Path) -> std::thread::JoinHandle<String> {
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let mut s = String::new();
        fs::File::open(&p).unwrap().read_to_string(&mut s).unwrap();
        s
    })
}

/// Lines of a CRI log as (stream, text), P chunks joined.
pub fn cri_lines(path: &Path) -> Vec<(String, String)> {
    let data = fs::read(path).unwrap_or_default();
    let lines = berth_shim::log_writer::parse_cri_log(&data).unwrap();
    berth_shim::log_writer::reassemble(lines)
        .into_iter()
        .map(|l| {
            (
                l.stream.as_str().to_string(),
                String::from_utf8_lossy(&l.content).into_owned(),
            )
        })
        .collect()
}

pub fn exit_json(bundle: &Path) -> HashMap<String, Value> {
    serde_json::from_slice(&fs::read(bundle.join("exit.json")).unwrap()).unwrap()
}
