//! The tutorial of the README (issue 6, item 5), step by step as a user
//! types it, with a busybox `httpd` image instead of nginx and free ports
//! instead of 8080/8081 — then the changed image is pushed to the
//! loopback registry and pulled back into a second berthd with its own
//! (clean) store.

use std::time::Duration;

use berth_conformance::harness::cli::Cli;
use berth_conformance::harness::images::{HTTPD, HTTPD_INDEX};
use berth_conformance::harness::Berth;

use crate::{cli, free_port, http_get, http_get_eventually, ok, Scope};

const CHANGED: &str = "<h1>changed with berth cp</h1>\n";

#[test]
fn tutorial_web_server_cp_commit_run_push_pull() {
    let (b, c) = cli();
    let s = Scope::new(&c);
    s.adopt_container("web");
    s.image("web:v2");
    let image = HTTPD.reference();
    let (port1, port2) = (free_port(), free_port());

    // berth run -d -p 8080:80 --name web IMAGE
    let out = ok(
        &c,
        &[
            "run",
            "-d",
            "-p",
            &format!("{port1}:80"),
            "--name",
            "web",
            &image,
        ],
    );
    assert!(crate::is_hex(out.stdout.trim(), 64), "{out}");
    // curl 127.0.0.1:8080
    assert_eq!(
        http_get_eventually(port1, "/", Duration::from_secs(30)),
        HTTPD_INDEX
    );

    // berth cp index.html web:/www/   (from the directory holding index.html)
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("index.html"), CHANGED).unwrap();
    let mut cmd = c.command(&["cp", "index.html", "web:/www/"]);
    cmd.current_dir(work.path());
    let out = c.run_command(cmd, None, Duration::from_secs(60)).unwrap();
    assert!(out.success(), "{out}");
    // curl shows the change
    assert_eq!(http_get(port1, "/").unwrap(), CHANGED);

    // berth commit -m fun web web:v2
    let out = ok(&c, &["commit", "-m", "fun", "web", "web:v2"]);
    assert!(out.stdout.trim().starts_with("sha256:"), "{out}");
    // berth stop web; berth rm web
    assert_eq!(ok(&c, &["stop", "web"]).stdout.trim(), "web");
    assert_eq!(ok(&c, &["rm", "web"]).stdout.trim(), "web");
    assert!(
        http_get(port1, "/").is_err(),
        "nothing serves {port1} once web is gone"
    );

    // berth run -d -p 8081:80 web:v2 serves the changed page
    let v2 = ok(&c, &["run", "-d", "-p", &format!("{port2}:80"), "web:v2"])
        .stdout
        .trim()
        .to_string();
    s.adopt_container(&v2);
    assert_eq!(
        http_get_eventually(port2, "/", Duration::from_secs(30)),
        CHANGED
    );
    let hist = ok(&c, &["history", "web:v2"]);
    assert!(hist.lines()[1].contains("fun"), "{hist}");

    // Push it to the loopback registry...
    let remote = format!("{}/{}:v2", b.registry_host(), crate::unique("web"));
    s.image(&remote);
    ok(&c, &["tag", "web:v2", &remote]);
    let out = ok(&c, &["push", &remote]);
    assert!(out.stdout.contains("digest: sha256:"), "{out}");

    // ...and pull it back on a clean store: a second berthd, its own root.
    {
        let other = Berth::start().unwrap_or_else(|e| panic!("{e}"));
        let c2 = Cli::for_berth(&other).unwrap();
        let before = ok(&c2, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(!before.stdout.contains("web"), "{before}");
        ok(&c2, &["pull", &remote]);
        let port3 = free_port();
        let id = ok(&c2, &["run", "-d", "-p", &format!("{port3}:80"), &remote])
            .stdout
            .trim()
            .to_string();
        assert_eq!(
            http_get_eventually(port3, "/", Duration::from_secs(30)),
            CHANGED
        );
        ok(&c2, &["rm", "-f", &id]);
        ok(&c2, &["rmi", &remote]);
    }

    // Clean up as the tutorial does: stop, rm, rmi.
    ok(&c, &["rm", "-f", &v2]);
    let out = ok(&c, &["rmi", "web:v2"]);
    assert!(out.stdout.contains("Untagged: web:v2"), "{out}");
    let left = ok(&c, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        !left
            .lines()
            .iter()
            .any(|l| *l == "web:v2" || l.ends_with("library/web:v2")),
        "{left}"
    );
}
