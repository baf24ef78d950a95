//! Container lifecycle commands: `create`, `start [-a]`, `stop [-t] [-s]`,
//! `restart`, `kill [-s]`, `rm [-f] [-v]`, `wait`, `rename`, `diff`,
//! `attach`, `top`, `stats --no-stream`, and "No such container".

use std::time::{Duration, Instant};

use crate::{berth, busybox, cli, fails, inspect, is_hex, ok, run_sh, state, wait_state, Scope};

#[test]
fn unknown_containers_exit_1_with_no_such_container() {
    let (_b, c) = cli();
    let ghost = crate::unique("ghost");
    for cmd in [
        &["start", ghost.as_str()][..],
        &["stop", &ghost],
        &["restart", &ghost],
        &["kill", &ghost],
        &["rm", &ghost],
        &["logs", &ghost],
        &["exec", &ghost, "true"],
        &["wait", &ghost],
        &["top", &ghost],
        &["port", &ghost],
        &["diff", &ghost],
        &["rename", &ghost, "x"],
        &["attach", &ghost],
        &["commit", &ghost],
        &["cp", &format!("{ghost}:/etc/passwd"), "/tmp"],
    ] {
        let out = berth(&c, cmd);
        fails(&out, 1, &format!("No such container: {ghost}"));
    }
}

#[test]
fn create_then_start_attached_and_detached() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("create");
    let out = ok(
        &c,
        &[
            "create",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "echo created-run; exit 2",
        ],
    );
    let id = out.stdout.trim().to_string();
    assert!(is_hex(&id, 64), "create prints the id: {out}");
    assert_eq!(state(&c, &name), "created");
    let ps = ok(&c, &["ps", "-a", "--filter", &format!("name={name}")]);
    assert!(ps.stdout.contains("Created"), "{ps}");

    // start -a streams the output and exits with the container's code.
    let out = berth(&c, &["start", "-a", &name]);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(out.stdout, "created-run\n", "{out}");

    // Plain start prints the name given; starting again reuses the id.
    let out = ok(&c, &["start", &name]);
    assert_eq!(out.stdout.trim(), name, "{out}");
    let info = inspect(&c, &name);
    assert_eq!(info["Id"], id.as_str(), "restart in place keeps the id");
}

#[test]
fn stop_with_timeout_kills_a_process_that_ignores_sigterm() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("stop");
    // sh as PID 1 ignores SIGTERM without a handler.
    run_sh(&c, &name, "while true; do sleep 0.2; done");
    wait_state(&c, &name, "running", Duration::from_secs(20));
    let t = Instant::now();
    let out = ok(&c, &["stop", "-t", "1", &name]);
    let took = t.elapsed();
    assert_eq!(out.stdout.trim(), name, "{out}");
    assert!(
        took >= Duration::from_millis(900),
        "stop -t 1 waited {took:?}"
    );
    assert!(took < Duration::from_secs(8), "stop -t 1 took {took:?}");
    let st = &inspect(&c, &name)["State"];
    assert_eq!(st["Status"], "exited", "{st}");
    assert_eq!(st["ExitCode"], 137, "{st}");
    let ps = ok(&c, &["ps", "-a", "--filter", &format!("name={name}")]);
    assert!(ps.stdout.contains("Exited (137)"), "{ps}");
    // Stopping a stopped container is fine, as in Docker.
    ok(&c, &["stop", &name]);
}

#[test]
fn restart_keeps_the_id_and_the_writable_layer() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("restart");
    let id = ok(
        &c,
        &["run", "-d", "--name", &name, &busybox(), "sleep", "1000000"],
    )
    .stdout;
    ok(&c, &["exec", &name, "sh", "-c", "echo kept > /marker"]);
    let pid_before = inspect(&c, &name)["State"]["Pid"].clone();
    let out = ok(&c, &["restart", "-t", "1", &name]);
    assert_eq!(out.stdout.trim(), name, "{out}");
    wait_state(&c, &name, "running", Duration::from_secs(20));
    let info = inspect(&c, &name);
    assert_eq!(info["Id"], id.trim());
    assert_ne!(info["State"]["Pid"], pid_before, "a new process runs");
    let out = ok(&c, &["exec", &name, "cat", "/marker"]);
    assert_eq!(out.stdout, "kept\n", "{out}");
}

#[test]
fn kill_with_a_signal_and_wait_for_the_code() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("kill");
    run_sh(
        &c,
        &name,
        "trap 'exit 42' USR1; touch /ready; while true; do sleep 0.1; done",
    );
    let ready = crate::eventually(Duration::from_secs(20), || {
        berth(&c, &["exec", &name, "test", "-e", "/ready"])
            .success()
            .then_some(())
    });
    assert!(ready.is_some(), "the trap was never set");
    let out = ok(&c, &["kill", "-s", "USR1", &name]);
    assert_eq!(out.stdout.trim(), name, "{out}");
    let out = ok(&c, &["wait", &name]);
    assert_eq!(out.stdout.trim(), "42", "{out}");

    // Default signal KILL; killing a stopped container is an error.
    let name2 = s.container("kill9");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--name",
            &name2,
            &busybox(),
            "sleep",
            "1000000",
        ],
    );
    ok(&c, &["kill", &name2]);
    let out = ok(&c, &["wait", &name2]);
    assert_eq!(out.stdout.trim(), "137", "{out}");
    let out = berth(&c, &["kill", &name2]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("not running"), "{out}");
}

#[test]
fn stop_with_a_signal_sends_that_signal_first() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("stops");
    run_sh(
        &c,
        &name,
        "trap 'exit 5' INT; trap '' TERM; touch /ready; while true; do sleep 0.1; done",
    );
    let ready = crate::eventually(Duration::from_secs(20), || {
        berth(&c, &["exec", &name, "test", "-e", "/ready"])
            .success()
            .then_some(())
    });
    assert!(ready.is_some(), "the trap was never set");
    // SIGTERM is ignored: only SIGINT ends it with 5, long before 30 s.
    let started = Instant::now();
    let out = ok(&c, &["stop", "-s", "SIGINT", "-t", "30", &name]);
    assert_eq!(out.stdout.trim(), name, "{out}");
    assert!(started.elapsed() < Duration::from_secs(20), "{out}");
    let out = ok(&c, &["wait", &name]);
    assert_eq!(out.stdout.trim(), "5", "{out}");
    let out = berth(&c, &["stop", "-s", "NOSUCHSIG", &name]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("invalid signal"), "{out}");
}

#[test]
fn wait_blocks_until_exit() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("wait");
    run_sh(&c, &name, "sleep 1; exit 9");
    let t = Instant::now();
    let out = ok(&c, &["wait", &name]);
    assert_eq!(out.stdout.trim(), "9", "{out}");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "wait returned early"
    );
}

#[test]
fn rm_refuses_a_running_container_unless_forced_and_v_removes_anonymous_volumes() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("rmf");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-v",
            "/anon-data",
            &busybox(),
            "sleep",
            "1000000",
        ],
    );
    let anon = inspect(&c, &name)["Mounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Destination"] == "/anon-data"))
        .and_then(|m| m["Name"].as_str())
        .unwrap_or_else(|| panic!("no anonymous volume in Mounts"))
        .to_string();
    let vols = ok(&c, &["volume", "ls", "-q"]);
    assert!(vols.lines().contains(&anon.as_str()), "{vols}");

    let out = berth(&c, &["rm", &name]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("running"), "{out}");
    assert_eq!(state(&c, &name), "running");
    let out = ok(&c, &["rm", "-f", "-v", &name]);
    assert_eq!(out.stdout.trim(), name, "{out}");
    fails(&berth(&c, &["inspect", &name]), 1, "No such");
    let vols = ok(&c, &["volume", "ls", "-q"]);
    assert!(
        !vols.lines().contains(&anon.as_str()),
        "rm -v removes {anon}: {vols}"
    );
}

#[test]
fn rename_changes_the_name_everywhere() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let old = s.container("old");
    let new = s.container("new");
    ok(&c, &["create", "--name", &old, &busybox(), "true"]);
    ok(&c, &["rename", &old, &new]);
    let info = inspect(&c, &new);
    assert_eq!(info["Name"].as_str().unwrap().trim_start_matches('/'), new);
    fails(&berth(&c, &["inspect", &old]), 1, "No such");
    let ps = ok(&c, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ps.lines().contains(&new.as_str()), "{ps}");
    // Taking a name in use fails.
    let other = s.container("other");
    ok(&c, &["create", "--name", &other, &busybox(), "true"]);
    let out = berth(&c, &["rename", &other, &new]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains(&new), "{out}");
}

#[test]
fn diff_lists_added_changed_and_deleted_paths() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("diff");
    ok(
        &c,
        &[
            "run",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "touch /added; echo more >> /etc/passwd; rm /etc/group",
        ],
    );
    let out = ok(&c, &["diff", &name]);
    let lines = out.lines();
    for want in ["A /added", "C /etc/passwd", "D /etc/group", "C /etc"] {
        assert!(lines.contains(&want), "diff lacks {want:?}: {out}");
    }
}

#[test]
fn attach_connects_stdin_and_stdout_and_ends_with_the_code() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("attach");
    ok(
        &c,
        &[
            "run",
            "-d",
            "-i",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "read line; echo got:$line; exit 5",
        ],
    );
    wait_state(&c, &name, "running", Duration::from_secs(20));
    let out = c.run_with_stdin(&["attach", &name], b"hello\n").unwrap();
    assert_eq!(out.code, Some(5), "{out}");
    assert!(out.stdout.contains("got:hello"), "{out}");
}

#[test]
fn top_and_stats_show_the_running_container() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("top");
    let marker = crate::common::unique_seconds();
    ok(
        &c,
        &["run", "-d", "--name", &name, &busybox(), "sleep", &marker],
    );
    wait_state(&c, &name, "running", Duration::from_secs(20));
    let out = ok(&c, &["top", &name]);
    let lines = out.lines();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains(&format!("sleep {marker}"))),
        "{out}"
    );

    let out = ok(&c, &["stats", "--no-stream", &name]);
    let lines = out.lines();
    for col in ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"] {
        assert!(lines[0].contains(col), "stats header lacks {col}: {out}");
    }
    assert!(lines.iter().any(|l| l.contains(&name)), "{out}");
    let out = berth(&c, &["stats", "--no-stream", &crate::unique("ghost")]);
    assert_ne!(out.code, Some(0), "{out}");
}
