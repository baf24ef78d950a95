//! The exit record berthd reads when the shim is gone or berthd restarted:
//! `<bundle>/exit.json` = `{"exit_code", "exited_at", "oom_killed"}`,
//! written atomically (temp file + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// File name of the exit record inside a bundle.
pub const EXIT_FILE: &str = "exit.json";

/// How a container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code; 128+N when killed by signal N.
    pub exit_code: i32,
    /// RFC 3339 with nanoseconds, UTC.
    pub exited_at: String,
    /// The container's cgroup recorded at least one OOM kill.
    pub oom_killed: bool,
}

/// Errors writing the record.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct ExitFileError {
    /// The file.
    pub path: PathBuf,
    /// Underlying error.
    #[source]
    pub source: std::io::Error,
}

impl ExitRecord {
    /// A record for `code` at `at`.
    pub fn new(exit_code: i32, at: DateTime<Utc>, oom_killed: bool) -> ExitRecord {
        ExitRecord {
            exit_code,
            exited_at: at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            oom_killed,
        }
    }

    /// Writes `<bundle>/exit.json` atomically.
    pub fn write(&self, bundle: &Path) -> Result<(), ExitFileError> {
        let path = bundle.join(EXIT_FILE);
        let tmp = bundle.join(format!(".{EXIT_FILE}.tmp"));
        let err = |source| ExitFileError {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec(self).map_err(|e| err(e.into()))?;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Reads `<bundle>/exit.json` (None when absent or unreadable).
    pub fn read(bundle: &Path) -> Option<ExitRecord> {
        let data = std::fs::read(bundle.join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let at = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = ExitRecord::new(137, at, true);
        r.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(EXIT_FILE)).unwrap();
        assert_eq!(
            text,
            r#"{"exit_code":137,"exited_at":"2024-01-02T03:04:05.123456789Z","oom_killed":true}"#
        );
        assert_eq!(ExitRecord::read(dir.path()), Some(r));
        assert!(!dir.path().join(".exit.json.tmp").exists());
    }
}
