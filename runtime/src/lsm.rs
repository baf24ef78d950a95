//! Linux security modules: the AppArmor profile and the SELinux exec label
//! of the container process, written to `/proc/.../attr` just before
//! `execve` so that they take effect at exec (not for the runtime's own
//! set-up code). Asking for an LSM the host lacks is an error, never a
//! silent no-op.
//!
//! Detection also works after pivot_root, where securityfs and selinuxfs
//! are usually not mounted: AppArmor is on when securityfs shows it or the
//! module parameter (sysfs) says `Y`; SELinux is on when selinuxfs is
//! mounted or registered in `/proc/filesystems` (the kernel only registers
//! it when SELinux is enabled).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors from applying LSM labels.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    /// An AppArmor profile was requested on a host without AppArmor.
    #[error("{0}")]
    AppArmorUnavailable(String),
    /// An SELinux label was requested on a host without SELinux.
    #[error("{0}")]
    SelinuxUnavailable(String),
    /// The profile or label is empty or contains control characters.
    #[error("invalid {what} {value:?}")]
    Invalid {
        /// "AppArmor profile" or "SELinux label".
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// Writing the attr file failed (EINVAL: unknown profile or label).
    #[error("failed to write {content:?} to {path}")]
    Write {
        /// The attr file.
        path: PathBuf,
        /// What was written.
        content: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Where sysfs and procfs are; a seam so that decisions are testable.
#[derive(Debug, Clone)]
struct Host {
    sys: PathBuf,
    proc: PathBuf,
}

impl Host {
    fn real() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }

    fn apparmor_enabled(&self) -> bool {
        let param = self.sys.join("module/apparmor/parameters/enabled");
        let param_on = std::fs::read(&param)
            .map(|b| b.starts_with(b"Y"))
            .unwrap_or(false);
        let securityfs = self.sys.join("kernel/security/apparmor").is_dir();
        // With securityfs visible the module parameter is authoritative.
        if securityfs && param.exists() {
            param_on
        } else {
            securityfs || param_on
        }
    }

    fn selinux_enabled(&self) -> bool {
        if self.sys.join("fs/selinux/enforce").exists() {
            return true;
        }
        std::fs::read_to_string(self.proc.join("filesystems"))
            .map(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().last() == Some("selinuxfs"))
            })
            .unwrap_or(false)
    }

    /// The per-thread attr directory (attributes are per task).
    fn attr_dir(&self) -> PathBuf {
        let thread = self.proc.join("thread-self/attr");
        if thread.is_dir() {
            thread
        } else {
            self.proc.join("self/attr")
        }
    }
}

fn check_value(what: &'static str, value: &str) -> Result<(), LsmError> {
    if value.is_empty() || value.chars().any(|c| c.is_control()) {
        return Err(LsmError::Invalid {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn write_attr(path: &Path, content: &str) -> Result<(), LsmError> {
    let err = |source| LsmError::Write {
        path: path.to_path_buf(),
        content: content.to_string(),
        source,
    };
    // One write(2): the kernel parses the attr per write call.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    Host::real().apparmor_enabled()
}

/// Whether SELinux is enabled on this host.
pub fn selinux_enabled() -> bool {
    Host::real().selinux_enabled()
}

/// Makes the next `execve` switch to AppArmor `profile`.
pub fn apply_apparmor(profile: &str) -> Result<(), LsmError> {
    apply_apparmor_on(&Host::real(), profile)
}

fn apply_apparmor_on(host: &Host, profile: &str) -> Result<(), LsmError> {
    check_value("AppArmor profile", profile)?;
    if !host.apparmor_enabled() {
        return Err(LsmError::AppArmorUnavailable(format!(
            "AppArmor profile {profile} requested but AppArmor is not enabled on this host"
        )));
    }
    let attr = host.attr_dir();
    // Since Linux 5.8 each LSM has its own attr subdirectory; the legacy
    // file belongs to whichever LSM is "major".
    let dedicated = attr.join("apparmor/exec");
    let path = if dedicated.exists() {
        dedicated
    } else {
        attr.join("exec")
    };
    write_attr(&path, &format!("exec {profile}"))
}

/// Makes the next `execve` run with SELinux `label`.
pub fn apply_selinux_exec_label(label: &str) -> Result<(), LsmError> {
    apply_selinux_on(&Host::real(), label)
}

fn apply_selinux_on(host: &Host, label: &str) -> Result<(), LsmError> {
    check_value("SELinux label", label)?;
    if !host.selinux_enabled() {
        return Err(LsmError::SelinuxUnavailable(format!(
            "SELinux label {label} requested but SELinux is not enabled on this host"
        )));
    }
    write_attr(&host.attr_dir().join("exec"), label)
}

/// The mount option carrying `label` (`context="..."`, quoted because MCS
/// labels contain commas), or `None` when the label is empty or SELinux is
/// off (the kernel would reject the option). For linux.mountLabel in rootfs.
pub fn mount_label_option(label: &str) -> Option<String> {
    mount_label_option_on(&Host::real(), label)
}

fn mount_label_option_on(host: &Host, label: &str) -> Option<String> {
    if label.is_empty() || !host.selinux_enabled() {
        return None;
    }
    Some(format!("context=\"{label}\""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fake_host() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            sys: dir.path().join("sys"),
            proc: dir.path().join("proc"),
        };
        std::fs::create_dir_all(host.proc.join("thread-self/attr")).unwrap();
        std::fs::create_dir_all(&host.sys).unwrap();
        std::fs::write(host.proc.join("thread-self/attr/exec"), "").unwrap();
        (dir, host)
    }

    #[test]
    fn apparmor_absent_is_a_clear_error() {
        let (_d, host) = fake_host();
        let err = apply_apparmor_on(&host, "berth-default").unwrap_err();
        assert_eq!(
            err.to_string(),
            "AppArmor profile berth-default requested but AppArmor is not enabled on this host"
        );
        assert!(matches!(err, LsmError::AppArmorUnavailable(_)));
        // The module parameter saying N wins over a present securityfs dir.
        std::fs::create_dir_all(host.sys.join("kernel/security/apparmor")).unwrap();
        std::fs::create_dir_all(host.sys.join("module/apparmor/parameters")).unwrap();
        std::fs::write(host.sys.join("module/apparmor/parameters/enabled"), "N\n").unwrap();
        assert!(apply_apparmor_on(&host, "p").is_err());
    }

    #[test]
    fn apparmor_profile_is_written_for_exec() {
        let (_d, host) = fake_host();
        std::fs::create_dir_all(host.sys.join("module/apparmor/parameters")).unwrap();
        std::fs::write(host.sys.join("module/apparmor/parameters/enabled"), "Y\n").unwrap();
        // Legacy attr file first, then the per-LSM one once it exists.
        apply_apparmor_on(&host, "berth-default").unwrap();
        let legacy = host.proc.join("thread-self/attr/exec");
        assert_eq!(
            std::fs::read_to_string(&legacy).unwrap(),
            "exec berth-default"
        );
        std::fs::create_dir_all(host.proc.join("thread-self/attr/apparmor")).unwrap();
        std::fs::write(host.proc.join("thread-self/attr/apparmor/exec"), "").unwrap();
        apply_apparmor_on(&host, "other").unwrap();
        assert_eq!(
            std::fs::read_to_string(host.proc.join("thread-self/attr/apparmor/exec")).unwrap(),
            "exec other"
        );
        assert!(matches!(
            apply_apparmor_on(&host, "bad\nprofile"),
            Err(LsmError::Invalid { .. })
        ));
    }

    #[test]
    fn selinux_label_needs_selinux() {
        let (_d, host) = fake_host();
        let label = "system_u:system_r:container_t:s0:c1,c2";
        let err = apply_selinux_on(&host, label).unwrap_err();
        assert!(matches!(err, LsmError::SelinuxUnavailable(_)));
        assert!(err.to_string().contains("SELinux is not enabled"));
        assert_eq!(mount_label_option_on(&host, label), None);
        // Registered filesystem (post-pivot case) counts as enabled.
        std::fs::write(
            host.proc.join("filesystems"),
            "nodev\tproc\nnodev\tselinuxfs\n",
        )
        .unwrap();
        apply_selinux_on(&host, label).unwrap();
        assert_eq!(
            std::fs::read_to_string(host.proc.join("thread-self/attr/exec")).unwrap(),
            label
        );
        assert_eq!(
            mount_label_option_on(&host, label).as_deref(),
            Some("context=\"system_u:system_r:container_t:s0:c1,c2\"")
        );
        assert_eq!(mount_label_option_on(&host, ""), None);
    }

    #[test]
    fn real_host_answers_consistently() {
        if !apparmor_enabled() {
            assert!(matches!(
                apply_apparmor("berth-test"),
                Err(LsmError::AppArmorUnavailable(_))
            ));
        }
        if !selinux_enabled() {
            assert!(matches!(
                apply_selinux_exec_label("system_u:system_r:container_t:s0"),
                Err(LsmError::SelinuxUnavailable(_))
            ));
            assert_eq!(
                mount_label_option("system_u:object_r:container_file_t:s0"),
                None
            );
        }
    }
}
