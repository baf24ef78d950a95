//! Running a runtime command with a deadline, its output captured in files.
//!
//! Files rather than pipes: a detached container inherits the runtime's
//! stdio, and a pipe held by a still-running container would block a reader
//! until the container exits.

use std::fs::File;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Default deadline for one runtime invocation.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// The result of a finished command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub cmdline: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
}

/// A human-readable command line.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into temp files; kills it after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> CmdOutput {
    let line = cmdline(&cmd);
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{line}`: {e}"));
    let status = wait_child(child, timeout, &line);
    CmdOutput {
        status,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
        cmdline: line,
    }
}

/// Waits for `child` at most `timeout`, killing it (and panicking) when it hangs.
pub fn wait_child(mut child: Child, timeout: Duration, line: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let st = child.wait().unwrap();
            panic!("`{line}` timed out after {timeout:?} (killed: {st:?})");
        }
        sleep(Duration::from_millis(5));
    }
}

/// Reads a whole file from its start.
pub fn read_all(f: &mut File) -> String {
    use std::io::Seek;
    f.rewind().unwrap();
    let mut s = String::new();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    s.push_str(&String::from_utf8_lossy(&buf));
    s
}
