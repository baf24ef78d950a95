//! What the shim server reads of a bundle's `config.json`.
//!
//! Only the few fields it acts on (task kind, terminal, the pod's
//! namespaces and id mappings, hostname) are parsed; the whole spec is
//! parsed, and validated, by berth-runtime in the helper that creates the
//! container. The server runs once per pod for the pod's lifetime, and a
//! full spec parser (with its validators) would be code mapped in every
//! one of them.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace};
use serde::Deserialize;

/// The parts of a runtime spec the server uses.
#[derive(Debug, Default, Deserialize)]
pub struct BundleConfig {
    /// `hostname`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `annotations`.
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
    /// `process` (terminal only).
    #[serde(default)]
    pub process: Option<ProcessParts>,
    /// `linux` (namespaces and id mappings only).
    #[serde(default)]
    pub linux: Option<LinuxParts>,
}

/// `process.terminal`.
#[derive(Debug, Default, Deserialize)]
pub struct ProcessParts {
    /// Whether the process gets a terminal.
    #[serde(default)]
    pub terminal: Option<bool>,
}

/// `linux.namespaces`, `linux.uidMappings` and `linux.gidMappings`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParts {
    /// Namespaces to create or join.
    #[serde(default)]
    pub namespaces: Option<Vec<LinuxNamespace>>,
    /// User namespace uid mappings.
    #[serde(default)]
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    /// User namespace gid mappings.
    #[serde(default)]
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
}

impl BundleConfig {
    /// Reads `path` (a bundle's config.json).
    pub fn load(path: &Path) -> Result<BundleConfig, String> {
        let data = std::fs::read(path).map_err(|e| e.to_string())?;
        serde_json::from_slice(&data).map_err(|e| e.to_string())
    }

    /// `linux.namespaces`, empty when absent.
    pub fn namespaces(&self) -> impl Iterator<Item = &LinuxNamespace> {
        self.linux
            .iter()
            .flat_map(|l| l.namespaces.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceType;

    #[test]
    fn reads_only_what_the_server_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"ociVersion":"1.2.0","hostname":"h","annotations":{"a":"b"},
                "process":{"terminal":true,"cwd":"/","args":["sh"],"unknown":1},
                "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/run/n"}],
                         "uidMappings":[{"containerID":0,"hostID":1000,"size":10}],
                         "resources":{"pids":{"limit":3}}}}"#,
        )
        .unwrap();
        let c = BundleConfig::load(&path).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("h"));
        assert_eq!(c.annotations.as_ref().unwrap()["a"], "b");
        assert_eq!(c.process.as_ref().unwrap().terminal, Some(true));
        let ns: Vec<_> = c
            .namespaces()
            .map(|n| (n.typ(), n.path().clone()))
            .collect();
        assert_eq!(ns[0], (LinuxNamespaceType::Pid, None));
        assert_eq!(ns[1].0, LinuxNamespaceType::Network);
        let uid = c.linux.as_ref().unwrap().uid_mappings.as_ref().unwrap();
        assert_eq!(uid[0].host_id(), 1000);
        assert!(c.linux.unwrap().gid_mappings.is_none());
    }

    #[test]
    fn a_missing_or_broken_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(BundleConfig::load(&dir.path().join("none.json")).is_err());
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(BundleConfig::load(&path).is_err());
    }
}
