//! Terminal mode: the pty master arrives on `--console-socket` (SCM_RIGHTS)
//! and carries the container's input and output.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::support::cmd::{self, CMD_TIMEOUT};
use crate::support::console::{read_until_hangup, ConsoleSocket};
use crate::support::{Bundle, Container, Runtime};

const T: Duration = Duration::from_secs(30);

/// Creates `b` with terminal: true and returns the container plus the pty master.
fn create_with_console(tag: &str, mut b: Bundle) -> (Container, std::fs::File) {
    b.set("/process/terminal", json!(true));
    let mut c = Container::new(&Runtime::under_test(), tag, b);
    let sock_path = c.work().join("console.sock");
    let rx = ConsoleSocket::bind(&sock_path).receive_in_background(T);
    let out = c.create_with(&["--console-socket", sock_path.to_str().unwrap()], |_| {});
    assert!(out.success(), "create with console socket failed: {out}");
    let master = rx.join().unwrap().expect("pty master");
    (c, master)
}

fn is_pty_name(s: &str) -> bool {
    s == "/dev/console"
        || s.strip_prefix("/dev/pts/")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_digit()))
}

#[test]
fn console_socket_receives_the_pty_master() {
    let mut b = Bundle::new();
    b.sh("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; echo TERM=$TERM; echo done");
    let (mut c, master) = create_with_console("tty", b);
    assert!(c.start().success());
    let out = read_until_hangup(master, T);
    c.wait();
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(is_pty_name(lines[0]), "tty printed {:?}: {out:?}", lines[0]);
    assert!(lines.contains(&"all-ttys"), "{out:?}");
    assert!(lines.contains(&"done"), "{out:?}");
    // The pty's line discipline turned \n into \r\n: the output really went through a tty.
    assert!(out.contains("done\r\n"), "{out:?}");
}

#[test]
fn console_carries_input_to_the_container() {
    let mut b = Bundle::new();
    b.sh("stty -echo; echo ask; read line; echo got:$line");
    let (mut c, mut master) = create_with_console("ttyin", b);
    assert!(c.start().success());
    let reader = master.try_clone().unwrap();
    let rx = std::thread::spawn(move || read_until_hangup(reader, T));
    // Typed ahead is fine: the line discipline buffers it until `read`.
    master.write_all(b"hello-pty\n").unwrap();
    let out = rx.join().unwrap();
    c.wait();
    assert!(out.contains("got:hello-pty"), "{out:?}");
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let mut b = Bundle::new();
    b.set("/process/terminal", json!(true));
    b.args(&["true"]);
    let mut c = Container::new(&Runtime::under_test(), "ttynosock", b);
    let out = c.create();
    assert!(
        !out.success(),
        "create with terminal and no console socket: {out}"
    );
}

#[test]
fn exec_with_tty_through_console_socket() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let mut c = Container::new(&Runtime::under_test(), "exectty", b);
    c.launch();
    let sock_path = c.work().join("exec-console.sock");
    let rx = ConsoleSocket::bind(&sock_path).receive_in_background(T);
    let mut cmd = c.command();
    // runc only hands out the master of a detached exec (otherwise it proxies the tty itself).
    let pid_file = c.work().join("exec.pid");
    cmd.args([
        "exec",
        "--detach",
        "--tty",
        "--console-socket",
        sock_path.to_str().unwrap(),
    ])
    .arg("--pid-file")
    .arg(&pid_file)
    .args([c.id.as_str(), "sh", "-c", "tty; echo exec-done"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let line = cmd::cmdline(&cmd);
    let child = cmd.spawn().unwrap();
    let master = match rx.join().unwrap() {
        Ok(m) => m,
        Err(e) => {
            let st = cmd::wait_child(child, CMD_TIMEOUT, &line);
            panic!("no pty master from `{line}` ({st}): {e}");
        }
    };
    let st = cmd::wait_child(child, CMD_TIMEOUT, &line);
    let out = read_until_hangup(master, T);
    // The detached exec process was orphaned to this test (subreaper): reap it,
    // or its zombie keeps the cgroup busy and delays `delete`.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap());
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    assert!(st.success(), "`{line}` -> {st}; output {out:?}");
    let first = out.lines().next().unwrap_or("").trim_end_matches('\r');
    assert!(is_pty_name(first), "{out:?}");
    assert!(out.contains("exec-done\r\n"), "{out:?}");
}
