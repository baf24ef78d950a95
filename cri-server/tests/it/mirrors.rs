//! hosts.toml mirrors: order, a dead mirror, override_path, no fallback.
//! The upstream names used here are never resolved: their hosts.toml lists
//! loopback mirrors only and no `server`.

use berth_test_images::Registry;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn dead_mirror_falls_back_to_the_next_mirror() {
    let reg = Registry::start().unwrap();
    let img = build_image(&[&[("m", b"mirrored")]], "", "amd64");
    // The mirror serves the upstream repository path as is.
    push(&reg.host(), "team/app", "1.0", &img, None).await;
    let dirs = Dirs::new();
    dirs.hosts_toml(
        "upstream.invalid",
        &format!(
            "[host.\"http://127.0.0.1:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            dead_port(),
            reg.url()
        ),
    );
    let mut d = InProc::start(&dirs).await;
    let id = pull(&mut d.images, "upstream.invalid/team/app:1.0")
        .await
        .unwrap();
    assert_eq!(id, img.config_digest);
    // The image keeps its upstream name whatever endpoint served it.
    let st = status(&mut d.images, &id).await.unwrap();
    assert_eq!(
        st.repo_tags,
        vec!["upstream.invalid/team/app:1.0".to_string()]
    );
    assert_eq!(
        st.repo_digests,
        vec![format!("upstream.invalid/team/app@{}", img.manifest_digest)]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_prefixed_mirror_with_override_path() {
    let reg = Registry::start().unwrap();
    let img = build_image(&[&[("pause", b"pause")]], "65535", "amd64");
    // What GET /v2/registry.k8s.io/pause/manifests/3.10 serves on the mirror.
    push(&reg.host(), "registry.k8s.io/pause", "3.10", &img, None).await;
    let dirs = Dirs::new();
    dirs.hosts_toml(
        "registry.k8s.io",
        &format!(
            "[host.\"{}/v2/registry.k8s.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
            reg.url()
        ),
    );
    let mut d = InProc::start(&dirs).await;
    let id = pull(&mut d.images, "registry.k8s.io/pause:3.10")
        .await
        .unwrap();
    assert_eq!(id, img.config_digest);
    let st = status(&mut d.images, "registry.k8s.io/pause:3.10")
        .await
        .unwrap();
    assert_eq!(st.repo_tags, vec!["registry.k8s.io/pause:3.10".to_string()]);
    assert_eq!(st.uid.unwrap().value, 65535);
    // By digest through the same mirror.
    let by_digest = format!("registry.k8s.io/pause@{}", img.manifest_digest);
    assert_eq!(pull(&mut d.images, &by_digest).await.unwrap(), id);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_fallback_without_server_and_no_network() {
    let dirs = Dirs::new();
    // Only a dead loopback mirror, no `server`: the origin is never tried,
    // so no DNS lookup of nowhere.invalid happens.
    dirs.hosts_toml(
        "nowhere.invalid",
        &format!("[host.\"http://127.0.0.1:{}\"]\n", dead_port()),
    );
    // A mirror limited to `pull` cannot resolve tags.
    dirs.hosts_toml(
        "digest-only.invalid",
        &format!(
            "[host.\"http://127.0.0.1:{}\"]\n  capabilities = [\"pull\"]\n",
            dead_port()
        ),
    );
    dirs.hosts_toml("broken.invalid", "server = [");
    let mut d = InProc::start(&dirs).await;
    let started = std::time::Instant::now();
    let e = pull(&mut d.images, "nowhere.invalid/app:1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("127.0.0.1"), "{}", e.message());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let e = pull(&mut d.images, "digest-only.invalid/app:1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let e = pull(&mut d.images, "broken.invalid/app:1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(list(&mut d.images).await.is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_missing_on_the_first_mirror_is_fetched_from_the_next() {
    let first = Registry::start().unwrap();
    let second = Registry::start().unwrap();
    let img = build_image(&[&[("a", b"a")], &[("b", b"b")]], "", "amd64");
    push(&first.host(), "lib/app", "v1", &img, None).await;
    push(&second.host(), "lib/app", "v1", &img, None).await;
    // The first mirror resolves the tag but has lost a layer blob.
    let (layer, _) = &img.blobs[1];
    let digest: berth_image::digest::Digest = layer.parse().unwrap();
    std::fs::remove_file(berth_test_images::hostile::registry_blob_path(
        &first.storage_dir(),
        &digest,
    ))
    .unwrap();
    let dirs = Dirs::new();
    dirs.hosts_toml(
        "split.invalid",
        &format!("[host.\"{}\"]\n[host.\"{}\"]\n", first.url(), second.url()),
    );
    dirs.hosts_toml("lossy.invalid", &format!("[host.\"{}\"]\n", first.url()));
    let mut d = InProc::start(&dirs).await;
    // Alone, the first mirror cannot serve the image.
    assert!(pull(&mut d.images, "lossy.invalid/lib/app:v1")
        .await
        .is_err());
    let id = pull(&mut d.images, "split.invalid/lib/app:v1")
        .await
        .unwrap();
    assert_eq!(id, img.config_digest);
    assert_eq!(dirs.snapshot_dirs(), (2, 0));
    d.stop().await;
}
