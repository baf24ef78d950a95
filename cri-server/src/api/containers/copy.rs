//! StatPath, CopyFrom and CopyTo (docker cp): every path is resolved inside
//! the container's root, never on the host.
//!
//! The root is `/proc/<pid>/root` of a running container (so its volumes
//! are seen too) or the still-mounted `<bundle>/rootfs` of a created or
//! exited one (the shim keeps it mounted until the task is deleted). The
//! path given is resolved with openat2 `RESOLVE_IN_ROOT` (symlinks and `..`
//! stay inside the root); below it the archive walk and the extraction go
//! through directory fds with `O_NOFOLLOW` / `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, so neither a symlink in the container nor one in
//! the archive can lead outside.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_proto::berth::v1 as api;
use berth_runtime::rootfs::safe_path::open_in_root;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};

use super::engine::{Engine, Record};
use super::error::ApiError;
use crate::pods::ContainerState;

/// Errors of a copy, with the path inside the container.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The path does not exist.
    #[error("Could not find the file {0} in container")]
    NotFound(String),
    /// An archive entry would land outside the target directory.
    #[error("refusing archive entry {entry:?}: {reason}")]
    Refused {
        /// The entry name.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// The target is not a directory, or a dir/non-dir replacement was refused.
    #[error("{0}")]
    Conflict(String),
    /// A system call failed.
    #[error("{op} {path:?}")]
    Sys {
        /// What was done.
        op: &'static str,
        /// The path inside the container.
        path: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Reading or writing the archive failed.
    #[error("archive")]
    Archive(#[source] std::io::Error),
}

impl From<CopyError> for ApiError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::NotFound(_) => ApiError::NotFound(e.to_string()),
            CopyError::Refused { .. } => ApiError::InvalidArgument(e.to_string()),
            CopyError::Conflict(_) => ApiError::FailedPrecondition(e.to_string()),
            other => ApiError::Io {
                op: "copying",
                path: PathBuf::from(other.to_string()),
                source: std::io::Error::other(crate::error::chain(&other)),
            },
        }
    }
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> CopyError + 'a {
    move |source| CopyError::Sys {
        op,
        path: path.display().to_string(),
        source,
    }
}

const BENEATH: ResolveFlag = ResolveFlag::RESOLVE_BENEATH
    .union(ResolveFlag::RESOLVE_NO_SYMLINKS)
    .union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// A container root opened for a copy, and the container's working dir.
#[derive(Debug)]
pub struct ContainerRoot {
    /// The root directory (O_PATH).
    pub fd: OwnedFd,
    /// The working dir relative paths start from.
    pub cwd: PathBuf,
}

/// `path` made absolute against `cwd`, lexically.
pub fn absolute(cwd: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        cwd.join(path)
    }
}

/// Opens the entry `path` names inside the root without following a
/// final symlink; returns it and its stat.
pub fn stat_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<(OwnedFd, FileStat), CopyError> {
    let fd = open_in_root(root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty()).map_err(
        |e| match berth_runtime::rootfs::safe_path::errno_of(&e) {
            Some(Errno::ENOENT) | Some(Errno::ENOTDIR) => {
                CopyError::NotFound(path.display().to_string())
            }
            Some(errno) => CopyError::Sys {
                op: "resolving",
                path: path.display().to_string(),
                source: errno,
            },
            None => CopyError::NotFound(path.display().to_string()),
        },
    )?;
    let st = fstat(&fd).map_err(sys("stat", path))?;
    Ok((fd, st))
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// The PathStat of an opened entry.
pub fn path_stat(fd: BorrowedFd<'_>, st: &FileStat, path: &Path) -> api::PathStat {
    let link_target = if kind(st) == SFlag::S_IFLNK {
        nix::fcntl::readlinkat(fd, "")
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    api::PathStat {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode,
        mtime: st.st_mtime,
        link_target,
    }
}

fn header_for(st: &FileStat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

/// Appends `name` (an entry of `parent`) to the archive as `arc`,
/// recursing into directories through fds; symlinks are archived, not
/// followed.
pub fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    parent: BorrowedFd<'_>,
    name: &OsStr,
    arc: &Path,
) -> Result<(), CopyError> {
    let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys("stat", arc))?;
    let mut h = header_for(&st);
    match kind(&st) {
        SFlag::S_IFREG => {
            let fd = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys("open", arc))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(u64::try_from(st.st_size).unwrap_or(0));
            b.append_data(&mut h, arc, File::from(fd))
                .map_err(CopyError::Archive)?;
        }
        SFlag::S_IFDIR => {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, arc, std::io::empty())
                .map_err(CopyError::Archive)?;
            let fd = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys("open directory", arc))?;
            let dup = fd.try_clone().map_err(CopyError::Archive)?;
            let mut dir = nix::dir::Dir::from_fd(dup).map_err(sys("read directory", arc))?;
            let mut names: Vec<std::ffi::OsString> = dir
                .iter()
                .filter_map(Result::ok)
                .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                .filter(|n| n != "." && n != "..")
                .collect();
            names.sort();
            for n in names {
                append_entry(b, fd.as_fd(), &n, &arc.join(&n))?;
            }
        }
        SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(parent, name).map_err(sys("readlink", arc))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, arc, Path::new(&target))
                .map_err(CopyError::Archive)?;
        }
        SFlag::S_IFIFO => {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, arc, std::io::empty())
                .map_err(CopyError::Archive)?;
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK => {
            h.set_entry_type(if kind(&st) == SFlag::S_IFCHR {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let _ = h.set_device_major(libc::major(st.st_rdev));
            let _ = h.set_device_minor(libc::minor(st.st_rdev));
            b.append_data(&mut h, arc, std::io::empty())
                .map_err(CopyError::Archive)?;
        }
        // Sockets have no archive form.
        _ => {}
    }
    Ok(())
}

/// Writes the tar of `path` (resolved inside `root`) to `out`; the top
/// entry is the path's base name. Returns the path's stat.
pub fn archive_path<W: Write>(
    root: BorrowedFd<'_>,
    path: &Path,
    out: W,
) -> Result<api::PathStat, CopyError> {
    let (fd, st) = stat_in_root(root, path)?;
    let stat = path_stat(fd.as_fd(), &st, path);
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = match path.file_name() {
        Some(n) => n.to_os_string(),
        None => ".".into(),
    };
    let parent_fd = open_in_root(
        root,
        if path.file_name().is_some() {
            parent
        } else {
            path
        },
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .map_err(|_| CopyError::NotFound(parent.display().to_string()))?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    append_entry(&mut b, parent_fd.as_fd(), &name, Path::new(&name))?;
    b.into_inner()
        .map_err(CopyError::Archive)?
        .flush()
        .map_err(CopyError::Archive)?;
    Ok(stat)
}

/// Splits an archive entry name into normal components, refusing
/// absolute names and `..`.
pub fn entry_components(name: &[u8]) -> Result<Vec<Vec<u8>>, CopyError> {
    let shown = String::from_utf8_lossy(name).into_owned();
    if name.first() == Some(&b'/') {
        return Err(CopyError::Refused {
            entry: shown,
            reason: "absolute path",
        });
    }
    let mut out = Vec::new();
    for c in Path::new(OsStr::from_bytes(name)).components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::CurDir => {}
            _ => {
                return Err(CopyError::Refused {
                    entry: shown,
                    reason: "path contains '..'",
                })
            }
        }
    }
    Ok(out)
}

/// Opens (creating missing ones) the directory `comps` beneath `base`,
/// never through a symlink.
fn dir_beneath(base: BorrowedFd<'_>, comps: &[Vec<u8>], entry: &str) -> Result<OwnedFd, CopyError> {
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(BENEATH)
    };
    let mut cur = openat2(base, ".", how()).map_err(sys("opening", Path::new(".")))?;
    for c in comps {
        let next = match openat2(cur.as_fd(), c.as_slice(), how()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(cur.as_fd(), c.as_slice(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys("mkdir", Path::new(entry))(e)),
                }
                openat2(cur.as_fd(), c.as_slice(), how())
                    .map_err(sys("opening", Path::new(entry)))?
            }
            Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                return Err(CopyError::Refused {
                    entry: entry.to_string(),
                    reason: "goes through a symlink",
                })
            }
            Err(e) => return Err(sys("opening", Path::new(entry))(e)),
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes `name` in `parent` unless it is a directory (returns whether one is there).
fn clear(
    parent: BorrowedFd<'_>,
    name: &[u8],
    want_dir: bool,
    no_overwrite: bool,
    entry: &str,
) -> Result<bool, CopyError> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if kind(&st) == SFlag::S_IFDIR => {
            if want_dir {
                return Ok(true);
            }
            if no_overwrite {
                return Err(CopyError::Conflict(format!(
                    "cannot overwrite directory {entry:?} with non-directory"
                )));
            }
            let fd = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .map_err(sys("open", Path::new(entry)))?;
            remove_tree(fd)?;
            unlinkat(parent, name, UnlinkatFlags::RemoveDir)
                .map_err(sys("rmdir", Path::new(entry)))?;
            Ok(false)
        }
        Ok(_) => {
            if want_dir && no_overwrite {
                return Err(CopyError::Conflict(format!(
                    "cannot overwrite non-directory {entry:?} with directory"
                )));
            }
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                .map_err(sys("unlink", Path::new(entry)))?;
            Ok(false)
        }
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(sys("stat", Path::new(entry))(e)),
    }
}

fn remove_tree(dir: OwnedFd) -> Result<(), CopyError> {
    let dup = dir.try_clone().map_err(CopyError::Archive)?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(sys("read directory", Path::new(".")))?;
    let names: Vec<Vec<u8>> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for n in names {
        clear(dir.as_fd(), &n, false, false, &String::from_utf8_lossy(&n))?;
    }
    Ok(())
}

/// Extracts a tar into the directory `dir` (resolved inside `root`).
pub fn extract<R: Read>(
    root: BorrowedFd<'_>,
    dir: &Path,
    input: R,
    no_overwrite: bool,
) -> Result<(), CopyError> {
    // The extraction point may be a symlink: it is followed, inside the root.
    let base = open_in_root(root, dir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).map_err(
        |e| match berth_runtime::rootfs::safe_path::errno_of(&e) {
            Some(Errno::ENOTDIR) => CopyError::Conflict(format!(
                "extraction point {} is not a directory",
                dir.display()
            )),
            _ => CopyError::NotFound(dir.display().to_string()),
        },
    )?;
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().map_err(CopyError::Archive)? {
        let mut entry = entry.map_err(CopyError::Archive)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = entry_components(&raw)?;
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        let parent = dir_beneath(base.as_fd(), parents, &shown)?;
        let mode = Mode::from_bits_truncate(entry.header().mode().unwrap_or(0o644) & 0o7777);
        let et = entry.header().entry_type();
        let p = Path::new(&shown);
        match et {
            tar::EntryType::Directory => {
                if !clear(parent.as_fd(), name, true, no_overwrite, &shown)? {
                    mkdirat(parent.as_fd(), name.as_slice(), mode).map_err(sys("mkdir", p))?;
                }
                nix::sys::stat::fchmodat(
                    parent.as_fd(),
                    name.as_slice(),
                    mode,
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
                .map_err(sys("chmod", p))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(parent.as_fd(), name, false, no_overwrite, &shown)?;
                let fd = openat(
                    parent.as_fd(),
                    name.as_slice(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    mode,
                )
                .map_err(sys("create", p))?;
                let mut f = File::from(fd);
                std::io::copy(&mut entry, &mut f).map_err(CopyError::Archive)?;
                nix::sys::stat::fchmod(f.as_fd(), mode).map_err(sys("chmod", p))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                clear(parent.as_fd(), name, false, no_overwrite, &shown)?;
                // Stored verbatim: only ever resolved later inside the root.
                symlinkat(OsStr::from_bytes(&target), parent.as_fd(), name.as_slice())
                    .map_err(sys("symlink", p))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let tcomps = entry_components(&target)?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    continue;
                };
                let tparent = dir_beneath(base.as_fd(), tparents, &shown)?;
                clear(parent.as_fd(), name, false, no_overwrite, &shown)?;
                linkat(
                    tparent.as_fd(),
                    tname.as_slice(),
                    parent.as_fd(),
                    name.as_slice(),
                    AtFlags::empty(),
                )
                .map_err(sys("link", p))?;
            }
            other => {
                tracing::debug!(entry = %shown, kind = ?other, "skipping archive entry type");
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Opens the root of a container for copying.
    pub async fn container_root(&self, rec: &Record) -> Result<ContainerRoot, ApiError> {
        let c = self.pods.load_container(rec.id()).await?;
        let cwd = PathBuf::from(
            c.rec
                .process
                .get("cwd")
                .and_then(|v| v.as_str())
                .unwrap_or("/"),
        );
        let open = |p: &Path| {
            nix::fcntl::open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        };
        if c.rec.state == ContainerState::Running && c.rec.pid > 0 {
            let p = PathBuf::from(format!("/proc/{}/root", c.rec.pid));
            if let Ok(fd) = open(&p) {
                return Ok(ContainerRoot { fd, cwd });
            }
        }
        let rootfs = c.rec.bundle.join("rootfs");
        let mounted = match (
            nix::sys::stat::stat(&rootfs),
            nix::sys::stat::stat(&c.rec.bundle),
        ) {
            (Ok(a), Ok(b)) => a.st_dev != b.st_dev,
            _ => false,
        };
        if !mounted {
            return Err(ApiError::FailedPrecondition(format!(
                "the filesystem of container {} is not mounted (its shim is gone): start it first",
                rec.name()
            )));
        }
        let fd = open(&rootfs).map_err(|e| ApiError::io("opening", &rootfs)(e.into()))?;
        Ok(ContainerRoot { fd, cwd })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn archive_resolves_symlinks_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/secret"), b"inside").unwrap();
        // An absolute link and a `..` link, both pointing at the host.
        symlink(outside.path(), r.join("abs")).unwrap();
        symlink("../../../../../../etc", r.join("up")).unwrap();
        let fd = root_fd(r);
        // `/up/secret` resolves to the container's /etc/secret.
        let mut out = Vec::new();
        let st = archive_path(fd.as_fd(), Path::new("/up/secret"), &mut out).unwrap();
        assert_eq!(st.size, 6);
        let mut a = tar::Archive::new(out.as_slice());
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "inside");
        // `/abs/secret` is the outside dir's path taken inside the root: absent.
        assert!(matches!(
            archive_path(fd.as_fd(), Path::new("/abs/secret"), Vec::new()),
            Err(CopyError::NotFound(_))
        ));
        // A final symlink is archived as a link, with its target.
        let mut out = Vec::new();
        let st = archive_path(fd.as_fd(), Path::new("/abs"), &mut out).unwrap();
        assert_eq!(st.link_target, outside.path().display().to_string());
    }

    #[test]
    fn extraction_refuses_escapes() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("dst")).unwrap();
        symlink(outside.path(), r.join("dst/link")).unwrap();
        let fd = root_fd(r);
        let tar_of = |name: &str, data: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Raw names: the tar crate refuses `..` when setting a path.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
            b.into_inner().unwrap()
        };
        // Through a symlink planted in the container.
        let e = extract(
            fd.as_fd(),
            Path::new("/dst"),
            tar_of("link/evil", b"x").as_slice(),
            false,
        );
        assert!(matches!(e, Err(CopyError::Refused { .. })), "{e:?}");
        assert!(!outside.path().join("evil").exists());
        let e = extract(
            fd.as_fd(),
            Path::new("/dst"),
            tar_of("../evil", b"x").as_slice(),
            false,
        );
        assert!(matches!(e, Err(CopyError::Refused { .. })), "{e:?}");
        let e = extract(
            fd.as_fd(),
            Path::new("/dst"),
            tar_of("/evil", b"x").as_slice(),
            false,
        );
        assert!(matches!(e, Err(CopyError::Refused { .. })), "{e:?}");
        // A symlink entry then a file through it: the file is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "esc", outside.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/f", &b"x"[..]).unwrap();
        let e = extract(
            fd.as_fd(),
            Path::new("/dst"),
            b.into_inner().unwrap().as_slice(),
            false,
        );
        assert!(matches!(e, Err(CopyError::Refused { .. })), "{e:?}");
        assert!(!outside.path().join("f").exists());
        // The normal case, into a directory reached through a symlink that
        // stays inside the root.
        symlink("/dst", r.join("alias")).unwrap();
        extract(
            fd.as_fd(),
            Path::new("/alias"),
            tar_of("sub/ok.txt", b"hi").as_slice(),
            false,
        )
        .unwrap();
        assert_eq!(std::fs::read(r.join("dst/sub/ok.txt")).unwrap(), b"hi");
        // dir/non-dir replacement refused on request.
        let e = extract(
            fd.as_fd(),
            Path::new("/dst"),
            tar_of("sub", b"x").as_slice(),
            true,
        );
        assert!(matches!(e, Err(CopyError::Conflict(_))), "{e:?}");
        assert_eq!(absolute(Path::new("/w"), "a"), PathBuf::from("/w/a"));
        assert_eq!(absolute(Path::new("/w"), "/a"), PathBuf::from("/a"));
    }
}
