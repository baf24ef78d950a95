//! Drives a runtime binary through runc's command line: one container per
//! `Container`, with its own `--root` state dir and unique id, always deleted
//! (`delete --force`) on drop.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use super::bundle::Bundle;
use super::cmd::{self, CmdOutput, CMD_TIMEOUT};

/// How long a container may run before a test gives up on it.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A runtime binary with runc's command line.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub path: PathBuf,
}

impl Runtime {
    /// The binary under test: `$BERTH_IT_RUNTIME` (e.g. /usr/sbin/runc while
    /// developing the tests) or the crate's own `berth-runtime`.
    pub fn under_test() -> Runtime {
        let path = std::env::var_os("BERTH_IT_RUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime")));
        Runtime { path }
    }

    /// runc, when installed.
    pub fn runc() -> Option<Runtime> {
        ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map(|p| Runtime { path: p.into() })
    }

    /// The binary's file name (runc, berth-runtime, ...).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn is_runc(&self) -> bool {
        self.name() == "runc"
    }

    /// `<runtime> --root <root>`, ready for more arguments.
    pub fn command(&self, root: &Path) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(root);
        c
    }
}

/// What a container printed and how its init ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` when the init was not our child to reap (another process is its parent).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SUBREAPER: Once = Once::new();

/// A container id unique across tests and concurrent test processes.
pub fn unique_id(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("it-{tag}-{}-{n}", std::process::id())
}

/// Makes this test process the reaper of orphaned descendants, so a
/// container init (orphaned when `create` returns) can be waitpid'ed here.
pub fn ensure_subreaper() {
    SUBREAPER.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// One container of the runtime under test.
pub struct Container {
    pub rt: Runtime,
    pub id: String,
    pub bundle: Bundle,
    root: TempDir,
    work: TempDir,
    pid: Option<i32>,
    reaped: bool,
    deleted: bool,
}

impl Container {
    /// A not yet created container; sets a unique relative `cgroupsPath` unless the bundle has one.
    pub fn new(rt: &Runtime, tag: &str, mut bundle: Bundle) -> Container {
        ensure_subreaper();
        let id = unique_id(tag);
        if bundle.config().pointer("/linux/cgroupsPath").is_none() {
            bundle.set("/linux/cgroupsPath", Value::from(cgroup_leaf(&id)));
        }
        Container {
            rt: rt.clone(),
            id,
            bundle,
            root: tempfile::Builder::new()
                .prefix("berth-it-root-")
                .tempdir()
                .unwrap(),
            work: tempfile::Builder::new()
                .prefix("berth-it-io-")
                .tempdir()
                .unwrap(),
            pid: None,
            reaped: false,
            deleted: false,
        }
    }

    /// The runtime's state root (`--root`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A scratch directory of the test (io files, pid file, sockets).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// The container init's host pid, known after a successful create.
    pub fn pid(&self) -> i32 {
        self.pid.expect("container not created")
    }

    /// `<runtime> --root <root>` for this container's runtime.
    pub fn command(&self) -> Command {
        self.rt.command(self.root())
    }

    /// Runs `<runtime> --root R <args>` with a deadline.
    pub fn cmd(&self, args: &[&str]) -> CmdOutput {
        let mut c = self.command();
        c.args(args);
        cmd::run(c, CMD_TIMEOUT)
    }

    /// `create -b BUNDLE --pid-file F ID`, the container's stdio going to files.
    pub fn create(&mut self) -> CmdOutput {
        self.create_with(&[], |_| {})
    }

    /// Like `create`, panicking on failure.
    #[track_caller]
    pub fn create_ok(&mut self) {
        let out = self.create();
        assert!(out.success(), "create failed: {out}");
    }

    /// `create` with extra arguments (before the id) and a hook to adjust the command.
    pub fn create_with(&mut self, extra: &[&str], adjust: impl FnOnce(&mut Command)) -> CmdOutput {
        self.bundle.write_config();
        let pid_file = self.work().join("init.pid");
        let mut c = self.command();
        c.arg("create")
            .arg("--bundle")
            .arg(self.bundle.path())
            .arg("--pid-file")
            .arg(&pid_file)
            .args(extra)
            .arg(&self.id);
        let out = File::create(self.stdout_path()).unwrap();
        let err = File::create(self.stderr_path()).unwrap();
        c.stdin(Stdio::null()).stdout(out).stderr(err);
        adjust(&mut c);
        let line = cmd::cmdline(&c);
        let child = c.spawn().unwrap();
        let status = cmd::wait_child(child, CMD_TIMEOUT, &line);
        if status.success() {
            let text = fs::read_to_string(&pid_file)
                .unwrap_or_else(|e| panic!("create succeeded but no pid file: {e}"));
            self.pid = Some(text.trim().parse().expect("pid file content"));
        }
        CmdOutput {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            cmdline: line,
        }
    }

    #[track_caller]
    pub fn start(&self) -> CmdOutput {
        self.cmd(&["start", &self.id])
    }

    /// create + start, panicking on failure.
    #[track_caller]
    pub fn launch(&mut self) {
        self.create_ok();
        let out = self.start();
        assert!(out.success(), "start failed: {out}");
    }

    /// Waits for the init to exit; `None` when it is not our child to reap.
    pub fn wait(&mut self) -> Option<ExitStatus> {
        self.wait_timeout(EXIT_TIMEOUT)
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = Pid::from_raw(self.pid());
        let deadline = Instant::now() + timeout;
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    return Some(ExitStatus::from_raw(code << 8));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.reaped = true;
                    return Some(ExitStatus::from_raw(sig as i32));
                }
                Ok(_) => {}
                Err(Errno::ECHILD) => {
                    // Not our child: fall back to watching the pid disappear.
                    if !pid_alive(pid.as_raw()) {
                        return None;
                    }
                }
                Err(e) => panic!("waitpid {pid}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "container {} (pid {pid}) still running after {timeout:?}; stdout: {}",
                self.id,
                self.stdout()
            );
            sleep(Duration::from_millis(5));
        }
    }

    /// create, start, wait for exit; returns what the container printed.
    #[track_caller]
    pub fn run_to_exit(&mut self) -> Finished {
        self.launch();
        let status = self.wait();
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.work().join("stdout")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.work().join("stderr")
    }

    /// The container's stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.stdout_path()).unwrap_or_default()
    }

    /// The container's stderr so far (also the runtime's own messages from create).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Polls the container's stdout until it contains `needle`.
    #[track_caller]
    pub fn wait_for_stdout(&self, needle: &str) -> String {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            let s = self.stdout();
            if s.contains(needle) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "container {} never printed {needle:?}; stdout: {s}; stderr: {}",
                self.id,
                self.stderr()
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// `state ID` parsed; panics when the command fails.
    #[track_caller]
    pub fn state(&self) -> Value {
        let out = self.cmd(&["state", &self.id]).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state JSON: {e}: {out}"))
    }

    /// The `status` field of `state`.
    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls `state` until `status` is `want`.
    #[track_caller]
    pub fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            let st = self.status();
            if st == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "status stayed {st}, wanted {want}"
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// `exec ID ARGS...` in the foreground.
    pub fn exec(&self, args: &[&str]) -> CmdOutput {
        let mut a = vec!["exec", self.id.as_str()];
        a.extend_from_slice(args);
        self.cmd(&a)
    }

    /// `exec ID sh -c SCRIPT`.
    pub fn exec_sh(&self, script: &str) -> CmdOutput {
        self.exec(&["sh", "-c", script])
    }

    /// `kill ID SIG`.
    pub fn kill(&self, sig: &str) -> CmdOutput {
        self.cmd(&["kill", &self.id, sig])
    }

    /// `delete [--force] ID`; remembers success so drop does not repeat it.
    pub fn delete(&mut self, force: bool) -> CmdOutput {
        let out = if force {
            self.cmd(&["delete", "--force", &self.id])
        } else {
            self.cmd(&["delete", &self.id])
        };
        if out.success() {
            self.deleted = true;
            self.reap_quietly();
        }
        out
    }

    /// The container's state directory under `--root` (runc's layout `<root>/<id>`).
    pub fn state_dir(&self) -> PathBuf {
        self.root().join(&self.id)
    }

    fn reap_quietly(&mut self) {
        if let (Some(pid), false) = (self.pid, self.reaped) {
            let pid = Pid::from_raw(pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => sleep(Duration::from_millis(5)),
                    Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(_) => {
                        self.reaped = true;
                        return;
                    }
                    Ok(_) => sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.deleted {
            let mut c = self.command();
            c.args(["delete", "--force", &self.id]);
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(mut child) = c.spawn() {
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    sleep(Duration::from_millis(5));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // A broken runtime must not leave the init behind: it is our child
        // (subreaper) until reaped, so its pid cannot have been reused.
        if let (Some(pid), false) = (self.pid, self.reaped) {
            let pid = Pid::from_raw(pid);
            if !matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Err(Errno::ECHILD)) {
                let _ = kill(pid, Signal::SIGKILL);
            }
            self.reap_quietly();
        }
        remove_cgroup_leaf(&self.id);
    }
}

/// The relative cgroupsPath the runner gives each container.
pub fn cgroup_leaf(id: &str) -> String {
    format!("berth-it-{id}")
}

/// Whether a pid exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// This process's cgroup per hierarchy, from /proc/self/cgroup: (controllers, path).
pub fn own_cgroups() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _n = it.next()?;
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// The host directory of hierarchy `controllers` ("memory", "" for cgroup2, "name=systemd").
pub fn hierarchy_mount(controllers: &str) -> PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    if controllers.is_empty() {
        if base.join("unified").exists() {
            return base.join("unified");
        }
        return base.into();
    }
    let name = controllers.strip_prefix("name=").unwrap_or(controllers);
    base.join(name)
}

/// Host directories of the cgroup a relative `cgroupsPath` leaf lands in, one per hierarchy.
pub fn relative_cgroup_dirs(leaf: &str) -> Vec<PathBuf> {
    own_cgroups()
        .into_iter()
        .map(|(ctrl, path)| {
            hierarchy_mount(&ctrl)
                .join(path.trim_start_matches('/'))
                .join(leaf)
        })
        .collect()
}

/// Best-effort rmdir of the runner's cgroup leaves (only empty cgroups can be removed).
fn remove_cgroup_leaf(id: &str) {
    for dir in relative_cgroup_dirs(&cgroup_leaf(id)) {
        match fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => eprintln!("cleanup: cannot remove {}: {e}", dir.display()),
        }
    }
}

/// Host directories of every cgroup `pid` is in, from /proc/<pid>/cgroup (host view).
pub fn proc_cgroup_dirs(pid: i32) -> Vec<(String, PathBuf)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _n = it.next()?;
            let ctrl = it.next()?.to_owned();
            let path = it.next()?;
            let dir = hierarchy_mount(&ctrl).join(path.trim_start_matches('/'));
            Some((ctrl, dir))
        })
        .collect()
}

/// Mount points (field 5 of mountinfo) of `/proc/<pid>/mountinfo` that contain `needle`.
pub fn mounts_containing(pid: &str, needle: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}
