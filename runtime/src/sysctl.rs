//! `linux.sysctl`: validated keys written to `/proc/sys` inside the container
//! (after pivot_root, so `/proc` is the container's own procfs).
//!
//! Key syntax, as sysctl(8): either the dotted form `net.ipv4.ip_forward`, or
//! — when the key contains a `/` — the slash form `net/ipv4/conf/eth0.100/forwarding`
//! in which dots are literal (interface names may contain dots). Every
//! segment must be non-empty, must not be `.` or `..`, and may only hold
//! ASCII letters, digits, `_` and `-` (plus `.` inside slash-form segments).
//! A leading or trailing separator is an empty segment and is refused. This
//! keeps every write strictly below `/proc/sys`; the opened file must also be
//! on procfs, so a rootfs without a real `/proc` cannot redirect the write.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};

/// Errors from validating or writing sysctls.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The key is malformed or tries to leave /proc/sys.
    #[error("invalid sysctl key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sysctl would change the host, not only the container.
    #[error("sysctl {key} is not allowed: {reason}")]
    NotNamespaced {
        /// The key as given.
        key: String,
        /// Why (which namespace it needs, or host-wide).
        reason: &'static str,
    },
    /// Opening the /proc/sys file failed (EACCES/EROFS: /proc/sys read-only).
    #[error("failed to open {path} for sysctl {key}")]
    Open {
        /// The key as given.
        key: String,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// The file is not on procfs.
    #[error("{path} (sysctl {key}) is not on procfs; refusing to write it")]
    NotProc {
        /// The key as given.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// `fstatfs` on the opened file failed.
    #[error("failed to check the filesystem of {path}")]
    Statfs {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// Writing the value failed (EINVAL: value refused by the kernel).
    #[error("failed to write {value:?} to sysctl {key}")]
    Write {
        /// The key as given.
        key: String,
        /// The value.
        value: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> SysctlError {
    SysctlError::InvalidKey {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Splits a key into its path segments after checking it (see module docs).
pub fn parse_key(key: &str) -> Result<Vec<&str>, SysctlError> {
    if key.is_empty() {
        return Err(invalid(key, "empty key"));
    }
    let slash_form = key.contains('/');
    let segments: Vec<&str> = if slash_form {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    for seg in &segments {
        if seg.is_empty() {
            return Err(invalid(key, "empty path segment"));
        }
        if *seg == "." || *seg == ".." {
            return Err(invalid(key, format!("{seg:?} segment")));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(invalid(key, format!("character {c:?} not allowed")));
        }
    }
    Ok(segments)
}

/// The path of a (valid) key relative to /proc/sys.
pub fn relative_path(key: &str) -> Result<PathBuf, SysctlError> {
    Ok(parse_key(key)?.iter().collect())
}

/// Refuses sysctls that are not isolated by the container's namespaces, so
/// that a container config cannot change the host: IPC sysctls
/// (`kernel.shm*`, `kernel.msg*`, `kernel.sem`, `kernel.sem_next_id`,
/// `fs.mqueue.*`) need a private IPC namespace, `net.*` a private network
/// namespace, `kernel.hostname`/`kernel.domainname` a private UTS namespace;
/// anything else is host-wide and refused.
pub fn check_allowed(
    key: &str,
    has_net_ns: bool,
    has_ipc_ns: bool,
    has_uts_ns: bool,
) -> Result<(), SysctlError> {
    let segs = parse_key(key)?;
    let refuse = |reason| {
        Err(SysctlError::NotNamespaced {
            key: key.to_string(),
            reason,
        })
    };
    match segs.as_slice() {
        ["kernel", name]
            if name.starts_with("shm")
                || name.starts_with("msg")
                || *name == "sem"
                || *name == "sem_next_id" =>
        {
            if has_ipc_ns {
                Ok(())
            } else {
                refuse("it needs a private IPC namespace")
            }
        }
        ["fs", "mqueue", _, ..] => {
            if has_ipc_ns {
                Ok(())
            } else {
                refuse("it needs a private IPC namespace")
            }
        }
        ["net", _, ..] => {
            if has_net_ns {
                Ok(())
            } else {
                refuse("it needs a private network namespace")
            }
        }
        ["kernel", "hostname" | "domainname"] => {
            if has_uts_ns {
                Ok(())
            } else {
                refuse("it needs a private UTS namespace")
            }
        }
        _ => refuse("it is not namespaced and would change the host"),
    }
}

/// Writes every sysctl under `/proc/sys` (keys validated first, so a bad
/// key changes nothing; applied in sorted key order).
pub fn apply(sysctl: &HashMap<String, String>) -> Result<(), SysctlError> {
    apply_at(Path::new("/proc/sys"), sysctl, true)
}

/// [`apply`] against another directory; `require_proc` is only false in tests.
fn apply_at(
    base: &Path,
    sysctl: &HashMap<String, String>,
    require_proc: bool,
) -> Result<(), SysctlError> {
    let mut entries = Vec::with_capacity(sysctl.len());
    for (key, value) in sysctl {
        entries.push((key, value, base.join(relative_path(key)?)));
    }
    entries.sort();
    for (key, value, path) in entries {
        let fd = open(
            &path,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| SysctlError::Open {
            key: key.clone(),
            path: path.clone(),
            source,
        })?;
        if require_proc {
            let fs = fstatfs(&fd).map_err(|source| SysctlError::Statfs {
                path: path.clone(),
                source,
            })?;
            if fs.filesystem_type() != PROC_SUPER_MAGIC {
                return Err(SysctlError::NotProc {
                    key: key.clone(),
                    path,
                });
            }
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(value.as_bytes())
            .map_err(|source| SysctlError::Write {
                key: key.clone(),
                value: value.clone(),
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
    use nix::sys::wait::WaitStatus;

    #[test]
    fn keys_are_validated() {
        for bad in [
            "",
            "kernel/../x",
            "net..ipv4",
            "a/b/../c",
            ".net.ipv4",
            "net.ipv4.",
            "/net/ipv4",
            "net/./ipv4",
            "net.ipv4 .x",
            "kernel.hostname\0",
            "net/ipv4\\x",
        ] {
            assert!(
                matches!(parse_key(bad), Err(SysctlError::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            relative_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("net/ipv4/ip_forward")
        );
        assert_eq!(
            relative_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            PathBuf::from("net/ipv4/conf/eth0.100/forwarding")
        );
    }

    #[test]
    fn only_namespaced_sysctls_are_allowed() {
        assert!(check_allowed("kernel.shmmax", false, true, false).is_ok());
        assert!(check_allowed("kernel.msgmnb", false, true, false).is_ok());
        assert!(check_allowed("kernel.sem", false, true, false).is_ok());
        assert!(check_allowed("fs.mqueue.msg_max", false, true, false).is_ok());
        assert!(check_allowed("kernel.shmmax", true, false, true).is_err());
        assert!(check_allowed("net.ipv4.ip_forward", true, false, false).is_ok());
        assert!(check_allowed("net/ipv4/conf/eth0.1/forwarding", true, false, false).is_ok());
        assert!(check_allowed("net.ipv4.ip_forward", false, true, true).is_err());
        assert!(check_allowed("kernel.hostname", false, false, true).is_ok());
        assert!(check_allowed("kernel.domainname", false, false, false).is_err());
        for host_wide in ["kernel.panic", "vm.swappiness", "kernel.semx", "fs.mqueue"] {
            let err = check_allowed(host_wide, true, true, true).unwrap_err();
            assert!(
                matches!(err, SysctlError::NotNamespaced { .. }),
                "{host_wide}"
            );
        }
        assert!(matches!(
            check_allowed("net..x", true, true, true),
            Err(SysctlError::InvalidKey { .. })
        ));
    }

    #[test]
    fn values_written_as_is_below_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4/conf/eth0.5")).unwrap();
        std::fs::write(dir.path().join("net/ipv4/conf/eth0.5/forwarding"), "0").unwrap();
        std::fs::create_dir_all(dir.path().join("kernel")).unwrap();
        std::fs::write(dir.path().join("kernel/shmmax"), "").unwrap();
        let map = HashMap::from([
            (
                "net/ipv4/conf/eth0.5/forwarding".to_string(),
                "1".to_string(),
            ),
            ("kernel.shmmax".to_string(), "68719476736 ".to_string()),
        ]);
        apply_at(dir.path(), &map, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/ipv4/conf/eth0.5/forwarding")).unwrap(),
            "1"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kernel/shmmax")).unwrap(),
            "68719476736 "
        );
        // Not on procfs → refused even though the file exists.
        let err = apply_at(dir.path(), &map, true).unwrap_err();
        assert!(matches!(err, SysctlError::NotProc { .. }), "{err}");
        // An invalid key anywhere means nothing is written.
        let bad = HashMap::from([
            ("kernel.shmmax".to_string(), "5".to_string()),
            ("kernel/../../etc".to_string(), "x".to_string()),
        ]);
        assert!(apply_at(dir.path(), &bad, false).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kernel/shmmax")).unwrap(),
            "68719476736 "
        );
    }

    #[test]
    fn hostname_sysctl_applies_in_private_uts_namespace() {
        let map = HashMap::from([("kernel.hostname".to_string(), "berth-sysctl-t".to_string())]);
        let status = in_child(|| {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).is_err() {
                return 2;
            }
            if check_allowed("kernel.hostname", false, false, true).is_err() {
                return 3;
            }
            if apply(&map).is_err() {
                return 4;
            }
            match nix::unistd::gethostname() {
                Ok(h) if h == "berth-sysctl-t" => 0,
                _ => 5,
            }
        });
        assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    }
}
