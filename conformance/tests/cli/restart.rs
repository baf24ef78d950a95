//! Restart policies, enforced by berthd (not the CLI): `always` brings a
//! container back after it exits and after berthd itself restarts,
//! `on-failure:N` stops after N restarts, `unless-stopped` respects a
//! manual stop, `no` (the default) leaves it exited.

use std::time::Duration;

use berth_conformance::harness::cli::Cli;
use berth_conformance::harness::Berth;

use crate::{busybox, cli, eventually, inspect, ok, run_sh, wait_state, Scope};

fn restart_count(c: &Cli, name: &str) -> u64 {
    inspect(c, name)["RestartCount"].as_u64().unwrap_or(0)
}

#[test]
fn always_restarts_in_place_until_the_command_stays_up() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("always");
    // Exits 7 twice, then stays up: the writable layer is kept across restarts.
    let script = "echo run >> /runs; [ $(wc -l < /runs) -ge 3 ] || exit 7; exec sleep 1000000";
    let id = ok(
        &c,
        &[
            "run",
            "-d",
            "--restart",
            "always",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            script,
        ],
    )
    .stdout
    .trim()
    .to_string();
    let up = eventually(Duration::from_secs(60), || {
        let v = inspect(&c, &name);
        (v["RestartCount"] == 2 && v["State"]["Status"] == "running").then_some(v)
    });
    let v = up.unwrap_or_else(|| panic!("never settled: {}", inspect(&c, &name)));
    assert_eq!(v["Id"], id.as_str(), "same container id across restarts");
    assert_eq!(
        ok(&c, &["exec", &name, "cat", "/runs"]).stdout,
        "run\nrun\nrun\n"
    );
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "always", "{v}");
    // A manual stop is not undone by the policy.
    ok(&c, &["stop", "-t", "1", &name]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&c, &name)["State"]["Status"], "exited");
}

#[test]
fn on_failure_gives_up_after_the_maximum_and_no_never_restarts() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("onfail");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "exit 3",
        ],
    );
    let settled = eventually(Duration::from_secs(60), || {
        let v = inspect(&c, &name);
        (v["RestartCount"] == 2 && v["State"]["Status"] == "exited").then_some(())
    });
    assert!(settled.is_some(), "{}", inspect(&c, &name));
    std::thread::sleep(Duration::from_secs(3));
    let v = inspect(&c, &name);
    assert_eq!(v["RestartCount"], 2, "no third restart: {v}");
    assert_eq!(v["State"]["ExitCode"], 3, "{v}");

    // on-failure does not restart a clean exit; `no` nothing at all.
    let clean = s.container("onfail0");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--restart",
            "on-failure",
            "--name",
            &clean,
            &busybox(),
            "true",
        ],
    );
    let never = s.container("no");
    run_sh(&c, &never, "exit 1");
    wait_state(&c, &clean, "exited", Duration::from_secs(20));
    wait_state(&c, &never, "exited", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(restart_count(&c, &clean), 0);
    assert_eq!(restart_count(&c, &never), 0);

    let out = crate::berth(
        &c,
        &["run", "-d", "--restart", "sometimes", &busybox(), "true"],
    );
    assert_eq!(
        out.code,
        Some(125),
        "an unknown policy is a usage error: {out}"
    );
}

/// berthd restarts (on a private daemon: the shared one serves other tests).
#[test]
fn always_comes_back_after_berthd_restarts_and_unless_stopped_respects_a_stop() {
    crate::common::init_tracing();
    let b = Berth::start().unwrap_or_else(|e| panic!("{e}"));
    let c = Cli::for_berth(&b).unwrap();
    let img = busybox();
    let always = "cli-restart-always";
    let stopped_always = "cli-restart-always-stopped";
    let unless = "cli-restart-unless-stopped";
    let script = "echo run >> /runs; exec sleep 1000000";
    for (name, policy) in [
        (always, "always"),
        (stopped_always, "always"),
        (unless, "unless-stopped"),
    ] {
        ok(
            &c,
            &[
                "run",
                "-d",
                "--restart",
                policy,
                "--name",
                name,
                &img,
                "sh",
                "-c",
                script,
            ],
        );
        wait_state(&c, name, "running", Duration::from_secs(20));
    }
    ok(&c, &["stop", "-t", "1", stopped_always]);
    ok(&c, &["stop", "-t", "1", unless]);
    let pid = inspect(&c, always)["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(pid > 0);

    // berthd goes away; meanwhile the container's process dies.
    b.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let dead = eventually(Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(dead.is_some(), "pid {pid} survived SIGKILL");
    b.spawn().unwrap_or_else(|e| panic!("{e}"));

    let back = eventually(Duration::from_secs(60), || {
        let v = inspect(&c, always);
        (v["State"]["Status"] == "running" && v["State"]["Pid"].as_i64() != Some(pid)).then_some(())
    });
    assert!(
        back.is_some(),
        "`always` did not come back: {}",
        inspect(&c, always)
    );
    assert_eq!(
        ok(&c, &["exec", always, "cat", "/runs"]).stdout,
        "run\nrun\n"
    );
    // Docker: `always` restarts a manually stopped container when the
    // daemon starts; `unless-stopped` does not.
    wait_state(&c, stopped_always, "running", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(inspect(&c, unless)["State"]["Status"], "exited");
    for name in [always, stopped_always, unless] {
        ok(&c, &["rm", "-f", name]);
    }
}
