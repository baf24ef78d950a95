//! `info`, `version`, `system df`, the prune commands (on a private
//! daemon: they remove what other tests are using), shell completions and
//! colour rules.

use std::process::Command;
use std::time::Duration;

use berth_conformance::harness::cli::Cli;
use berth_conformance::harness::Berth;

use crate::{berth, busybox, cli, has_escape, ok, wait_state};

#[test]
fn version_shows_client_and_server() {
    let (_b, c) = cli();
    let out = ok(&c, &["version"]);
    assert!(out.stdout.contains("Client"), "{out}");
    assert!(out.stdout.contains("Server"), "{out}");
    let v = env!("CARGO_PKG_VERSION");
    assert!(
        out.stdout.matches(v).count() >= 2,
        "client and server say {v}: {out}"
    );
    // No daemon: the client part still prints, and the exit is 1.
    let mut cmd = c.bare_command();
    cmd.args(["-H", "unix:///nonexistent/berth.sock", "version"]);
    let out = c.run_command(cmd, None, Duration::from_secs(60)).unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains(v), "{out}");
    assert!(out.stderr.contains("/nonexistent/berth.sock"), "{out}");
}

#[test]
fn info_describes_this_daemon() {
    let (b, c) = cli();
    let out = ok(&c, &["info"]);
    let root = b.fp.root.join("root");
    assert!(
        out.stdout.contains(root.to_str().unwrap()),
        "info names the root dir: {out}"
    );
    assert!(out.stdout.contains("overlay"), "{out}");
    assert!(out.stdout.contains("Containers:"), "{out}");
    assert!(out.stdout.contains("Images:"), "{out}");
    assert!(out.stdout.contains("cgroupfs"), "{out}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(out.stdout.contains(kernel.trim()), "{out}");
}

#[test]
fn completions_are_valid_shell() {
    let (_b, c) = cli();
    let out = ok(&c, &["completion", "bash"]);
    assert!(out.stdout.contains("berth"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("berth.bash");
    std::fs::write(&f, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourcing it registers a completion for `berth`.
    let reg = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p berth", f.display()))
        .output()
        .unwrap();
    assert!(
        reg.status.success(),
        "{}",
        String::from_utf8_lossy(&reg.stderr)
    );
    for (shell, check) in [("zsh", "zsh"), ("fish", "fish")] {
        let out = ok(&c, &["completion", shell]);
        assert!(out.stdout.contains("berth"), "{out}");
        let f = dir.path().join(format!("berth.{shell}"));
        std::fs::write(&f, &out.stdout).unwrap();
        // Only checked where the shell is installed.
        if let Ok(r) = Command::new(check).arg("-n").arg(&f).output() {
            assert!(
                r.status.success(),
                "{check} -n: {}",
                String::from_utf8_lossy(&r.stderr)
            );
        }
    }
    let out = berth(&c, &["completion", "tcsh"]);
    assert_ne!(out.code, Some(0), "{out}");
}

#[test]
fn no_colour_on_pipes_or_with_no_color() {
    let (b, c) = cli();
    for args in [
        &["ps", "-a"][..],
        &["images"],
        &["volume", "ls"],
        &["--help"],
    ] {
        let out = ok(&c, args);
        assert!(!has_escape(&out.stdout), "{out}");
    }
    let c2 = Cli::for_berth(&b).unwrap().with_env("NO_COLOR", "1");
    let out = berth(&c2, &["inspect", &crate::unique("ghost")]);
    assert!(!has_escape(&out.stderr), "{out}");
    // Errors say what went wrong and suggest something.
    let out = berth(&c, &["no-such-subcommand"]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("no-such-subcommand"), "{out}");
    assert!(out.stderr.contains("--help"), "{out}");
}

fn lines_with<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with(word))
        .collect()
}

#[test]
fn df_and_prunes_on_a_private_daemon() {
    crate::common::init_tracing();
    let b = Berth::start().unwrap_or_else(|e| panic!("{e}"));
    let c = Cli::for_berth(&b).unwrap();
    let img = busybox();
    let stopsignal = berth_conformance::harness::images::BUSYBOX_STOPSIGNAL.reference();
    // One stopped container (with an anonymous volume), one running, a
    // dangling image, an unused tag, an unused named volume.
    ok(
        &c,
        &[
            "run",
            "--name",
            "stopped",
            "-v",
            "/anon",
            &img,
            "sh",
            "-c",
            "echo x > /f",
        ],
    );
    ok(
        &c,
        &["run", "-d", "--name", "running", &img, "sleep", "1000000"],
    );
    wait_state(&c, "running", "running", Duration::from_secs(20));
    let dangling = ok(&c, &["commit", "stopped"]).stdout.trim().to_string();
    assert!(dangling.starts_with("sha256:"), "{dangling}");
    ok(&c, &["volume", "create", "named"]);
    let anon = ok(&c, &["volume", "ls", "-q"])
        .lines()
        .into_iter()
        .find(|v| *v != "named")
        .unwrap_or_else(|| panic!("no anonymous volume"))
        .to_string();

    let out = ok(&c, &["system", "df"]);
    let head: Vec<&str> = out.lines()[0]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        head,
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{out}"
    );
    let containers = lines_with(&out.stdout, "Containers");
    assert_eq!(containers.len(), 1, "{out}");
    let cols: Vec<&str> = containers[0].split_whitespace().collect();
    assert_eq!(&cols[1..3], ["2", "1"], "2 containers, 1 active: {out}");
    let images = lines_with(&out.stdout, "Images");
    let cols: Vec<&str> = images[0].split_whitespace().collect();
    assert_eq!(cols[1], "3", "busybox, stopsignal, the commit: {out}");
    let volumes = lines_with(&out.stdout, "Local Volumes");
    let cols: Vec<&str> = volumes[0].split_whitespace().collect();
    assert_eq!(cols[2], "2", "{out}");

    let out = ok(&c, &["info"]);
    for want in ["Containers: 2", "Running: 1", "Stopped: 1", "Images: 3"] {
        assert!(out.stdout.contains(want), "info lacks {want:?}: {out}");
    }

    // image prune: only the dangling image.
    let out = ok(&c, &["image", "prune", "-f"]);
    assert!(
        out.stdout.contains(dangling.trim_start_matches("sha256:")),
        "{out}"
    );
    let ids = ok(&c, &["images", "-q"]);
    assert_eq!(ids.lines().len(), 2, "{ids}");

    // system prune: the stopped container goes, the running one stays; its
    // anonymous volume is pruned with --volumes, the named one is not.
    let out = ok(&c, &["system", "prune", "-f", "--volumes"]);
    assert!(out.stdout.contains("Total reclaimed space"), "{out}");
    let ps = ok(&c, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.lines(), ["running"], "{ps}");
    let vols = ok(&c, &["volume", "ls", "-q"]);
    assert_eq!(vols.lines(), ["named"], "{anon} pruned, named kept: {vols}");

    // -a also removes unused tagged images; busybox is in use.
    ok(&c, &["system", "prune", "-a", "-f"]);
    let imgs = ok(&c, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(imgs.lines(), [img.as_str()], "{stopsignal} pruned: {imgs}");

    // volume prune --all removes the unused named volume.
    ok(&c, &["volume", "prune", "-f", "--all"]);
    assert_eq!(ok(&c, &["volume", "ls", "-q"]).lines().len(), 0);
    ok(&c, &["rm", "-f", "running"]);
}
