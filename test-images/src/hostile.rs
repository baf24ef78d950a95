//! Hostile images: one tag per attack, all in one layout. Each layer has a
//! correct digest and diff_id, so the only thing wrong is the attack itself
//! (except `tampered`/`truncated`, which are corrupted after pushing, in the
//! registry's storage, since a registry verifies what it is sent).
//!
//! Escapes aim at unique paths under `/tmp` ("probes"); a test prepares the
//! probe directories (so a naive extractor *could* write there), pulls, and
//! checks [`HostileFixture::escaped`] is empty. Dropping the set removes the
//! probes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::digest::Digest;
use berth_image::layout::{
    BuiltLayer, Content, Descriptor, Format, ImageSpec, LayerCompression, LayerWriter, Layout,
    TreeBuilder,
};

use crate::fixtures::FixtureError;

/// Size of the zero file in the `bomb` layer (128 MiB; about 128 KiB
/// gzipped, a 1000:1 ratio). A bomb is relative to the configured limit:
/// tests set `max_unpacked_bytes` well below this (building a bigger one
/// costs seconds of compression in debug builds).
pub const BOMB_BYTES: u64 = 128 << 20;

/// What pulling a hostile image must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// An unpack refusal naming the layer digest and this entry.
    Refused(String),
    /// The unpacked size limit (set below [`BOMB_BYTES`]) is hit.
    TooLarge,
    /// A digest error (blob digest or diff_id).
    DigestMismatch,
}

/// How a blob is damaged in the registry after a correct push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Flip the bits of the byte at this offset.
    FlipByte(u64),
    /// Drop this many bytes from the end (at least one byte always stays).
    DropTail(u64),
}

impl Corruption {
    /// Damages the file at `path` in place.
    pub fn apply(self, path: &Path) -> io::Result<()> {
        let mut data = std::fs::read(path)?;
        match self {
            Corruption::FlipByte(at) => {
                let i = usize::try_from(at)
                    .unwrap_or(usize::MAX)
                    .min(data.len().saturating_sub(1));
                if let Some(b) = data.get_mut(i) {
                    *b ^= 0xff;
                }
            }
            Corruption::DropTail(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                data.truncate(data.len().saturating_sub(n).max(1));
            }
        }
        std::fs::write(path, data)
    }
}

/// One hostile image.
#[derive(Debug, Clone)]
pub struct HostileFixture {
    /// Tag in the layout (and suggested tag when pushed).
    pub tag: &'static str,
    /// Manifest descriptor.
    pub descriptor: Descriptor,
    /// The hostile layer's blob descriptor.
    pub layer: Descriptor,
    /// What a pull must report.
    pub expect: Expect,
    /// Paths outside any snapshot that must never be created.
    pub probes: Vec<PathBuf>,
    /// Directories to create before pulling, so a naive writer could succeed.
    pub probe_dirs: Vec<PathBuf>,
    /// Damage to apply to the layer blob once pushed.
    pub corruption: Option<Corruption>,
}

impl HostileFixture {
    /// Creates the probe directories.
    pub fn prepare(&self) -> io::Result<()> {
        for d in &self.probe_dirs {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }

    /// Probes that exist: anything here means an escape happened.
    pub fn escaped(&self) -> Vec<PathBuf> {
        self.probes
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .cloned()
            .collect()
    }
}

/// All hostile images, in one layout.
#[derive(Debug)]
pub struct HostileSet {
    /// The layout directory.
    pub layout: PathBuf,
    /// One entry per attack.
    pub fixtures: Vec<HostileFixture>,
}

impl HostileSet {
    /// The fixture tagged `tag`.
    pub fn get(&self, tag: &str) -> Option<&HostileFixture> {
        self.fixtures.iter().find(|f| f.tag == tag)
    }
}

impl Drop for HostileSet {
    fn drop(&mut self) {
        for f in &self.fixtures {
            for p in f.probes.iter().chain(&f.probe_dirs) {
                // Best effort: probes normally do not exist at all.
                let _ = std::fs::remove_file(p);
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "berth-probe-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn header(kind: tar::EntryType, name: &[u8], link: &[u8], size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    if let Some(g) = h.as_gnu_mut() {
        let n = name.len().min(100);
        g.name = [0; 100];
        g.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        g.linkname = [0; 100];
        g.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_cksum();
    h
}

type Step<'a> = (tar::EntryType, &'a [u8], &'a [u8], &'a [u8]);

fn raw_layer(
    layout: &Layout,
    steps: &[Step<'_>],
) -> Result<BuiltLayer, berth_image::layout::LayoutError> {
    let mut w: LayerWriter = layout.layer(LayerCompression::Gzip)?;
    for (kind, name, link, data) in steps {
        w.append_raw(
            &header(*kind, name, link, data.len() as u64),
            &mut &data[..],
        )?;
    }
    w.finish()
}

/// Builds every hostile image into a layout at `dir`.
pub fn hostile_layouts(dir: &Path) -> Result<HostileSet, FixtureError> {
    let ctx = |source| FixtureError::Layout {
        name: "hostile",
        source,
    };
    let layout = Layout::create(dir).map_err(ctx)?;
    let tmp = std::env::temp_dir();
    let mut fixtures = Vec::new();
    let mut add = |tag: &'static str,
                   layer: BuiltLayer,
                   expect: Expect,
                   probes: Vec<PathBuf>,
                   probe_dirs: Vec<PathBuf>,
                   corruption: Option<Corruption>|
     -> Result<(), FixtureError> {
        let spec = ImageSpec {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let m = layout
            .write_image(std::slice::from_ref(&layer), &spec, Format::Oci)
            .map_err(ctx)?;
        layout.tag(tag, &m).map_err(ctx)?;
        fixtures.push(HostileFixture {
            tag,
            descriptor: m,
            layer: layer.descriptor,
            expect,
            probes,
            probe_dirs,
            corruption,
        });
        Ok(())
    };
    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};

    let l = raw_layer(
        &layout,
        &[(F, b"ok", b"", b"fine"), (F, b"../escape", b"", b"pwned")],
    )
    .map_err(ctx)?;
    add(
        "dotdot",
        l,
        Expect::Refused("../escape".into()),
        vec![],
        vec![],
        None,
    )?;

    let abs = tmp.join(format!("{}-abs", unique()));
    let abs_b = abs.display().to_string();
    let l = raw_layer(&layout, &[(F, abs_b.as_bytes(), b"", b"pwned")]).map_err(ctx)?;
    add(
        "abs-path",
        l,
        Expect::Refused(abs_b.clone()),
        vec![abs],
        vec![],
        None,
    )?;

    let dir_probe = tmp.join(format!("{}-dir", unique()));
    let target = dir_probe.display().to_string();
    let l = raw_layer(
        &layout,
        &[
            (S, b"link", target.as_bytes(), b""),
            (F, b"link/owned", b"", b"pwned"),
        ],
    )
    .map_err(ctx)?;
    add(
        "symlink-abs",
        l,
        Expect::Refused("link/owned".into()),
        vec![dir_probe.join("owned")],
        vec![dir_probe],
        None,
    )?;

    // Enough `..` to reach `/` from any snapshot depth, then down into /tmp.
    let rel_probe = tmp.join(format!("{}-rel", unique()));
    let up = "../".repeat(24);
    let write_name = format!(
        "up/{}",
        rel_probe.display().to_string().trim_start_matches('/')
    );
    let l = raw_layer(
        &layout,
        &[
            (S, b"up", up.trim_end_matches('/').as_bytes(), b""),
            (F, write_name.as_bytes(), b"", b"pwned"),
        ],
    )
    .map_err(ctx)?;
    add(
        "symlink-dotdot",
        l,
        Expect::Refused(write_name.clone()),
        vec![rel_probe],
        vec![],
        None,
    )?;

    let l = raw_layer(&layout, &[(H, b"shadow", b"/etc/shadow", b"")]).map_err(ctx)?;
    add(
        "hardlink-abs",
        l,
        Expect::Refused("shadow".into()),
        vec![],
        vec![],
        None,
    )?;

    let l = raw_layer(
        &layout,
        &[(D, b"d/", b"", b""), (H, b"d/outside", b"../outside", b"")],
    )
    .map_err(ctx)?;
    add(
        "hardlink-dotdot",
        l,
        Expect::Refused("d/outside".into()),
        vec![],
        vec![],
        None,
    )?;

    let mut w = layout.layer(LayerCompression::Gzip).map_err(ctx)?;
    let mut t = TreeBuilder::new();
    t.file(
        "zeros",
        Content::Generated {
            len: BOMB_BYTES,
            seed: 0,
            compressible: true,
        },
        0o644,
    );
    t.write_to(&mut w).map_err(ctx)?;
    let l = w.finish().map_err(ctx)?;
    add("bomb", l, Expect::TooLarge, vec![], vec![], None)?;

    for (tag, corruption) in [
        ("tampered", Corruption::FlipByte(64)),
        ("truncated", Corruption::DropTail(40)),
    ] {
        let mut w = layout.layer(LayerCompression::Gzip).map_err(ctx)?;
        let mut t = TreeBuilder::new();
        t.bytes(
            "victim",
            format!("{tag} layer content that is long enough\n").repeat(64),
            0o644,
        );
        t.write_to(&mut w).map_err(ctx)?;
        let l = w.finish().map_err(ctx)?;
        add(
            tag,
            l,
            Expect::DigestMismatch,
            vec![],
            vec![],
            Some(corruption),
        )?;
    }
    Ok(HostileSet {
        layout: layout.dir().to_path_buf(),
        fixtures,
    })
}

/// Where distribution's filesystem driver keeps a blob's bytes.
pub fn registry_blob_path(storage: &Path, digest: &Digest) -> PathBuf {
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex())
        .join("data")
}
