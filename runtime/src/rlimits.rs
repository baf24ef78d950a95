//! `process.rlimits`: applied with `setrlimit(2)` in the container init,
//! before the user switch (raising a hard limit needs `CAP_SYS_RESOURCE`).

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// Errors from applying resource limits.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// The name is not an `RLIMIT_*` resource of Linux.
    #[error("unknown rlimit type {0:?}")]
    Unknown(String),
    /// The same resource appears twice (runtime-spec: must be an error).
    #[error("rlimit {0} is set more than once")]
    Duplicate(String),
    /// soft > hard can never be applied.
    #[error("rlimit {name}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard {
        /// The resource.
        name: String,
        /// Requested soft limit.
        soft: u64,
        /// Requested hard limit.
        hard: u64,
    },
    /// `setrlimit(2)` failed.
    #[error("failed to set rlimit {name} to soft={soft} hard={hard}")]
    Set {
        /// The resource.
        name: String,
        /// Requested soft limit.
        soft: u64,
        /// Requested hard limit.
        hard: u64,
        /// The underlying error (EPERM: raising a hard limit without CAP_SYS_RESOURCE).
        #[source]
        source: nix::Error,
    },
}

/// Maps an OCI rlimit type to the kernel resource.
pub fn resource(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Parses an `RLIMIT_*` name (as in config.json) into its OCI type.
pub fn parse_type(name: &str) -> Result<PosixRlimitType, RlimitError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| RlimitError::Unknown(name.to_string()))
}

/// Checks the whole list (duplicates, soft <= hard) without changing anything.
pub fn validate(rlimits: &[PosixRlimit]) -> Result<(), RlimitError> {
    let mut seen = Vec::with_capacity(rlimits.len());
    for rl in rlimits {
        let name = rl.typ().to_string();
        if seen.contains(&rl.typ()) {
            return Err(RlimitError::Duplicate(name));
        }
        seen.push(rl.typ());
        if rl.soft() > rl.hard() {
            return Err(RlimitError::SoftAboveHard {
                name,
                soft: rl.soft(),
                hard: rl.hard(),
            });
        }
    }
    Ok(())
}

/// Applies every rlimit to the calling process (validated first, so a bad
/// list changes nothing).
pub fn apply(rlimits: &[PosixRlimit]) -> Result<(), RlimitError> {
    validate(rlimits)?;
    for rl in rlimits {
        setrlimit(resource(rl.typ()), rl.soft(), rl.hard()).map_err(|source| RlimitError::Set {
            name: rl.typ().to_string(),
            soft: rl.soft(),
            hard: rl.hard(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::caps::tests::in_child;
    use nix::sys::resource::getrlimit;
    use nix::sys::wait::WaitStatus;

    fn rl(typ: &str, soft: u64, hard: u64) -> PosixRlimit {
        serde_json::from_value(serde_json::json!({"type": typ, "soft": soft, "hard": hard}))
            .unwrap()
    }

    #[test]
    fn names_parse_and_unknown_is_an_error() {
        assert_eq!(
            parse_type("RLIMIT_NOFILE").unwrap(),
            PosixRlimitType::RlimitNofile
        );
        assert_eq!(
            resource(parse_type("RLIMIT_RTTIME").unwrap()),
            Resource::RLIMIT_RTTIME
        );
        let err = parse_type("RLIMIT_FOO").unwrap_err();
        assert!(err.to_string().contains("RLIMIT_FOO"));
        assert_eq!(rl("RLIMIT_CORE", 0, 0).typ().to_string(), "RLIMIT_CORE");
    }

    #[test]
    fn invalid_lists_are_refused() {
        assert!(matches!(
            validate(&[rl("RLIMIT_NOFILE", 10, 5)]),
            Err(RlimitError::SoftAboveHard {
                soft: 10,
                hard: 5,
                ..
            })
        ));
        assert!(matches!(
            validate(&[rl("RLIMIT_CORE", 1, 1), rl("RLIMIT_CORE", 2, 2)]),
            Err(RlimitError::Duplicate(ref n)) if n == "RLIMIT_CORE"
        ));
    }

    #[test]
    fn limits_are_applied_in_child() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let nofile_hard = hard.min(4096);
        let list = [
            rl("RLIMIT_NOFILE", 321, nofile_hard),
            rl("RLIMIT_CORE", 0, 0),
        ];
        let status = in_child(|| {
            if apply(&list).is_err() {
                return 2;
            }
            if getrlimit(Resource::RLIMIT_NOFILE).ok() != Some((321, nofile_hard)) {
                return 3;
            }
            if getrlimit(Resource::RLIMIT_CORE).ok() != Some((0, 0)) {
                return 4;
            }
            // The kernel now enforces the soft limit on new descriptors.
            match nix::fcntl::fcntl(std::io::stdin(), nix::fcntl::FcntlArg::F_DUPFD(400)) {
                Err(nix::errno::Errno::EINVAL) => 0,
                _ => 5,
            }
        });
        assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    }
}
