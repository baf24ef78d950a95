//! `linux.personality`: the execution domain set with personality(2) in the
//! container init before exec (LINUX32 makes `uname -m` report i686 etc.).

use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};
use tracing::warn;

/// `PER_LINUX` from <linux/personality.h>.
const PER_LINUX: libc::c_ulong = 0x0000;
/// `PER_LINUX32` from <linux/personality.h>.
const PER_LINUX32: libc::c_ulong = 0x0008;
/// Passing this to personality(2) only queries the current persona.
const QUERY: libc::c_ulong = 0xffff_ffff;

/// Errors from setting the personality.
#[derive(Debug, thiserror::Error)]
pub enum PersonalityError {
    /// personality(2) failed.
    #[error("failed to set personality {domain}")]
    Set {
        /// The requested domain.
        domain: String,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
}

/// The personality(2) value for an OCI domain.
pub fn domain_value(domain: LinuxPersonalityDomain) -> libc::c_ulong {
    match domain {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    }
}

fn personality(value: libc::c_ulong) -> nix::Result<libc::c_int> {
    // SAFETY: personality(2) takes a plain integer and touches no memory.
    let rc = unsafe { libc::personality(value) };
    nix::errno::Errno::result(rc)
}

/// The calling process's current persona.
pub fn current() -> nix::Result<libc::c_ulong> {
    // personality() returns a non-negative persona on success.
    personality(QUERY).map(|p| p as libc::c_ulong)
}

/// Sets the execution domain. The spec's `flags` have no agreed meaning yet
/// (runc ignores them too): they are logged and not applied.
pub fn apply(p: &LinuxPersonality) -> Result<(), PersonalityError> {
    if let Some(flags) = p.flags().as_ref().filter(|f| !f.is_empty()) {
        warn!(?flags, "linux.personality.flags are not supported; ignored");
    }
    let domain = p.domain();
    personality(domain_value(domain))
        .map(drop)
        .map_err(|source| PersonalityError::Set {
            domain: domain.to_string(),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::caps::tests::in_child;
    use nix::sys::wait::WaitStatus;

    fn spec(domain: &str) -> LinuxPersonality {
        serde_json::from_value(serde_json::json!({"domain": domain, "flags": ["x"]})).unwrap()
    }

    #[test]
    fn linux32_changes_the_reported_machine_in_child() {
        let p32 = spec("LINUX32");
        let p = spec("LINUX");
        let status = in_child(|| {
            if apply(&p32).is_err() {
                return 2;
            }
            if current().ok().map(|v| v & 0xff) != Some(PER_LINUX32) {
                return 3;
            }
            let machine = nix::sys::utsname::uname().map(|u| u.machine().to_owned());
            if cfg!(target_arch = "x86_64") && machine.ok().as_deref() != Some("i686".as_ref()) {
                return 4;
            }
            if apply(&p).is_err() || current().ok().map(|v| v & 0xff) != Some(PER_LINUX) {
                return 5;
            }
            0
        });
        assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    }
}
