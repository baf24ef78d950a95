//! Runs the `berth` CLI of the same build against a test berthd and
//! captures what it prints and how it exits, as a user's shell would see
//! it: stdout and stderr are pipes (not a TTY), `HOME` is a private
//! directory (so credentials files of different tests never meet), and the
//! daemon is chosen with `-H unix://<socket>`.
//!
//! ```no_run
//! # fn t() -> Result<(), Box<dyn std::error::Error>> {
//! let berth = berth_conformance::harness::shared()?;
//! let cli = berth_conformance::harness::cli::Cli::for_berth(&berth)?;
//! let out = cli.run(&["ps", "-a"])?;
//! assert_eq!(out.code, Some(0), "{out}");
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{locate, Berth, HarnessError};

/// The CLI binary's name in the target directory.
pub const CLI_BIN: &str = "berth";

/// How long one CLI invocation may take before it is killed (a pull or
/// push of a test image takes well under a second).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);

/// Errors running the CLI (not the CLI's own failures: those are an
/// [`Output`] with a non-zero code).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The `berth` binary is not built.
    #[error("locating the berth CLI")]
    Locate(#[source] Box<HarnessError>),
    /// The private HOME could not be made.
    #[error("creating the CLI's private HOME")]
    Home(#[source] std::io::Error),
    /// The process could not be started.
    #[error("spawning {bin} {args:?}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for it or reading its output failed.
    #[error("waiting for `berth {args}`")]
    Wait {
        /// The arguments, joined.
        args: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed.
    #[error("`berth {args}` did not exit within {waited:?} (killed); stdout so far:\n{stdout}\nstderr so far:\n{stderr}")]
    Timeout {
        /// The arguments, joined.
        args: String,
        /// How long it ran.
        waited: Duration,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// What one CLI invocation printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The arguments after `-H <host>`.
    pub args: Vec<String>,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Wall time of the invocation.
    pub elapsed: Duration,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Non-empty stdout lines, trimmed at the end.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`berth {}` exited {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// The `berth` CLI aimed at one daemon, with a private HOME.
#[derive(Debug)]
pub struct Cli {
    /// The binary.
    pub bin: PathBuf,
    /// `unix://<socket>`.
    pub host: String,
    home: tempfile::TempDir,
    env: Vec<(OsString, OsString)>,
}

impl Cli {
    /// The CLI of this build talking to `socket`.
    pub fn new(socket: &Path) -> Result<Cli, CliError> {
        let bin = locate(CLI_BIN).map_err(|e| CliError::Locate(Box::new(e)))?;
        let home = tempfile::Builder::new()
            .prefix("berth-cli-home-")
            .tempdir()
            .map_err(CliError::Home)?;
        Ok(Cli {
            bin,
            host: format!("unix://{}", socket.display()),
            home,
            env: Vec::new(),
        })
    }

    /// The CLI talking to a harness daemon.
    pub fn for_berth(berth: &Berth) -> Result<Cli, CliError> {
        Cli::new(&berth.fp.socket)
    }

    /// Adds an environment variable to every invocation.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The private HOME (the credentials file lives below it).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A `Command` for `berth -H <host> args...` with the private HOME, no
    /// inherited `BERTH_HOST` and piped stdout/stderr.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let mut cmd = self.bare_command();
        cmd.arg("-H").arg(&self.host);
        cmd.args(args.iter().map(AsRef::as_ref));
        cmd
    }

    /// Like [`Cli::command`] without `-H` (to test `BERTH_HOST` and the default).
    pub fn bare_command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("BERTH_HOST")
            .env_remove("NO_COLOR")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("XDG_RUNTIME_DIR", self.home.path().join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `berth -H <host> args...` with stdin from /dev/null.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Result<Output, CliError> {
        self.run_command(self.command(args), None, CLI_TIMEOUT)
    }

    /// Runs `berth -H <host> args...` feeding `stdin`, then closing it.
    pub fn run_with_stdin<S: AsRef<str>>(
        &self,
        args: &[S],
        stdin: &[u8],
    ) -> Result<Output, CliError> {
        self.run_command(self.command(args), Some(stdin), CLI_TIMEOUT)
    }

    /// Runs a prepared command (see [`Cli::command`]) with a time limit.
    pub fn run_command(
        &self,
        mut cmd: Command,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, CliError> {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let shown = shown_args(&args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|source| CliError::Spawn {
            bin: self.bin.clone(),
            args: args.clone(),
            source,
        })?;
        let feeder = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                // A CLI that exits without reading all of stdin closes
                // the pipe: that is its business, not an error here.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(&data);
                }))
            }
            _ => None,
        };
        let out_reader = child.stdout.take().map(reader_thread);
        let err_reader = child.stderr.take().map(reader_thread);
        let status = wait_with_timeout(&mut child, timeout).map_err(|source| CliError::Wait {
            args: shown.clone(),
            source,
        })?;
        let stdout = join_reader(out_reader);
        let stderr = join_reader(err_reader);
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let elapsed = start.elapsed();
        match status {
            Some(status) => Ok(Output {
                args: args.into_iter().skip(2).collect(),
                code: status.code(),
                stdout,
                stderr,
                elapsed,
            }),
            None => Err(CliError::Timeout {
                args: shown,
                waited: elapsed,
                stdout,
                stderr,
            }),
        }
    }

    /// Starts `berth -H <host> args...` and returns the child (piped
    /// stdout/stderr) for commands that keep running (`logs -f`, `attach`).
    pub fn spawn<S: AsRef<str>>(&self, args: &[S]) -> Result<Child, CliError> {
        let mut cmd = self.command(args);
        cmd.spawn().map_err(|source| CliError::Spawn {
            bin: self.bin.clone(),
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            source,
        })
    }
}

fn shown_args(args: &[String]) -> String {
    args.iter()
        .skip_while(|a| a.as_str() == "-H" || a.starts_with("unix://"))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

fn reader_thread<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // Whatever was read before an error is still worth showing.
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn join_reader(h: Option<std::thread::JoinHandle<Vec<u8>>>) -> String {
    h.and_then(|h| h.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits for `child`; kills and reaps it after `timeout` (then `None`).
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fake_cli(script: &str) -> (tempfile::TempDir, Cli) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("berth");
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&bin, exec).unwrap();
        let cli = Cli {
            bin,
            host: "unix:///nonexistent.sock".into(),
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        };
        (dir, cli)
    }

    #[test]
    fn captures_streams_code_and_args_after_the_host() {
        let (_d, cli) = fake_cli("echo \"$@\"; echo \"home=$HOME\" >&2; exit 3");
        let out = cli.run(&["ps", "-a"]).unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.args, ["ps", "-a"]);
        assert_eq!(out.stdout, "-H unix:///nonexistent.sock ps -a\n");
        assert_eq!(out.stderr.trim(), format!("home={}", cli.home().display()));
        assert!(!out.success());
    }

    #[test]
    fn feeds_stdin_and_closes_it() {
        let (_d, cli) = fake_cli("cat");
        let out = cli.run_with_stdin(&["x"], b"abc\n").unwrap();
        assert_eq!(out.stdout, "abc\n");
        assert!(out.success());
    }

    #[test]
    fn a_hung_cli_is_killed_and_reported() {
        let (_d, cli) = fake_cli("echo started; exec sleep 30");
        let err = cli
            .run_command(cli.command(&["x"]), None, Duration::from_millis(300))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CliError::Timeout { .. }), "{msg}");
        assert!(msg.contains("started"), "{msg}");
    }
}
