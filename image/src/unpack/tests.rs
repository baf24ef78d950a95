//! Unpack tests with hand-built tar streams (run as root: ownership,
//! device nodes and trusted.* xattrs need it, as in CI).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Builds tar streams, including entries the tar crate's safe setters refuse.
struct T(tar::Builder<Vec<u8>>);

impl T {
    fn new() -> Self {
        T(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }

    /// Appends an entry with raw name/link bytes (no validation at all).
    fn raw(&mut self, mut h: tar::Header, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
        let g = h.as_gnu_mut().unwrap();
        g.name = [0; 100];
        g.name[..name.len()].copy_from_slice(name);
        g.linkname = [0; 100];
        g.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.raw(h, name.as_bytes(), b"", data)
    }

    fn file_h(&mut self, name: &str, data: &[u8], f: impl FnOnce(&mut tar::Header)) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        f(&mut h);
        self.raw(h, name.as_bytes(), b"", data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, mode, 0);
        self.raw(h, name.as_bytes(), b"", b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.raw(h, name.as_bytes(), target.as_bytes(), b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.raw(h, name.as_bytes(), target.as_bytes(), b"")
    }

    fn pax(&mut self, kv: &[(&str, &[u8])]) -> &mut Self {
        self.0.append_pax_extensions(kv.iter().copied()).unwrap();
        self
    }

    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Unpacks `blob` (compressed per `media`) whose uncompressed tar is `tar`.
fn unpack_with(
    blob: &[u8],
    tar: &[u8],
    media: &str,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    let digest = Digest::of_bytes(blob);
    let diff_id = Digest::of_bytes(tar);
    let src = LayerSource {
        digest: &digest,
        diff_id: &diff_id,
        media_type: media,
        size: Some(blob.len() as u64),
    };
    unpack_layer(blob, &src, dest, limits)
}

fn unpack_tar(tar: &[u8], dest: &Path) -> Result<UnpackStats, UnpackError> {
    unpack_with(tar, tar, TAR, dest, &UnpackLimits::default())
}

/// A snapshot dir inside a scratch dir, with a sibling "outside" dir that
/// escapes would hit.
struct Scratch {
    tmp: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        Scratch { tmp }
    }
    fn root(&self) -> std::path::PathBuf {
        self.tmp.path().join("root")
    }
    fn outside(&self) -> std::path::PathBuf {
        self.tmp.path().join("outside")
    }
    fn outside_is_empty(&self) -> bool {
        fs::read_dir(self.outside()).unwrap().next().is_none()
    }
}

fn refusal(r: Result<UnpackStats, UnpackError>) -> (String, Refusal) {
    match r {
        Err(UnpackError::Refused { entry, reason, .. }) => (entry.to_string(), reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn files_dirs_links_devices_ownership_modes_and_times() {
    let s = Scratch::new();
    let mut t = T::new();
    t.dir("./", 0o755)
        .dir("bin/", 0o755)
        .file_h("bin/su", b"#!setuid", |h| {
            h.set_mode(0o4755);
            h.set_uid(1000);
            h.set_gid(1001);
        })
        .symlink("bin/sh", "/bin/busybox")
        .symlink("escape-ish", "../../../../etc/shadow")
        .hardlink("bin/su2", "bin/su")
        .dir("tmp/", 0o1777);
    let mut h = T::header(tar::EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    t.raw(h, b"dev/null", b"", b"");
    t.raw(
        T::header(tar::EntryType::Fifo, 0o600, 0),
        b"run/fifo",
        b"",
        b"",
    );
    t.pax(&[
        ("SCHILY.xattr.user.origin", b"berth"),
        ("mtime", b"1500000000.5"),
    ])
    .file("etc/hostname", b"box\n");
    // A directory with an old mtime that then receives a file: the mtime
    // must be the header's, fixed after its contents were written.
    let mut old = T::header(tar::EntryType::Directory, 0o750, 0);
    old.set_mtime(1_000_000_000);
    t.raw(old, b"data/", b"", b"").file("data/f", b"x");
    let tar = t.build();
    let stats = unpack_tar(&tar, &s.root()).unwrap();
    assert_eq!(stats.entries, 12);
    assert_eq!(stats.unpacked_bytes, tar.len() as u64);
    let r = s.root();

    let su = fs::metadata(r.join("bin/su")).unwrap();
    assert_eq!((su.uid(), su.gid()), (1000, 1001));
    assert_eq!(
        su.permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    assert_eq!(su.mtime(), 1_600_000_000);
    assert_eq!(fs::read(r.join("bin/su")).unwrap(), b"#!setuid");
    let su2 = fs::metadata(r.join("bin/su2")).unwrap();
    assert_eq!(su2.ino(), su.ino());
    assert_eq!(su.nlink(), 2);

    assert_eq!(
        fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let lm = fs::symlink_metadata(r.join("bin/sh")).unwrap();
    assert_eq!(
        lm.mtime(),
        1_600_000_000,
        "symlink mtime set without following"
    );
    assert_eq!(
        fs::read_link(r.join("escape-ish")).unwrap(),
        Path::new("../../../../etc/shadow"),
        "symlink targets are stored verbatim"
    );
    assert_eq!(
        fs::metadata(r.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );

    let null = fs::metadata(r.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o666);
    assert!(fs::metadata(r.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    let host = fs::metadata(r.join("etc/hostname")).unwrap();
    assert_eq!(
        (host.mtime(), host.mtime_nsec()),
        (1_500_000_000, 500_000_000)
    );
    assert_eq!(
        lgetxattr(&r.join("etc/hostname"), "user.origin")
            .unwrap()
            .as_deref(),
        Some(&b"berth"[..])
    );
    // Parents not listed in the layer are created 0755.
    assert_eq!(
        fs::metadata(r.join("etc")).unwrap().permissions().mode() & 0o7777,
        0o755
    );

    let data = fs::metadata(r.join("data")).unwrap();
    assert_eq!(data.mtime(), 1_000_000_000);
    assert_eq!(data.permissions().mode() & 0o7777, 0o750);
    assert!(s.outside_is_empty());
}

#[test]
fn security_capability_xattr_is_kept_after_chown() {
    let s = Scratch::new();
    // vfs_cap_data revision 2: magic|effective, permitted lo, inheritable lo, hi words.
    let mut cap = Vec::new();
    for w in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&w.to_le_bytes());
    }
    let mut t = T::new();
    t.pax(&[("SCHILY.xattr.security.capability", &cap)])
        .file_h("ping", b"elf", |h| {
            h.set_uid(0);
            h.set_mode(0o755)
        });
    unpack_tar(&t.build(), &s.root()).unwrap();
    let got = lgetxattr(&s.root().join("ping"), "security.capability").unwrap();
    assert_eq!(got.as_deref(), Some(&cap[..]));
}

#[test]
fn whiteouts_become_overlay_markers() {
    let s = Scratch::new();
    let mut t = T::new();
    t.dir("etc/", 0o755)
        .file("etc/.wh.motd", b"")
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/new", b"n")
        .file(".wh..wh.plnk", b"");
    unpack_tar(&t.build(), &s.root()).unwrap();
    let r = s.root();
    let wh = fs::symlink_metadata(r.join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!r.join("etc/.wh.motd").exists());
    assert_eq!(
        lgetxattr(&r.join("var/cache"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!r.join("var/cache/.wh..wh..opq").exists());
    assert!(!r.join(".wh..wh.plnk").exists());
    assert!(r.join("var/cache/new").exists());
}

#[test]
fn hostile_whiteout_names_are_refused() {
    for name in ["a/.wh..", "a/.wh.", "../.wh.x"] {
        let s = Scratch::new();
        let mut t = T::new();
        t.file(name, b"");
        let (entry, reason) = refusal(unpack_tar(&t.build(), &s.root()));
        assert!(entry.contains(name), "{entry}");
        assert!(
            matches!(reason, Refusal::BadWhiteout | Refusal::DotDot),
            "{reason}"
        );
        assert!(s.outside_is_empty());
    }
}

#[test]
fn absolute_and_dotdot_paths_are_refused() {
    for (name, want) in [
        ("/abs/path", Refusal::Absolute),
        ("../outside/escape", Refusal::DotDot),
        ("a/../../outside/escape", Refusal::DotDot),
    ] {
        let s = Scratch::new();
        let mut t = T::new();
        t.file("ok", b"fine").file(name, b"owned");
        let err = unpack_tar(&t.build(), &s.root()).unwrap_err();
        let msg = err.to_string();
        let (entry, reason) = refusal(Err(err));
        assert_eq!(reason, want);
        assert!(entry.contains(name));
        let tar_digest = Digest::of_bytes(&t_tar_bytes(name));
        assert!(
            msg.contains(&tar_digest.to_string()),
            "error names the layer: {msg}"
        );
        assert!(s.outside_is_empty());
        assert!(!Path::new("/abs/path").exists());
    }
}

/// The same stream as in `absolute_and_dotdot_paths_are_refused`, to know its digest.
fn t_tar_bytes(name: &str) -> Vec<u8> {
    let mut t = T::new();
    t.file("ok", b"fine").file(name, b"owned");
    t.build()
}

#[test]
fn writes_through_symlinks_are_refused() {
    let s = Scratch::new();
    let outside = s.outside();
    let cases: Vec<(&str, String)> = vec![
        ("link", outside.display().to_string()),
        ("link", "../../..".to_string()),
        ("link", "../outside".to_string()),
        // Even a symlink that stays inside the root is not walked through.
        ("link", "inner".to_string()),
    ];
    for (link, target) in cases {
        let s2 = Scratch::new();
        let mut t = T::new();
        t.dir("inner/", 0o755)
            .symlink(link, &target)
            .file("link/owned", b"pwned");
        let (entry, reason) = refusal(unpack_tar(&t.build(), &s2.root()));
        assert_eq!(entry, "\"link/owned\"");
        assert_eq!(reason, Refusal::ThroughSymlink, "target {target}");
        assert!(s2.outside_is_empty());
        assert!(!s2.root().join("inner/owned").exists());
    }
    // A symlink as the final component is replaced, never followed.
    let mut t = T::new();
    t.symlink("victim", &outside.join("x").display().to_string())
        .file("victim", b"data");
    unpack_tar(&t.build(), &s.root()).unwrap();
    assert!(fs::symlink_metadata(s.root().join("victim"))
        .unwrap()
        .is_file());
    assert!(s.outside_is_empty());
}

#[test]
fn hardlinks_outside_or_missing_are_refused() {
    let s = Scratch::new();
    fs::write(s.outside().join("secret"), b"s").unwrap();
    for (target, want) in [
        ("/etc/shadow", Refusal::Absolute),
        ("../outside/secret", Refusal::DotDot),
        ("lnk/secret", Refusal::ThroughSymlink),
        ("not/here", Refusal::HardlinkTargetMissing),
        ("missing", Refusal::HardlinkTargetMissing),
    ] {
        let s2 = Scratch::new();
        fs::write(s2.outside().join("secret"), b"s").unwrap();
        let mut t = T::new();
        t.symlink("lnk", &s2.outside().display().to_string())
            .hardlink("h", target);
        match refusal(unpack_tar(&t.build(), &s2.root())) {
            (
                entry,
                Refusal::HardlinkTarget {
                    target: got,
                    reason,
                },
            ) => {
                assert_eq!(entry, "\"h\"");
                assert_eq!(got, target);
                assert_eq!(*reason, want, "target {target}");
            }
            other => panic!("{target}: {other:?}"),
        }
        assert!(!s2.root().join("h").exists());
        assert_eq!(
            fs::metadata(s2.outside().join("secret")).unwrap().nlink(),
            1
        );
    }
}

#[test]
fn nul_in_a_long_name_is_refused() {
    let s = Scratch::new();
    let mut t = T::new();
    let long = b"dir/a\0b/c\0";
    t.raw(
        T::header(tar::EntryType::GNULongName, 0o644, long.len() as u64),
        b"././@LongLink",
        b"",
        long,
    )
    .file("placeholder", b"x");
    let (_, reason) = refusal(unpack_tar(&t.build(), &s.root()));
    assert_eq!(reason, Refusal::Nul);
}

#[test]
fn overlay_xattrs_from_images_are_refused() {
    let s = Scratch::new();
    let mut t = T::new();
    t.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
        .dir("d/", 0o755);
    let (entry, reason) = refusal(unpack_tar(&t.build(), &s.root()));
    assert_eq!(entry, "\"d/\"");
    assert_eq!(
        reason,
        Refusal::OverlayXattr("trusted.overlay.redirect".into())
    );
}

#[test]
fn decompression_bomb_hits_the_size_limit() {
    let s = Scratch::new();
    let zeros = vec![0u8; 8 << 20];
    let mut t = T::new();
    t.file("bomb", &zeros);
    let tar = t.build();
    let gz = gzip(&tar);
    assert!(gz.len() < 64 << 10);
    let limits = UnpackLimits {
        max_unpacked_bytes: 1 << 20,
        max_entries: 100,
    };
    match unpack_with(&gz, &tar, GZIP, &s.root(), &limits) {
        Err(e @ UnpackError::TooLarge { limit, .. }) => {
            assert_eq!(limit, 1 << 20);
            assert!(e.to_string().contains("1048576"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !s.root().join("bomb").exists(),
        "nothing of the file written"
    );

    // A bomb hidden after the end-of-archive marker is caught while draining.
    let s = Scratch::new();
    let mut t = T::new();
    t.file("small", b"x");
    let mut tar = t.build();
    tar.extend(std::iter::repeat_n(0u8, 4 << 20));
    let gz = gzip(&tar);
    assert!(matches!(
        unpack_with(&gz, &tar, GZIP, &s.root(), &limits),
        Err(UnpackError::TooLarge { .. })
    ));
}

#[test]
fn entry_count_limit() {
    let s = Scratch::new();
    let mut t = T::new();
    for i in 0..10 {
        t.file(&format!("f{i}"), b"");
    }
    let tar = t.build();
    let limits = UnpackLimits {
        max_unpacked_bytes: 1 << 30,
        max_entries: 5,
    };
    assert!(matches!(
        unpack_with(&tar, &tar, TAR, &s.root(), &limits),
        Err(UnpackError::TooManyEntries { limit: 5, .. })
    ));
}

fn sample_tar() -> Vec<u8> {
    let mut t = T::new();
    t.dir("etc/", 0o755)
        .file("etc/os-release", b"ID=berth\n")
        .file("big", &vec![7u8; 300_000]);
    t.build()
}

#[test]
fn gzip_zstd_and_plain_round_trips() {
    let tar = sample_tar();
    let gz = gzip(&tar);
    let zs = zstd::encode_all(&tar[..], 3).unwrap();
    for (blob, media) in [
        (&gz, GZIP),
        (&gz, DOCKER_GZIP),
        (&zs, ZSTD),
        (&tar, TAR),
        (&gz, TAR),
    ] {
        let s = Scratch::new();
        let stats = unpack_with(blob, &tar, media, &s.root(), &UnpackLimits::default()).unwrap();
        assert_eq!(stats.compressed_bytes, blob.len() as u64);
        assert_eq!(stats.unpacked_bytes, tar.len() as u64);
        assert_eq!(stats.file_bytes, 300_000 + 9);
        assert_eq!(
            fs::read(s.root().join("etc/os-release")).unwrap(),
            b"ID=berth\n"
        );
        assert_eq!(fs::read(s.root().join("big")).unwrap().len(), 300_000);
    }
}

#[test]
fn unknown_media_type_is_refused() {
    let s = Scratch::new();
    let tar = sample_tar();
    let r = unpack_with(
        &tar,
        &tar,
        "application/vnd.oci.image.layer.v1.tar+encrypted",
        &s.root(),
        &UnpackLimits::default(),
    );
    assert!(matches!(r, Err(UnpackError::UnsupportedMediaType { .. })));
}

fn digest_err(r: Result<UnpackStats, UnpackError>) -> (&'static str, Digest, Digest) {
    match r {
        Err(UnpackError::Digest {
            which,
            source: DigestError::Mismatch {
                expected, actual, ..
            },
            ..
        }) => (which, expected, actual),
        Err(UnpackError::Digest {
            which,
            source: DigestError::Size {
                expected_digest, ..
            },
            ..
        }) => (which, expected_digest.clone(), expected_digest),
        other => panic!("expected a digest error, got {other:?}"),
    }
}

#[test]
fn tampered_blob_fails_with_digest_error() {
    let tar = sample_tar();
    let gz = gzip(&tar);
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let s = Scratch::new();
    let digest = Digest::of_bytes(&gz);
    let diff_id = Digest::of_bytes(&tar);
    let src = LayerSource {
        digest: &digest,
        diff_id: &diff_id,
        media_type: GZIP,
        size: Some(gz.len() as u64),
    };
    let (which, expected, actual) = digest_err(unpack_layer(
        &bad[..],
        &src,
        &s.root(),
        &UnpackLimits::default(),
    ));
    assert_eq!(which, "blob digest");
    assert_eq!(expected, digest);
    assert_eq!(actual, Digest::of_bytes(&bad));
}

#[test]
fn truncated_blob_fails_with_digest_error() {
    let tar = sample_tar();
    let gz = gzip(&tar);
    for cut in [gz.len() / 3, gz.len() - 10] {
        let s = Scratch::new();
        let digest = Digest::of_bytes(&gz);
        let diff_id = Digest::of_bytes(&tar);
        let src = LayerSource {
            digest: &digest,
            diff_id: &diff_id,
            media_type: GZIP,
            size: None,
        };
        let (which, expected, _) = digest_err(unpack_layer(
            &gz[..cut],
            &src,
            &s.root(),
            &UnpackLimits::default(),
        ));
        assert_eq!(which, "blob digest");
        assert_eq!(expected, digest);
    }
    // Truncated plain tar, with the size announced.
    let s = Scratch::new();
    let digest = Digest::of_bytes(&tar);
    let src = LayerSource {
        digest: &digest,
        diff_id: &digest,
        media_type: TAR,
        size: Some(tar.len() as u64),
    };
    let (which, _, _) = digest_err(unpack_layer(
        &tar[..tar.len() - 1024],
        &src,
        &s.root(),
        &UnpackLimits::default(),
    ));
    assert_eq!(which, "blob digest");
}

#[test]
fn wrong_diff_id_and_trailing_bytes_are_caught() {
    let tar = sample_tar();
    let gz = gzip(&tar);
    let s = Scratch::new();
    let digest = Digest::of_bytes(&gz);
    let wrong = Digest::of_bytes(b"not the tar");
    let src = LayerSource {
        digest: &digest,
        diff_id: &wrong,
        media_type: GZIP,
        size: None,
    };
    let (which, expected, actual) = digest_err(unpack_layer(
        &gz[..],
        &src,
        &s.root(),
        &UnpackLimits::default(),
    ));
    assert_eq!(
        (which, expected, actual),
        ("diff_id", wrong, Digest::of_bytes(&tar))
    );

    // Bytes after the end-of-archive marker are covered by the diff_id.
    let mut padded = tar.clone();
    padded.extend_from_slice(b"trailing garbage");
    let gz = gzip(&padded);
    let s = Scratch::new();
    unpack_with(&gz, &padded, GZIP, &s.root(), &UnpackLimits::default()).unwrap();
    let s = Scratch::new();
    let digest = Digest::of_bytes(&gz);
    let diff_id = Digest::of_bytes(&tar);
    let src = LayerSource {
        digest: &digest,
        diff_id: &diff_id,
        media_type: GZIP,
        size: None,
    };
    let (which, _, _) = digest_err(unpack_layer(
        &gz[..],
        &src,
        &s.root(),
        &UnpackLimits::default(),
    ));
    assert_eq!(which, "diff_id");
}

#[test]
fn later_entries_replace_earlier_ones_but_never_directories() {
    let s = Scratch::new();
    let mut t = T::new();
    t.dir("d/", 0o700)
        .file("d/f", b"first")
        .dir("d/", 0o755)
        .file("d/f", b"second")
        .symlink("d/l", "f")
        .file("d/l", b"now a file")
        .file("d/x", b"x")
        .file("d/.wh.x", b"");
    unpack_tar(&t.build(), &s.root()).unwrap();
    let r = s.root();
    assert_eq!(
        fs::metadata(r.join("d")).unwrap().permissions().mode() & 0o7777,
        0o755,
        "existing dir kept, mode updated"
    );
    assert_eq!(fs::read(r.join("d/f")).unwrap(), b"second");
    assert!(fs::symlink_metadata(r.join("d/l")).unwrap().is_file());
    assert!(fs::symlink_metadata(r.join("d/x"))
        .unwrap()
        .file_type()
        .is_char_device());

    let s = Scratch::new();
    let mut t = T::new();
    t.dir("d/", 0o755)
        .file("d/inner", b"")
        .file("d", b"file over dir");
    let (entry, reason) = refusal(unpack_tar(&t.build(), &s.root()));
    assert_eq!(
        (entry.as_str(), reason),
        ("\"d\"", Refusal::ReplacesDirectory)
    );
}

#[test]
fn file_under_a_regular_file_is_refused() {
    let s = Scratch::new();
    let mut t = T::new();
    t.file("f", b"").file("f/child", b"");
    let (_, reason) = refusal(unpack_tar(&t.build(), &s.root()));
    assert_eq!(reason, Refusal::ParentNotDirectory);
}

#[test]
fn pax_uid_gid_beyond_ustar_range_are_applied() {
    let s = Scratch::new();
    let mut t = T::new();
    t.pax(&[("uid", b"3000000"), ("gid", b"3000001")])
        .file("f", b"x");
    t.pax(&[("uid", b"5000000000")]).file("too-big", b"x");
    let (entry, reason) = refusal(unpack_tar(&t.build(), &s.root()));
    assert_eq!(
        (entry.as_str(), reason),
        ("\"too-big\"", Refusal::IdOutOfRange(5_000_000_000))
    );
    let m = fs::metadata(s.root().join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (3_000_000, 3_000_001));
}
