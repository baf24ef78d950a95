//! Pull by tag and digest, list/status/remove semantics, auth, multi-arch,
//! shared downloads.

use berth_proto::cri;
use berth_test_images::Registry;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn pull_list_status_remove() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let img = build_image(
        &[
            &[("etc/hello", b"hello\n")],
            &[
                ("usr/bin/tool", b"#!/bin/sh\necho hi\n"),
                ("etc/motd", b"motd\n"),
            ],
        ],
        "1000:1000",
        "amd64",
    );
    push(&host, "app", "v1", &img, None).await;
    push(&host, "app", "v2", &img, None).await;

    let dirs = Dirs::new();
    let mut d = InProc::start(&dirs).await;
    let c = &mut d.images;

    // By tag: the image ref is the image id (config digest).
    let id = pull(c, &format!("{host}/app:v1")).await.unwrap();
    assert_eq!(id, img.config_digest);
    assert_eq!(dirs.snapshot_dirs(), (2, 0));
    let downloads = d.manager.puller().layer_downloads();
    assert_eq!(downloads, 2);
    // The layer contents are in the snapshots.
    let chain = d
        .manager
        .store()
        .find_image(&id)
        .unwrap()
        .unwrap()
        .chain_ids;
    let top = d.manager.store().snapshot_path(&chain[1]).unwrap().unwrap();
    assert_eq!(std::fs::read(top.join("etc/motd")).unwrap(), b"motd\n");

    // Second tag and by digest: no new download, same image.
    assert_eq!(pull(c, &format!("{host}/app:v2")).await.unwrap(), id);
    let by_digest = format!("{host}/app@{}", img.manifest_digest);
    assert_eq!(pull(c, &by_digest).await.unwrap(), id);
    assert_eq!(d.manager.puller().layer_downloads(), downloads);

    let st = status(c, &format!("{host}/app:v1")).await.unwrap();
    assert_eq!(st.id, id);
    assert_eq!(
        st.repo_tags,
        vec![format!("{host}/app:v1"), format!("{host}/app:v2")]
    );
    assert_eq!(st.repo_digests, vec![by_digest.clone()]);
    assert_eq!(st.uid.unwrap().value, 1000);
    assert!(st.size > 0);
    // Lookups by id, bare hex id and digest reference all work.
    assert_eq!(status(c, &id).await.unwrap().id, id);
    assert_eq!(
        status(c, id.trim_start_matches("sha256:"))
            .await
            .unwrap()
            .id,
        id
    );
    assert_eq!(status(c, &by_digest).await.unwrap().id, id);
    // Missing image: empty response, not an error.
    assert!(status(c, &format!("{host}/app:nope")).await.is_none());

    // Verbose status carries the image config under "info".
    let v = c
        .image_status(cri::ImageStatusRequest {
            image: spec(&id),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&v.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["User"], "1000:1000");

    // List, with and without a filter.
    assert_eq!(list(c).await.len(), 1);
    let filtered = c
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec(&format!("{host}/app:v2")),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let none = c
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec("busybox:nope"),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(none.is_empty());

    // ImageFsInfo reports the snapshot dir.
    let fs = c
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let u = &fs.image_filesystems[0];
    assert_eq!(
        u.fs_id.as_ref().unwrap().mountpoint,
        dirs.root().join("snapshots").display().to_string()
    );
    assert!(u.used_bytes.unwrap().value > 0);
    assert!(u.inodes_used.unwrap().value >= 5);

    // Removing one tag of two keeps the image.
    remove(c, &format!("{host}/app:v1")).await;
    let st = status(c, &id).await.unwrap();
    assert_eq!(st.repo_tags, vec![format!("{host}/app:v2")]);
    assert_eq!(dirs.snapshot_dirs(), (2, 0));
    // Removing by id removes everything, snapshots and content included.
    remove(c, &id).await;
    assert!(status(c, &id).await.is_none());
    assert!(list(c).await.is_empty());
    assert_eq!(dirs.snapshot_dirs(), (0, 0));
    assert_eq!(dirs.content_files(), 0);
    // Removing a missing image succeeds.
    remove(c, &id).await;
    remove(c, "busybox:never-pulled").await;

    // Bad input is InvalidArgument; an absent tag is NotFound.
    let e = pull(c, "example.invalid/Upper/case").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = pull(c, "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = pull(c, &format!("{host}/app:missing")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_moves_to_the_newer_image_and_shared_layers_are_kept() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let base: &[(&str, &[u8])] = &[("etc/base", b"base\n")];
    let a = build_image(&[base, &[("a", b"a")]], "", "amd64");
    let b = build_image(&[base, &[("b", b"b")]], "", "amd64");
    push(&host, "x", "latest", &a, None).await;
    push(&host, "y", "latest", &b, None).await;
    let dirs = Dirs::new();
    let d = InProc::start(&dirs).await;
    let mut c = d.images.clone();
    let ida = pull(&mut c, &format!("{host}/x")).await.unwrap();
    let idb = pull(&mut c, &format!("{host}/y:latest")).await.unwrap();
    // Common base layer is one snapshot.
    assert_eq!(dirs.snapshot_dirs(), (3, 0));
    assert_eq!(d.manager.puller().layer_downloads(), 3);
    remove(&mut c, &ida).await;
    assert_eq!(dirs.snapshot_dirs(), (2, 0));
    assert_eq!(
        status(&mut c, &idb).await.unwrap().repo_tags,
        vec![format!("{host}/y:latest")]
    );
    // Re-point x:latest to b's manifest: the tag moves.
    push(&host, "x", "latest", &b, None).await;
    assert_eq!(
        pull(&mut c, &format!("{host}/x:latest")).await.unwrap(),
        idb
    );
    let st = status(&mut c, &idb).await.unwrap();
    assert_eq!(st.repo_tags.len(), 2);
    // The unset USER gives neither uid nor username.
    assert!(st.uid.is_none() && st.username.is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_resolves_to_linux_amd64() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let amd = build_image(&[&[("arch", b"amd64")]], "", "amd64");
    let arm = build_image(&[&[("arch", b"arm64")]], "", "arm64");
    push(&host, "multi", "amd64-only", &amd, None).await;
    push(&host, "multi", "arm64-only", &arm, None).await;
    let entry = |i: &TestImage, arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": i.manifest_digest, "size": i.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}})
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")]
    }))
    .unwrap();
    put_manifest(
        &host,
        "multi",
        "latest",
        &index,
        "application/vnd.oci.image.index.v1+json",
        None,
    )
    .await;
    let dirs = Dirs::new();
    let mut d = InProc::start(&dirs).await;
    let id = pull(&mut d.images, &format!("{host}/multi")).await.unwrap();
    assert_eq!(id, amd.config_digest);
    let st = status(&mut d.images, &id).await.unwrap();
    // The repo digest is the index digest (what name@digest resolves to).
    assert_eq!(
        st.repo_digests,
        vec![format!("{host}/multi@{}", sha256(&index))]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_with_htpasswd_registry() {
    let reg = Registry::start_with_htpasswd("alice", "wonder").unwrap();
    let host = reg.host();
    let img = build_image(&[&[("secret", b"s")]], "", "amd64");
    push(&host, "private", "v1", &img, Some(("alice", "wonder"))).await;
    let dirs = Dirs::new();
    let mut d = InProc::start(&dirs).await;
    let r = format!("{host}/private:v1");
    let e = pull(&mut d.images, &r).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let bad = cri::AuthConfig {
        username: "alice".into(),
        password: "nope".into(),
        ..Default::default()
    };
    assert!(pull_auth(&mut d.images, &r, Some(bad)).await.is_err());
    let good = cri::AuthConfig {
        username: "alice".into(),
        password: "wonder".into(),
        ..Default::default()
    };
    assert_eq!(
        pull_auth(&mut d.images, &r, Some(good)).await.unwrap(),
        img.config_digest
    );
    remove(&mut d.images, &r).await;
    // The base64 `auth` field works too.
    let b64 = cri::AuthConfig {
        auth: "YWxpY2U6d29uZGVy".into(),
        ..Default::default()
    };
    assert_eq!(
        pull_auth(&mut d.images, &r, Some(b64)).await.unwrap(),
        img.config_digest
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_share_one_download() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let big: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let img = build_image(
        &[&[("big", &big)], &[("b", b"b")], &[("c", b"c")]],
        "",
        "amd64",
    );
    push(&host, "shared", "v1", &img, None).await;
    let dirs = Dirs::new();
    let d = InProc::start(&dirs).await;
    let r = format!("{host}/shared:v1");
    let (mut c1, mut c2) = (d.images.clone(), d.images.clone());
    let (a, b) = tokio::join!(pull(&mut c1, &r), pull(&mut c2, &r));
    assert_eq!(a.unwrap(), img.config_digest);
    assert_eq!(b.unwrap(), img.config_digest);
    assert_eq!(d.manager.puller().layer_downloads(), 3);
    assert_eq!(dirs.snapshot_dirs(), (3, 0));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let amd = build_image_as(&[&[("docker", b"amd64")]], "0", "amd64", true);
    let arm = build_image_as(&[&[("docker", b"arm64")]], "0", "arm64", true);
    push(&host, "dock", "amd64", &amd, None).await;
    push(&host, "dock", "arm64", &arm, None).await;
    let entry = |i: &TestImage, arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": i.manifest_digest, "size": i.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}})
    };
    let list_doc = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")]
    }))
    .unwrap();
    put_manifest(
        &host,
        "dock",
        "list",
        &list_doc,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        None,
    )
    .await;
    let dirs = Dirs::new();
    let mut d = InProc::start(&dirs).await;
    let id = pull(&mut d.images, &format!("{host}/dock:amd64"))
        .await
        .unwrap();
    assert_eq!(id, amd.config_digest);
    assert_eq!(
        status(&mut d.images, &id).await.unwrap().uid.unwrap().value,
        0
    );
    assert_eq!(
        pull(&mut d.images, &format!("{host}/dock:list"))
            .await
            .unwrap(),
        amd.config_digest
    );
    // A tag and a digest together: the digest is fetched, the tag recorded.
    let both = format!("{host}/dock:pinned@{}", arm.manifest_digest);
    assert_eq!(pull(&mut d.images, &both).await.unwrap(), arm.config_digest);
    let st = status(&mut d.images, &arm.config_digest).await.unwrap();
    assert_eq!(st.repo_tags, vec![format!("{host}/dock:pinned")]);
    assert_eq!(
        st.repo_digests,
        vec![format!("{host}/dock@{}", arm.manifest_digest)]
    );
    d.stop().await;
}
