//! Loading and validating a bundle's `config.json`.
//!
//! Validation here rejects what the runtime cannot honour before any
//! process, cgroup or state directory is created, so a bad bundle never
//! leaves anything behind.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

/// Errors from reading or validating a bundle's configuration.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The bundle directory cannot be resolved.
    #[error("bundle {path}: {source}")]
    Bundle {
        /// Bundle path as given.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is missing or not valid JSON for runtime-spec.
    #[error("loading {path}: {source}")]
    Load {
        /// Path of the config file.
        path: PathBuf,
        /// Parse or I/O error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The spec parses but asks for something invalid or unsupported.
    #[error("invalid config.json: {0}")]
    Invalid(String),
}

/// A validated spec with the paths the runtime derives from the bundle.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The parsed spec.
    pub spec: Spec,
    /// Absolute, canonical bundle directory.
    pub bundle: PathBuf,
    /// Absolute host path of the root filesystem.
    pub rootfs: PathBuf,
}

/// Reads `<bundle>/config.json`, validates it and resolves the rootfs path.
pub fn load_bundle(bundle: &Path) -> Result<LoadedSpec, SpecError> {
    let bundle = std::fs::canonicalize(bundle).map_err(|source| SpecError::Bundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|source| SpecError::Load { path, source })?;
    validate(&spec)?;
    let rootfs = rootfs_path(&spec, &bundle)?;
    Ok(LoadedSpec {
        spec,
        bundle,
        rootfs,
    })
}

/// Resolves `root.path` against the bundle and checks it is a directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("root is required".into()))?;
    let joined = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let resolved = std::fs::canonicalize(&joined).map_err(|source| SpecError::Bundle {
        path: joined.clone(),
        source,
    })?;
    if !resolved.is_dir() {
        return Err(SpecError::Invalid(format!(
            "root.path {} is not a directory",
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// Checks the parts of the spec the runtime relies on.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    if !spec.version().starts_with("1.") {
        return Err(SpecError::Invalid(format!(
            "unsupported ociVersion {:?} (need 1.x)",
            spec.version()
        )));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("process is required".into()))?;
    validate_process(process)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("linux section is required".into()))?;
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    let mut seen = Vec::new();
    for ns in namespaces {
        if seen.contains(&ns.typ()) {
            return Err(SpecError::Invalid(format!(
                "namespace {} listed twice",
                ns.typ()
            )));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(SpecError::Invalid(format!(
                    "namespace {} path {} is not absolute",
                    ns.typ(),
                    p.display()
                )));
            }
        }
    }
    if !seen.contains(&LinuxNamespaceType::Mount) {
        return Err(SpecError::Invalid(
            "a mount namespace is required (pivot_root needs one)".into(),
        ));
    }
    let has_uts = seen.contains(&LinuxNamespaceType::Uts);
    if (spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_ref().is_some_and(|d| !d.is_empty()))
        && !has_uts
    {
        return Err(SpecError::Invalid(
            "hostname/domainname need a uts namespace".into(),
        ));
    }
    let has_user = seen.contains(&LinuxNamespaceType::User);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if maps && !has_user {
        return Err(SpecError::Invalid(
            "uidMappings/gidMappings need a user namespace".into(),
        ));
    }
    if new_user && !maps {
        return Err(SpecError::Invalid(
            "a new user namespace needs uidMappings and gidMappings".into(),
        ));
    }
    // Only namespaced sysctls: a config must never change the host.
    for key in linux.sysctl().as_ref().into_iter().flat_map(|m| m.keys()) {
        crate::sysctl::check_allowed(
            key,
            seen.contains(&LinuxNamespaceType::Network),
            seen.contains(&LinuxNamespaceType::Ipc),
            seen.contains(&LinuxNamespaceType::Uts),
        )
        .map_err(|e| SpecError::Invalid(format!("linux.sysctl: {e}")))?;
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
    {
        return Err(SpecError::Invalid(
            "timeOffsets need a new time namespace".into(),
        ));
    }
    Ok(())
}

/// Checks a process entry (also used for `exec --process`).
pub fn validate_process(process: &Process) -> Result<(), SpecError> {
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(SpecError::Invalid("process.args must not be empty".into()));
    }
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(SpecError::Invalid(format!(
            "process.cwd {} is not absolute",
            cwd.display()
        )));
    }
    if cwd.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(SpecError::Invalid(format!(
            "process.cwd {} contains \"..\"",
            cwd.display()
        )));
    }
    for e in process.env().as_deref().unwrap_or_default() {
        if !e.contains('=') || e.contains('\0') {
            return Err(SpecError::Invalid(format!("bad env entry {e:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write_bundle(dir: &Path, config: &str) {
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
    }

    const GOOD: &str = r#"{
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    }"#;

    #[test]
    fn loads_good_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        write_bundle(tmp.path(), GOOD);
        let l = load_bundle(tmp.path()).unwrap();
        assert_eq!(l.rootfs, tmp.path().canonicalize().unwrap().join("rootfs"));
    }

    #[test]
    fn rejects_missing_mount_ns_and_relative_cwd() {
        let tmp = tempfile::tempdir().unwrap();
        write_bundle(tmp.path(), &GOOD.replace(r#"{"type": "mount"}, "#, ""));
        let e = load_bundle(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("mount namespace"), "{e}");
        write_bundle(
            tmp.path(),
            &GOOD.replace(r#""cwd": "/""#, r#""cwd": "a/b""#),
        );
        let e = load_bundle(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("not absolute"), "{e}");
    }

    #[test]
    fn rejects_host_wide_sysctl() {
        let tmp = tempfile::tempdir().unwrap();
        write_bundle(
            tmp.path(),
            &GOOD.replace(
                r#""namespaces": ["#,
                r#""sysctl": {"vm.swappiness": "7"}, "namespaces": ["#,
            ),
        );
        let e = load_bundle(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("vm.swappiness"), "{e}");
    }

    #[test]
    fn rejects_user_ns_without_mappings() {
        let tmp = tempfile::tempdir().unwrap();
        write_bundle(
            tmp.path(),
            &GOOD.replace(r#"{"type": "pid"}"#, r#"{"type": "pid"}, {"type": "user"}"#),
        );
        let e = load_bundle(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("uidMappings"), "{e}");
    }
}
