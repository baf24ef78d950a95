//! The project's own fixture images (built from Debian's busybox-static and
//! pushed with berth's push code) pulled through berthd, and the hostile set.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use berth_test_images::{push_all, push_all_hostile, Expect, Registry};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn fixture_images_pull_and_unpack() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let pushed = push_all(&reg, work.path()).await.unwrap();
    let dirs = Dirs::new();
    let mut d = InProc::start(&dirs).await;
    let store = d.manager.store().clone();
    let c = &mut d.images;

    // busybox: by tag, then by the pushed digest (same image).
    let bb = pull(c, &format!("{host}/busybox")).await.unwrap();
    let by_digest = format!("{host}/busybox@{}", pushed.busybox);
    assert_eq!(pull(c, &by_digest).await.unwrap(), bb);
    let rec = store.find_image(&bb).unwrap().unwrap();
    let base = store.snapshot_path(&rec.chain_ids[0]).unwrap().unwrap();
    assert!(base.join("bin/busybox").is_file());

    // multilayer: whiteouts and an opaque dir in overlay format.
    let ml = pull(c, &format!("{host}/multilayer:latest")).await.unwrap();
    let rec = store.find_image(&ml).unwrap().unwrap();
    assert_eq!(rec.chain_ids.len(), 4);
    // The busybox base layer is shared with the busybox image.
    assert_eq!(
        store.snapshot_path(&rec.chain_ids[0]).unwrap().unwrap(),
        base
    );
    let wh = store.snapshot_path(&rec.chain_ids[2]).unwrap().unwrap();
    let gone = std::fs::symlink_metadata(wh.join("data/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    let opq = berth_image::unpack::lgetxattr(&wh.join("opaque"), "trusted.overlay.opaque").unwrap();
    assert_eq!(opq.as_deref(), Some(&b"y"[..]));
    let top = store.snapshot_path(&rec.chain_ids[3]).unwrap().unwrap();
    assert_eq!(std::fs::read(top.join("data/added")).unwrap(), b"added\n");

    // USER by name.
    let us = pull(c, &format!("{host}/user:latest")).await.unwrap();
    let st = status(c, &us).await.unwrap();
    assert_eq!(st.username, "app");
    assert!(st.uid.is_none());

    // Multi-arch index: linux/amd64 chosen; repo digest is the index digest.
    let ma = pull(c, &format!("{host}/multiarch:latest")).await.unwrap();
    let rec = store.find_image(&ma).unwrap().unwrap();
    let top = store
        .snapshot_path(rec.chain_ids.last().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(top.join("arch")).unwrap(), b"amd64\n");
    assert_eq!(
        rec.repo_digests,
        vec![format!("{host}/multiarch@{}", pushed.multiarch)]
    );
    assert_eq!(list(c).await.len(), 4);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_are_refused_and_nothing_escapes() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let set = push_all_hostile(&reg, work.path(), "hostile")
        .await
        .unwrap();
    let dirs = Dirs::new();
    let mut config = dirs.config();
    // Below the bomb's size, far above any honest fixture layer.
    config.unpack.max_unpacked_bytes = 64 << 20;
    let mut d = InProc::start_with(&dirs, config).await;
    for f in &set.fixtures {
        f.prepare().unwrap();
        let e = pull(&mut d.images, &format!("{host}/hostile:{}", f.tag))
            .await
            .unwrap_err();
        let msg = e.message();
        assert!(
            msg.contains(&f.layer.digest.to_string()),
            "{}: {msg}",
            f.tag
        );
        match &f.expect {
            Expect::Refused(entry) => assert!(msg.contains(entry.as_str()), "{}: {msg}", f.tag),
            Expect::TooLarge => assert!(msg.to_lowercase().contains("limit"), "{}: {msg}", f.tag),
            Expect::DigestMismatch => {
                assert!(msg.to_lowercase().contains("digest"), "{}: {msg}", f.tag)
            }
        }
        assert!(
            f.escaped().is_empty(),
            "{}: escaped to {:?}",
            f.tag,
            f.escaped()
        );
        // No temporary snapshot is left behind by a refused layer.
        assert_eq!(dirs.snapshot_dirs().1, 0, "{}", f.tag);
    }
    assert!(list(&mut d.images).await.is_empty());
    d.stop().await;
}
