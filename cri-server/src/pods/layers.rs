//! Reading files of an image from its unpacked layer snapshots (top layer
//! first), without mounting: enough for /etc/passwd and /etc/group.

use std::path::{Path, PathBuf};

/// The content of `rel` (e.g. `etc/passwd`) as the merged image shows it,
/// or `None` when absent, whited out, or not a regular file. Symlinks are
/// never followed, so a hostile layer cannot point the read at the host.
pub fn read_image_file(layers_top_first: &[PathBuf], rel: &str) -> Option<String> {
    let rel = Path::new(rel);
    let name = rel.file_name()?.to_string_lossy().into_owned();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for layer in layers_top_first {
        // Every directory on the way must be a real directory in this layer.
        let mut dir = layer.clone();
        let mut ok = true;
        for comp in parent.components() {
            dir.push(comp);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return None,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        if dir.join(format!(".wh.{name}")).exists() {
            return None;
        }
        let path = dir.join(&name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => return std::fs::read_to_string(&path).ok(),
            Ok(_) => return None,
            Err(_) => {
                if dir.join(".wh..wh..opq").exists() {
                    return None;
                }
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn top_layer_wins_and_whiteouts_hide() {
        let d = tempfile::tempdir().unwrap();
        let (low, mid, top) = (d.path().join("l"), d.path().join("m"), d.path().join("t"));
        for l in [&low, &mid, &top] {
            std::fs::create_dir_all(l.join("etc")).unwrap();
        }
        std::fs::write(low.join("etc/passwd"), "low").unwrap();
        std::fs::write(low.join("etc/group"), "g").unwrap();
        std::fs::write(mid.join("etc/passwd"), "mid").unwrap();
        std::fs::write(top.join("etc/.wh.group"), "").unwrap();
        let layers = vec![top.clone(), mid, low];
        assert_eq!(
            read_image_file(&layers, "etc/passwd").as_deref(),
            Some("mid")
        );
        assert_eq!(read_image_file(&layers, "etc/group"), None);
        std::os::unix::fs::symlink("/etc/shadow", top.join("etc/passwd")).unwrap();
        assert_eq!(read_image_file(&layers, "etc/passwd"), None);
    }
}

/// Fills `dest` with what the merged image shows at `rel` (an image VOLUME
/// path), applying layers bottom-up with their whiteouts, as Docker and
/// containerd seed a new anonymous volume. Files, directories and symlinks
/// are copied with their mode and owner; symlinks are copied, never
/// followed, and a layer where a path component is not a real directory is
/// skipped, so a hostile layer cannot make this read outside it.
pub fn copy_image_dir(
    layers_top_first: &[PathBuf],
    rel: &Path,
    dest: &Path,
) -> std::io::Result<()> {
    let rel: PathBuf = rel
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    for layer in layers_top_first.iter().rev() {
        let mut src = layer.clone();
        let mut real = true;
        for comp in rel.components() {
            src.push(comp);
            match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    real = false;
                    break;
                }
            }
        }
        if real {
            if src.join(".wh..wh..opq").exists() {
                clear_dir(dest)?;
            }
            merge_dir(&src, dest)?;
        }
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        remove_any(&e.path())?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn copy_owner_and_mode(meta: &std::fs::Metadata, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

fn merge_dir(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    copy_owner_and_mode(&std::fs::symlink_metadata(src)?, dest)?;
    for e in std::fs::read_dir(src)?.flatten() {
        let name = e.file_name();
        let name_s = name.to_string_lossy();
        if name_s == ".wh..wh..opq" {
            continue;
        }
        if let Some(hidden) = name_s.strip_prefix(".wh.") {
            remove_any(&dest.join(hidden))?;
            continue;
        }
        let (from, to) = (e.path(), dest.join(&name));
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if std::fs::symlink_metadata(&to).is_ok_and(|m| !m.is_dir()) {
                remove_any(&to)?;
            }
            if from.join(".wh..wh..opq").exists() && to.exists() {
                clear_dir(&to)?;
            }
            merge_dir(&from, &to)?;
        } else if ft.is_symlink() {
            remove_any(&to)?;
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            copy_owner_and_mode(&meta, &to)?;
        } else if ft.is_file() {
            remove_any(&to)?;
            std::fs::copy(&from, &to)?;
            copy_owner_and_mode(&meta, &to)?;
        }
        // Devices, FIFOs and sockets (overlay whiteouts among them) are skipped.
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod volume_tests {
    use super::*;

    #[test]
    fn volume_is_seeded_from_merged_layers() {
        let d = tempfile::tempdir().unwrap();
        let (low, top) = (d.path().join("l"), d.path().join("t"));
        std::fs::create_dir_all(low.join("data/sub")).unwrap();
        std::fs::write(low.join("data/a"), "a").unwrap();
        std::fs::write(low.join("data/gone"), "g").unwrap();
        std::fs::write(low.join("data/sub/b"), "b").unwrap();
        std::fs::create_dir_all(top.join("data")).unwrap();
        std::fs::write(top.join("data/.wh.gone"), "").unwrap();
        std::fs::write(top.join("data/a"), "A").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", top.join("data/link")).unwrap();
        let dest = d.path().join("vol");
        copy_image_dir(&[top, low], Path::new("/data"), &dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "A");
        assert_eq!(std::fs::read_to_string(dest.join("sub/b")).unwrap(), "b");
        assert!(!dest.join("gone").exists());
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            PathBuf::from("/etc/shadow")
        );
        // A path the image lacks leaves an empty volume.
        let empty = d.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        copy_image_dir(&[], Path::new("/nope"), &empty).unwrap();
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    }
}
