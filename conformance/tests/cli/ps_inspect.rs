//! `ps [-a] [-q] [--filter] [--format]`, `inspect`, id prefixes and host
//! selection (`-H`, `BERTH_HOST`).

use std::time::Duration;

use crate::{berth, busybox, cli, has_escape, inspect, is_hex, ok, wait_state, Scope};

#[test]
fn ps_table_quiet_all_filters_and_formats() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    // Docker's name filter matches substrings: `name=<prefix>` finds both.
    let prefix = crate::unique("ps");
    let (up, done) = (format!("{prefix}-up"), format!("{prefix}-done"));
    s.adopt_container(&up);
    s.adopt_container(&done);
    let mine = format!("name={prefix}");
    let up_id = ok(
        &c,
        &["run", "-d", "--name", &up, &busybox(), "sleep", "1000000"],
    )
    .stdout
    .trim()
    .to_string();
    let done_id = ok(
        &c,
        &[
            "run",
            "-d",
            "--name",
            &done,
            &busybox(),
            "sh",
            "-c",
            "exit 3",
        ],
    )
    .stdout
    .trim()
    .to_string();
    wait_state(&c, &done, "exited", Duration::from_secs(20));

    // Table: Docker's header, short ids, names last; no colour on a pipe.
    let out = ok(&c, &["ps"]);
    let lines = out.lines();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{out}"
    );
    assert!(!has_escape(&out.stdout), "{out}");
    let row = lines
        .iter()
        .find(|l| l.ends_with(&up))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.starts_with(&up_id[..12]), "{out}");
    assert!(row.contains("Up "), "{out}");
    // The header's columns line up with the rows.
    let names_col = lines[0].find("NAMES").unwrap();
    assert_eq!(row.find(&up), Some(names_col), "{out}");
    assert!(
        !out.stdout.contains(&done),
        "ps without -a hides exited: {out}"
    );

    let out = ok(&c, &["ps", "-a"]);
    let row = out
        .lines()
        .into_iter()
        .find(|l| l.ends_with(&done))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("Exited (3)"), "{out}");

    // -q: 12-hex ids only.
    let out = ok(&c, &["ps", "-a", "-q", "--filter", &mine]);
    let mut ids = out.lines();
    ids.sort_unstable();
    let mut want = vec![&up_id[..12], &done_id[..12]];
    want.sort_unstable();
    assert_eq!(ids, want, "{out}");

    // Filters.
    let out = ok(&c, &["ps", "-a", "-q", "--filter", &format!("name={done}")]);
    assert_eq!(out.lines(), [&done_id[..12]], "{out}");
    let out = ok(&c, &["ps", "-q", "--filter", &mine]);
    assert_eq!(out.lines(), [&up_id[..12]], "{out}");
    let out = ok(
        &c,
        &[
            "ps",
            "-a",
            "-q",
            "--filter",
            &mine,
            "--filter",
            "status=exited",
        ],
    );
    assert_eq!(out.lines(), [&done_id[..12]], "{out}");
    let out = ok(
        &c,
        &["ps", "-q", "--filter", &format!("id={}", &up_id[..16])],
    );
    assert_eq!(out.lines(), [&up_id[..12]], "{out}");
    let out = ok(
        &c,
        &["ps", "-a", "-q", "--filter", &mine, "--filter", "exited=3"],
    );
    assert_eq!(out.lines(), [&done_id[..12]], "{out}");
    let out = ok(
        &c,
        &[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("ancestor={}", busybox()),
            "--filter",
            &mine,
        ],
    );
    assert_eq!(out.lines().len(), 2, "{out}");

    // --format json: one object per line with Docker's keys.
    let out = ok(
        &c,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name={up}"),
            "--format",
            "json",
        ],
    );
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{out}");
    let v: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["Names"], up.as_str(), "{v}");
    assert_eq!(v["ID"], &up_id[..12], "{v}");
    assert_eq!(v["Image"], busybox().as_str(), "{v}");
    assert_eq!(v["State"], "running", "{v}");

    // Go-template formats.
    let out = ok(
        &c,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name={done}"),
            "--format",
            "{{.ID}} {{.Names}} {{.State}}",
        ],
    );
    assert_eq!(
        out.stdout,
        format!("{} {done} exited\n", &done_id[..12]),
        "{out}"
    );
}

#[test]
fn inspect_is_docker_shaped_json() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("inspect");
    let id = ok(
        &c,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "-e",
            "K=v",
            &busybox(),
            "sleep",
            "1000000",
        ],
    )
    .stdout
    .trim()
    .to_string();
    let v = inspect(&c, &name);
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"].as_str().unwrap().trim_start_matches('/'), name);
    assert_eq!(v["State"]["Running"], true, "{v}");
    assert!(v["State"]["Pid"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["Config"]["Image"], busybox().as_str(), "{v}");
    let env = v["Config"]["Env"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(env.iter().any(|e| e == "K=v"), "{v}");
    assert_eq!(v["Path"], "sleep", "{v}");
    assert_eq!(v["Args"], serde_json::json!(["1000000"]), "{v}");
    // --format with a template.
    let out = ok(&c, &["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(out.stdout, "running\n", "{out}");
    let out = berth(&c, &["inspect", &crate::unique("ghost")]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("No such"), "{out}");
}

#[test]
fn an_ambiguous_id_prefix_is_refused() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    // Create containers until two of ours share their first hex digit.
    let mut seen: Vec<String> = Vec::new();
    let prefix = loop {
        assert!(seen.len() <= 16, "pigeonhole");
        let name = s.container("amb");
        let id = ok(&c, &["create", "--name", &name, &busybox(), "true"])
            .stdout
            .trim()
            .to_string();
        assert!(is_hex(&id, 64), "{id}");
        if let Some(p) = seen.iter().find(|o| o[..1] == id[..1]) {
            break p[..1].to_string();
        }
        seen.push(id);
    };
    let out = berth(&c, &["inspect", &prefix]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("matches"),
        "the error says the prefix is ambiguous: {out}"
    );
}

#[test]
fn host_comes_from_dash_h_or_berth_host() {
    let (b, c) = cli();
    let host = format!("unix://{}", b.fp.socket.display());
    let mut cmd = c.bare_command();
    cmd.env("BERTH_HOST", &host).args(["ps", "-a", "-q"]);
    let out = c.run_command(cmd, None, Duration::from_secs(60)).unwrap();
    assert!(out.success(), "BERTH_HOST: {out}");
    // -H wins over BERTH_HOST.
    let mut cmd = c.bare_command();
    cmd.env("BERTH_HOST", "unix:///nonexistent/berth.sock")
        .args(["--host", &host, "ps", "-a", "-q"]);
    let out = c.run_command(cmd, None, Duration::from_secs(60)).unwrap();
    assert!(out.success(), "--host over BERTH_HOST: {out}");
    // An unreachable daemon: exit 1, naming the socket and what to try.
    let mut cmd = c.bare_command();
    cmd.args(["-H", "unix:///nonexistent/berth.sock", "ps"]);
    let out = c.run_command(cmd, None, Duration::from_secs(60)).unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("/nonexistent/berth.sock"), "{out}");
    assert!(out.stderr.contains("berthd"), "says to check berthd: {out}");
}
