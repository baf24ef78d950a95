//! `berth run`: exit codes (the container's own, 125, 126, 127), `--rm`,
//! `-d`, `-i`, environment, working dir, user, entrypoint, hostname and
//! the security, resource and network flags — checked from inside the
//! container.

use std::time::Duration;

use crate::{berth, busybox, cli, eventually, fails, inspect, is_hex, ok, wait_state, Scope};

#[test]
fn foreground_run_prints_the_output_and_exits_with_the_containers_code() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let img = busybox();
    let out = ok(&c, &["run", "--rm", &img, "echo", "hello from berth"]);
    assert_eq!(out.stdout, "hello from berth\n", "{out}");

    let name = s.container("code");
    let out = berth(
        &c,
        &[
            "run",
            "--name",
            &name,
            &img,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert!(out.stderr.contains("err"), "{out}");
    // Without --rm the exited container stays, with its code.
    let st = &inspect(&c, &name)["State"];
    assert_eq!(st["Status"], "exited", "{st}");
    assert_eq!(st["ExitCode"], 3, "{st}");
}

#[test]
fn run_rm_removes_the_container_after_it_exits() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("rm");
    let out = berth(
        &c,
        &[
            "run",
            "--rm",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "exit 4",
        ],
    );
    assert_eq!(out.code, Some(4), "{out}");
    let left = berth(&c, &["inspect", &name]);
    fails(&left, 1, "No such");

    // Detached with --rm: berthd removes it when it exits.
    let name = s.container("rm-d");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            &name,
            &busybox(),
            "sleep",
            "1",
        ],
    );
    let gone = eventually(Duration::from_secs(20), || {
        (berth(&c, &["inspect", &name]).code == Some(1)).then_some(())
    });
    assert!(
        gone.is_some(),
        "run -d --rm: {name} still exists 20 s later"
    );
}

#[test]
fn run_exit_codes_125_126_127() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let img = busybox();
    let name = s.container("127");
    let out = berth(
        &c,
        &["run", "--rm", "--name", &name, &img, "no-such-command-xyz"],
    );
    assert_eq!(out.code, Some(127), "{out}");
    assert!(out.stderr.contains("no-such-command-xyz"), "{out}");

    let name = s.container("126");
    let out = berth(&c, &["run", "--rm", "--name", &name, &img, "/etc/passwd"]);
    assert_eq!(out.code, Some(126), "{out}");
    assert!(
        out.stderr.to_lowercase().contains("permission denied"),
        "{out}"
    );

    // A daemon-side failure (an image nobody has) and a bad flag are 125.
    let missing = format!("127.0.0.1:1/{}:1", crate::unique("missing"));
    let out = berth(&c, &["run", "--rm", &missing, "true"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(!out.stderr.is_empty(), "{out}");
    let out = berth(&c, &["run", "--no-such-flag", &img, "true"]);
    assert_eq!(out.code, Some(125), "{out}");

    // No daemon at all: 125, and the message names the socket tried.
    let dead = tempfile::tempdir().unwrap();
    let sock = dead.path().join("none.sock");
    let mut cmd = c.bare_command();
    cmd.arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(["run", "--rm", &img, "true"]);
    let out = c.run_command(cmd, None, Duration::from_secs(60)).unwrap();
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains(&sock.display().to_string()), "{out}");
}

#[test]
fn run_detached_prints_the_full_id_and_keeps_running() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("d");
    let out = ok(
        &c,
        &["run", "-d", "--name", &name, &busybox(), "sleep", "1000000"],
    );
    let id = out.stdout.trim();
    assert!(is_hex(id, 64), "run -d prints the 64-hex id: {out}");
    let info = inspect(&c, &name);
    assert_eq!(info["Id"], id, "{info}");
    assert_eq!(info["State"]["Status"], "running", "{info}");
    // A short id prefix names it everywhere.
    let by_prefix = inspect(&c, &id[..12]);
    assert_eq!(by_prefix["Id"], id);
    // Names are unique.
    let dup = berth(
        &c,
        &["run", "-d", "--name", &name, &busybox(), "sleep", "1"],
    );
    assert_eq!(dup.code, Some(125), "{dup}");
    assert!(dup.stderr.contains(&name), "{dup}");
}

#[test]
fn run_interactive_passes_stdin_through() {
    let (_b, c) = cli();
    let _s = Scope::new(&c);
    let out = c
        .run_with_stdin(
            &[
                "run",
                "--rm",
                "-i",
                &busybox(),
                "sh",
                "-c",
                "tr a-z A-Z; exit 6",
            ],
            b"piped text\n",
        )
        .unwrap();
    assert_eq!(out.code, Some(6), "{out}");
    assert_eq!(out.stdout, "PIPED TEXT\n", "{out}");
}

#[test]
fn run_env_env_file_workdir_user_entrypoint_hostname() {
    let (_b, c) = cli();
    let _s = Scope::new(&c);
    let img = busybox();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=file value\n\nBOTH=file\n").unwrap();
    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "-e",
            "FROM_FLAG=flag",
            "--env",
            "BOTH=flag",
            "--env-file",
            env_file.to_str().unwrap(),
            &img,
            "env",
        ],
    );
    let env: Vec<&str> = out.stdout.lines().collect();
    assert!(env.contains(&"FROM_FLAG=flag"), "{out}");
    assert!(env.contains(&"FROM_FILE=file value"), "{out}");
    // Docker: -e wins over --env-file.
    assert!(env.contains(&"BOTH=flag"), "{out}");
    assert!(
        env.iter().any(|l| l.starts_with("PATH=")),
        "image env kept: {out}"
    );

    let out = ok(&c, &["run", "--rm", "-w", "/var/spool", &img, "pwd"]);
    assert_eq!(out.stdout, "/var/spool\n", "{out}");
    // -w creates a missing directory, as Docker does.
    let out = ok(&c, &["run", "--rm", "-w", "/made/by/w", &img, "pwd"]);
    assert_eq!(out.stdout, "/made/by/w\n", "{out}");

    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "-u",
            "1234:5678",
            &img,
            "sh",
            "-c",
            "id -u; id -g",
        ],
    );
    assert_eq!(out.stdout, "1234\n5678\n", "{out}");
    let out = ok(&c, &["run", "--rm", "--user", "www-data", &img, "id", "-u"]);
    assert_eq!(out.stdout, "33\n", "{out}");

    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            &img,
            "via",
            "entrypoint",
        ],
    );
    assert_eq!(out.stdout, "via entrypoint\n", "{out}");

    let out = ok(&c, &["run", "--rm", "-h", "berth-host", &img, "hostname"]);
    assert_eq!(out.stdout, "berth-host\n", "{out}");
}

/// `CapEff` of the container's process, as a number.
fn cap_eff(c: &berth_conformance::harness::cli::Cli, extra: &[&str]) -> u64 {
    let img = busybox();
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&img, "grep", "CapEff", "/proc/self/status"]);
    let out = ok(c, &args);
    let hex = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn run_capabilities_privileged_read_only_and_init() {
    let (_b, c) = cli();
    let _s = Scope::new(&c);
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let default = cap_eff(&c, &[]);
    assert!(
        default & CAP_CHOWN != 0,
        "Docker's default set has CHOWN: {default:x}"
    );
    assert!(default & CAP_SYS_ADMIN == 0, "{default:x}");
    assert_eq!(cap_eff(&c, &["--cap-drop", "ALL"]), 0);
    let added = cap_eff(&c, &["--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN"]);
    assert!(
        added & CAP_NET_ADMIN != 0 && added & CAP_CHOWN == 0,
        "{added:x}"
    );
    let privileged = cap_eff(&c, &["--privileged"]);
    assert!(privileged & CAP_SYS_ADMIN != 0, "{privileged:x}");

    let img = busybox();
    let out = berth(&c, &["run", "--rm", "--read-only", &img, "touch", "/etc/x"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");

    // Without --init the command is PID 1; with it, an init is.
    let out = ok(&c, &["run", "--rm", &img, "cat", "/proc/1/comm"]);
    assert_eq!(out.stdout, "cat\n", "{out}");
    let out = ok(&c, &["run", "--rm", "--init", &img, "cat", "/proc/1/comm"]);
    assert_ne!(out.stdout, "cat\n", "{out}");
    assert!(!out.stdout.trim().is_empty(), "{out}");
}

#[test]
fn run_resource_limits_reach_the_config() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("limits");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            &busybox(),
            "sleep",
            "1000000",
        ],
    );
    let hc = &inspect(&c, &name)["HostConfig"];
    assert_eq!(hc["Memory"], 64 * 1024 * 1024, "{hc}");
    assert_eq!(hc["NanoCpus"], 500_000_000, "{hc}");
    assert_eq!(hc["PidsLimit"], 50, "{hc}");
    // The pids limit holds inside: 50 processes at most.
    let out = berth(
        &c,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "for i in $(seq 80); do sleep 30 >/dev/null 2>&1 & done",
        ],
    );
    assert!(
        out.stderr.contains("fork") || out.stderr.contains("Resource"),
        "{out}"
    );
}

#[test]
fn run_network_none_and_host() {
    let (_b, c) = cli();
    let _s = Scope::new(&c);
    let img = busybox();
    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &img,
            "ls",
            "/sys/class/net",
        ],
    );
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
    // Other tests add and remove veths meanwhile: every interface the
    // host had both before and after must be in the container's list.
    let host_ifaces = || -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = host_ifaces();
    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            &img,
            "ls",
            "/sys/class/net",
        ],
    );
    let after = host_ifaces();
    let seen: Vec<&str> = out.stdout.split_whitespace().collect();
    for ifname in before.iter().filter(|i| after.contains(i)) {
        assert!(
            seen.contains(&ifname.as_str()),
            "host's {ifname} not seen: {out}"
        );
    }
    let out = ok(&c, &["run", "--rm", &img, "ls", "/sys/class/net"]);
    assert!(
        out.stdout.split_whitespace().any(|i| i == "eth0"),
        "bridge gives eth0: {out}"
    );
}

#[test]
fn run_publish_all_and_port() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let img = berth_conformance::harness::images::HTTPD.reference();
    ok(&c, &["pull", &img]);
    let name = s.container("P");
    ok(&c, &["run", "-d", "-P", "--name", &name, &img]);
    wait_state(&c, &name, "running", Duration::from_secs(20));
    let out = ok(&c, &["port", &name]);
    // `80/tcp -> 0.0.0.0:PORT`
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("80/tcp -> "))
        .unwrap_or_else(|| panic!("{out}"));
    let port: u16 = line
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    let body = crate::http_get_eventually(port, "/", Duration::from_secs(20));
    assert_eq!(body, berth_conformance::harness::images::HTTPD_INDEX);
    let out = ok(&c, &["port", &name, "80/tcp"]);
    assert!(out.stdout.contains(&format!(":{port}")), "{out}");
}
