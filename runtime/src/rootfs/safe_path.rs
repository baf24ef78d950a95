//! Path resolution confined to a container root.
//!
//! Every path that comes from a spec or an image (mount destinations,
//! device paths, the process cwd) is resolved with openat2(2)
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: the kernel treats the root fd as
//! "/" for absolute symlinks and clamps `..` there, so a rootfs symlink such as
//! `mnt -> /etc` or `x -> ../../../tmp` resolves to a path inside the root.
//! Callers then operate on the returned fd (for mounts through
//! `/proc/self/fd/N`), so a symlink swapped in after the check cannot redirect
//! the operation either (the CVE-2021-30465 class).

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Errors of the safe path resolution helpers.
#[derive(Debug, thiserror::Error)]
pub enum SafePathError {
    /// openat2 failed for a path inside the root.
    #[error("cannot resolve {path:?} inside the container root")]
    Resolve {
        /// The path, relative to the root.
        path: PathBuf,
        /// The errno of openat2(2).
        #[source]
        source: Errno,
    },
    /// A directory could not be created inside the root.
    #[error("cannot create directory {path:?} inside the container root")]
    Mkdir {
        /// The path, relative to the root.
        path: PathBuf,
        /// The errno of mkdirat(2).
        #[source]
        source: Errno,
    },
    /// A file could not be created inside the root.
    #[error("cannot create file {path:?} inside the container root")]
    Create {
        /// The path, relative to the root.
        path: PathBuf,
        /// The errno of openat(2).
        #[source]
        source: Errno,
    },
    /// A path component exists but is not a directory.
    #[error("{path:?} inside the container root exists and is not a directory")]
    NotADirectory {
        /// The path, relative to the root.
        path: PathBuf,
    },
    /// Symlink loop (or an endless creation race) while creating directories.
    #[error("too many symlinks while creating {path:?} inside the container root")]
    TooManySymlinks {
        /// The path, relative to the root.
        path: PathBuf,
    },
    /// The path contains a NUL byte.
    #[error("path {path:?} contains a NUL byte")]
    Nul {
        /// The offending path.
        path: PathBuf,
    },
    /// The path has no final file name (for example `/` when a file is needed).
    #[error("path {path:?} has no file name")]
    NoFileName {
        /// The offending path.
        path: PathBuf,
    },
    /// The kernel lacks openat2(2) (Linux < 5.6): refuse rather than fall back to unsafe lookups.
    #[error(
        "openat2(2) is not available (Linux 5.6 or later is required for safe path resolution)"
    )]
    Openat2Unsupported,
}

/// Symlinks followed by mkdir_all_in_root before giving up (the kernel's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// Retries of openat2 on EAGAIN (a concurrent rename raced a `..` lookup).
const MAX_EAGAIN_RETRIES: usize = 16;

fn to_cstring(path: &Path) -> Result<CString, SafePathError> {
    let bytes = path.as_os_str().as_bytes();
    // An empty path names the root itself.
    let bytes = if bytes.is_empty() { b"." } else { bytes };
    CString::new(bytes).map_err(|_| SafePathError::Nul {
        path: path.to_path_buf(),
    })
}

/// openat2 with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, O_CLOEXEC always added, EAGAIN/EINTR retried.
fn openat2_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, SafePathError> {
    let c_path = to_cstring(path)?;
    let mut retries = 0;
    loop {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(root, c_path.as_c_str(), how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if retries < MAX_EAGAIN_RETRIES => retries += 1,
            Err(Errno::ENOSYS) => return Err(SafePathError::Openat2Unsupported),
            Err(source) => {
                return Err(SafePathError::Resolve {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Opens `path` resolved inside `root` (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS); O_CLOEXEC is always set.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, SafePathError> {
    openat2_in_root(root, path, flags, mode)
}

/// The errno behind a resolution failure, if any.
pub fn errno_of(err: &SafePathError) -> Option<Errno> {
    match err {
        SafePathError::Resolve { source, .. }
        | SafePathError::Mkdir { source, .. }
        | SafePathError::Create { source, .. } => Some(*source),
        SafePathError::NotADirectory { .. } => Some(Errno::ENOTDIR),
        _ => None,
    }
}

/// Splits a path into the components mkdir_all walks (root and `.` dropped, `..` kept for the kernel to clamp).
fn walk_components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Creates every missing directory of `path` inside `root` and returns an O_PATH fd of the final directory.
///
/// Existing components (and symlinks, dangling ones included) are resolved
/// inside the root; new directories are made with mkdirat(2) relative to the
/// already-resolved parent fd, so nothing is ever created outside the root.
pub fn mkdir_all_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: Mode,
) -> Result<OwnedFd, SafePathError> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut queue = walk_components(path);
    let mut done = PathBuf::new();
    let mut current = openat2_in_root(root, &done, dir_flags, Mode::empty())?;
    let mut links = 0usize;
    while let Some(component) = queue.pop_front() {
        let next = done.join(&component);
        match openat2_in_root(root, &next, dir_flags, Mode::empty()) {
            Ok(fd) => {
                current = fd;
                done = next;
                continue;
            }
            Err(SafePathError::Resolve {
                source: Errno::ENOTDIR,
                ..
            }) => return Err(SafePathError::NotADirectory { path: next }),
            Err(SafePathError::Resolve {
                source: Errno::ENOENT,
                ..
            }) if component != ".." => {}
            Err(err) => return Err(err),
        }
        match nix::sys::stat::mkdirat(current.as_fd(), component.as_os_str(), mode) {
            Ok(()) => {
                current = openat2_in_root(root, &next, dir_flags, Mode::empty())?;
                done = next;
            }
            Err(Errno::EEXIST) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(SafePathError::TooManySymlinks {
                        path: path.to_path_buf(),
                    });
                }
                // Something exists but does not resolve: a dangling symlink.
                // Follow it ourselves, still resolving every prefix in the root.
                match nix::fcntl::readlinkat(current.as_fd(), component.as_os_str()) {
                    Ok(target) => {
                        let target = PathBuf::from(target);
                        if target.is_absolute() {
                            done = PathBuf::new();
                            current = openat2_in_root(root, &done, dir_flags, Mode::empty())?;
                        }
                        for c in walk_components(&target).into_iter().rev() {
                            queue.push_front(c);
                        }
                    }
                    // Not a symlink: a concurrent mkdir won the race; look it up again.
                    Err(Errno::EINVAL) => queue.push_front(component),
                    Err(source) => return Err(SafePathError::Resolve { path: next, source }),
                }
            }
            Err(source) => return Err(SafePathError::Mkdir { path: next, source }),
        }
    }
    Ok(current)
}

/// Creates (if missing) a regular file at `path` inside `root`, with its parent directories; returns an O_PATH fd.
///
/// A dangling symlink in the final component is followed (inside the root),
/// so the file is created where the symlink points, never outside.
pub fn create_file_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: Mode,
) -> Result<OwnedFd, SafePathError> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match openat2_in_root(root, &path, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(SafePathError::Resolve {
                source: Errno::ENOENT,
                ..
            }) => {}
            Err(err) => return Err(err),
        }
        let (parent, name) = open_parent_in_root(root, &path)?;
        // One component relative to a resolved parent, O_EXCL|O_NOFOLLOW: this
        // creates exactly here or fails. O_NONBLOCK|O_NOCTTY keep a racing fifo or tty harmless.
        let flags = OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_RDONLY
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(parent.as_fd(), name, flags, mode) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EEXIST) => match nix::fcntl::readlinkat(parent.as_fd(), name) {
                Ok(target) => {
                    let target = PathBuf::from(target);
                    path = if target.is_absolute() {
                        target
                    } else {
                        path.parent().unwrap_or(Path::new("/")).join(target)
                    };
                }
                // Created concurrently as a regular entry: look it up again.
                Err(Errno::EINVAL) => {}
                Err(source) => return Err(SafePathError::Resolve { path, source }),
            },
            Err(source) => return Err(SafePathError::Create { path, source }),
        }
    }
    Err(SafePathError::TooManySymlinks { path })
}

/// Creates the destination of a mount inside `root`: a directory, or a file when `is_dir` is false.
pub fn create_mount_target(
    root: BorrowedFd<'_>,
    path: &Path,
    is_dir: bool,
) -> Result<OwnedFd, SafePathError> {
    if is_dir {
        mkdir_all_in_root(root, path, Mode::from_bits_truncate(0o755))
    } else {
        create_file_in_root(root, path, Mode::from_bits_truncate(0o644))
    }
}

/// The `/proc/self/fd/N` path naming `fd`: mounting on it targets exactly that inode.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// True when /proc/self/fd is served by procfs, so `/proc/self/fd/N` names our fds
/// (after pivot_root, a rootfs without a proc mount could hold look-alike symlinks there).
pub fn proc_fd_usable() -> bool {
    nix::sys::statfs::statfs("/proc/self/fd")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

/// The parent directory of `path` (inside `root`, created if missing) and the final file name.
pub fn open_parent_in_root<'p>(
    root: BorrowedFd<'_>,
    path: &'p Path,
) -> Result<(OwnedFd, &'p OsStr), SafePathError> {
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) => name,
        _ => {
            return Err(SafePathError::NoFileName {
                path: path.to_path_buf(),
            })
        }
    };
    let parent = path.parent().unwrap_or(Path::new(""));
    let parent_fd = mkdir_all_in_root(root, parent, Mode::from_bits_truncate(0o755))?;
    Ok((parent_fd, name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn open_root(dir: &Path) -> OwnedFd {
        nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn fd_target(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(proc_fd_path(fd.as_fd())).unwrap()
    }

    #[test]
    fn absolute_symlink_resolves_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("mnt")).unwrap();
        let rfd = open_root(&root);
        let fd =
            open_in_root(rfd.as_fd(), Path::new("/mnt"), OFlag::O_PATH, Mode::empty()).unwrap();
        assert_eq!(fd_target(&fd), root.join("etc"));
    }

    #[test]
    fn relative_dotdot_symlink_is_clamped_at_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/tmp")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        symlink("../../../../../tmp", root.join("a/evil")).unwrap();
        let rfd = open_root(&root);
        let fd = open_in_root(
            rfd.as_fd(),
            Path::new("a/evil"),
            OFlag::O_PATH,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(fd_target(&fd), root.join("tmp"));
        // `..` in the requested path itself is clamped as well.
        let fd = open_in_root(
            rfd.as_fd(),
            Path::new("/../../../tmp"),
            OFlag::O_PATH,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(fd_target(&fd), root.join("tmp"));
    }

    #[test]
    fn magic_links_are_refused() {
        // /proc/self/root is a magic link: following it would jump to any process's root.
        let host_root = open_root(Path::new("/"));
        let err = open_in_root(
            host_root.as_fd(),
            Path::new("/proc/self/root"),
            OFlag::O_PATH,
            Mode::empty(),
        )
        .unwrap_err();
        assert_eq!(errno_of(&err), Some(Errno::ELOOP), "{err}");
    }

    #[test]
    fn mkdir_all_follows_dangling_symlinks_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // Absolute dangling symlink pointing at a host path.
        symlink(&outside, root.join("abs")).unwrap();
        // Relative symlink climbing out of the root.
        symlink("../outside2", root.join("rel")).unwrap();
        let rfd = open_root(&root);
        let fd = mkdir_all_in_root(
            rfd.as_fd(),
            Path::new("/abs/x/y"),
            Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        let expected = root.join(outside.strip_prefix("/").unwrap()).join("x/y");
        assert_eq!(fd_target(&fd), expected);
        let fd = mkdir_all_in_root(
            rfd.as_fd(),
            Path::new("rel/z"),
            Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        assert_eq!(fd_target(&fd), root.join("outside2/z"));
        assert!(!outside.exists(), "created outside the root");
        assert!(
            !tmp.path().join("outside2").exists(),
            "created outside the root"
        );
    }

    #[test]
    fn mkdir_all_with_dotdot_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let rfd = open_root(&root);
        let fd = mkdir_all_in_root(
            rfd.as_fd(),
            Path::new("/../../escape/d"),
            Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        assert_eq!(fd_target(&fd), root.join("escape/d"));
        assert!(!tmp.path().join("escape").exists());
    }

    #[test]
    fn mkdir_all_rejects_file_component_and_loops() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let rfd = open_root(&root);
        let err = mkdir_all_in_root(
            rfd.as_fd(),
            Path::new("file/sub"),
            Mode::from_bits_truncate(0o755),
        )
        .unwrap_err();
        assert!(matches!(err, SafePathError::NotADirectory { .. }), "{err}");
        let err = mkdir_all_in_root(
            rfd.as_fd(),
            Path::new("loop1/sub"),
            Mode::from_bits_truncate(0o755),
        )
        .unwrap_err();
        assert_eq!(errno_of(&err), Some(Errno::ELOOP), "{err}");
    }

    #[test]
    fn create_file_through_dangling_symlink_lands_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let host_file = tmp.path().join("hostfile");
        symlink(&host_file, root.join("f")).unwrap();
        let rfd = open_root(&root);
        let fd = create_mount_target(rfd.as_fd(), Path::new("/f"), false).unwrap();
        let expected = root.join(host_file.strip_prefix("/").unwrap());
        assert_eq!(fd_target(&fd), expected);
        assert!(expected.is_file());
        assert!(!host_file.exists(), "created on the host");
    }

    #[test]
    fn cwd_pointing_outside_is_resolved_inside() {
        // A process cwd given as a symlink to a host directory must resolve inside the root.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("work")).unwrap();
        symlink(tmp.path(), root.join("work/cwd")).unwrap();
        let rfd = open_root(&root);
        let err = open_in_root(
            rfd.as_fd(),
            Path::new("/work/cwd"),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap_err();
        // tmp.path() does not exist inside the root, so the lookup fails instead of escaping.
        assert_eq!(errno_of(&err), Some(Errno::ENOENT), "{err}");
        let fd = open_in_root(
            rfd.as_fd(),
            Path::new("/work/../../.."),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(fd_target(&fd), root);
    }
}
