//! `logs [-f] [--tail N] [-t] [--since]` and `exec [-i] [-e] [-u] [-w]`
//! with its exit codes.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::{berth, busybox, cli, ok, run_sh, wait_state, Scope};

#[test]
fn logs_all_tail_timestamps_and_since() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("logs");
    ok(
        &c,
        &[
            "run",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2",
        ],
    );
    let out = ok(&c, &["logs", &name]);
    assert_eq!(out.stdout, "line1\nline2\nline3\nline4\nline5\n", "{out}");
    assert_eq!(out.stderr, "oops\n", "stderr lines go to stderr: {out}");

    let out = ok(&c, &["logs", "--tail", "2", &name]);
    // The last two lines of the log, whichever stream they came from.
    let mut both: Vec<&str> = out.stdout.lines().chain(out.stderr.lines()).collect();
    both.sort_unstable();
    assert_eq!(both, ["line5", "oops"], "{out}");
    let out = ok(&c, &["logs", "--tail", "0", &name]);
    assert_eq!(out.stdout, "", "{out}");

    let out = ok(&c, &["logs", "-t", &name]);
    for line in out.stdout.lines() {
        let (ts, text) = line.split_once(' ').unwrap_or_else(|| panic!("{out}"));
        chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts:?}: {e}: {out}"));
        assert!(text.starts_with("line"), "{out}");
    }
    assert_eq!(out.stdout.lines().count(), 5, "{out}");

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let out = ok(&c, &["logs", "--since", &future, &name]);
    assert_eq!(out.stdout, "", "{out}");
    let out = ok(&c, &["logs", "--since", "1h", &name]);
    assert_eq!(out.stdout.lines().count(), 5, "{out}");
}

#[test]
fn logs_follow_streams_until_the_container_exits() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("follow");
    run_sh(
        &c,
        &name,
        "echo first; sleep 2; for i in 1 2 3; do echo tick$i; sleep 0.3; done",
    );
    wait_state(&c, &name, "running", Duration::from_secs(20));
    let mut child = c.spawn(&["logs", "-f", &name]).unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < 4 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => got.push(l),
            Err(e) => {
                let _ = child.kill();
                panic!("logs -f stalled after {got:?}: {e}");
            }
        }
    }
    assert_eq!(got, ["first", "tick1", "tick2", "tick3"]);
    // The container exits; so does `logs -f`, with 0.
    let ended = crate::eventually(Duration::from_secs(20), || child.try_wait().ok().flatten());
    let status = ended.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("logs -f kept running after the container exited")
    });
    assert!(status.success(), "{status}");
    reader.join().unwrap();
}

#[test]
fn exec_runs_in_the_container_with_its_exit_codes() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("exec");
    ok(
        &c,
        &["run", "-d", "--name", &name, &busybox(), "sleep", "1000000"],
    );
    wait_state(&c, &name, "running", Duration::from_secs(20));

    let out = ok(&c, &["exec", &name, "echo", "in the container"]);
    assert_eq!(out.stdout, "in the container\n", "{out}");
    let out = berth(&c, &["exec", &name, "sh", "-c", "echo e >&2; exit 5"]);
    assert_eq!(out.code, Some(5), "{out}");
    assert_eq!(out.stderr, "e\n", "{out}");
    let out = berth(&c, &["exec", &name, "no-such-command-xyz"]);
    assert_eq!(out.code, Some(127), "{out}");
    let out = berth(&c, &["exec", &name, "/etc/passwd"]);
    assert_eq!(out.code, Some(126), "{out}");

    let out = ok(
        &c,
        &[
            "exec",
            "-e",
            "GREETING=hi there",
            &name,
            "sh",
            "-c",
            "echo $GREETING",
        ],
    );
    assert_eq!(out.stdout, "hi there\n", "{out}");
    let out = ok(&c, &["exec", "-u", "33:33", &name, "id", "-u"]);
    assert_eq!(out.stdout, "33\n", "{out}");
    // Any numeric group, and names from the container's own files.
    let out = ok(&c, &["exec", "-u", "1234:5678", &name, "id", "-g"]);
    assert_eq!(out.stdout, "5678\n", "{out}");
    let out = ok(&c, &["exec", "-u", "nobody", &name, "id", "-un"]);
    assert_eq!(out.stdout, "nobody\n", "{out}");
    let out = berth(&c, &["exec", "-u", "no-such-user", &name, "id"]);
    assert_eq!(out.code, Some(126), "{out}");
    assert!(out.stderr.contains("unable to find user"), "{out}");
    let out = ok(&c, &["exec", "-w", "/etc", &name, "pwd"]);
    assert_eq!(out.stdout, "/etc\n", "{out}");
    let out = c
        .run_with_stdin(
            &["exec", "-i", &name, "sh", "-c", "wc -c"],
            &[b'x'; 100_000],
        )
        .unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "100000", "{out}");

    // Exec in a stopped container is refused.
    ok(&c, &["stop", "-t", "0", &name]);
    let out = berth(&c, &["exec", &name, "true"]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("not running"), "{out}");
}
