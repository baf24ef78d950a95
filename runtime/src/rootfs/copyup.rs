//! `tmpcopyup`: the content of a directory is copied into the tmpfs mounted over it.
//!
//! The copy works only with fds: the source is read through an fd opened on the
//! directory before the tmpfs hid it, each entry is opened relative to its
//! parent fd with O_NOFOLLOW, so symlinks in the image are copied as links and
//! never followed.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use tracing::warn;

use super::RootfsError;

/// Directory depth beyond which the copy gives up (a sanity bound, not a policy).
const MAX_DEPTH: usize = 128;

fn copy_err(action: &'static str, path: &Path, source: Errno) -> RootfsError {
    RootfsError::CopyUp {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn chown_nofollow(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    st: &FileStat,
    path: &Path,
) -> Result<(), RootfsError> {
    nix::unistd::fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| copy_err("tmpcopyup chown", path, e))
}

/// Copies the entries of `src` (the covered directory) into `dst` (the new tmpfs root).
pub(super) fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    path: &Path,
) -> Result<(), RootfsError> {
    copy_level(src, dst, path, 0)
}

fn copy_level(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    path: &Path,
    depth: usize,
) -> Result<(), RootfsError> {
    if depth > MAX_DEPTH {
        return Err(copy_err("tmpcopyup (too deep)", path, Errno::ELOOP));
    }
    let listing: OwnedFd = nix::fcntl::openat(
        src,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| copy_err("tmpcopyup open", path, e))?;
    let mut dir = Dir::from_fd(listing).map_err(|e| copy_err("tmpcopyup readdir", path, e))?;
    for entry in dir.iter() {
        let entry = entry.map_err(|e| copy_err("tmpcopyup readdir", path, e))?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let child = path.join(std::ffi::OsStr::new(&*String::from_utf8_lossy(
            name.to_bytes(),
        )));
        let st = nix::sys::stat::fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| copy_err("tmpcopyup stat", &child, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        if kind == SFlag::S_IFDIR {
            nix::sys::stat::mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                .map_err(|e| copy_err("tmpcopyup mkdir", &child, e))?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let s = nix::fcntl::openat(src, name, flags, Mode::empty())
                .map_err(|e| copy_err("tmpcopyup open", &child, e))?;
            let d = nix::fcntl::openat(dst, name, flags, Mode::empty())
                .map_err(|e| copy_err("tmpcopyup open", &child, e))?;
            copy_level(s.as_fd(), d.as_fd(), &child, depth + 1)?;
            nix::sys::stat::fchmod(d.as_fd(), perm)
                .map_err(|e| copy_err("tmpcopyup chmod", &child, e))?;
        } else if kind == SFlag::S_IFREG {
            let s = nix::fcntl::openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| copy_err("tmpcopyup open", &child, e))?;
            let d = nix::fcntl::openat(
                dst,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| copy_err("tmpcopyup create", &child, e))?;
            let (mut s, mut d) = (File::from(s), File::from(d));
            std::io::copy(&mut s, &mut d).map_err(|e| RootfsError::Io {
                path: child.clone(),
                source: e,
            })?;
            nix::sys::stat::fchmod(d.as_fd(), perm)
                .map_err(|e| copy_err("tmpcopyup chmod", &child, e))?;
        } else if kind == SFlag::S_IFLNK {
            let target = nix::fcntl::readlinkat(src, name)
                .map_err(|e| copy_err("tmpcopyup readlink", &child, e))?;
            nix::unistd::symlinkat(target.as_os_str(), dst, name)
                .map_err(|e| copy_err("tmpcopyup symlink", &child, e))?;
        } else {
            let old = nix::sys::stat::umask(Mode::empty());
            let made = nix::sys::stat::mknodat(dst, name, kind, perm, st.st_rdev);
            nix::sys::stat::umask(old);
            if let Err(e) = made {
                // Device nodes cannot be made in a user namespace; the image's copy is skipped.
                warn!(path = ?child, error = %e, "tmpcopyup: special file not copied");
                continue;
            }
        }
        chown_nofollow(dst, name, &st, &child)?;
    }
    Ok(())
}
