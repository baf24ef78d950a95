//! Diff: a container's changes against its image, from the overlay upper
//! dir. A 0/0 character device is a deleted lower entry (D); an entry also
//! present in a lower layer is changed (C); anything else is added (A), and
//! so is everything below an added or opaque directory. The upper dir is
//! the container's to change while we read it, so the walk goes by file
//! descriptors: each directory is opened `O_NOFOLLOW` relative to its
//! parent, so a directory swapped for a symlink mid-walk is skipped, never
//! followed out to the host. Lower layers are looked up inside their own
//! root (openat2 `RESOLVE_IN_ROOT`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_proto::berth::v1 as api;
use berth_runtime::rootfs::safe_path::open_in_root;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

use super::engine::Engine;
use super::error::ApiError;

fn exists_in(lowers: &[OwnedFd], rel: &Path) -> bool {
    lowers.iter().any(|l| {
        open_in_root(
            l.as_fd(),
            rel,
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .is_ok()
    })
}

fn opaque(dir: BorrowedFd<'_>) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|a| matches!(fxattr_get(dir, a).as_deref(), Some(b"y")))
}

fn fxattr_get(fd: BorrowedFd<'_>, name: &str) -> Option<Vec<u8>> {
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: `fd` is open for the call, `n` is NUL-terminated and lives
    // for the call; the buffer pointer and length describe `buf`.
    let len = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = usize::try_from(len).ok()?;
    Some(buf[..len].to_vec())
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(std::fs::File::open(path)?))
}

/// The changes in `upper` against `lowers`, sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<api::Change>> {
    let root = open_dir(upper)?;
    let lowers: Vec<OwnedFd> = lowers.iter().filter_map(|l| open_dir(l).ok()).collect();
    let mut out = Vec::new();
    walk(root.as_fd(), Path::new(""), &lowers, false, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Names in `dir` without `.` and `..`.
fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in d {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(name);
        }
    }
    Ok(out)
}

fn walk(
    dir: BorrowedFd<'_>,
    rel: &Path,
    lowers: &[OwnedFd],
    all_added: bool,
    out: &mut Vec<api::Change>,
) -> io::Result<()> {
    for name in names(dir)? {
        let st = match fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed since the listing (the container runs): no change left.
            Err(nix::Error::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let r = rel.join(OsStr::from_bytes(&name));
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let whiteout = kind == SFlag::S_IFCHR && st.st_rdev == 0;
        let in_lower = !all_added && exists_in(lowers, &r);
        if whiteout && !in_lower {
            // A whiteout for nothing: overlay bookkeeping, not a change.
            continue;
        }
        let change = if whiteout {
            "D"
        } else if in_lower {
            "C"
        } else {
            "A"
        };
        out.push(api::Change {
            kind: change.into(),
            path: format!("/{}", r.display()),
        });
        if kind == SFlag::S_IFDIR {
            let sub = match nix::fcntl::openat(
                dir,
                name.as_slice(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Replaced (by a symlink, a file) or removed meanwhile.
                Err(nix::Error::ENOENT | nix::Error::ENOTDIR | nix::Error::ELOOP) => continue,
                Err(e) => return Err(e.into()),
            };
            let added_below = change == "A" || opaque(sub.as_fd());
            walk(sub.as_fd(), &r, lowers, added_below, out)?;
        }
    }
    Ok(())
}

impl Engine {
    /// Filesystem changes of a container.
    pub async fn diff(&self, reference: &str) -> Result<Vec<api::Change>, ApiError> {
        let rec = self.resolve(reference).await?;
        let c = self.pods.load_container(rec.id()).await?;
        let mut lowers = Vec::new();
        for chain in c.rec.chain_ids.iter().rev() {
            let key = chain.clone();
            if let Some(p) = self.db(move |s| s.snapshot_path(&key)).await? {
                lowers.push(p);
            }
        }
        let upper = c.rec.data_dir.join("upper");
        let u = upper.clone();
        tokio::task::spawn_blocking(move || changes(&u, &lowers))
            .await?
            .map_err(ApiError::io("walking", &upper))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn added_changed_deleted() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), b"x").unwrap();
        std::fs::write(lower.join("gone"), b"x").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/passwd"), b"y").unwrap();
        std::fs::create_dir_all(upper.join("new/sub")).unwrap();
        std::fs::write(upper.join("new/sub/f"), b"y").unwrap();
        std::os::unix::fs::symlink("/etc", upper.join("link")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let got: Vec<(String, String)> = changes(&upper, &[lower])
            .unwrap()
            .into_iter()
            .map(|c| (c.kind, c.path))
            .collect();
        let want: Vec<(String, String)> = [
            ("C", "/etc"),
            ("C", "/etc/passwd"),
            ("D", "/gone"),
            ("A", "/link"),
            ("A", "/new"),
            ("A", "/new/sub"),
            ("A", "/new/sub/f"),
        ]
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn below_an_opaque_dir_everything_is_added() {
        if !nix::unistd::Uid::effective().is_root() {
            return; // trusted.* xattrs need root
        }
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        std::fs::create_dir_all(lower.join("opq")).unwrap();
        std::fs::write(lower.join("opq/f"), b"x").unwrap();
        std::fs::create_dir_all(upper.join("opq")).unwrap();
        std::fs::write(upper.join("opq/f"), b"y").unwrap();
        let path = std::ffi::CString::new(upper.join("opq").as_os_str().as_bytes()).unwrap();
        let name = c"trusted.overlay.opaque";
        // SAFETY: both strings are NUL-terminated and live for the call;
        // the value pointer and length describe a 1-byte literal.
        let rc =
            unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        let got: Vec<(String, String)> = changes(&upper, &[lower])
            .unwrap()
            .into_iter()
            .map(|c| (c.kind, c.path))
            .collect();
        assert_eq!(
            got,
            vec![
                ("C".to_string(), "/opq".to_string()),
                ("A".to_string(), "/opq/f".to_string())
            ]
        );
    }
}
