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
