//! Streaming, verifying, escape-proof layer unpacking.
//!
//! ```text
//! blob Read ─▶ VerifyingReader(blob digest) ─▶ gzip | zstd | plain
//!           ─▶ LimitedReader(max_unpacked_bytes) ─▶ VerifyingReader(diff_id)
//!           ─▶ tar entry reader ─▶ writer (openat2 beneath the snapshot root)
//! ```
//!
//! Nothing is buffered to disk on the way: the layer is written straight
//! into `dest`. Both digests cover the whole stream — after the tar
//! end-of-archive marker the rest is drained through both verifiers, so
//! trailing bytes cannot hide. Every refusal names the layer digest and the
//! entry. See `writer.rs` for the path resolution policy.

mod decompress;
mod entry;
mod limits;
mod whiteout;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;
use nix::sys::time::TimeSpec;

use crate::digest::{Digest, DigestError, VerifyingReader};

pub use decompress::Compression;
pub use limits::UnpackLimits;
pub use writer::lgetxattr;

use entry::{EntryPath, MetaError};
use limits::LimitedReader;
use whiteout::Whiteout;
use writer::{Fail, SafeRoot};

/// The layer being unpacked, as described by its manifest and config.
#[derive(Debug, Clone, Copy)]
pub struct LayerSource<'a> {
    /// Digest of the (compressed) blob, from the manifest.
    pub digest: &'a Digest,
    /// Digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: &'a Digest,
    /// Layer media type from the manifest.
    pub media_type: &'a str,
    /// Blob size from the manifest, enforced when known.
    pub size: Option<u64>,
}

/// What an unpack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Bytes of the blob as read (compressed).
    pub compressed_bytes: u64,
    /// Bytes of the uncompressed tar stream (what `diff_id` covers).
    pub unpacked_bytes: u64,
    /// Bytes of regular file contents written.
    pub file_bytes: u64,
    /// Tar entries processed (including whiteouts and skipped ones).
    pub entries: u64,
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A `..` component.
    #[error("path contains a '..' component")]
    DotDot,
    /// A NUL byte in a name, link target or xattr name.
    #[error("NUL byte in a name")]
    Nul,
    /// The parent path (or a hardlink target's parent) goes through a symlink.
    #[error("path goes through a symlink")]
    ThroughSymlink,
    /// A parent path component is not a directory.
    #[error("a parent path component is not a directory")]
    ParentNotDirectory,
    /// Resolution left the snapshot root.
    #[error("path escapes the snapshot root")]
    Escapes,
    /// A non-directory entry would replace a directory of this layer.
    #[error("entry would replace a directory")]
    ReplacesDirectory,
    /// A hardlink target that this layer does not contain.
    #[error("hardlink target missing from this layer")]
    HardlinkTargetMissing,
    /// A hardlink target path that is refused for the reason given.
    #[error("hardlink target {target:?} refused: {reason}")]
    HardlinkTarget {
        /// The link target as written in the archive.
        target: String,
        /// Why it was refused.
        reason: Box<Refusal>,
    },
    /// A link entry without a link name.
    #[error("link entry without a target")]
    MissingLinkName,
    /// A whiteout whose name does not designate a sibling.
    #[error("malformed whiteout name")]
    BadWhiteout,
    /// A `trusted.overlay.*` xattr in the archive.
    #[error("overlayfs xattr {0} is not accepted from images")]
    OverlayXattr(String),
    /// uid or gid does not fit 32 bits.
    #[error("uid/gid {0} out of range")]
    IdOutOfRange(u64),
    /// A non-directory entry naming the layer root.
    #[error("non-directory entry for the layer root")]
    RootNotDirectory,
    /// An entry type berth does not unpack.
    #[error("unsupported tar entry type {0:?}")]
    UnsupportedType(char),
}

/// Errors unpacking a layer. Each names the layer's blob digest.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer media type is not a tar layer berth can unpack.
    #[error("layer {layer}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// Layer blob digest.
        layer: Digest,
        /// The media type.
        media_type: String,
    },
    /// The destination directory could not be opened.
    #[error("layer {layer}: opening destination {dest}")]
    Dest {
        /// Layer blob digest.
        layer: Digest,
        /// The destination.
        dest: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The blob or its uncompressed tar did not match its digest (tampered
    /// or truncated content).
    #[error("layer {layer}: {which} verification failed")]
    Digest {
        /// Layer blob digest.
        layer: Digest,
        /// `"blob digest"` or `"diff_id"`.
        which: &'static str,
        /// Expected/actual digests.
        #[source]
        source: DigestError,
    },
    /// Decompression or tar parsing failed (and the blob digest was fine
    /// as far as it could be checked).
    #[error("layer {layer}: reading the layer stream")]
    Stream {
        /// Layer blob digest.
        layer: Digest,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// The uncompressed layer is larger than allowed.
    #[error("layer {layer}: unpacked size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Layer blob digest.
        layer: Digest,
        /// The configured limit.
        limit: u64,
    },
    /// The layer has more entries than allowed.
    #[error("layer {layer}: more than {limit} entries")]
    TooManyEntries {
        /// Layer blob digest.
        layer: Digest,
        /// The configured limit.
        limit: u64,
    },
    /// An entry was refused; nothing of it was written.
    #[error("layer {layer}: entry {entry}: refused: {reason}")]
    Refused {
        /// Layer blob digest.
        layer: Digest,
        /// The entry path as written in the archive.
        entry: EntryName,
        /// Why.
        reason: Refusal,
    },
    /// Writing an entry failed.
    #[error("layer {layer}: entry {entry}: {op} failed")]
    Write {
        /// Layer blob digest.
        layer: Digest,
        /// The entry path as written in the archive.
        entry: EntryName,
        /// The failed operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A tar entry name as it appeared in the archive (bytes, shown escaped).
#[derive(Clone, PartialEq, Eq)]
pub struct EntryName(pub Vec<u8>);

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Unpacks one layer blob into `dest` (an existing, normally empty
/// directory that becomes an overlay snapshot), verifying the blob digest
/// and the diff_id, converting whiteouts to overlay format and refusing any
/// entry that would escape `dest`. Synchronous: run it on a blocking thread.
pub fn unpack_layer<R: Read>(
    blob: R,
    src: &LayerSource<'_>,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    let layer = src.digest.clone();
    let declared = Compression::from_media_type(src.media_type).ok_or_else(|| {
        UnpackError::UnsupportedMediaType {
            layer: layer.clone(),
            media_type: src.media_type.to_string(),
        }
    })?;
    let mut root = SafeRoot::open(dest).map_err(|source| UnpackError::Dest {
        layer: layer.clone(),
        dest: dest.to_path_buf(),
        source,
    })?;

    // Buffered so that small tar header reads of an uncompressed layer do
    // not each become a read of the (possibly channel-fed) source.
    let blob = io::BufReader::with_capacity(256 * 1024, blob);
    let mut blob_v = VerifyingReader::new(blob, src.digest.clone()).with_size(src.size);
    let mut stats = UnpackStats::default();
    let result = (|| {
        let (_, decoder) = decompressor_for(&mut blob_v, declared, &layer)?;
        let (limited, probe) = LimitedReader::new(decoder, limits.max_unpacked_bytes);
        let mut tar_v = VerifyingReader::new(limited, src.diff_id.clone());
        let mut unpacker = Unpacker {
            layer: &layer,
            root: &mut root,
            limits,
            stats: &mut stats,
            dir_times: Vec::new(),
            buf: vec![0u8; 256 * 1024],
        };
        let entries_result = unpacker.run(&mut tar_v);
        let too_large = || UnpackError::TooLarge {
            layer: layer.clone(),
            limit: limits.max_unpacked_bytes,
        };
        match entries_result {
            Err(_) if probe.exceeded() => return Err(too_large()),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let tar_digest = tar_v.finish();
        if probe.exceeded() {
            return Err(too_large());
        }
        unpacker.stats.unpacked_bytes = probe.bytes();
        Ok((tar_digest, unpacker.dir_times))
    })();

    // The blob digest is checked first and wins over any other error that
    // reading produced: a corrupt or truncated download shows up as a gzip
    // or tar error, but its root cause is the content, not the format.
    let refused_entry = matches!(
        result,
        Err(UnpackError::Refused { .. }) | Err(UnpackError::Write { .. })
    );
    if refused_entry {
        return result.map(|_| stats);
    }
    let blob_res = blob_v.finish();
    stats.compressed_bytes = match (&result, blob_res) {
        (_, Err(source)) => {
            return Err(UnpackError::Digest {
                layer,
                which: "blob digest",
                source,
            })
        }
        (_, Ok(n)) => n,
    };
    let (tar_digest, dir_times) = result?;
    tar_digest.map_err(|source| UnpackError::Digest {
        layer: layer.clone(),
        which: "diff_id",
        source,
    })?;
    // Directory mtimes last: creating their contents changed them.
    for (path, t) in dir_times {
        writer::set_dir_times(&root, &path, &t).map_err(|f| fail(&layer, &path, f))?;
    }
    Ok(stats)
}

fn decompressor_for<'a, R: Read + 'a>(
    blob: R,
    declared: Compression,
    layer: &Digest,
) -> Result<(Compression, Box<dyn Read + 'a>), UnpackError> {
    decompress::decompressor(blob, declared).map_err(|source| UnpackError::Stream {
        layer: layer.clone(),
        source,
    })
}

fn fail(layer: &Digest, entry: &[u8], f: Fail) -> UnpackError {
    let entry = EntryName(entry.to_vec());
    match f {
        Fail::Refused(reason) => UnpackError::Refused {
            layer: layer.clone(),
            entry,
            reason,
        },
        Fail::Io { op, source } => UnpackError::Write {
            layer: layer.clone(),
            entry,
            op,
            source,
        },
        Fail::Read(source) => UnpackError::Stream {
            layer: layer.clone(),
            source,
        },
        Fail::TooLarge => UnpackError::Write {
            layer: layer.clone(),
            entry,
            op: "size check",
            source: io::Error::other("unpacked size limit exceeded"),
        },
    }
}

/// State of one unpack run over the tar entries.
struct Unpacker<'a> {
    layer: &'a Digest,
    root: &'a mut SafeRoot,
    limits: &'a UnpackLimits,
    stats: &'a mut UnpackStats,
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, tar_stream: R) -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(tar_stream);
        let entries = archive.entries().map_err(|e| self.stream_err(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_err(e))?;
            self.stats.entries += 1;
            if self.stats.entries > self.limits.max_entries {
                return Err(UnpackError::TooManyEntries {
                    layer: self.layer.clone(),
                    limit: self.limits.max_entries,
                });
            }
            let raw = entry.path_bytes().into_owned();
            match self.entry(&mut entry) {
                Ok(()) => {}
                Err(Fail::TooLarge) => {
                    return Err(UnpackError::TooLarge {
                        layer: self.layer.clone(),
                        limit: self.limits.max_unpacked_bytes,
                    })
                }
                Err(f) => return Err(fail(self.layer, &raw, f)),
            }
        }
        Ok(())
    }

    fn stream_err(&self, source: io::Error) -> UnpackError {
        UnpackError::Stream {
            layer: self.layer.clone(),
            source,
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let path = EntryPath::parse(&entry.path_bytes()).map_err(Fail::Refused)?;
        let meta = match entry::read_meta(entry) {
            Ok(m) => m,
            Err(MetaError::Refused(r)) => return Err(Fail::Refused(r)),
            Err(MetaError::Header(source)) => {
                return Err(Fail::Io {
                    op: "reading entry header",
                    source,
                })
            }
        };
        if path.is_root() {
            if !kind.is_dir() {
                return Err(Fail::Refused(Refusal::RootNotDirectory));
            }
            self.root.root_meta(&meta)?;
            self.dir_times.push((Vec::new(), meta.mtime));
            return Ok(());
        }
        let name = path.name().to_vec();
        match whiteout::classify(&name).map_err(Fail::Refused)? {
            Whiteout::None => {}
            Whiteout::AufsMeta => {
                tracing::debug!(layer = %self.layer, entry = ?String::from_utf8_lossy(&name), "skipping AUFS metadata");
                return Ok(());
            }
            Whiteout::Opaque => {
                let parent = self.root.parent(&path.parent())?;
                return writer::set_opaque(parent);
            }
            Whiteout::Remove(target) => {
                let parent = self.root.parent(&path.parent())?;
                let dev = nix::sys::stat::makedev(0, 0);
                return writer::make_node(parent, target, SFlag::S_IFCHR, dev, &meta);
            }
        }

        if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            let size = entry.size();
            let limit = self.limits.max_unpacked_bytes;
            if self.stats.file_bytes.saturating_add(size) > limit {
                return Err(Fail::TooLarge);
            }
            let parent = self.root.parent(&path.parent())?;
            let n = writer::write_file(parent, &name, entry, &meta, &mut self.buf)?;
            self.stats.file_bytes += n;
            Ok(())
        } else if kind.is_dir() {
            let parent = self.root.parent(&path.parent())?;
            writer::make_dir(parent, &name, &meta)?;
            self.dir_times.push((path.joined(), meta.mtime));
            Ok(())
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or(Fail::Refused(Refusal::MissingLinkName))?
                .into_owned();
            let parent = self.root.parent(&path.parent())?;
            writer::make_symlink(parent, &name, &target, &meta)
        } else if kind.is_hard_link() {
            self.hardlink(entry, &path)
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let sflag = if kind.is_character_special() {
                SFlag::S_IFCHR
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            let h = entry.header();
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let dev = nix::sys::stat::makedev(u64::from(major), u64::from(minor));
            let parent = self.root.parent(&path.parent())?;
            writer::make_node(parent, &name, sflag, dev, &meta)
        } else {
            Err(Fail::Refused(Refusal::UnsupportedType(char::from(
                kind.as_byte(),
            ))))
        }
    }

    /// Hardlink targets are paths from the layer root. The layer is
    /// unpacked alone, so the target must be an entry of this same layer;
    /// its path obeys the same rules as entry paths (no absolute path, no
    /// `..`, no symlink in its parent).
    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        path: &EntryPath,
    ) -> Result<(), Fail> {
        let raw = entry
            .link_name_bytes()
            .ok_or(Fail::Refused(Refusal::MissingLinkName))?
            .into_owned();
        let target_refused = |reason: Refusal| {
            Fail::Refused(Refusal::HardlinkTarget {
                target: String::from_utf8_lossy(&raw).into_owned(),
                reason: Box::new(reason),
            })
        };
        let target = EntryPath::parse(&raw).map_err(target_refused)?;
        if target.is_root() {
            return Err(target_refused(Refusal::RootNotDirectory));
        }
        let tparent = match self.root.existing_dir(&target.parent(), OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Fail::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(target_refused(Refusal::HardlinkTargetMissing))
            }
            Err(Fail::Refused(r)) => return Err(target_refused(r)),
            Err(e) => return Err(e),
        };
        let parent = self.root.parent(&path.parent())?;
        match writer::make_hardlink(
            parent,
            path.name(),
            std::os::fd::AsFd::as_fd(&tparent),
            target.name(),
        ) {
            Err(Fail::Refused(r)) => Err(target_refused(r)),
            other => other,
        }
    }
}
