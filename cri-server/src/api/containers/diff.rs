//! Diff: a container's changes against its image, from the overlay upper
//! dir. A 0/0 character device is a deleted lower entry (D); an entry also
//! present in a lower layer is changed (C); anything else is added (A), and
//! so is everything below an added or opaque directory. The walk never
//! follows symlinks (`symlink_metadata`; directories are entered only when
//! not a link).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_proto::berth::v1 as api;

use super::engine::Engine;
use super::error::ApiError;

fn exists_in(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|a| matches!(xattr_get(path, a).as_deref(), Some(b"y")))
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p =
        std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and live for the call; the
    // buffer pointer and length describe `buf`.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = usize::try_from(len).ok()?;
    Some(buf[..len].to_vec())
}

/// The changes in `upper` against `lowers`, sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<Vec<api::Change>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, false, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    all_added: bool,
    out: &mut Vec<api::Change>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(upper.join(rel))? {
        let entry = entry?;
        let r = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(entry.path())?;
        let path = format!("/{}", r.display());
        let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
        let in_lower = !all_added && exists_in(lowers, &r);
        let kind = if whiteout {
            "D"
        } else if in_lower {
            "C"
        } else {
            "A"
        };
        if whiteout && !in_lower {
            // A whiteout for nothing: overlay bookkeeping, not a change.
            continue;
        }
        out.push(api::Change {
            kind: kind.into(),
            path,
        });
        if meta.file_type().is_dir() {
            let added_below = kind == "A" || opaque(&entry.path());
            walk(upper, &r, lowers, added_below, out)?;
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
}
