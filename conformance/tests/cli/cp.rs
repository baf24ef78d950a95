//! `berth cp` both ways with Docker's path rules, tar streams on `-`, and
//! symlinks that point out of the container resolved inside its root.

use std::path::Path;
use std::process::Command;

use crate::{berth, busybox, cli, ok, run_sh, Scope};

fn cat(c: &berth_conformance::harness::cli::Cli, name: &str, path: &str) -> String {
    ok(c, &["exec", name, "cat", path]).stdout
}

#[test]
fn cp_into_a_container_follows_dockers_path_rules() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("cp-in");
    ok(
        &c,
        &["run", "-d", "--name", &name, &busybox(), "sleep", "1000000"],
    );
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("note.txt");
    std::fs::write(&file, "note\n").unwrap();
    let dir = host.path().join("tree");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a"), "A\n").unwrap();
    std::fs::write(dir.join("sub/b"), "B\n").unwrap();
    let f = file.to_str().unwrap();
    let d = dir.to_str().unwrap();

    // File into an existing directory keeps its name; to a new path takes it.
    ok(&c, &["cp", f, &format!("{name}:/tmp")]);
    assert_eq!(cat(&c, &name, "/tmp/note.txt"), "note\n");
    ok(&c, &["cp", f, &format!("{name}:/tmp/renamed")]);
    assert_eq!(cat(&c, &name, "/tmp/renamed"), "note\n");
    // A trailing slash on a missing directory is an error.
    let out = berth(&c, &["cp", f, &format!("{name}:/no/such/dir/")]);
    assert_ne!(out.code, Some(0), "{out}");
    // A directory to a new path becomes that path; into an existing one, a child.
    ok(&c, &["cp", d, &format!("{name}:/newtree")]);
    assert_eq!(cat(&c, &name, "/newtree/sub/b"), "B\n");
    ok(&c, &["cp", d, &format!("{name}:/var")]);
    assert_eq!(cat(&c, &name, "/var/tree/a"), "A\n");
    // `dir/.` copies the contents.
    ok(
        &c,
        &["cp", &format!("{d}/."), &format!("{name}:/var/spool")],
    );
    assert_eq!(cat(&c, &name, "/var/spool/sub/b"), "B\n");
    // A relative container path is relative to the working dir (/).
    ok(&c, &["cp", f, &format!("{name}:etc")]);
    assert_eq!(cat(&c, &name, "/etc/note.txt"), "note\n");
    // Modes survive.
    let exe = host.path().join("run.sh");
    std::fs::write(&exe, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    ok(&c, &["cp", exe.to_str().unwrap(), &format!("{name}:/bin/")]);
    assert_eq!(ok(&c, &["exec", &name, "/bin/run.sh"]).stdout, "ran\n");
    // A tar stream on stdin.
    let tar = Command::new("tar")
        .arg("-C")
        .arg(host.path())
        .args(["-cf", "-", "note.txt"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let out = c
        .run_with_stdin(&["cp", "-", &format!("{name}:/root")], &tar.stdout)
        .unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(cat(&c, &name, "/root/note.txt"), "note\n");
}

#[test]
fn cp_out_of_a_container_follows_dockers_path_rules() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("cp-out");
    // A stopped container works too.
    ok(
        &c,
        &[
            "run",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "mkdir -p /data/sub && echo x > /data/sub/f && echo y > /data/g",
        ],
    );
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    ok(
        &c,
        &["cp", &format!("{name}:/etc/passwd"), h.to_str().unwrap()],
    );
    let passwd = std::fs::read_to_string(h.join("passwd")).unwrap();
    assert!(passwd.contains("www-data:x:33"), "{passwd}");
    ok(
        &c,
        &[
            "cp",
            &format!("{name}:/etc/group"),
            h.join("grp").to_str().unwrap(),
        ],
    );
    assert!(std::fs::read_to_string(h.join("grp"))
        .unwrap()
        .contains("nogroup"));
    // A directory to a new host path becomes it; into an existing one, a child.
    ok(
        &c,
        &[
            "cp",
            &format!("{name}:/data"),
            h.join("copy").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(h.join("copy/sub/f")).unwrap(),
        "x\n"
    );
    ok(
        &c,
        &[
            "cp",
            &format!("{name}:/data"),
            h.join("copy").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(h.join("copy/data/g")).unwrap(),
        "y\n"
    );
    ok(
        &c,
        &[
            "cp",
            &format!("{name}:/data/."),
            h.join("flat").to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read_to_string(h.join("flat/g")).unwrap(), "y\n");
    // `-` writes a tar stream.
    let tar_file = h.join("out.tar");
    let raw = c
        .command(&["cp", &format!("{name}:/data/g"), "-"])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    std::fs::write(&tar_file, &raw.stdout).unwrap();
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tar_file)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "not a tar: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "g");
    // A missing source names the path.
    let out = berth(
        &c,
        &["cp", &format!("{name}:/no-such-file"), h.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("/no-such-file"), "{out}");
}

/// Symlinks in the container that point at host paths must resolve inside
/// the container's root (CVE-2018-15664 / CVE-2019-14271 class): copying in
/// never writes the host directory and copying out never reads it.
#[test]
fn cp_resolves_escaping_symlinks_inside_the_container_root() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("cp-esc");
    let host = tempfile::tempdir().unwrap();
    let hdir = host.path().to_str().unwrap().to_string();
    std::fs::write(host.path().join("secret"), "host secret\n").unwrap();
    // The container has its own directory at the host dir's path, a
    // symlink to it, and a relative symlink climbing far above /.
    let script = format!(
        "mkdir -p {hdir} && echo 'container secret' > {hdir}/secret && ln -s {hdir} /esc && \
         ln -s ../../../../../../../../../.. /up && sleep 1000000"
    );
    run_sh(&c, &name, &script);
    let ready = crate::eventually(std::time::Duration::from_secs(20), || {
        berth(&c, &["exec", &name, "test", "-L", "/up"])
            .success()
            .then_some(())
    });
    assert!(ready.is_some(), "the container never made its symlinks");

    let src = tempfile::tempdir().unwrap();
    let dropped = crate::unique("dropped");
    let payload = src.path().join(&dropped);
    std::fs::write(&payload, "payload\n").unwrap();
    let out = berth(
        &c,
        &["cp", payload.to_str().unwrap(), &format!("{name}:/esc/")],
    );
    assert!(out.success(), "{out}");
    assert!(
        !host.path().join(&dropped).exists(),
        "cp wrote through the symlink onto the host"
    );
    assert_eq!(cat(&c, &name, &format!("{hdir}/{dropped}")), "payload\n");
    let out = berth(
        &c,
        &["cp", payload.to_str().unwrap(), &format!("{name}:/up/tmp/")],
    );
    assert!(out.success(), "{out}");
    let on_host = Path::new("/tmp").join(&dropped);
    let escaped = on_host.exists();
    let _ = std::fs::remove_file(&on_host);
    assert!(!escaped, "cp wrote through ../.. onto the host's /tmp");
    assert_eq!(cat(&c, &name, &format!("/tmp/{dropped}")), "payload\n");

    let dst = tempfile::tempdir().unwrap();
    ok(
        &c,
        &[
            "cp",
            &format!("{name}:/esc/secret"),
            dst.path().join("got").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(dst.path().join("got")).unwrap(),
        "container secret\n"
    );
    ok(
        &c,
        &[
            "cp",
            &format!("{name}:/up/etc/passwd"),
            dst.path().join("pw").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(dst.path().join("pw")).unwrap(),
        cat(&c, &name, "/etc/passwd")
    );
}
