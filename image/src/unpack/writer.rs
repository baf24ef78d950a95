//! The only code that writes into a snapshot: every operation is relative to
//! a directory fd obtained beneath the snapshot root, never a path string.
//!
//! Resolution policy (why `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` and not
//! `RESOLVE_IN_ROOT`): each layer is unpacked alone into an empty directory,
//! so the only symlinks that can exist are ones this same layer created a
//! moment earlier. Image builders (Docker, buildkit, kaniko) walk real
//! directories, so they never emit an entry *under* one of their own
//! symlinks; an archive that does is the classic escape (CVE-2018-15664
//! style `link -> /`, then `link/etc/...`). `RESOLVE_IN_ROOT` would clamp
//! such a path back into the root and silently write somewhere unexpected;
//! we refuse instead — any symlink in the parent path of an entry (or of a
//! hardlink target) fails with [`Refusal::ThroughSymlink`], whether it
//! points inside the root or outside. The final component is never
//! followed either: files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! after removing what was there, and metadata calls use
//! `AT_SYMLINK_NOFOLLOW` or an fd. `RESOLVE_NO_MAGICLINKS` keeps
//! `/proc`-style links out even if a snapshot were somehow mounted oddly.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::entry::Meta;
use super::whiteout::OPAQUE_XATTR;
use super::Refusal;

/// A failed write: either a policy refusal or an OS error during `op`.
#[derive(Debug)]
pub enum Fail {
    /// The entry is hostile or unsupported.
    Refused(Refusal),
    /// Reading the entry's data from the layer stream failed.
    Read(io::Error),
    /// A regular file would cross the unpacked size limit.
    TooLarge,
    /// A system call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

fn io_fail(op: &'static str) -> impl FnOnce(Errno) -> Fail {
    move |e| Fail::Io {
        op,
        source: io::Error::from(e),
    }
}

const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_BENEATH
    .union(ResolveFlag::RESOLVE_NO_SYMLINKS)
    .union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// What a path resolution error means for the entry.
fn resolve_fail(e: Errno) -> Fail {
    match e {
        Errno::ELOOP => Fail::Refused(Refusal::ThroughSymlink),
        Errno::ENOTDIR => Fail::Refused(Refusal::ParentNotDirectory),
        Errno::EXDEV => Fail::Refused(Refusal::Escapes),
        e => io_fail("resolving parent directory")(e),
    }
}

/// The snapshot root and a one-entry cache of the last parent directory
/// (tar streams list a directory's files together).
pub struct SafeRoot {
    root: OwnedFd,
    cache: Option<(Vec<u8>, OwnedFd)>,
}

impl SafeRoot {
    /// Opens `dest` (which must be an existing directory) as the root.
    pub fn open(dest: &Path) -> io::Result<Self> {
        let root = nix::fcntl::open(
            dest,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(SafeRoot { root, cache: None })
    }

    /// Opens directory `path` (relative, `a/b`; empty for the root) beneath
    /// `dir` with the no-symlink policy.
    fn beneath(dir: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(RESOLVE);
        openat2(dir, path, how)
    }

    /// The parent directory `path` as an `O_PATH` fd, creating missing
    /// directories (mode 0755, root-owned, as other runtimes do for
    /// parents a layer does not list).
    pub fn parent(&mut self, path: &[u8]) -> Result<BorrowedFd<'_>, Fail> {
        let hit = matches!(&self.cache, Some((p, _)) if p.as_slice() == path);
        if !hit {
            let fd = match Self::beneath(self.root.as_fd(), path, OFlag::O_PATH) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => self.create_dirs(path)?,
                Err(e) => return Err(resolve_fail(e)),
            };
            self.cache = Some((path.to_vec(), fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(io_fail("caching parent directory")(Errno::EINVAL)),
        }
    }

    fn create_dirs(&self, path: &[u8]) -> Result<OwnedFd, Fail> {
        let mut cur = Self::beneath(self.root.as_fd(), b"", OFlag::O_PATH).map_err(resolve_fail)?;
        for comp in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            let next = match Self::beneath(cur.as_fd(), comp, OFlag::O_PATH) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(cur.as_fd(), comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(io_fail("creating parent directory")(e)),
                    }
                    // mkdir honours the umask; parents must be 0755 regardless.
                    fchmodat(
                        cur.as_fd(),
                        comp,
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::NoFollowSymlink,
                    )
                    .map_err(io_fail("chmod of created parent"))?;
                    Self::beneath(cur.as_fd(), comp, OFlag::O_PATH).map_err(resolve_fail)?
                }
                Err(e) => return Err(resolve_fail(e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// An existing directory beneath the root, opened with `flags`
    /// (no creation; used for hardlink targets and deferred mtimes).
    pub fn existing_dir(&self, path: &[u8], flags: OFlag) -> Result<OwnedFd, Fail> {
        Self::beneath(self.root.as_fd(), path, flags).map_err(resolve_fail)
    }

    /// Applies a root directory entry (`./`) to the snapshot root itself.
    pub fn root_meta(&self, meta: &Meta) -> Result<(), Fail> {
        let fd = self.existing_dir(b"", OFlag::O_RDONLY)?;
        apply_fd_meta(fd.as_fd(), meta)
    }
}

/// Removes whatever non-directory is at `name` so the new entry replaces it
/// (later entries win, as in every tar extractor). An existing directory is
/// never removed: replacing a directory by a non-directory within one layer
/// is not something builders produce, and refusing keeps cached directory
/// fds meaningful.
fn remove_existing(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Fail> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => Err(Fail::Refused(Refusal::ReplacesDirectory)),
        Err(e) => Err(io_fail("removing existing entry")(e)),
    }
}

fn uid_gid(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
}

fn mode(meta: &Meta) -> Mode {
    Mode::from_bits_truncate(meta.mode)
}

/// Ownership, then mode (chown clears setuid/setgid, so chmod must come
/// after), then xattrs (chown also drops `security.capability`).
fn apply_fd_meta(fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), Fail> {
    let (u, g) = uid_gid(meta);
    fchown(fd, u, g).map_err(io_fail("fchown"))?;
    fchmod(fd, mode(meta)).map_err(io_fail("fchmod"))?;
    for (name, value) in &meta.xattrs {
        fsetxattr(fd, name, value).map_err(|source| Fail::Io {
            op: "fsetxattr",
            source,
        })?;
    }
    Ok(())
}

/// Like [`apply_fd_meta`] for entries that cannot be opened (symlinks,
/// devices, fifos): everything goes through the parent fd and the name,
/// without following the name.
fn apply_at_meta(
    parent: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    chmod: bool,
) -> Result<(), Fail> {
    let (u, g) = uid_gid(meta);
    fchownat(parent, name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_fail("fchownat"))?;
    if chmod {
        fchmodat(parent, name, mode(meta), FchmodatFlags::NoFollowSymlink)
            .map_err(io_fail("fchmodat"))?;
    }
    if !meta.xattrs.is_empty() {
        // /proc/self/fd/N is the exact directory we hold, so only `name`
        // is looked up, and lsetxattr does not follow it.
        let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        let path = CString::new(p).map_err(|_| Fail::Refused(Refusal::Nul))?;
        for (xname, value) in &meta.xattrs {
            lsetxattr(&path, xname, value).map_err(|source| Fail::Io {
                op: "lsetxattr",
                source,
            })?;
        }
    }
    utimensat(
        parent,
        name,
        &meta.mtime,
        &meta.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io_fail("utimensat"))
}

/// Creates regular file `name` with the entry's contents; returns its size.
pub fn write_file(
    parent: BorrowedFd<'_>,
    name: &[u8],
    data: &mut dyn Read,
    meta: &Meta,
    buf: &mut [u8],
) -> Result<u64, Fail> {
    remove_existing(parent, name)?;
    let fd = openat(
        parent,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(io_fail("creating file"))?;
    let mut file = File::from(fd);
    let mut total = 0u64;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Fail::Read(source)),
        };
        file.write_all(&buf[..n]).map_err(|source| Fail::Io {
            op: "writing file",
            source,
        })?;
        total += n as u64;
    }
    apply_fd_meta(file.as_fd(), meta)?;
    futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(io_fail("futimens"))?;
    Ok(total)
}

/// Creates directory `name` (or keeps an existing one and updates its
/// metadata). Its mtime is set later, after its contents are written.
pub fn make_dir(parent: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), Fail> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
        Ok(_) => {
            remove_existing(parent, name)?;
            mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(io_fail("mkdirat"))?;
        }
        Err(Errno::ENOENT) => {
            mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(io_fail("mkdirat"))?;
        }
        Err(e) => return Err(io_fail("fstatat")(e)),
    }
    let fd = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_fail("opening directory"))?;
    apply_fd_meta(fd.as_fd(), meta)
}

/// Creates symlink `name -> target`. The target is stored verbatim: a
/// symlink may point anywhere, it is only ever interpreted later, inside
/// the container's root.
pub fn make_symlink(
    parent: BorrowedFd<'_>,
    name: &[u8],
    target: &[u8],
    meta: &Meta,
) -> Result<(), Fail> {
    if target.contains(&0) {
        return Err(Fail::Refused(Refusal::Nul));
    }
    remove_existing(parent, name)?;
    symlinkat(target, parent, name).map_err(io_fail("symlinkat"))?;
    apply_at_meta(parent, name, meta, false)
}

/// Hard-links `name` to `target_name` in `target_parent` (both beneath the
/// root). The link itself is never followed (`linkat` without
/// `AT_SYMLINK_FOLLOW`), so a target that is a symlink links the symlink.
pub fn make_hardlink(
    parent: BorrowedFd<'_>,
    name: &[u8],
    target_parent: BorrowedFd<'_>,
    target_name: &[u8],
) -> Result<(), Fail> {
    remove_existing(parent, name)?;
    match linkat(target_parent, target_name, parent, name, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(Fail::Refused(Refusal::HardlinkTargetMissing)),
        Err(e) => Err(io_fail("linkat")(e)),
    }
}

/// Creates a device node or fifo (`kind` is `S_IFCHR`, `S_IFBLK` or `S_IFIFO`).
pub fn make_node(
    parent: BorrowedFd<'_>,
    name: &[u8],
    kind: SFlag,
    dev: libc::dev_t,
    meta: &Meta,
) -> Result<(), Fail> {
    remove_existing(parent, name)?;
    mknodat(parent, name, kind, Mode::empty(), dev).map_err(io_fail("mknodat"))?;
    apply_at_meta(parent, name, meta, true)
}

/// Marks the directory `parent` opaque for overlayfs.
pub fn set_opaque(parent: BorrowedFd<'_>) -> Result<(), Fail> {
    let fd = openat(
        parent,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_fail("opening directory for opaque marker"))?;
    let name = CString::new(OPAQUE_XATTR).map_err(|_| Fail::Refused(Refusal::Nul))?;
    fsetxattr(fd.as_fd(), &name, b"y").map_err(|source| Fail::Io {
        op: "setting trusted.overlay.opaque",
        source,
    })
}

/// Sets a directory's times (after everything inside it was written).
pub fn set_dir_times(root: &SafeRoot, path: &[u8], t: &TimeSpec) -> Result<(), Fail> {
    let fd = root.existing_dir(path, OFlag::O_RDONLY)?;
    futimens(fd.as_fd(), t, t).map_err(io_fail("futimens on directory"))
}

fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated, `value` is a valid slice whose length
    // is passed alongside it, and `fd` is a live descriptor borrowed for the call.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and `value` is a valid slice
    // whose length is passed alongside it.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads xattr `name` of `path` without following a final symlink
/// (`None` when absent). Used by tests and by callers inspecting snapshots.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for the
    // length passed.
    let r = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}
