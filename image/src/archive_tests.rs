use super::*;
use crate::layout::{Format, ImageSpec, LayerCompression, Layout, TreeBuilder};

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn oci_archive_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::create(&d.path().join("layout")).unwrap();
    let mut w = layout.layer(LayerCompression::Gzip).unwrap();
    TreeBuilder::new()
        .bytes("hello", "world", 0o644)
        .write_to(&mut w)
        .unwrap();
    let layer = w.finish().unwrap();
    let manifest = layout
        .write_image(
            std::slice::from_ref(&layer),
            &ImageSpec::default(),
            Format::Oci,
        )
        .unwrap();
    let mut entry = manifest.clone();
    entry.annotations = name_annotations("docker.io/library/app:v1", Some("v1"));
    write_index(layout.dir(), vec![entry]).unwrap();
    let bytes = write_oci_archive(layout.dir(), Vec::new()).unwrap();
    // Deterministic archive bytes.
    assert_eq!(bytes, write_oci_archive(layout.dir(), Vec::new()).unwrap());

    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    extract_archive(&bytes[..], &out).unwrap();
    let images = read_extracted(&out).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.names, vec!["docker.io/library/app:v1".to_string()]);
    assert_eq!(Digest::of_bytes(&img.manifest), manifest.digest);
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].digest, layer.descriptor.digest);
    assert_eq!(img.layers[0].diff_id, layer.diff_id);
    assert_eq!(
        file_digest(&img.layers[0].path).unwrap().0,
        layer.descriptor.digest
    );
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "v1");
}

#[test]
fn docker_archive_with_linked_layers_loads() {
    let layer = tar_of(&[("a", b"1")]);
    let diff = Digest::of_bytes(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}}}}"#
    );
    let manifest = r#"[{"Config":"cfg.json","RepoTags":["app:latest"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        ("cfg.json", config.as_bytes()),
        ("l1/layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "l2/layer.tar", "../l1/layer.tar")
        .unwrap();
    let bytes = b.into_inner().unwrap();

    let d = tempfile::tempdir().unwrap();
    extract_archive(&bytes[..], d.path()).unwrap();
    let images = read_extracted(d.path()).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.names, vec!["app:latest".to_string()]);
    assert_eq!(img.config_digest, Digest::of_bytes(config.as_bytes()));
    assert_eq!(img.layers.len(), 2);
    for l in &img.layers {
        assert_eq!(l.digest, diff);
        assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar");
    }
    let m: Manifest = serde_json::from_slice(&img.manifest).unwrap();
    assert_eq!(m.config.digest, img.config_digest);
}

#[test]
fn hostile_archive_entries_are_refused() {
    for name in ["../evil", "/abs"] {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // Bypass the tar crate's own path checks.
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let err = extract_archive(&bytes[..], d.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Entry { .. }), "{name}: {err}");
    }
    // A link to a host file is never created.
    let d = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "passwd", "/etc/passwd").unwrap();
    let bytes = b.into_inner().unwrap();
    assert!(extract_archive(&bytes[..], d.path()).is_err());
    assert!(!d.path().join("passwd").exists());
    // Not an image archive.
    let d = tempfile::tempdir().unwrap();
    extract_archive(&tar_of(&[("x", b"y")])[..], d.path()).unwrap();
    assert!(matches!(
        read_extracted(d.path()),
        Err(ArchiveError::Format)
    ));
}
