//! `volume create|ls|inspect|rm` and `-v` bind mounts and named volumes
//! (kept when the containers using them go).

use crate::{berth, busybox, cli, fails, ok, Scope};

#[test]
fn volume_create_ls_inspect_rm() {
    let (b, c) = cli();
    let s = Scope::new(&c);
    let vol = s.volume("vol");
    let out = ok(&c, &["volume", "create", &vol]);
    assert_eq!(out.stdout.trim(), vol, "{out}");

    let out = ok(&c, &["volume", "ls"]);
    let lines = out.lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["DRIVER", "VOLUME", "NAME"], "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["local", vol.as_str()])),
        "{out}"
    );
    let out = ok(&c, &["volume", "ls", "-q"]);
    assert!(out.lines().contains(&vol.as_str()), "{out}");

    let out = ok(&c, &["volume", "inspect", &vol]);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let v = &v[0];
    assert_eq!(v["Name"], vol.as_str(), "{v}");
    assert_eq!(v["Driver"], "local", "{v}");
    let want = b.fp.root.join("root/volumes").join(&vol).join("_data");
    assert_eq!(v["Mountpoint"], want.to_str().unwrap(), "{v}");
    assert!(want.is_dir(), "{}", want.display());

    let out = ok(&c, &["volume", "rm", &vol]);
    assert_eq!(out.stdout.trim(), vol, "{out}");
    assert!(!want.exists(), "the data goes with the volume");
    fails(&berth(&c, &["volume", "rm", &vol]), 1, "No such volume");
    fails(
        &berth(&c, &["volume", "inspect", &vol]),
        1,
        "No such volume",
    );
}

#[test]
fn named_volumes_survive_their_containers_and_in_use_ones_are_kept() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let vol = s.volume("data");
    let img = busybox();
    // `-v name:/path` creates the volume on first use.
    let writer = s.container("writer");
    ok(
        &c,
        &[
            "run",
            "--name",
            &writer,
            "-v",
            &format!("{vol}:/data"),
            &img,
            "sh",
            "-c",
            "echo persisted > /data/f",
        ],
    );
    ok(&c, &["rm", &writer]);
    let out = ok(&c, &["volume", "ls", "-q"]);
    assert!(
        out.lines().contains(&vol.as_str()),
        "the volume outlives rm: {out}"
    );
    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/again:ro"),
            &img,
            "cat",
            "/again/f",
        ],
    );
    assert_eq!(out.stdout, "persisted\n", "{out}");
    let out = berth(
        &c,
        &[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/again:ro"),
            &img,
            "touch",
            "/again/g",
        ],
    );
    assert_eq!(out.code, Some(1), "read-only volume: {out}");

    // A volume a container uses is refused without -f.
    let user = s.container("user");
    ok(
        &c,
        &[
            "run",
            "-d",
            "--name",
            &user,
            "-v",
            &format!("{vol}:/data"),
            &img,
            "sleep",
            "1000000",
        ],
    );
    let out = berth(&c, &["volume", "rm", &vol]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("in use"), "{out}");
    // `rm -v` leaves named volumes alone.
    ok(&c, &["rm", "-f", "-v", &user]);
    let out = ok(&c, &["volume", "ls", "-q"]);
    assert!(out.lines().contains(&vol.as_str()), "{out}");
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    let (_b, c) = cli();
    let _s = Scope::new(&c);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let h = host.path().to_str().unwrap();
    let img = busybox();
    let out = ok(
        &c,
        &[
            "run",
            "--rm",
            "-v",
            &format!("{h}:/mnt"),
            &img,
            "sh",
            "-c",
            "cat /mnt/in; echo from container > /mnt/out",
        ],
    );
    assert_eq!(out.stdout, "from host\n", "{out}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "from container\n"
    );
    let out = berth(
        &c,
        &[
            "run",
            "--rm",
            "-v",
            &format!("{h}:/mnt:ro"),
            &img,
            "touch",
            "/mnt/nope",
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!host.path().join("nope").exists());
    // A relative host path is not a bind mount source but a volume name;
    // one with a slash is refused.
    let out = berth(&c, &["run", "--rm", "-v", "rel/path:/mnt", &img, "true"]);
    assert_ne!(out.code, Some(0), "{out}");
}
