use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};

use super::*;

fn mknod_whiteout(path: &Path) {
    nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), 0).unwrap();
}

fn set_opaque(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new("trusted.overlay.opaque").unwrap();
    // SAFETY: NUL-terminated strings and a 1-byte value.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    assert_eq!(r, 0, "{}", io::Error::last_os_error());
}

/// Entry name -> (type, size, link target) of a tar.
type Entries = BTreeMap<Vec<u8>, (tar::EntryType, u64, Option<Vec<u8>>, Vec<u8>)>;

fn entries(tar_bytes: &[u8]) -> Entries {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let t = e.header().entry_type();
        let size = e.header().size().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, (t, size, link, data));
    }
    out
}

fn hostile_upper(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hello"), b"world").unwrap();
    std::fs::hard_link(root.join("etc/hello"), root.join("etc/hello-link")).unwrap();
    symlink("/etc/shadow", root.join("etc/shadow-link")).unwrap();
    // A directory symlink: its target must never be walked.
    symlink("/", root.join("hostroot")).unwrap();
    mknod_whiteout(&root.join("etc/deleted"));
    std::fs::create_dir(root.join("opaque")).unwrap();
    set_opaque(&root.join("opaque"));
    std::fs::write(root.join("opaque/new"), b"n").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"line\nbreak")), b"1").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"bad\xffutf8")), b"2").unwrap();
    let long = "l".repeat(200);
    std::fs::write(root.join(&long), b"3").unwrap();
    std::fs::write(root.join(".wh.sneaky"), b"").unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn upper_dir_becomes_an_oci_layer_with_whiteouts() {
    let d = tempfile::tempdir().unwrap();
    let upper = d.path().join("upper");
    std::fs::create_dir(&upper).unwrap();
    hostile_upper(&upper);
    let (bytes, stats) = write_layer_tar(&upper, Vec::new()).unwrap();
    let e = entries(&bytes);
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(stats.opaque_dirs, 1);
    assert_eq!(stats.skipped, vec![".wh.sneaky".to_string()]);
    assert_eq!(e[&b"etc/hello".to_vec()].3, b"world");
    assert_eq!(e[&b"etc/hello-link".to_vec()].0, tar::EntryType::Link);
    assert_eq!(
        e[&b"etc/hello-link".to_vec()].2.as_deref(),
        Some(&b"etc/hello"[..])
    );
    assert_eq!(e[&b"etc/shadow-link".to_vec()].0, tar::EntryType::Symlink);
    assert_eq!(
        e[&b"etc/shadow-link".to_vec()].2.as_deref(),
        Some(&b"/etc/shadow"[..])
    );
    assert_eq!(e[&b"hostroot".to_vec()].0, tar::EntryType::Symlink);
    assert!(
        !e.keys().any(|k| k.starts_with(b"hostroot/")),
        "followed a symlink"
    );
    assert_eq!(e[&b"etc/.wh.deleted".to_vec()].1, 0);
    assert!(!e.contains_key(b"etc/deleted".as_slice()));
    assert!(e.contains_key(b"opaque/.wh..wh..opq".as_slice()));
    assert!(e.contains_key(b"line\nbreak".as_slice()));
    assert!(e.contains_key(b"bad\xffutf8".as_slice()));
    assert!(e.contains_key("l".repeat(200).as_bytes()));
    assert!(!e.contains_key(b".wh.sneaky".as_slice()));
    assert_eq!(e[&b"fifo".to_vec()].0, tar::EntryType::Fifo);
    // Deterministic: the same tree gives the same bytes.
    let (again, _) = write_layer_tar(&upper, Vec::new()).unwrap();
    assert_eq!(bytes, again);
}

#[test]
fn built_layer_unpacks_back_into_the_same_overlay_tree() {
    let d = tempfile::tempdir().unwrap();
    let upper = d.path().join("upper");
    std::fs::create_dir(&upper).unwrap();
    hostile_upper(&upper);
    let blob = d.path().join("blob");
    let built = build_gzip_layer(&upper, &blob).unwrap();
    assert_eq!(built.size, std::fs::metadata(&blob).unwrap().len());
    assert_eq!(
        Digest::of_bytes(&std::fs::read(&blob).unwrap()),
        built.digest
    );
    let dest = d.path().join("snap");
    std::fs::create_dir(&dest).unwrap();
    let src = crate::unpack::LayerSource {
        digest: &built.digest,
        diff_id: &built.diff_id,
        media_type: GZIP_LAYER,
        size: Some(built.size),
    };
    crate::unpack::unpack_layer(
        File::open(&blob).unwrap(),
        &src,
        &dest,
        &crate::unpack::UnpackLimits::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(dest.join("etc/hello")).unwrap(), b"world");
    let a = std::fs::metadata(dest.join("etc/hello")).unwrap();
    let b = std::fs::metadata(dest.join("etc/hello-link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    let wh = std::fs::symlink_metadata(dest.join("etc/deleted")).unwrap();
    assert_eq!(wh.rdev(), 0);
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(
        crate::unpack::lgetxattr(&dest.join("opaque"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(
        std::fs::read_link(dest.join("hostroot")).unwrap(),
        Path::new("/")
    );
    // The snapshot itself archives to the same layer.
    let (again, _) = write_layer_tar(&dest, HashWriter::new(io::sink())).unwrap();
    let (_, diff_id, _) = again.finish();
    assert_eq!(diff_id, built.diff_id);
}
