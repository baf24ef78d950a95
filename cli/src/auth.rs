//! Registry credentials: `$XDG_CONFIG_HOME/berth/auth.json` (or
//! `~/.config/berth/auth.json`), written with mode 0600 in a 0700 directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The registry Docker Hub references mean.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Failures reading or writing the credentials file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Neither XDG_CONFIG_HOME nor HOME is set.
    #[error("cannot find the config directory: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    /// Reading or writing failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("credentials file {path} is not valid JSON (remove it and log in again)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// One registry's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password or token.
    #[serde(default)]
    pub password: String,
}

/// The whole file: credentials keyed by registry host.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    /// Registry host to credentials.
    #[serde(default)]
    pub auths: BTreeMap<String, Credential>,
}

/// Where the credentials file lives for this user.
pub fn default_path() -> Result<PathBuf, AuthError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".config"),
            _ => return Err(AuthError::NoConfigDir),
        },
    };
    Ok(base.join("berth").join("auth.json"))
}

impl AuthFile {
    /// Reads `path`; a missing file is empty.
    pub fn load(path: &Path) -> Result<AuthFile, AuthError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| AuthError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(source) => Err(AuthError::Io {
                what: "reading",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes `path` atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let io = |what, p: &Path| {
            let p = p.to_owned();
            move |source| AuthError::Io {
                what,
                path: p,
                source,
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("creating", dir))?;
        let tmp = dir.join(format!(".auth.json.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // The secret never exists with wider permissions, even briefly.
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        // A file left by an older tool may have kept a wider mode.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("setting the mode of", &tmp))?;
        f.write_all(&json).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("replacing", path))
    }
}

/// The registry host a reference names (`127.0.0.1:5000/app` is
/// `127.0.0.1:5000`; `busybox` and `user/app` are Docker Hub's).
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => DEFAULT_REGISTRY.to_owned(),
    }
}

/// The key for a registry given to `login`/`logout` (URLs and Docker
/// Hub's aliases normalised).
pub fn normalize_registry(server: &str) -> String {
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => DEFAULT_REGISTRY.into(),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn saved_file_has_mode_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg").join("berth").join("auth.json");
        let mut f = AuthFile::default();
        f.auths.insert(
            "127.0.0.1:5000".into(),
            Credential {
                username: "u".into(),
                password: "p".into(),
            },
        );
        f.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let back = AuthFile::load(&path).unwrap();
        assert_eq!(back.auths["127.0.0.1:5000"].username, "u");
    }

    #[test]
    fn an_existing_wide_file_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuthFile::default().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuthFile::load(&dir.path().join("none"))
            .unwrap()
            .auths
            .is_empty());
        let p = dir.path().join("bad");
        std::fs::write(&p, "nope").unwrap();
        assert!(matches!(AuthFile::load(&p), Err(AuthError::Parse { .. })));
    }

    #[test]
    fn registries_of_references() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("user/app:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("ghcr.io/o/app"), "ghcr.io");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
