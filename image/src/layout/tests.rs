#![allow(clippy::unwrap_used)]

use super::*;
use crate::unpack::{unpack_layer, LayerSource, UnpackLimits};

fn build(dir: &Path, compression: LayerCompression, format: Format) -> Descriptor {
    let layout = Layout::create(dir).unwrap();
    let mut w = layout.layer(compression).unwrap();
    let mut t = TreeBuilder::new();
    t.dir("etc", 0o755)
        .bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .bytes("bin/tool", vec![1u8; 5000], 0o755)
        .hardlink("bin/alias", "bin/tool")
        .symlink("bin/sh", "tool")
        .owner("bin/tool", 1000, 1000)
        .xattr("bin/tool", "user.k", b"v");
    t.write_to(&mut w).unwrap();
    let layer = w.finish().unwrap();
    let spec = ImageSpec {
        cmd: Some(vec!["sh".into()]),
        env: vec!["PATH=/bin".into()],
        user: Some("1000".into()),
        labels: [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into(),
        exposed_ports: vec!["80/tcp".into(), "443/tcp".into()],
        ..Default::default()
    };
    let m = layout.write_image(&[layer], &spec, format).unwrap();
    layout.tag("latest", &m).unwrap();
    m
}

#[test]
fn images_are_deterministic_and_readable() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ma = build(a.path(), LayerCompression::Gzip, Format::Oci);
    let mb = build(b.path(), LayerCompression::Gzip, Format::Oci);
    assert_eq!(ma.digest, mb.digest, "same inputs, same manifest digest");

    let layout = Layout::open(a.path()).unwrap();
    let resolved = layout.resolve("latest").unwrap();
    assert_eq!(resolved, ma);
    assert!(matches!(
        layout.resolve("nope"),
        Err(LayoutError::NoSuchTag(_))
    ));
    let m: Manifest = layout.read_json(&ma.digest).unwrap();
    assert_eq!(m.media_type.as_deref(), Some(OCI_MANIFEST));
    let cfg: Value = layout.read_json(&m.config.digest).unwrap();
    assert_eq!(cfg["config"]["Cmd"][0], "sh");
    assert_eq!(cfg["config"]["User"], "1000");
    assert_eq!(cfg["architecture"], "amd64");
    assert!(cfg["config"]["ExposedPorts"]["443/tcp"].is_object());
    let diff_id: Digest = cfg["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // The layer unpacks with the unpacker (both digests verified).
    let layer = &m.layers[0];
    let dest = tempfile::tempdir().unwrap();
    let src = LayerSource {
        digest: &layer.digest,
        diff_id: &diff_id,
        media_type: &layer.media_type,
        size: Some(layer.size),
    };
    let blob = layout.open_blob(&layer.digest).unwrap();
    unpack_layer(blob, &src, dest.path(), &UnpackLimits::default()).unwrap();
    use std::os::unix::fs::MetadataExt;
    let tool = fs::metadata(dest.path().join("bin/tool")).unwrap();
    assert_eq!(tool.uid(), 1000);
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        fs::read_link(dest.path().join("bin/sh")).unwrap(),
        Path::new("tool")
    );
}

#[test]
fn docker_format_zstd_and_index() {
    let a = tempfile::tempdir().unwrap();
    let m = build(a.path(), LayerCompression::Gzip, Format::Docker);
    assert_eq!(m.media_type, DOCKER_MANIFEST);
    let layout = Layout::open(a.path()).unwrap();
    let man: Manifest = layout.read_json(&m.digest).unwrap();
    assert_eq!(
        man.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(man.config.media_type, DOCKER_CONFIG);

    let z = tempfile::tempdir().unwrap();
    let mz = build(z.path(), LayerCompression::Zstd, Format::Oci);
    let lz = Layout::open(z.path()).unwrap();
    let man: Manifest = lz.read_json(&mz.digest).unwrap();
    assert!(man.layers[0].media_type.ends_with("+zstd"));

    let mut child = m.clone();
    child.platform = Some(Platform::linux("amd64", None));
    let idx = layout.write_index_blob(&[child], Format::Oci).unwrap();
    layout.tag("multi", &idx).unwrap();
    let got: Index = layout
        .read_json(&layout.resolve("multi").unwrap().digest)
        .unwrap();
    assert_eq!(
        got.manifests[0].platform.as_ref().unwrap().architecture,
        "amd64"
    );
    assert_eq!(layout.index().unwrap().manifests.len(), 2);
}

#[test]
fn corrupt_blob_is_detected() {
    let a = tempfile::tempdir().unwrap();
    let m = build(a.path(), LayerCompression::None, Format::Oci);
    let layout = Layout::open(a.path()).unwrap();
    fs::write(layout.blob_path(&m.digest), b"{}").unwrap();
    assert!(matches!(
        layout.read_blob(&m.digest),
        Err(LayoutError::Corrupt { .. })
    ));
    assert!(matches!(
        Layout::open(&a.path().join("blobs")),
        Err(LayoutError::NotALayout(_))
    ));
}

/// Throughput probe: `cargo test --release -p berth-image -- --ignored throughput --nocapture`.
#[test]
#[ignore]
fn unpack_throughput() {
    let a = tempfile::tempdir().unwrap();
    let layout = Layout::create(a.path()).unwrap();
    let mut w = layout.layer(LayerCompression::Gzip).unwrap();
    let mut t = TreeBuilder::new();
    t.file(
        "noise",
        Content::Generated {
            len: 150 << 20,
            seed: 7,
            compressible: false,
        },
        0o644,
    )
    .file(
        "zeros",
        Content::Generated {
            len: 150 << 20,
            seed: 0,
            compressible: true,
        },
        0o644,
    );
    for i in 0..2000 {
        t.bytes(&format!("small/{i}"), vec![i as u8; 4096], 0o644);
    }
    let start = std::time::Instant::now();
    t.write_to(&mut w).unwrap();
    let l = w.finish().unwrap();
    eprintln!(
        "build+gzip: {:?} ({} bytes)",
        start.elapsed(),
        l.descriptor.size
    );
    let dest = tempfile::tempdir().unwrap();
    let src = LayerSource {
        digest: &l.descriptor.digest,
        diff_id: &l.diff_id,
        media_type: &l.descriptor.media_type,
        size: Some(l.descriptor.size),
    };
    let start = std::time::Instant::now();
    let blob =
        std::io::BufReader::with_capacity(1 << 20, layout.open_blob(&l.descriptor.digest).unwrap());
    let stats = unpack_layer(blob, &src, dest.path(), &UnpackLimits::default()).unwrap();
    let el = start.elapsed();
    eprintln!(
        "unpack: {el:?}, {:.0} MB/s of tar ({stats:?})",
        stats.unpacked_bytes as f64 / el.as_secs_f64() / 1e6
    );
}
