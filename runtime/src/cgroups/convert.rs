//! Pure conversions between OCI resource values and cgroup file contents.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// cgroup v1 `cpu.shares` → v2 `cpu.weight`, the linear map runc uses:
/// shares 2..=262144 onto weight 1..=10000 (0 means "unset").
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 `blkio.weight` (10..=1000) → v2 `io.weight` (1..=10000), as runc does.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// Value for v2 `memory.swap.max` from the OCI `swap` (which is memory+swap, v1 style)
/// and `limit`. `None` means leave the file alone; `Some(-1)` means "max".
pub fn swap_v2(swap: Option<i64>, limit: Option<i64>) -> Result<Option<i64>, CgroupError> {
    let Some(swap) = swap else { return Ok(None) };
    if swap == -1 {
        return Ok(Some(-1));
    }
    if swap == 0 {
        // 0 is treated as "unset" by runc and the OCI tools.
        return Ok(None);
    }
    match limit {
        None | Some(0) | Some(-1) => Err(CgroupError::InvalidResource {
            what: "memory.swap",
            reason: format!("swap limit {swap} needs a memory limit on cgroup v2"),
        }),
        Some(limit) if swap < limit => Err(CgroupError::InvalidResource {
            what: "memory.swap",
            reason: format!("memory+swap limit {swap} is below the memory limit {limit}"),
        }),
        Some(limit) => Ok(Some(swap - limit)),
    }
}

/// The line written to v1 `devices.allow`/`devices.deny` for one OCI rule,
/// e.g. `c 1:3 rwm` or `a *:* rwm`.
pub fn device_rule_line(rule: &LinuxDeviceCgroup) -> Result<String, CgroupError> {
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        // "u" is an unbuffered character device: same major/minor space as "c".
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => {
            return Err(CgroupError::InvalidResource {
                what: "devices",
                reason: "FIFO (\"p\") rules cannot be expressed in the v1 devices cgroup".into(),
            })
        }
    };
    let num = |n: Option<i64>| match n {
        None | Some(-1) => Ok("*".to_owned()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(n) => Err(CgroupError::InvalidResource {
            what: "devices",
            reason: format!("invalid device number {n}"),
        }),
    };
    let access = rule.access().as_deref().unwrap_or("rwm");
    let access = if access.is_empty() { "rwm" } else { access };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::InvalidResource {
            what: "devices",
            reason: format!("invalid access {access:?} (only r, w, m)"),
        });
    }
    Ok(format!(
        "{typ} {}:{} {access}",
        num(rule.major())?,
        num(rule.minor())?
    ))
}

/// Whether the rule denies every device (`a` type, any numbers, all access).
pub fn is_deny_all(rule: &LinuxDeviceCgroup) -> bool {
    !rule.allow()
        && rule.typ().unwrap_or(LinuxDeviceType::A) == LinuxDeviceType::A
        && matches!(rule.major(), None | Some(-1))
        && matches!(rule.minor(), None | Some(-1))
}

/// Name of a hugepage size as cgroup files use it ("2MB", "1GB") from the
/// `/sys/kernel/mm/hugepages` directory name ("hugepages-2048kB").
pub fn hugepage_dir_to_size(dir: &str) -> Option<String> {
    let kb: u64 = dir
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    let units = [("KB", 1u64), ("MB", 1024), ("GB", 1024 * 1024)];
    let (unit, div) = units
        .iter()
        .rev()
        .find(|(_, d)| kb >= *d && kb.checked_rem(*d) == Some(0))
        .copied()?;
    Some(format!("{}{unit}", kb / div))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn shares_weight() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn swap_math() {
        assert_eq!(swap_v2(None, Some(100)).unwrap(), None);
        assert_eq!(swap_v2(Some(-1), None).unwrap(), Some(-1));
        assert_eq!(swap_v2(Some(0), Some(5)).unwrap(), None);
        assert_eq!(swap_v2(Some(300), Some(100)).unwrap(), Some(200));
        assert_eq!(swap_v2(Some(100), Some(100)).unwrap(), Some(0));
        assert!(swap_v2(Some(50), Some(100)).is_err());
        assert!(swap_v2(Some(50), None).is_err());
    }

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        a: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(a);
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn device_rules() {
        let deny_all = rule(false, LinuxDeviceType::A, None, None, "rwm");
        assert!(is_deny_all(&deny_all));
        assert_eq!(device_rule_line(&deny_all).unwrap(), "a *:* rwm");
        let null = rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm");
        assert!(!is_deny_all(&null));
        assert_eq!(device_rule_line(&null).unwrap(), "c 1:3 rwm");
        let pts = rule(true, LinuxDeviceType::U, Some(136), Some(-1), "rw");
        assert_eq!(device_rule_line(&pts).unwrap(), "c 136:* rw");
        let blk = rule(false, LinuxDeviceType::B, Some(8), None, "m");
        assert_eq!(device_rule_line(&blk).unwrap(), "b 8:* m");
        assert!(device_rule_line(&rule(true, LinuxDeviceType::P, None, None, "r")).is_err());
        assert!(device_rule_line(&rule(true, LinuxDeviceType::C, Some(1), None, "rx")).is_err());
        assert!(device_rule_line(&rule(true, LinuxDeviceType::C, Some(-5), None, "r")).is_err());
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(
            hugepage_dir_to_size("hugepages-2048kB").as_deref(),
            Some("2MB")
        );
        assert_eq!(
            hugepage_dir_to_size("hugepages-1048576kB").as_deref(),
            Some("1GB")
        );
        assert_eq!(
            hugepage_dir_to_size("hugepages-64kB").as_deref(),
            Some("64KB")
        );
        assert_eq!(hugepage_dir_to_size("other"), None);
    }
}
