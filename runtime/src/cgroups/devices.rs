//! Device access rules: the v1 devices controller, and the v2 decision.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use tracing::warn;

use super::convert::{device_rule_line, is_deny_all};
use super::{write_file, CgroupError};

/// Devices every container gets once the rules start from "deny all": the
/// ones the rootfs module creates in /dev (null, zero, full, random,
/// urandom, tty, console, ptmx, pts/*), plus mknod of anything (the mknod
/// itself is harmless; opening is what the rules guard).
pub const DEFAULT_ALLOWED: &[(char, i64, i64, &str)] = &[
    ('c', -1, -1, "m"),
    ('b', -1, -1, "m"),
    ('c', 1, 3, "rwm"),
    ('c', 1, 5, "rwm"),
    ('c', 1, 7, "rwm"),
    ('c', 1, 8, "rwm"),
    ('c', 1, 9, "rwm"),
    ('c', 5, 0, "rwm"),
    ('c', 5, 1, "rwm"),
    ('c', 5, 2, "rwm"),
    ('c', 136, -1, "rwm"),
];

fn default_rule_lines() -> impl Iterator<Item = String> {
    DEFAULT_ALLOWED.iter().map(|(t, maj, min, acc)| {
        let n = |v: &i64| {
            if *v < 0 {
                "*".to_owned()
            } else {
                v.to_string()
            }
        };
        format!("{t} {}:{} {acc}", n(maj), n(min))
    })
}

/// The (file, line) writes for v1 in order: rules as given; when the first
/// rule denies everything the cgroup starts from an empty allow list and the
/// default devices are allowed right after it.
pub fn v1_writes(rules: &[LinuxDeviceCgroup]) -> Result<Vec<(&'static str, String)>, CgroupError> {
    let mut out = Vec::with_capacity(rules.len() + DEFAULT_ALLOWED.len());
    for (i, r) in rules.iter().enumerate() {
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push((file, device_rule_line(r)?));
        if i == 0 && is_deny_all(r) {
            // Right after the deny-all, so later spec rules can still override them.
            out.extend(default_rule_lines().map(|l| ("devices.allow", l)));
        }
    }
    Ok(out)
}

/// Applies the rules to a v1 devices cgroup.
pub fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    // Written directly rather than through cgroups-rs: its DeviceType cannot
    // express OCI's "u" type and we need the exact lines (see v1_writes).
    for (file, line) in v1_writes(rules)? {
        write_file(&dir.join(file), &line)?;
    }
    Ok(())
}

/// Whether a rule list only says what a container gets anyway: nothing,
/// "allow everything", or "deny everything" followed by allows of the default
/// devices.
pub fn only_defaults(rules: &[LinuxDeviceCgroup]) -> bool {
    let defaults: Vec<String> = default_rule_lines().collect();
    rules.iter().enumerate().all(|(i, r)| {
        if i == 0 && is_deny_all(r) {
            return true;
        }
        let allow_all = r.allow()
            && r.typ().unwrap_or(LinuxDeviceType::A) == LinuxDeviceType::A
            && matches!(r.major(), None | Some(-1))
            && matches!(r.minor(), None | Some(-1));
        allow_all || (r.allow() && device_rule_line(r).is_ok_and(|l| defaults.contains(&l)))
    })
}

/// When the eBPF program cannot be used (kernel without CONFIG_CGROUP_BPF,
/// no CAP_SYS_ADMIN...): fine if the rules only say what a container gets
/// anyway, otherwise refuse rather than run without the requested policy.
pub fn v2_fallback(rules: &[LinuxDeviceCgroup], err: CgroupError) -> Result<(), CgroupError> {
    if only_defaults(rules) {
        warn!(error = %err, "device rules are not enforced on cgroup v2: the eBPF program failed");
        return Ok(());
    }
    Err(err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(allow: bool, t: LinuxDeviceType, maj: i64, min: i64, acc: &str) -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .major(maj)
            .minor(min)
            .access(acc)
            .build()
            .unwrap()
    }

    #[test]
    fn deny_all_first_appends_defaults() {
        let rules = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            rule(true, LinuxDeviceType::C, 10, 229, "rwm"),
        ];
        let w = v1_writes(&rules).unwrap();
        assert_eq!(w[0], ("devices.deny", "a *:* rwm".to_owned()));
        assert_eq!(w[1], ("devices.allow", "c *:* m".to_owned()));
        assert_eq!(
            w.last().unwrap(),
            &("devices.allow", "c 10:229 rwm".to_owned())
        );
        assert!(w.contains(&("devices.allow", "c 1:3 rwm".to_owned())));
        assert!(w.contains(&("devices.allow", "c 136:* rwm".to_owned())));
        assert_eq!(w.len(), 2 + DEFAULT_ALLOWED.len());
        // fuse is not a default device: without eBPF, v2 must refuse rather than ignore it.
        assert!(!only_defaults(&rules));
        assert!(v2_fallback(&rules, CgroupError::Unsupported("x".into())).is_err());
    }

    #[test]
    fn allow_lists_without_deny_all_are_kept_as_is() {
        let rules = vec![rule(false, LinuxDeviceType::B, 8, 0, "w")];
        assert_eq!(
            v1_writes(&rules).unwrap(),
            vec![("devices.deny", "b 8:0 w".to_owned())]
        );
        assert!(!only_defaults(&rules));
    }

    #[test]
    fn default_only_lists_pass_on_v2() {
        let rules = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
            rule(true, LinuxDeviceType::C, 136, -1, "rwm"),
        ];
        assert!(only_defaults(&rules));
        assert!(v2_fallback(&rules, CgroupError::Unsupported("x".into())).is_ok());
        assert!(only_defaults(&[]));
        let all = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()
            .unwrap();
        assert!(only_defaults(&[all]));
    }
}
