//! OCI lifecycle hooks: each hook of a stage runs in order with the
//! container state JSON on stdin; a non-zero exit or a timeout stops the
//! stage with an error that carries the hook's output.
//!
//! The hook gets exactly the spec's `env` (an empty environment when absent:
//! the runtime's own environment is not leaked into hooks). While it runs,
//! one poll(2) loop feeds stdin, collects stdout/stderr and watches a pidfd
//! for the exit, so a hook that ignores stdin cannot block the runtime and a
//! hook that leaves a background child holding its pipes is still seen to
//! exit. No threads are started: hooks also run from the container init.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks, State};
use tracing::{debug, warn};

/// At most this much of a hook's stdout and of its stderr is kept.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// Poll period when the kernel has no pidfd_open (before Linux 5.3).
const FALLBACK_TICK: Duration = Duration::from_millis(20);

/// The lifecycle points at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookStage {
    /// Deprecated `prestart`: after create, in the runtime namespace.
    Prestart,
    /// `createRuntime`: after the environment is created, runtime namespace.
    CreateRuntime,
    /// `createContainer`: in the container namespaces, before pivot_root.
    CreateContainer,
    /// `startContainer`: in the container, before the user process.
    StartContainer,
    /// `poststart`: after the user process started.
    Poststart,
    /// `poststop`: after the container was deleted.
    Poststop,
}

impl HookStage {
    /// The runtime-spec name of the stage ("createRuntime"...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Prestart => "prestart",
            Self::CreateRuntime => "createRuntime",
            Self::CreateContainer => "createContainer",
            Self::StartContainer => "startContainer",
            Self::Poststart => "poststart",
            Self::Poststop => "poststop",
        }
    }

    /// The hooks of this stage in a spec's `hooks` (empty when unset).
    pub fn select(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            Self::Prestart => hooks.prestart(),
            Self::CreateRuntime => hooks.create_runtime(),
            Self::CreateContainer => hooks.create_container(),
            Self::StartContainer => hooks.start_container(),
            Self::Poststart => hooks.poststart(),
            Self::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

impl fmt::Display for HookStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors from running hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// runtime-spec: the hook path must be absolute.
    #[error("{stage} hook path {path} is not absolute")]
    RelativePath {
        /// The stage.
        stage: HookStage,
        /// The hook path.
        path: PathBuf,
    },
    /// runtime-spec: a timeout must be greater than zero.
    #[error("{stage} hook {path} has an invalid timeout {timeout} (must be > 0)")]
    InvalidTimeout {
        /// The stage.
        stage: HookStage,
        /// The hook path.
        path: PathBuf,
        /// The value given.
        timeout: i64,
    },
    /// The state could not be serialised.
    #[error("failed to serialise the container state for {stage} hooks")]
    State {
        /// The stage.
        stage: HookStage,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The hook could not be started.
    #[error("failed to start {stage} hook {path}")]
    Spawn {
        /// The stage.
        stage: HookStage,
        /// The hook path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Watching the hook failed (poll, pipes, wait).
    #[error("failed while running {stage} hook {path}")]
    Io {
        /// The stage.
        stage: HookStage,
        /// The hook path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The hook ran past its timeout and was killed.
    #[error("{stage} hook {path} timed out after {secs} s")]
    Timeout {
        /// The stage.
        stage: HookStage,
        /// The hook path.
        path: PathBuf,
        /// The timeout.
        secs: i64,
    },
    /// The hook exited unsuccessfully.
    #[error("{stage} hook {path} failed ({status}); stderr: {stderr:?}; stdout: {stdout:?}")]
    Failed {
        /// The stage.
        stage: HookStage,
        /// The hook path.
        path: PathBuf,
        /// Exit code or signal.
        status: String,
        /// What the hook wrote to stderr (up to 64 KiB).
        stderr: String,
        /// What the hook wrote to stdout (up to 64 KiB).
        stdout: String,
    },
}

/// Runs the hooks of one stage in order; the first failure stops the stage.
pub fn run_hooks(stage: HookStage, hooks: &[Hook], state: &State) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).map_err(|source| HookError::State { stage, source })?;
    for hook in hooks {
        run_hook(stage, hook, &json)?;
    }
    Ok(())
}

fn build_command(hook: &Hook) -> Command {
    let mut cmd = Command::new(hook.path());
    if let Some((argv0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for entry in hook.env().iter().flatten() {
        match entry.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                cmd.env(k, v);
            }
            _ => {
                warn!(%entry, path = %hook.path().display(), "hook env entry is not KEY=VALUE; skipped")
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run_hook(stage: HookStage, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    if !path.is_absolute() {
        return Err(HookError::RelativePath { stage, path });
    }
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => {
            return Err(HookError::InvalidTimeout {
                stage,
                path,
                timeout: t,
            })
        }
        Some(t) => Some(t),
        None => None,
    };
    debug!(%stage, path = %path.display(), "running hook");
    let mut child = build_command(hook)
        .spawn()
        .map_err(|source| HookError::Spawn {
            stage,
            path: path.clone(),
            source,
        })?;
    let io_err = |source| HookError::Io {
        stage,
        path: path.clone(),
        source,
    };
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    let mut out = Output::default();
    match watch(&mut child, state, deadline, &mut out, true) {
        Ok(Some(status)) => check_status(stage, &path, status, out),
        Ok(None) => {
            // Deadline passed: kill and reap so no zombie or orphan remains.
            if let Err(e) = child.kill() {
                warn!(error = %e, path = %path.display(), "failed to kill timed-out hook");
            }
            child.wait().map_err(io_err)?;
            Err(HookError::Timeout {
                stage,
                path,
                secs: timeout.unwrap_or_default(),
            })
        }
        Err(e) => {
            // Never leave the hook running after an error of ours.
            let _ = child.kill();
            let _ = child.wait();
            Err(io_err(e))
        }
    }
}

fn check_status(
    stage: HookStage,
    path: &std::path::Path,
    status: ExitStatus,
    out: Output,
) -> Result<(), HookError> {
    let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    if status.success() {
        if !stdout.is_empty() || !stderr.is_empty() {
            debug!(%stage, path = %path.display(), %stdout, %stderr, "hook output");
        }
        return Ok(());
    }
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    };
    Err(HookError::Failed {
        stage,
        path: path.to_path_buf(),
        status,
        stderr,
        stdout,
    })
}

#[derive(Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// pidfd_open(2): an fd that becomes readable when the process exits.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if rc < 0 {
        return None;
    }
    // The syscall returns an int-sized fd on success.
    let fd = rc as libc::c_int;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads what is available into `buf` (bounded). Returns false at EOF.
fn drain(reader: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Feeds stdin and gathers output until the child exits (`Some(status)`) or
/// the deadline passes (`None`). `use_pidfd` is false only in tests of the
/// pre-5.3 fallback.
fn watch(
    child: &mut Child,
    state: &[u8],
    deadline: Option<Instant>,
    out: &mut Output,
    use_pidfd: bool,
) -> std::io::Result<Option<ExitStatus>> {
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in [
        stdin.as_ref().map(|s| s.as_fd()),
        stdout.as_ref().map(|s| s.as_fd()),
        stderr.as_ref().map(|s| s.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd)?;
    }
    let pidfd = if use_pidfd {
        pidfd_open(child.id())
    } else {
        None
    };
    let mut written = 0;
    loop {
        if pidfd.is_none() {
            if let Some(status) = child.try_wait()? {
                return finish(status, stdout, stderr, out).map(Some);
            }
        }
        let now = Instant::now();
        let remaining = match deadline {
            Some(d) if d <= now => return Ok(None),
            Some(d) => Some(d - now),
            None => None,
        };
        let wait = match (remaining, pidfd.is_some()) {
            (Some(r), true) => r,
            (Some(r), false) => r.min(FALLBACK_TICK),
            (None, true) => Duration::MAX,
            (None, false) => FALLBACK_TICK,
        };
        let timeout = if wait == Duration::MAX {
            PollTimeout::NONE
        } else {
            // Round up so we never spin on a sub-millisecond remainder.
            let ms = wait.as_millis().saturating_add(1);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        };
        let (pid_ready, in_ready, out_ready, err_ready) = {
            let mut fds = Vec::with_capacity(4);
            let mut slots = [None; 4];
            if let Some(p) = &pidfd {
                slots[0] = Some(fds.len());
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &stdin {
                slots[1] = Some(fds.len());
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
            }
            if let Some(s) = &stdout {
                slots[2] = Some(fds.len());
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &stderr {
                slots[3] = Some(fds.len());
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |slot: Option<usize>| {
                slot.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (
                ready(slots[0]),
                ready(slots[1]),
                ready(slots[2]),
                ready(slots[3]),
            )
        };
        if in_ready {
            if let Some(s) = stdin.as_mut() {
                match s.write(&state[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The hook does not read its stdin: that is its choice.
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => written = state.len(),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                if written >= state.len() {
                    stdin = None; // EOF for the hook.
                }
            }
        }
        if out_ready {
            if let Some(s) = stdout.as_mut() {
                if !drain(s, &mut out.stdout)? {
                    stdout = None;
                }
            }
        }
        if err_ready {
            if let Some(s) = stderr.as_mut() {
                if !drain(s, &mut out.stderr)? {
                    stderr = None;
                }
            }
        }
        if pid_ready {
            let status = child.wait()?;
            return finish(status, stdout, stderr, out).map(Some);
        }
    }
}

/// Collects what is left in the pipes without waiting for EOF: a daemon the
/// hook started may keep them open forever.
fn finish(
    status: ExitStatus,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    out: &mut Output,
) -> std::io::Result<ExitStatus> {
    if let Some(mut s) = stdout {
        drain(&mut s, &mut out.stdout)?;
    }
    if let Some(mut s) = stderr {
        drain(&mut s, &mut out.stderr)?;
    }
    Ok(status)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn state() -> State {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0", "id": "hook-test", "status": "created",
            "pid": 4242, "bundle": "/tmp/bundle",
            "annotations": {"a": "b"}
        }))
        .unwrap()
    }

    fn sh_hook(script: &str, extra: &[&str], env: &[&str], timeout: Option<i64>) -> Hook {
        let mut args = vec![
            "sh".to_string(),
            "-c".to_string(),
            script.to_string(),
            "sh".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut v = serde_json::json!({"path": "/bin/sh", "args": args,
            "env": env});
        if let Some(t) = timeout {
            v["timeout"] = t.into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn p(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    #[test]
    fn hooks_run_in_order_with_state_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let (s1, s2, order, env_out) = (
            dir.path().join("s1"),
            dir.path().join("s2"),
            dir.path().join("order"),
            dir.path().join("env"),
        );
        let hooks = vec![
            sh_hook(
                r#"cat > "$1"; echo "$2" >> "$3""#,
                &[p(&s1), "one", p(&order)],
                &[],
                None,
            ),
            sh_hook(
                r#"cat > "$1"; echo "$2" >> "$3"; env > "$4"; echo "$0" >> "$3""#,
                &[p(&s2), "two", p(&order), p(&env_out)],
                &["FOO=bar", "BAZ=a=b"],
                Some(10),
            ),
        ];
        let st = state();
        run_hooks(HookStage::CreateRuntime, &hooks, &st).unwrap();
        assert_eq!(std::fs::read_to_string(&order).unwrap(), "one\ntwo\nsh\n");
        for f in [&s1, &s2] {
            let got: State = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            assert_eq!(got, st);
        }
        let env = std::fs::read_to_string(&env_out).unwrap();
        assert!(env.lines().any(|l| l == "FOO=bar"), "{env}");
        assert!(env.lines().any(|l| l == "BAZ=a=b"), "{env}");
        if std::env::var_os("CARGO_PKG_NAME").is_some() {
            assert!(!env.contains("CARGO_PKG_NAME"), "runtime env leaked: {env}");
        }
    }

    #[test]
    fn failing_hook_stops_the_stage_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("should-not-exist");
        let hooks = vec![
            sh_hook("echo boom-on-stderr >&2; echo out; exit 3", &[], &[], None),
            sh_hook(r#"touch "$1""#, &[p(&marker)], &[], None),
        ];
        let err = run_hooks(HookStage::Poststart, &hooks, &state()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("boom-on-stderr") && msg.contains("exit status 3"),
            "{msg}"
        );
        assert!(msg.starts_with("poststart hook /bin/sh"), "{msg}");
        assert!(!marker.exists());
    }

    #[test]
    fn timeout_kills_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let hooks = vec![sh_hook(
            r#"echo $$ > "$1"; exec sleep 30"#,
            &[p(&pidfile)],
            &[],
            Some(1),
        )];
        let start = Instant::now();
        let err = run_hooks(HookStage::Prestart, &hooks, &state()).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, HookError::Timeout { secs: 1, .. }));
        assert_eq!(err.to_string(), "prestart hook /bin/sh timed out after 1 s");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: the pid no longer exists (or was reused by another process).
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map_or(true, |c| c.trim() != "sleep");
        assert!(gone);
    }

    #[test]
    fn hook_ignoring_stdin_or_leaving_a_daemon_does_not_hang() {
        let mut st = state();
        let big: std::collections::HashMap<String, String> = (0..2000)
            .map(|i| (format!("key-{i}"), "v".repeat(200)))
            .collect();
        st.set_annotations(Some(big));
        let start = Instant::now();
        let hooks = vec![
            sh_hook("exit 0", &[], &[], Some(20)),
            sh_hook("sleep 3 & exit 0", &[], &[], Some(20)),
        ];
        run_hooks(HookStage::StartContainer, &hooks, &st).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn fallback_without_pidfd_reaps_and_times_out() {
        let st = serde_json::to_vec(&state()).unwrap();
        let hook = sh_hook("cat; echo err >&2; exit 4", &[], &[], None);
        let mut child = build_command(&hook).spawn().unwrap();
        let mut out = Output::default();
        let status = watch(&mut child, &st, None, &mut out, false)
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(4));
        assert_eq!(out.stdout, st);
        assert_eq!(out.stderr, b"err\n");

        let hook = sh_hook("exec sleep 30", &[], &[], None);
        let mut child = build_command(&hook).spawn().unwrap();
        let deadline = Some(Instant::now() + Duration::from_millis(200));
        let res = watch(&mut child, &st, deadline, &mut Output::default(), false).unwrap();
        assert!(res.is_none());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn invalid_hooks_are_refused() {
        let rel: Hook = serde_json::from_value(serde_json::json!({"path": "bin/true"})).unwrap();
        assert!(matches!(
            run_hooks(HookStage::Poststop, &[rel], &state()),
            Err(HookError::RelativePath { .. })
        ));
        let zero = sh_hook("exit 0", &[], &[], Some(0));
        assert!(matches!(
            run_hooks(HookStage::Poststop, &[zero], &state()),
            Err(HookError::InvalidTimeout { timeout: 0, .. })
        ));
        let missing: Hook =
            serde_json::from_value(serde_json::json!({"path": "/nonexistent/berth-hook"})).unwrap();
        assert!(matches!(
            run_hooks(HookStage::Poststop, &[missing], &state()),
            Err(HookError::Spawn { .. })
        ));
    }

    #[test]
    fn stage_names_and_selection() {
        let hooks: Hooks = serde_json::from_value(serde_json::json!({
            "createContainer": [{"path": "/a"}, {"path": "/b"}],
            "poststop": [{"path": "/c"}]
        }))
        .unwrap();
        assert_eq!(HookStage::CreateContainer.select(&hooks).len(), 2);
        assert_eq!(
            HookStage::Poststop.select(&hooks)[0].path(),
            Path::new("/c")
        );
        assert!(HookStage::Prestart.select(&hooks).is_empty());
        assert_eq!(HookStage::CreateRuntime.to_string(), "createRuntime");
        assert_eq!(HookStage::StartContainer.name(), "startContainer");
    }
}
