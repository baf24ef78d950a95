//! `run` / `exec -t` with a terminal and no `--console-socket`: the runtime
//! relays the pty itself, like runc. The test plays the user's terminal: a
//! pty pair whose slave is the CLI's stdin/stdout/stderr.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{channel, Receiver};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};
use nix::sys::signal::{kill, Signal};
use nix::sys::termios::{tcgetattr, LocalFlags};
use nix::unistd::Pid;
use serde_json::json;

use crate::support::{Bundle, Container, Runtime};

const T: Duration = Duration::from_secs(30);

/// The user's side of a terminal: the pty master, read in the background.
struct Terminal {
    master: File,
    slave: OwnedFd,
    chunks: Receiver<Vec<u8>>,
    seen: String,
}

impl Terminal {
    fn open(rows: u16, cols: u16) -> Terminal {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&ws), None).unwrap();
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let (tx, chunks) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once every slave fd is closed.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            master,
            slave: pty.slave,
            chunks,
            seen: String::new(),
        }
    }

    /// Spawns `cmd` with this terminal's slave as its stdin, stdout and stderr.
    fn spawn(&self, mut cmd: Command) -> Child {
        cmd.stdin(self.slave.try_clone().unwrap())
            .stdout(self.slave.try_clone().unwrap())
            .stderr(self.slave.try_clone().unwrap());
        cmd.spawn().unwrap()
    }

    /// Reads until everything shown so far contains `needle`.
    #[track_caller]
    fn wait_for(&mut self, needle: &str) -> &str {
        let deadline = Instant::now() + T;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(c) => self.seen.push_str(&String::from_utf8_lossy(&c)),
                Err(_) => panic!("never saw {needle:?}; terminal showed {:?}", self.seen),
            }
        }
        &self.seen
    }

    fn type_line(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
        self.master.write_all(b"\n").unwrap();
    }

    /// Resizes the terminal (the kernel would SIGWINCH a controlling process).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from our stack; the fd is our open master.
        let ret = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(ret, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Whether the terminal is back in cooked mode (echo, canonical input).
    fn is_cooked(&self) -> bool {
        let t = tcgetattr(self.slave.as_fd()).unwrap();
        t.local_flags
            .contains(LocalFlags::ECHO | LocalFlags::ICANON)
    }
}

/// Waits for the CLI, killing it after `T`.
fn wait_cli(mut child: Child, term: &Terminal) -> ExitStatus {
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runtime did not exit; terminal showed {:?}", term.seen);
        }
        sleep(Duration::from_millis(10));
    }
}

fn is_pty_line(out: &str) -> bool {
    out.lines().any(|l| {
        let l = l.trim_end_matches('\r');
        l == "/dev/console" || l.starts_with("/dev/pts/")
    })
}

/// Whether an error points at the console socket (runc says "console socket").
fn names_console_socket(stderr: &str) -> bool {
    stderr.contains("--console-socket") || stderr.contains("console socket")
}

fn tty_container(tag: &str, script: &str) -> Container {
    let mut b = Bundle::new();
    b.set("/process/terminal", json!(true));
    b.sh(script);
    let c = Container::new(&Runtime::under_test(), tag, b);
    c.bundle.write_config();
    c
}

#[test]
fn run_relays_the_terminal_without_console_socket() {
    let c = tty_container(
        "ttyrelay",
        "tty; stty size; echo hello-from-tty; read x; echo got=$x; stty size; echo bye; exit 7",
    );
    let mut term = Terminal::open(30, 100);
    let mut cmd = c.command();
    cmd.arg("run").arg("-b").arg(c.bundle.path()).arg(&c.id);
    let child = term.spawn(cmd);
    let cli = Pid::from_raw(child.id() as i32);
    let shown = term.wait_for("hello-from-tty").to_owned();
    assert!(is_pty_line(&shown), "no pty name in {shown:?}");
    // The caller's window size was copied to the container's pty at start.
    assert!(shown.contains("30 100"), "{shown:?}");
    assert!(!term.is_cooked(), "terminal not in raw mode while relaying");
    // A resize reaches the container on SIGWINCH, before the typed line.
    term.resize(40, 120);
    kill(cli, Signal::SIGWINCH).unwrap();
    term.type_line("typed-line");
    let shown = term.wait_for("bye").to_owned();
    let st = wait_cli(child, &term);
    assert_eq!(st.code(), Some(7), "{shown:?}");
    let after = shown.split("got=typed-line").nth(1).unwrap_or("");
    assert!(after.contains("40 120"), "{shown:?}");
    assert!(term.is_cooked(), "terminal settings not restored");
    assert!(!c.state_dir().exists(), "run left its state behind");
}

#[test]
fn run_forwards_signals_while_relaying() {
    let c = tty_container(
        "ttysig",
        "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done",
    );
    let mut term = Terminal::open(24, 80);
    let mut cmd = c.command();
    cmd.arg("run").arg("-b").arg(c.bundle.path()).arg(&c.id);
    let child = term.spawn(cmd);
    term.wait_for("ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    term.wait_for("got-term");
    let st = wait_cli(child, &term);
    assert_eq!(st.code(), Some(9), "{:?}", term.seen);
    assert!(term.is_cooked(), "terminal settings not restored");
}

#[test]
fn exec_tty_relays_the_terminal_without_console_socket() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let mut c = Container::new(&Runtime::under_test(), "ttyexec", b);
    c.launch();
    let mut term = Terminal::open(25, 90);
    let mut cmd = c.command();
    cmd.args(["exec", "-t", c.id.as_str(), "sh", "-c"])
        .arg("tty; stty size; echo hello-from-exec; read x; echo got=$x; exit 5");
    let child = term.spawn(cmd);
    let shown = term.wait_for("hello-from-exec").to_owned();
    assert!(is_pty_line(&shown), "no pty name in {shown:?}");
    assert!(shown.contains("25 90"), "{shown:?}");
    term.type_line("exec-input");
    term.wait_for("got=exec-input");
    let st = wait_cli(child, &term);
    assert_eq!(st.code(), Some(5), "{:?}", term.seen);
    assert!(term.is_cooked(), "terminal settings not restored");
    // The container itself is untouched by the exec's end.
    assert_eq!(c.status(), "running");
}

#[test]
fn detached_terminal_without_console_socket_is_refused() {
    let mut c = tty_container("ttydetach", "true");
    let path = c.bundle.path().to_str().unwrap().to_owned();
    let out = c.cmd(&["run", "-d", "-b", &path, &c.id]);
    assert!(!out.success(), "{out}");
    assert!(names_console_socket(&out.stderr), "{out}");
    assert!(!c.state_dir().exists(), "refused run left state behind");

    c.bundle.sh("sleep 1000");
    c.bundle.set("/process/terminal", json!(false));
    c.launch();
    let out = c.cmd(&["exec", "-d", "-t", &c.id, "true"]);
    assert!(!out.success(), "{out}");
    assert!(names_console_socket(&out.stderr), "{out}");
}
