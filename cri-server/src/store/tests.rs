#![allow(clippy::unwrap_used)]

use berth_image::pull::{PulledImage, SnapshotSink};
use berth_image::reference::Reference;
use berth_image::registry::sha256_digest;
use berth_image::unpack::UnpackStats;

use super::*;

fn snapshot(store: &Store, chain_id: &str, parent: Option<&str>) {
    let tmp = store.begin_snapshot().unwrap();
    std::fs::write(tmp.join("fs/file"), chain_id).unwrap();
    store
        .commit_snapshot(&tmp, chain_id, parent, &UnpackStats::default())
        .unwrap();
    assert!(!tmp.exists());
}

fn image(store: &Store, name: &str, chain_ids: &[&str], seed: &str) -> PulledImage {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let manifest = format!("{{\"manifest\":\"{seed}\"}}").into_bytes();
    let config_digest = sha256_digest(&config);
    let manifest_digest = sha256_digest(&manifest);
    store.write_content(&config_digest, &config).unwrap();
    store.write_content(&manifest_digest, &manifest).unwrap();
    for (i, c) in chain_ids.iter().enumerate() {
        if !store.has_snapshot(c).unwrap() {
            snapshot(store, c, i.checked_sub(1).map(|p| chain_ids[p]));
        }
    }
    let img = PulledImage {
        reference: Reference::parse_normalized(name).unwrap(),
        manifest_digest,
        index_digest: None,
        config_digest,
        config: config.into(),
        chain_ids: chain_ids.iter().map(|s| s.to_string()).collect(),
        size: 10,
        user: Some("app".into()),
        served_by: "test".into(),
        layers_downloaded: chain_ids.len(),
    };
    store.commit_image(&img).unwrap();
    img
}

fn dirs(root: &Path) -> usize {
    std::fs::read_dir(root.join("snapshots")).unwrap().count()
}

#[tokio::test]
async fn images_refs_removal_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report, RecoveryReport::default());
    let a = image(&store, "a:1", &["sha256:base", "sha256:a"], "a");
    let b = image(&store, "b:1", &["sha256:base", "sha256:b"], "b");
    assert_eq!(store.snapshot_count().unwrap(), 3);
    // Second tag for a.
    let mut a2 = a.clone();
    a2.reference = Reference::parse_normalized("a:2").unwrap();
    store.commit_image(&a2).unwrap();

    let rec = store.find_image("docker.io/library/a:1").unwrap().unwrap();
    assert_eq!(rec.id, a.config_digest);
    assert_eq!(
        rec.repo_tags,
        vec!["docker.io/library/a:1", "docker.io/library/a:2"]
    );
    assert_eq!(
        rec.repo_digests,
        vec![format!("docker.io/library/a@{}", a.manifest_digest)]
    );
    assert_eq!(rec.chain_ids, vec!["sha256:base", "sha256:a"]);
    assert_eq!(rec.user.as_deref(), Some("app"));
    let by_digest = format!("a@{}", a.manifest_digest);
    assert_eq!(
        store.find_image(&by_digest).unwrap().unwrap().id,
        a.config_digest
    );
    assert!(store.find_image("a:3").unwrap().is_none());
    assert!(store.find_image("not a ref").unwrap().is_none());
    assert_eq!(store.list_images().unwrap().len(), 2);

    // One tag of two: untag only.
    assert_eq!(store.remove_image("a:1").unwrap(), RemoveOutcome::Untagged);
    assert!(store.find_image("a:1").unwrap().is_none());
    assert!(store.find_image("a:2").unwrap().is_some());
    // Last tag: the image goes; GC keeps the shared base, drops a's layer.
    assert_eq!(
        store.remove_image("a:2").unwrap(),
        RemoveOutcome::Removed {
            id: a.config_digest.clone()
        }
    );
    let r = store.gc().await.unwrap();
    assert_eq!(r.unreferenced_snapshots, 1);
    assert_eq!(r.unreferenced_content, 2);
    assert!(store.snapshot_path("sha256:base").unwrap().is_some());
    assert!(store.snapshot_path("sha256:a").unwrap().is_none());
    assert!(!store.has_content(&a.config_digest));
    assert!(store.has_content(&b.config_digest));
    assert_eq!(dirs(dir.path()), 2);
    assert_eq!(store.remove_image("a:2").unwrap(), RemoveOutcome::NotFound);

    // A snapshot a container holds survives its image.
    store.add_snapshot_ref("sha256:b", 1).unwrap();
    store.remove_image(&b.config_digest).unwrap();
    store.gc().await.unwrap();
    assert!(store.snapshot_path("sha256:b").unwrap().is_some());
    assert!(store.snapshot_path("sha256:base").unwrap().is_none());
    store.add_snapshot_ref("sha256:b", -1).unwrap();
    store.gc().await.unwrap();
    assert_eq!(store.snapshot_count().unwrap(), 0);
    assert_eq!(dirs(dir.path()), 0);
}

#[test]
fn duplicate_snapshot_commit_discards_the_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    snapshot(&store, "sha256:x", None);
    let tmp = store.begin_snapshot().unwrap();
    store
        .commit_snapshot(&tmp, "sha256:x", None, &UnpackStats::default())
        .unwrap();
    assert!(!tmp.exists());
    assert_eq!(store.snapshot_count().unwrap(), 1);
    assert_eq!(dirs(dir.path()), 1);
}

#[test]
fn startup_removes_every_kind_of_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let kept;
    {
        let (store, _) = Store::open(dir.path()).unwrap();
        kept = image(&store, "kept:1", &["sha256:k"], "k");
        // Killed while unpacking: a tmp dir.
        let tmp = store.begin_snapshot().unwrap();
        std::fs::write(tmp.join("fs/partial"), b"x").unwrap();
        // Killed after committing a snapshot but before the image row.
        snapshot(&store, "sha256:orphan-row", None);
        // Killed while writing content, and after writing content only.
        std::fs::write(dir.path().join("content/sha256/.tmp-abc"), b"x").unwrap();
        store
            .write_content(&sha256_digest(b"lonely"), b"lonely")
            .unwrap();
    }
    // Killed between rename and commit: a numbered dir without a row.
    std::fs::create_dir_all(dir.path().join("snapshots/999/fs")).unwrap();

    let (store, report) = Store::open(dir.path()).unwrap();
    assert_eq!(
        report,
        RecoveryReport {
            tmp_dirs: 1,
            orphan_dirs: 1,
            unreferenced_snapshots: 1,
            unreferenced_content: 1,
        }
    );
    assert_eq!(dirs(dir.path()), 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("content/sha256"))
            .unwrap()
            .count(),
        2
    );
    let rec = store.find_image("kept:1").unwrap().unwrap();
    assert_eq!(rec.id, kept.config_digest);
    let fs = store.snapshot_path("sha256:k").unwrap().unwrap();
    assert_eq!(std::fs::read(fs.join("file")).unwrap(), b"sha256:k");
    // A second start finds nothing more to do.
    drop(store);
    let (_store, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report, RecoveryReport::default());
}

#[test]
fn content_paths_refuse_bad_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.write_content("sha256:../../etc/passwd", b"x"),
        Err(StoreError::Digest { .. })
    ));
    assert!(store.read_content("md5:abc").is_err());
}
