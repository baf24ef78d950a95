//! `linux.resources` and `process.oomScoreAdj` from CRI
//! `LinuxContainerResources` (zero means "not set", as in the CRI).

use berth_proto::cri::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::{RuntimeOptions, SpecBuildError};

fn invalid(what: &str, value: impl ToString) -> SpecBuildError {
    SpecBuildError::InvalidResource {
        what: what.to_string(),
        value: value.to_string(),
    }
}

fn non_negative(what: &str, v: i64) -> Result<Option<u64>, SpecBuildError> {
    match v {
        0 => Ok(None),
        v if v > 0 => Ok(Some(v as u64)),
        v => Err(invalid(what, v)),
    }
}

/// Checks a cpuset list such as `0-3,8` (digits, commas, ranges low-high).
fn cpuset(what: &str, list: &str) -> Result<Option<String>, SpecBuildError> {
    if list.is_empty() {
        return Ok(None);
    }
    let ok = list.split(',').all(|part| {
        let mut ends = part.splitn(2, '-').map(|n| n.parse::<u32>());
        match (ends.next(), ends.next()) {
            (Some(Ok(_)), None) => true,
            (Some(Ok(lo)), Some(Ok(hi))) => lo <= hi,
            _ => false,
        }
    });
    if ok {
        Ok(Some(list.to_string()))
    } else {
        Err(invalid(what, list))
    }
}

/// The resources and the oom_score_adj. The memory+swap limit defaults to
/// the memory limit when the swap controller exists, so containers do not
/// swap unless asked (containerd's rule). `unified` needs cgroup v2.
pub fn linux_resources(
    r: Option<&LinuxContainerResources>,
    opts: &RuntimeOptions,
) -> Result<(LinuxResources, Option<i32>), SpecBuildError> {
    let mut out = LinuxResources::default();
    let Some(r) = r else {
        return Ok((out, None));
    };

    let mut cpu = LinuxCpu::default();
    cpu.set_shares(non_negative("cpu_shares", r.cpu_shares)?);
    cpu.set_quota(match r.cpu_quota {
        0 => None,
        -1 => Some(-1),
        q if q > 0 => Some(q),
        q => return Err(invalid("cpu_quota", q)),
    });
    cpu.set_period(non_negative("cpu_period", r.cpu_period)?);
    cpu.set_cpus(cpuset("cpuset_cpus", &r.cpuset_cpus)?);
    cpu.set_mems(cpuset("cpuset_mems", &r.cpuset_mems)?);
    out.set_cpu(Some(cpu));

    let limit = non_negative("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    let swap = match r.memory_swap_limit_in_bytes {
        0 => None,
        -1 => Some(-1),
        s if s > 0 => Some(s),
        s => return Err(invalid("memory_swap_limit_in_bytes", s)),
    };
    let mut mem = LinuxMemory::default();
    mem.set_limit(limit.map(|l| l as i64));
    if opts.swap_controller {
        mem.set_swap(swap.or(limit.map(|l| l as i64)));
    } else if swap.is_some() {
        return Err(invalid(
            "memory_swap_limit_in_bytes (no swap controller on this host)",
            r.memory_swap_limit_in_bytes,
        ));
    }
    out.set_memory(Some(mem));

    let hugepages = r
        .hugepage_limits
        .iter()
        .map(|h| {
            let size_ok = h
                .page_size
                .strip_suffix("B")
                .and_then(|s| s.strip_suffix(['K', 'M', 'G']))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !size_ok {
                return Err(invalid("hugepage page_size", &h.page_size));
            }
            let limit = i64::try_from(h.limit).map_err(|_| invalid("hugepage limit", h.limit))?;
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(limit);
            Ok(l)
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages));

    if !r.unified.is_empty() {
        if !opts.cgroup_v2 {
            return Err(SpecBuildError::UnifiedOnV1);
        }
        if let Some(k) = r
            .unified
            .keys()
            .find(|k| k.contains('/') || k.starts_with('.'))
        {
            return Err(invalid("unified key", k));
        }
        out.set_unified(Some(r.unified.clone()));
    }

    let oom = match r.oom_score_adj {
        0 => None,
        v if (-1000..=1000).contains(&v) => Some(v as i32),
        v => return Err(invalid("oom_score_adj", v)),
    };
    Ok((out, oom))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri::HugepageLimit;

    fn opts(v2: bool, swap: bool) -> RuntimeOptions {
        RuntimeOptions {
            cgroup_v2: v2,
            swap_controller: swap,
        }
    }

    #[test]
    fn cpu_memory_and_oom() {
        let r = LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpuset_cpus: "0-1,3".into(),
            cpuset_mems: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: 500,
            ..Default::default()
        };
        let (out, oom) = linux_resources(Some(&r), &opts(false, true)).unwrap();
        let cpu = out.cpu().clone().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1,3"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = out.memory().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(64 << 20), "swap defaults to the limit");
        assert_eq!(oom, Some(500));

        let r = LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            ..Default::default()
        };
        let (out, oom) = linux_resources(Some(&r), &opts(false, true)).unwrap();
        assert_eq!(out.memory().unwrap().swap(), Some(128 << 20));
        assert_eq!(oom, None);
        assert!(linux_resources(Some(&r), &opts(false, false)).is_err());
    }

    #[test]
    fn unset_means_nothing() {
        let (out, oom) =
            linux_resources(Some(&LinuxContainerResources::default()), &opts(true, true)).unwrap();
        assert_eq!(out.cpu().clone().unwrap(), LinuxCpu::default());
        assert_eq!(out.memory().unwrap().limit(), None);
        assert_eq!(out.hugepage_limits(), &None);
        assert_eq!(oom, None);
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = [
            LinuxContainerResources {
                cpu_shares: -2,
                ..Default::default()
            },
            LinuxContainerResources {
                cpuset_cpus: "0-a".into(),
                ..Default::default()
            },
            LinuxContainerResources {
                cpuset_cpus: "3-1".into(),
                ..Default::default()
            },
            LinuxContainerResources {
                oom_score_adj: 1001,
                ..Default::default()
            },
            LinuxContainerResources {
                hugepage_limits: vec![HugepageLimit {
                    page_size: "2XB".into(),
                    limit: 1,
                }],
                ..Default::default()
            },
        ];
        for r in &bad {
            assert!(
                linux_resources(Some(r), &opts(true, true)).is_err(),
                "{r:?}"
            );
        }
    }

    #[test]
    fn hugepages_and_unified() {
        let mut r = LinuxContainerResources {
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        };
        r.unified.insert("memory.high".into(), "1000000".into());
        let (out, _) = linux_resources(Some(&r), &opts(true, true)).unwrap();
        let h = out.hugepage_limits().clone().unwrap();
        assert_eq!((h[0].page_size().as_str(), h[0].limit()), ("2MB", 4 << 20));
        assert_eq!(out.unified().clone().unwrap()["memory.high"], "1000000");
        assert!(matches!(
            linux_resources(Some(&r), &opts(false, true)).unwrap_err(),
            SpecBuildError::UnifiedOnV1
        ));
        r.unified.clear();
        r.unified.insert("../memory.max".into(), "1".into());
        assert!(linux_resources(Some(&r), &opts(true, true)).is_err());
    }
}
