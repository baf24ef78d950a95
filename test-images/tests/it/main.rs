//! Self-test: fixtures build, push through berth_image::push into a real
//! loopback registry, and come back byte-identical over plain HTTP.
#![allow(clippy::unwrap_used)]

use berth_image::digest::Digest;
use berth_image::layout::Layout;
use berth_image::unpack::{unpack_layer, LayerSource, UnpackError, UnpackLimits};
use berth_test_images::*;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// GET over loopback with an optional basic-auth header; returns status, body, content type.
async fn get(url: &str, auth: Option<(&str, &str)>) -> (u16, Vec<u8>, String) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = client.get(url).header("Accept", ACCEPT);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, resp.bytes().await.unwrap().to_vec(), ct)
}

#[tokio::test]
async fn busybox_pushes_and_reads_back() {
    let reg = Registry::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bb = busybox_layout(&work.path().join("bb")).unwrap();
    let digest = push_fixture(&reg, &bb.layout, &bb.tag, "busybox:latest")
        .await
        .unwrap();
    assert_eq!(digest, bb.descriptor.digest);

    let (status, body, ct) = get(&format!("{}/v2/busybox/manifests/latest", reg.url()), None).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(
        Digest::of_bytes(&body),
        digest,
        "registry serves our exact bytes"
    );
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let (status, blob, _) = get(&format!("{}/v2/busybox/blobs/{layer}", reg.url()), None).await;
    assert_eq!(status, 200);
    assert_eq!(Digest::of_bytes(&blob).to_string(), layer);

    // The blob unpacks into a busybox root with hard-linked applets.
    let layout = Layout::open(&bb.layout).unwrap();
    let cfg: serde_json::Value = layout
        .read_json(&m["config"]["digest"].as_str().unwrap().parse().unwrap())
        .unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    let diff_id: Digest = cfg["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let layer_digest: Digest = layer.parse().unwrap();
    let src = LayerSource {
        digest: &layer_digest,
        diff_id: &diff_id,
        media_type: m["layers"][0]["mediaType"].as_str().unwrap(),
        size: Some(blob.len() as u64),
    };
    unpack_layer(&blob[..], &src, dest.path(), &UnpackLimits::default()).unwrap();
    use std::os::unix::fs::MetadataExt;
    let bb_ino = std::fs::metadata(dest.path().join("bin/busybox"))
        .unwrap()
        .ino();
    assert_eq!(
        std::fs::metadata(dest.path().join("bin/sh")).unwrap().ino(),
        bb_ino
    );
    let passwd = std::fs::read_to_string(dest.path().join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"));

    // Path-prefixed repositories (mirror `override_path` layouts) work too.
    let pause = push_fixture(&reg, &bb.layout, &bb.tag, "registry.k8s.io/pause:3.10")
        .await
        .unwrap();
    let url = format!("{}/v2/registry.k8s.io/pause/manifests/3.10", reg.url());
    let (status, body, _) = get(&url, None).await;
    assert_eq!(status, 200);
    assert_eq!(Digest::of_bytes(&body), pause);

    // Pushing again skips existing blobs and yields the same digest.
    let again = push_fixture(&reg, &bb.layout, &bb.tag, "busybox:v2")
        .await
        .unwrap();
    assert_eq!(again, digest);
}

#[tokio::test]
async fn all_fixtures_push_including_multiarch_with_auth() {
    let reg = Registry::start_with_htpasswd("tester", "pa55word").unwrap();
    let work = tempfile::tempdir().unwrap();
    let pushed = push_all(&reg, work.path()).await.unwrap();
    let creds = reg.credentials();

    let (status, _, _) = get(
        &format!("{}/v2/multiarch/manifests/latest", reg.url()),
        None,
    )
    .await;
    assert_eq!(status, 401, "anonymous access refused");
    let (status, body, ct) = get(
        &format!("{}/v2/multiarch/manifests/latest", reg.url()),
        creds,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/vnd.oci.image.index.v1+json");
    assert_eq!(Digest::of_bytes(&body), pushed.multiarch);
    let idx: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let archs: Vec<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["arm64", "arm", "amd64"]);
    let mut configs = std::collections::HashSet::new();
    for d in idx["manifests"].as_array().unwrap() {
        let url = format!(
            "{}/v2/multiarch/manifests/{}",
            reg.url(),
            d["digest"].as_str().unwrap()
        );
        let (status, body, _) = get(&url, creds).await;
        assert_eq!(status, 200);
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        configs.insert(m["config"]["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(configs.len(), 3, "each platform has its own config");

    for (repo, digest) in [
        ("user", &pushed.user),
        ("multilayer", &pushed.multilayer),
        ("library/busybox", &pushed.busybox),
    ] {
        let (status, body, _) =
            get(&format!("{}/v2/{repo}/manifests/latest", reg.url()), creds).await;
        assert_eq!(status, 200, "{repo}");
        assert_eq!(&Digest::of_bytes(&body), digest, "{repo}");
    }
}

#[tokio::test]
async fn hostile_images_push_and_corrupted_blobs_fail_verification() {
    let reg = Registry::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let set = push_all_hostile(&reg, work.path(), "hostile")
        .await
        .unwrap();
    for f in &set.fixtures {
        f.prepare().unwrap();
        let (status, body, _) = get(
            &format!("{}/v2/hostile/manifests/{}", reg.url(), f.tag),
            None,
        )
        .await;
        assert_eq!(status, 200, "{}", f.tag);
        assert_eq!(Digest::of_bytes(&body), f.descriptor.digest);
        let (status, blob, _) = get(
            &format!("{}/v2/hostile/blobs/{}", reg.url(), f.layer.digest),
            None,
        )
        .await;
        assert_eq!(status, 200);
        // Feed what the registry serves to the unpacker, as a pull would.
        let layout = Layout::open(&set.layout).unwrap();
        let m: berth_image::layout::Manifest = layout.read_json(&f.descriptor.digest).unwrap();
        let cfg: serde_json::Value = layout.read_json(&m.config.digest).unwrap();
        let diff_id: Digest = cfg["rootfs"]["diff_ids"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let src = LayerSource {
            digest: &f.layer.digest,
            diff_id: &diff_id,
            media_type: &f.layer.media_type,
            size: Some(f.layer.size),
        };
        let limits = UnpackLimits {
            max_unpacked_bytes: 64 << 20,
            max_entries: 1000,
        };
        let err = unpack_layer(&blob[..], &src, dest.path(), &limits).unwrap_err();
        match (&f.expect, &err) {
            (
                Expect::Refused(entry),
                UnpackError::Refused {
                    layer, entry: got, ..
                },
            ) => {
                assert_eq!(layer, &f.layer.digest);
                assert_eq!(String::from_utf8_lossy(&got.0), entry.as_str(), "{}", f.tag);
            }
            (Expect::TooLarge, UnpackError::TooLarge { .. }) => {}
            (Expect::DigestMismatch, UnpackError::Digest { .. }) => {}
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", f.tag),
        }
        assert!(
            f.escaped().is_empty(),
            "{}: escaped to {:?}",
            f.tag,
            f.escaped()
        );
    }
}
