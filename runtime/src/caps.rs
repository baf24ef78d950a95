//! Process capabilities: the bounding set is trimmed before the user switch,
//! the other four sets are applied after it.
//!
//! Order in the container init (see capabilities(7)):
//! 1. [`drop_bounding`] while still uid 0 with `CAP_SETPCAP` effective;
//! 2. [`set_keep_caps`]`(true)` so that `setuid` to a non-root user keeps the
//!    permitted set (otherwise the kernel clears it);
//! 3. setgroups/setgid/setuid (core);
//! 4. [`set_keep_caps`]`(false)` and [`apply`]: inheritable, effective,
//!    permitted, then ambient (which needs each cap in permitted and
//!    inheritable).

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use tracing::{debug, warn};

/// Errors from capability handling.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// One or more capability names are not capabilities at all.
    #[error("unknown capability name(s): {}", .0.join(", "))]
    Unknown(Vec<String>),
    /// `prctl(PR_CAPBSET_DROP)` failed.
    #[error("failed to drop {cap} from the bounding set")]
    DropBounding {
        /// The capability being dropped.
        cap: String,
        /// The underlying error.
        #[source]
        source: caps::errors::CapsError,
    },
    /// `capset(2)` failed for one of the base sets.
    #[error("failed to set the {set} capability set to [{caps}]")]
    SetBase {
        /// Which set (effective, permitted, inheritable).
        set: &'static str,
        /// The requested contents.
        caps: String,
        /// The underlying error.
        #[source]
        source: caps::errors::CapsError,
    },
    /// Effective capabilities must be a subset of the permitted ones.
    #[error("effective capabilities [{0}] are not in the permitted set")]
    EffectiveNotPermitted(String),
    /// Clearing or raising an ambient capability failed.
    #[error("failed to set ambient capability {cap}")]
    Ambient {
        /// The capability (or "all" when clearing).
        cap: String,
        /// The underlying error.
        #[source]
        source: caps::errors::CapsError,
    },
    /// `prctl(PR_SET_KEEPCAPS)` failed.
    #[error("failed to set keep-caps to {keep}")]
    KeepCaps {
        /// Requested value.
        keep: bool,
        /// The underlying error.
        #[source]
        source: caps::errors::CapsError,
    },
}

/// Parses OCI capability names ("CAP_SYS_ADMIN"; the "CAP_" prefix is
/// optional, case-insensitive) into kernel capabilities. Every unknown name is
/// reported in one error.
pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<Vec<caps::Capability>, CapsError> {
    let mut out = Vec::with_capacity(names.len());
    let mut unknown = Vec::new();
    for name in names {
        let raw = name.as_ref();
        let upper = raw.trim().to_ascii_uppercase();
        let canonical = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        match canonical.parse::<caps::Capability>() {
            Ok(c) => out.push(c),
            Err(_) => unknown.push(raw.to_string()),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(CapsError::Unknown(unknown))
    }
}

/// Converts one OCI set to kernel capabilities, leaving out (with a warning,
/// like runc) those the running kernel does not know: a spec written for a
/// newer kernel must still run here.
fn to_kernel_set(
    set: Option<&Capabilities>,
    set_name: &str,
    supported: &CapsHashSet,
) -> Result<CapsHashSet, CapsError> {
    let Some(set) = set else {
        return Ok(CapsHashSet::new());
    };
    let names: Vec<String> = set.iter().map(|c| format!("CAP_{c}")).collect();
    let mut out = CapsHashSet::new();
    for cap in parse_names(&names)? {
        if supported.contains(&cap) {
            out.insert(cap);
        } else {
            warn!(%cap, set = set_name, "capability not supported by the running kernel; skipped");
        }
    }
    Ok(out)
}

fn display_set(set: &CapsHashSet) -> String {
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    names.sort();
    names.join(", ")
}

/// Capabilities the running kernel knows, probed with `PR_CAPBSET_READ` so
/// that it works before /proc is mounted.
fn kernel_supported() -> CapsHashSet {
    caps::runtime::thread_all_supported()
}

/// Drops every bounding-set capability not listed in `caps.bounding`.
/// Needs `CAP_SETPCAP`, so it runs before the switch to the container user.
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let supported = kernel_supported();
    let keep = to_kernel_set(caps.bounding().as_ref(), "bounding", &supported)?;
    for cap in supported {
        if keep.contains(&cap) {
            continue;
        }
        // A cap already gone (e.g. dropped by a parent runtime) needs no prctl.
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(true) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| CapsError::DropBounding {
                cap: cap.to_string(),
                source,
            })?;
        }
    }
    debug!(kept = %display_set(&keep), "bounding set trimmed");
    Ok(())
}

/// Sets or clears `PR_SET_KEEPCAPS`, which keeps the permitted set across a
/// `setuid` away from uid 0.
pub fn set_keep_caps(keep: bool) -> Result<(), CapsError> {
    caps::securebits::set_keepcaps(keep).map_err(|source| CapsError::KeepCaps { keep, source })
}

/// The four non-bounding sets resolved for this kernel, validated before any
/// of them is changed so that a bad spec fails without a half-applied state.
struct Resolved {
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

fn resolve(caps: &LinuxCapabilities, supported: &CapsHashSet) -> Result<Resolved, CapsError> {
    let r = Resolved {
        effective: to_kernel_set(caps.effective().as_ref(), "effective", supported)?,
        permitted: to_kernel_set(caps.permitted().as_ref(), "permitted", supported)?,
        inheritable: to_kernel_set(caps.inheritable().as_ref(), "inheritable", supported)?,
        ambient: to_kernel_set(caps.ambient().as_ref(), "ambient", supported)?,
    };
    let not_permitted: CapsHashSet = r.effective.difference(&r.permitted).copied().collect();
    if !not_permitted.is_empty() {
        return Err(CapsError::EffectiveNotPermitted(display_set(
            &not_permitted,
        )));
    }
    // The kernel only lets a capability into the ambient set when it is both
    // permitted and inheritable. `runc spec` style configs list ambient caps
    // without inheritable ones; runc skips what it cannot raise, and so do we.
    let (raisable, skipped): (CapsHashSet, CapsHashSet) = r
        .ambient
        .iter()
        .partition(|c| r.permitted.contains(c) && r.inheritable.contains(c));
    if !skipped.is_empty() {
        debug!(
            caps = %display_set(&skipped),
            "ambient capabilities not in permitted and inheritable are skipped"
        );
    }
    Ok(Resolved {
        ambient: raisable,
        ..r
    })
}

fn set_base(set: CapSet, name: &'static str, value: &CapsHashSet) -> Result<(), CapsError> {
    caps::set(None, set, value).map_err(|source| CapsError::SetBase {
        set: name,
        caps: display_set(value),
        source,
    })
}

/// Applies the effective, permitted, inheritable and ambient sets (after the
/// user switch). Ordering matters because each `capset(2)` is checked
/// against the current state: inheritable first (it may only grow within the
/// old permitted set), then effective (must stay within the old permitted
/// set), then permitted (shrinks it), then ambient (needs permitted and
/// inheritable).
pub fn apply(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let r = resolve(caps, &kernel_supported())?;
    set_base(CapSet::Inheritable, "inheritable", &r.inheritable)?;
    set_base(CapSet::Effective, "effective", &r.effective)?;
    set_base(CapSet::Permitted, "permitted", &r.permitted)?;
    if caps::runtime::ambient_set_supported().is_err() {
        if !r.ambient.is_empty() {
            warn!("kernel has no ambient capability set; ambient capabilities ignored");
        }
        return Ok(());
    }
    caps::clear(None, CapSet::Ambient).map_err(|source| CapsError::Ambient {
        cap: "all (clear)".to_string(),
        source,
    })?;
    for cap in &r.ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|source| CapsError::Ambient {
            cap: cap.to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    /// Runs `f` in a forked child and returns how the child ended. The child
    /// leaves with `_exit(f())` so no test-harness state is run twice.
    pub(crate) fn in_child(f: impl FnOnce() -> i32) -> WaitStatus {
        // SAFETY: the child only runs `f` (syscalls, small allocations with
        // glibc's fork-safe malloc) and leaves with `_exit`, never returning
        // into the multi-threaded test harness.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
                // SAFETY: `_exit` is async-signal-safe and never returns.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => waitpid(child, None).unwrap(),
        }
    }

    /// Reads a capability mask line ("CapEff", "CapBnd"...) of /proc/self/status.
    pub(crate) fn status_mask(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    fn mask(caps: &[caps::Capability]) -> u64 {
        caps.iter().fold(0, |m, c| m | c.bitmask())
    }

    fn set(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    #[test]
    fn every_oci_capability_maps_to_a_kernel_capability() {
        let all: Vec<String> = [
            "CAP_CHOWN",
            "CAP_SYS_ADMIN",
            "CAP_NET_BIND_SERVICE",
            "CAP_CHECKPOINT_RESTORE",
            "CAP_SYS_TTY_CONFIG",
            "CAP_DAC_READ_SEARCH",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let json = serde_json::to_string(&all).unwrap();
        let parsed: Capabilities = serde_json::from_str(&json).unwrap();
        let supported = caps::all();
        let kernel = to_kernel_set(Some(&parsed), "test", &supported).unwrap();
        assert_eq!(kernel.len(), 6);
        assert!(kernel.contains(&caps::Capability::CAP_SYS_TTY_CONFIG));
        assert!(kernel.contains(&caps::Capability::CAP_CHECKPOINT_RESTORE));
    }

    #[test]
    fn unknown_names_are_all_reported() {
        let err = parse_names(&["CAP_KILL", "CAP_FLY", "net_raw", "TELEPORT"]).unwrap_err();
        match &err {
            CapsError::Unknown(names) => assert_eq!(names, &["CAP_FLY", "TELEPORT"]),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("CAP_FLY, TELEPORT"));
        let ok = parse_names(&["kill", "CAP_NET_RAW"]).unwrap();
        assert_eq!(
            ok,
            vec![caps::Capability::CAP_KILL, caps::Capability::CAP_NET_RAW]
        );
    }

    #[test]
    fn unsupported_capabilities_are_skipped() {
        let mut supported = caps::all();
        supported.remove(&caps::Capability::CAP_BPF);
        let s = set(&[Capability::Bpf, Capability::Kill]);
        let kernel = to_kernel_set(Some(&s), "bounding", &supported).unwrap();
        assert_eq!(
            kernel.into_iter().collect::<Vec<_>>(),
            vec![caps::Capability::CAP_KILL]
        );
    }

    #[test]
    fn invalid_combinations_are_refused_before_any_change() {
        let bad_ambient = LinuxCapabilitiesBuilder::default()
            .permitted(set(&[Capability::Kill]))
            .effective(set(&[Capability::Kill]))
            .inheritable(Capabilities::new())
            .ambient(set(&[Capability::Kill]))
            .build()
            .unwrap();
        let resolved = resolve(&bad_ambient, &caps::all()).unwrap();
        assert!(
            resolved.ambient.is_empty(),
            "an ambient cap that is not inheritable must be skipped, not raised"
        );
        let bad_eff = LinuxCapabilitiesBuilder::default()
            .permitted(set(&[Capability::Kill]))
            .effective(set(&[Capability::Kill, Capability::Chown]))
            .build()
            .unwrap();
        assert!(matches!(
            resolve(&bad_eff, &caps::all()),
            Err(CapsError::EffectiveNotPermitted(ref c)) if c == "CAP_CHOWN"
        ));
    }

    #[test]
    fn bounding_set_is_trimmed_in_child() {
        let spec = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::Kill, Capability::Chown]))
            .build()
            .unwrap();
        let want = mask(&[caps::Capability::CAP_KILL, caps::Capability::CAP_CHOWN]);
        let status = in_child(|| {
            if drop_bounding(&spec).is_err() {
                return 2;
            }
            if status_mask("CapBnd") != want {
                return 3;
            }
            0
        });
        assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    }

    #[test]
    fn all_sets_applied_across_setuid_in_child() {
        let keep = set(&[Capability::Kill, Capability::NetBindService]);
        let spec = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[
                Capability::Kill,
                Capability::NetBindService,
                Capability::AuditWrite,
            ]))
            .effective(keep.clone())
            .permitted(keep.clone())
            .inheritable(keep.clone())
            .ambient(set(&[Capability::NetBindService]))
            .build()
            .unwrap();
        let want = mask(&[
            caps::Capability::CAP_KILL,
            caps::Capability::CAP_NET_BIND_SERVICE,
        ]);
        let amb = mask(&[caps::Capability::CAP_NET_BIND_SERVICE]);
        let status = in_child(|| {
            if drop_bounding(&spec).is_err() || set_keep_caps(true).is_err() {
                return 2;
            }
            let uid = nix::unistd::Uid::from_raw(65534);
            if nix::unistd::setresuid(uid, uid, uid).is_err() {
                return 3;
            }
            if set_keep_caps(false).is_err() {
                return 4;
            }
            if apply(&spec).is_err() {
                return 5;
            }
            let got = [
                status_mask("CapEff"),
                status_mask("CapPrm"),
                status_mask("CapInh"),
            ];
            if got != [want; 3] {
                return 6;
            }
            if status_mask("CapAmb") != amb {
                return 7;
            }
            0
        });
        assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    }
}
