//! Image commands: `pull`, `images [-q] [--digests] [-a]`, `tag`, `rmi`,
//! `push` + `pull` back, `commit`, `history`, `save`/`load` (OCI archive
//! and docker-archive), `login`/`logout`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_test_images::Registry;

use crate::{berth, busybox, cli, fails, has_escape, is_hex, ok, Scope};

#[test]
fn pull_is_quiet_on_a_pipe_and_images_lists_tables_ids_and_digests() {
    let (_b, c) = cli();
    let img = busybox();
    let out = ok(&c, &["pull", &img]);
    assert!(
        !out.stdout.contains('\r') && !has_escape(&out.stdout),
        "no progress bars on a pipe: {out}"
    );
    assert!(out.stdout.contains("busybox"), "{out}");
    assert!(
        out.stdout.contains("sha256:"),
        "pull names the digest: {out}"
    );

    let out = ok(&c, &["images"]);
    let lines = out.lines();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "{out}"
    );
    let row = lines
        .iter()
        .find(|l| {
            l.split_whitespace()
                .take(2)
                .eq(["berth-test.local/busybox", "1"])
        })
        .unwrap_or_else(|| panic!("no busybox row: {out}"));
    let id = row.split_whitespace().nth(2).unwrap();
    assert!(is_hex(id, 12), "{out}");

    let out = ok(&c, &["images", "-q"]);
    assert!(out.lines().iter().all(|l| is_hex(l, 12)), "{out}");
    assert!(out.lines().contains(&id), "{out}");
    let out = ok(&c, &["images", "-a", "-q"]);
    assert!(out.lines().contains(&id), "{out}");

    let out = ok(&c, &["images", "--digests"]);
    assert!(out.lines()[0].contains("DIGEST"), "{out}");
    let row = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("berth-test.local/busybox "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("sha256:"), "{out}");

    let out = ok(&c, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(out.lines().contains(&img.as_str()), "{out}");

    let out = berth(
        &c,
        &[
            "pull",
            &format!("berth-test.local/{}:1", crate::unique("absent")),
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("absent"), "{out}");
}

#[test]
fn tag_and_rmi() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let tagged = s.image(&format!("{}:v1", crate::unique("tag")));
    ok(&c, &["tag", &busybox(), &tagged]);
    let out = ok(
        &c,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    let ids: Vec<&str> = out
        .lines()
        .into_iter()
        .filter(|l| {
            l.starts_with(&format!("{tagged} ")) || l.starts_with(&format!("{} ", busybox()))
        })
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert_eq!(ids[0], ids[1], "a tag names the same image: {out}");

    let out = ok(&c, &["rmi", &tagged]);
    assert!(out.stdout.contains(&format!("Untagged: {tagged}")), "{out}");
    assert!(
        !out.stdout.contains("Deleted"),
        "busybox still names it: {out}"
    );
    let out = ok(&c, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!out.lines().contains(&tagged.as_str()), "{out}");
    assert!(out.lines().contains(&busybox().as_str()), "{out}");

    let ghost = format!("{}:1", crate::unique("ghost"));
    fails(&berth(&c, &["rmi", &ghost]), 1, "No such image");
    fails(&berth(&c, &["tag", &ghost, "x:1"]), 1, "No such image");
}

#[test]
fn commit_with_changes_then_history_and_run() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("commit");
    let image = s.image(&format!("{}:v1", crate::unique("committed")));
    ok(
        &c,
        &[
            "run",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "echo from the layer > /committed",
        ],
    );
    let out = ok(
        &c,
        &[
            "commit",
            "-m",
            "add /committed",
            "-c",
            "CMD [\"cat\", \"/committed\"]",
            &name,
            &image,
        ],
    );
    assert!(
        out.stdout.trim().starts_with("sha256:"),
        "commit prints the image id: {out}"
    );
    let out = ok(&c, &["run", "--rm", &image]);
    assert_eq!(out.stdout, "from the layer\n", "{out}");

    let out = ok(&c, &["history", &image]);
    let lines = out.lines();
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(lines[0].contains(col), "history header lacks {col}: {out}");
    }
    assert!(lines.len() >= 3, "the busybox layer and the commit: {out}");
    assert!(
        lines[1].contains("add /committed"),
        "newest first, with the comment: {out}"
    );
    let out = berth(&c, &["history", &format!("{}:1", crate::unique("ghost"))]);
    fails(&out, 1, "No such image");
}

/// The registry-side reference of a fresh repository on `registry`.
fn fresh_ref(host: &str, what: &str) -> String {
    format!("{host}/{}:1", crate::unique(what))
}

#[test]
fn push_then_pull_back_after_rmi() {
    let (b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("push-src");
    ok(
        &c,
        &[
            "run",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "echo pushed > /pushed",
        ],
    );
    let target = s.image(&fresh_ref(b.registry_host(), "push"));
    ok(&c, &["commit", &name, &target]);
    let out = ok(&c, &["push", &target]);
    assert!(
        !out.stdout.contains('\r'),
        "no progress bars on a pipe: {out}"
    );
    assert!(
        out.stdout.contains("digest: sha256:"),
        "push prints the digest: {out}"
    );
    assert!(out.stdout.contains("size: "), "{out}");

    ok(&c, &["rm", &name]);
    ok(&c, &["rmi", &target]);
    let out = ok(&c, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!out.lines().contains(&target.as_str()), "{out}");
    ok(&c, &["pull", &target]);
    let out = ok(&c, &["run", "--rm", &target, "cat", "/pushed"]);
    assert_eq!(out.stdout, "pushed\n", "{out}");
}

fn credential_files(home: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(home, &mut files);
    files
}

#[test]
fn login_stores_credentials_0600_push_uses_them_and_logout_forgets_them() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let mut reg = Registry::start_with_htpasswd("berthuser", "s3cret-pass").unwrap();
    let host = reg.host();
    let out = c
        .run_with_stdin(
            &["login", "-u", "berthuser", "--password-stdin", &host],
            b"wrong\n",
        )
        .unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(!out.stdout.contains("Login Succeeded"), "{out}");

    let out = c
        .run_with_stdin(
            &["login", "-u", "berthuser", "--password-stdin", &host],
            b"s3cret-pass\n",
        )
        .unwrap();
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    let holding: Vec<PathBuf> = credential_files(c.home())
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&host)))
        .collect();
    assert_eq!(
        holding.len(),
        1,
        "one credentials file under HOME names {host}: {holding:?}"
    );
    let mode = std::fs::metadata(&holding[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", holding[0].display());

    let target = s.image(&format!("{host}/{}:1", crate::unique("authpush")));
    ok(&c, &["tag", &busybox(), &target]);
    ok(&c, &["push", &target]);

    let out = ok(&c, &["logout", &host]);
    assert!(out.stdout.contains(&host), "{out}");
    let still = std::fs::read_to_string(&holding[0]).unwrap_or_default();
    assert!(!still.contains(&host), "logout removes the entry: {still}");
    let other = s.image(&format!("{host}/{}:1", crate::unique("noauth")));
    ok(&c, &["tag", &busybox(), &other]);
    let out = berth(&c, &["push", &other]);
    assert_eq!(out.code, Some(1), "push without credentials: {out}");
    reg.stop();
}

/// Converts an OCI image-layout directory with one image into a
/// docker-archive (`manifest.json` + config + layers) tar at `out`.
fn oci_to_docker_archive(oci: &Path, repo_tag: &str, out: &Path) {
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    let blob = |d: &str| {
        oci.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = json(oci.join("index.json"));
    let mut desc = index["manifests"][0].clone();
    if desc["mediaType"]
        .as_str()
        .is_some_and(|m| m.contains("index"))
    {
        desc = json(blob(desc["digest"].as_str().unwrap()))["manifests"][0].clone();
    }
    let manifest = json(blob(desc["digest"].as_str().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::copy(blob(&cfg), dir.path().join(format!("{cfg}.json"))).unwrap();
    let mut layers = Vec::new();
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let name = format!("layer{i}.tar");
        // docker-archive layers are plain tars; `docker save` wrote them uncompressed.
        let gz = std::fs::File::open(blob(l["digest"].as_str().unwrap())).unwrap();
        let plain = std::fs::File::create(dir.path().join(&name)).unwrap();
        let st = Command::new("gzip")
            .arg("-dc")
            .stdin(gz)
            .stdout(plain)
            .status()
            .unwrap();
        assert!(st.success());
        layers.push(name);
    }
    let m = serde_json::json!([{ "Config": format!("{cfg}.json"), "RepoTags": [repo_tag], "Layers": layers }]);
    std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn save_and_load_oci_and_docker_archives() {
    let (_b, c) = cli();
    let s = Scope::new(&c);
    let name = s.container("save-src");
    ok(
        &c,
        &[
            "run",
            "--name",
            &name,
            &busybox(),
            "sh",
            "-c",
            "echo saved > /saved",
        ],
    );
    let image = s.image(&format!("{}:v1", crate::unique("saved")));
    ok(&c, &["commit", &name, &image]);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("img.tar");
    ok(&c, &["save", "-o", archive.to_str().unwrap(), &image]);
    let unpacked = work.path().join("oci");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xf")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(st.success(), "save -o writes a tar");
    assert!(unpacked.join("oci-layout").is_file(), "an OCI image layout");
    let index = std::fs::read_to_string(unpacked.join("index.json")).unwrap();
    assert!(
        index.contains(&image),
        "the index keeps the reference: {index}"
    );

    // Load the OCI archive back after removing the image.
    ok(&c, &["rmi", &image]);
    let out = ok(&c, &["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.stdout.contains(&format!("Loaded image: {image}")),
        "{out}"
    );
    assert_eq!(
        ok(&c, &["run", "--rm", &image, "cat", "/saved"]).stdout,
        "saved\n"
    );

    // `save` to stdout and `load` from stdin.
    let streamed = c.command(&["save", &image]).output().unwrap();
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    ok(&c, &["rmi", &image]);
    let out = c.run_with_stdin(&["load"], &streamed.stdout).unwrap();
    assert!(out.success() && out.stdout.contains(&image), "{out}");

    // A docker-archive (what `docker save` writes) loads too.
    let docker_tag = s.image(&format!("{}:v1", crate::unique("dockerarchive")));
    let docker_tar = work.path().join("docker.tar");
    oci_to_docker_archive(&unpacked, &docker_tag, &docker_tar);
    let out = ok(&c, &["load", "-i", docker_tar.to_str().unwrap()]);
    assert!(out.stdout.contains(&docker_tag), "{out}");
    assert_eq!(
        ok(&c, &["run", "--rm", &docker_tag, "cat", "/saved"]).stdout,
        "saved\n"
    );

    let garbage = work.path().join("garbage.tar");
    std::fs::write(&garbage, b"not a tar at all").unwrap();
    let out = berth(&c, &["load", "-i", garbage.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
}
