//! A layer tar from an overlay layer directory: a container's upper dir
//! (commit) or an unpacked snapshot (save, push).
//!
//! overlayfs marks a deleted lower file with a 0/0 character device and a
//! directory that hides its lower contents with `trusted.overlay.opaque=y`;
//! an OCI layer says the same with an empty `.wh.<name>` entry and a
//! `.wh..wh..opq` entry inside the directory. The walk goes through file
//! descriptors (`openat` with `O_NOFOLLOW`), so a symlink a container
//! planted in its upper dir is archived as a symlink and never followed.
//! Entries are sorted by name and carry the files' own mode, owner and
//! mtime, so the same directory always gives the same tar (and diff_id).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use sha2::{Digest as _, Sha256};
use tracing::warn;

use crate::digest::Digest;

/// Prefix of whiteout entries in a layer tar.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The opaque-directory marker entry.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// xattrs marking an opaque overlay directory (`userxattr` mounts use `user.`).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Errors building a layer from a directory.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A filesystem operation on an entry failed.
    #[error("{op} {path:?}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The entry, relative to the layer root (lossy UTF-8).
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file changed size while it was archived (the container is writing
    /// to it: commit with pause, or stop the container first).
    #[error("{path:?} changed while it was archived")]
    Changed {
        /// The entry.
        path: String,
    },
}

/// What a layer build saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Entries written (whiteouts and opaque markers included).
    pub entries: u64,
    /// Deleted files (whiteouts) written.
    pub whiteouts: u64,
    /// Opaque directories written.
    pub opaque_dirs: u64,
    /// Entries that cannot be expressed in a layer and were left out:
    /// sockets, and files whose own name starts with `.wh.` (a reader would
    /// take them for whiteouts).
    pub skipped: Vec<String>,
}

/// A finished compressed layer blob.
#[derive(Debug, Clone)]
pub struct BuiltBlob {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// What the walk saw.
    pub stats: DiffStats,
}

/// Media type of the blobs [`build_gzip_layer`] writes.
pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn io_at<'a>(op: &'static str, path: &'a [u8]) -> impl FnOnce(io::Error) -> DiffError + 'a {
    move |source| DiffError::Io {
        op,
        path: String::from_utf8_lossy(path).into_owned(),
        source,
    }
}

fn errno_at<'a>(op: &'static str, path: &'a [u8]) -> impl FnOnce(nix::Error) -> DiffError + 'a {
    move |e| io_at(op, path)(io::Error::from(e))
}

/// Writes the OCI layer tar of the overlay layer directory `dir` to `out`.
pub fn write_layer_tar<W: Write>(dir: &Path, out: W) -> Result<(W, DiffStats), DiffError> {
    let root_name = dir.as_os_str().as_bytes();
    let root = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_at("opening", root_name))?;
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut walker = Walker {
        tar: builder,
        links: HashMap::new(),
        stats: DiffStats::default(),
    };
    walker.walk(root.as_fd(), b"")?;
    let Walker { tar, stats, .. } = walker;
    let out = tar
        .into_inner()
        .map_err(io_at("finishing the tar of", root_name))?;
    Ok((out, stats))
}

/// Builds a gzip-compressed layer blob of `dir` into the file `blob`.
pub fn build_gzip_layer(dir: &Path, blob: &Path) -> Result<BuiltBlob, DiffError> {
    let blob_name = blob.as_os_str().as_bytes();
    let file = File::create(blob).map_err(io_at("creating", blob_name))?;
    let compressed = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
    let (tar, stats) = write_layer_tar(dir, HashWriter::new(gz))?;
    let (gz, diff_id, tar_size) = tar.finish();
    let compressed = gz.finish().map_err(io_at("compressing into", blob_name))?;
    let (mut file, digest, size) = compressed.finish();
    file.flush().map_err(io_at("writing", blob_name))?;
    file.get_ref()
        .sync_all()
        .map_err(io_at("syncing", blob_name))?;
    Ok(BuiltBlob {
        digest,
        diff_id,
        size,
        tar_size,
        stats,
    })
}

/// Passes writes through, hashing and counting them.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> HashWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the digest and the byte count of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        let hex = hex::encode(self.hasher.finalize());
        let digest = Digest::from_str(&format!("sha256:{hex}"))
            .unwrap_or_else(|_| unreachable!("a sha256 hex digest is always valid"));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Walker<W: Write> {
    tar: tar::Builder<W>,
    /// First path of each multiply-linked inode, for hard link entries.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DiffStats,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// A header with the entry's mode, owner and mtime.
fn header_for(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

/// Names in a directory (without `.` and `..`), sorted bytewise.
fn list_dir(dir: BorrowedFd<'_>, path: &[u8]) -> Result<Vec<Vec<u8>>, DiffError> {
    let d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_at("listing", path))?;
    let mut names = Vec::new();
    for entry in d {
        let entry = entry.map_err(errno_at("listing", path))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// The value of an xattr of an open file, `None` when absent.
fn fgetxattr(fd: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = [0u8; 16];
    // SAFETY: `fd` is an open descriptor, `cname` is NUL-terminated and `buf`
    // is writable for the length passed.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            // A value longer than any opaque marker: not "y".
            Some(libc::ERANGE) => Ok(Some(Vec::new())),
            _ => Err(e),
        };
    }
    Ok(Some(buf[..r.unsigned_abs()].to_vec()))
}

fn is_opaque(dir: BorrowedFd<'_>, path: &[u8]) -> Result<bool, DiffError> {
    for name in OPAQUE_XATTRS {
        if fgetxattr(dir, name)
            .map_err(io_at("reading xattrs of", path))?
            .is_some_and(|v| v == b"y")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

impl<W: Write> Walker<W> {
    fn append(
        &mut self,
        header: &mut tar::Header,
        path: &[u8],
        data: impl Read,
    ) -> Result<(), DiffError> {
        self.tar
            .append_data(header, as_path(path), data)
            .map_err(io_at("archiving", path))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn append_link(
        &mut self,
        header: &mut tar::Header,
        path: &[u8],
        target: &[u8],
    ) -> Result<(), DiffError> {
        self.tar
            .append_link(header, as_path(path), as_path(target))
            .map_err(io_at("archiving", path))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<(), DiffError> {
        for name in list_dir(dir, prefix)? {
            let path = join(prefix, &name);
            let st =
                match nix::sys::stat::fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    // Removed since the listing (a running container): nothing to record.
                    Err(nix::Error::ENOENT) => continue,
                    Err(e) => return Err(errno_at("inspecting", &path)(e)),
                };
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            let whiteout = kind == SFlag::S_IFCHR && st.st_rdev == 0;
            if !whiteout && name.starts_with(WHITEOUT_PREFIX) {
                warn!(path = %String::from_utf8_lossy(&path), "a file named like a whiteout cannot be stored in a layer; left out");
                self.stats
                    .skipped
                    .push(String::from_utf8_lossy(&path).into_owned());
                continue;
            }
            if whiteout {
                let mut h = header_for(&st, tar::EntryType::Regular);
                h.set_mode(0o644);
                let mut wh = WHITEOUT_PREFIX.to_vec();
                wh.extend_from_slice(&name);
                self.append(&mut h, &join(prefix, &wh), io::empty())?;
                self.stats.whiteouts += 1;
                continue;
            }
            match kind {
                SFlag::S_IFDIR => self.dir(dir, &name, &path, &st)?,
                SFlag::S_IFREG => self.file(dir, &name, &path, &st)?,
                SFlag::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(dir, name.as_slice())
                        .map_err(errno_at("reading link", &path))?;
                    let mut h = header_for(&st, tar::EntryType::Symlink);
                    self.append_link(&mut h, &path, target.as_bytes())?;
                }
                SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                    let t = match kind {
                        SFlag::S_IFCHR => tar::EntryType::Char,
                        SFlag::S_IFBLK => tar::EntryType::Block,
                        _ => tar::EntryType::Fifo,
                    };
                    let mut h = header_for(&st, t);
                    if kind != SFlag::S_IFIFO {
                        let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                        h.set_device_major(major)
                            .and_then(|()| h.set_device_minor(minor))
                            .map_err(io_at("archiving", &path))?;
                    }
                    self.append(&mut h, &path, io::empty())?;
                }
                _ => {
                    // Sockets: meaningless outside the running container.
                    self.stats
                        .skipped
                        .push(String::from_utf8_lossy(&path).into_owned());
                }
            }
        }
        Ok(())
    }

    fn dir(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        st: &FileStat,
    ) -> Result<(), DiffError> {
        let fd: OwnedFd = match nix::fcntl::openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(errno_at("opening", path)(e)),
        };
        let mut h = header_for(st, tar::EntryType::Directory);
        self.append(&mut h, path, io::empty())?;
        if is_opaque(fd.as_fd(), path)? {
            let mut mh = header_for(st, tar::EntryType::Regular);
            mh.set_mode(0o644);
            self.append(&mut mh, &join(path, OPAQUE_MARKER), io::empty())?;
            self.stats.opaque_dirs += 1;
        }
        self.walk(fd.as_fd(), path)
    }

    fn file(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        st: &FileStat,
    ) -> Result<(), DiffError> {
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = header_for(st, tar::EntryType::Link);
                return self.append_link(&mut h, path, &first);
            }
        }
        let fd: OwnedFd = match nix::fcntl::openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(errno_at("opening", path)(e)),
        };
        let now = nix::sys::stat::fstat(&fd).map_err(errno_at("inspecting", path))?;
        if now.st_ino != st.st_ino || now.st_dev != st.st_dev {
            return Err(DiffError::Changed {
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        let size = u64::try_from(now.st_size).unwrap_or(0);
        let mut h = header_for(&now, tar::EntryType::Regular);
        h.set_size(size);
        let mut reader = ExactReader {
            inner: File::from(fd),
            left: size,
        };
        match self.tar.append_data(&mut h, as_path(path), &mut reader) {
            Ok(()) => {}
            Err(_) if reader.left > 0 => {
                return Err(DiffError::Changed {
                    path: String::from_utf8_lossy(path).into_owned(),
                })
            }
            Err(e) => return Err(io_at("archiving", path)(e)),
        }
        self.stats.entries += 1;
        if st.st_nlink > 1 {
            self.links.insert(key, path.to_vec());
        }
        Ok(())
    }
}

/// Reads at most the size the header announced, so a file growing while it
/// is archived cannot corrupt the tar stream.
struct ExactReader {
    inner: File,
    left: u64,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A temporary blob path next to `dir` that is removed unless kept.
#[derive(Debug)]
pub struct TempBlob {
    path: Option<PathBuf>,
}

impl TempBlob {
    /// Reserves `dir/<prefix><random>`; the file is created by the writer.
    pub fn new(dir: &Path, prefix: &str) -> io::Result<Self> {
        let f = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
        let (_, path) = f.keep().map_err(|e| e.error)?;
        Ok(TempBlob { path: Some(path) })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Stops the removal (the file was moved or is kept on purpose).
    pub fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
