//! Process creation: the clone(2) wrapper, the parent <-> child channel, the
//! container init sequence, `exec` children, terminals and the final
//! security set-up before `execve`.

pub mod channel;
pub mod console;
pub mod exec;
pub mod init;
pub mod setup;
pub mod sys;

use std::path::PathBuf;

/// Errors inside a container init or exec child. They are rendered to text
/// and sent to the parent over the channel, so `create`/`exec` fail with
/// the child's message.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A syscall failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was attempted.
        op: &'static str,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// chdir into process.cwd failed.
    #[error("chdir to cwd {path}: {source}")]
    Cwd {
        /// The cwd from the spec.
        path: PathBuf,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// execve failed.
    #[error("exec {path}: {source}")]
    Exec {
        /// Program path.
        path: PathBuf,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// `args[0]` is not in the container's PATH.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The request cannot be honoured.
    #[error("{0}")]
    Invalid(String),
    /// Channel failure.
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    /// Namespace set-up failed.
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::NamespaceError),
    /// Terminal set-up failed.
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    /// Rootfs set-up failed.
    #[error("rootfs: {0}")]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// Capabilities.
    #[error("capabilities: {0}")]
    Caps(#[from] crate::caps::CapsError),
    /// Seccomp.
    #[error("seccomp: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// Resource limits.
    #[error("rlimits: {0}")]
    Rlimit(#[from] crate::rlimits::RlimitError),
    /// Sysctls.
    #[error("sysctl: {0}")]
    Sysctl(#[from] crate::sysctl::SysctlError),
    /// A hook failed.
    #[error("hook: {0}")]
    Hook(#[from] crate::hooks::HookError),
    /// AppArmor / SELinux.
    #[error("lsm: {0}")]
    Lsm(#[from] crate::lsm::LsmError),
    /// Personality.
    #[error("personality: {0}")]
    Personality(#[from] crate::personality::PersonalityError),
    /// Joining the container's cgroups.
    #[error("joining the container's cgroups")]
    Cgroup(#[source] Box<crate::cgroups::CgroupError>),
}

impl InitError {
    /// Shorthand for a failed syscall.
    pub fn sys(op: &'static str, source: nix::Error) -> Self {
        InitError::Sys { op, source }
    }
}

/// Renders an error with its whole `source()` chain ("a: b: c"), skipping
/// causes already contained in the outer message.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_skips_repeated_causes() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = InitError::Io {
            op: "opening",
            path: "/x".into(),
            source: io,
        };
        let text = error_chain(&e);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(text.starts_with("opening /x"), "{text}");
    }

    #[test]
    fn hook_state_carries_id_pid_bundle_annotations() {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_str(r#"{"ociVersion":"1.2.0","annotations":{"a":"b"}}"#).unwrap();
        let st = init::hook_state(
            "c1",
            &spec,
            std::path::Path::new("/b"),
            Some(42),
            oci_spec::runtime::ContainerState::Created,
        );
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["id"], "c1");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["status"], "created");
        assert_eq!(v["bundle"], "/b");
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["annotations"]["a"], "b");
    }
}
