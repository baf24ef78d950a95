//! Applying resources in the cgroup2 hierarchy (pure v2, or the unified
//! mount of a hybrid host for the controllers it owns).

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path};
use std::thread::sleep;
use std::time::{Duration, Instant};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::memory::MemController;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};
use tracing::{debug, warn};

use super::convert::{blkio_weight_to_io_weight, shares_to_weight, swap_v2};
use super::v1::{throttles, FREEZE_TIMEOUT};
use super::{mkdir_all, read_file, write_file, CgroupError};

fn ctl<T>(
    op: &'static str,
    dir: &Path,
    r: Result<T, cgroups_rs::fs::error::Error>,
) -> Result<T, CgroupError> {
    r.map_err(|source| CgroupError::Controller {
        op,
        path: dir.to_owned(),
        source,
    })
}

/// Creates `dir` below `mount`, enabling `controllers` in the
/// `cgroup.subtree_control` of every ancestor on the way (cgroup2 only gives
/// a child the controllers its parent delegates).
pub fn create(dir: &Path, mount: &Path, controllers: &[String]) -> Result<(), CgroupError> {
    let rel = dir
        .strip_prefix(mount)
        .map_err(|_| CgroupError::InvalidPath {
            path: dir.to_owned(),
            reason: "cgroup directory is outside the cgroup2 mount",
        })?;
    let mut cur = mount.to_owned();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        enable_controllers(&cur, controllers);
        cur.push(name);
        mkdir_all(&cur)?;
    }
    Ok(())
}

/// Best effort: a parent that has processes of its own (or a controller the
/// parent lacks) refuses, and then that controller is simply absent below,
/// which `apply` reports if a resource needs it.
fn enable_controllers(parent: &Path, controllers: &[String]) {
    let available = read_file(&parent.join("cgroup.controllers")).unwrap_or_default();
    let enabled = read_file(&parent.join("cgroup.subtree_control")).unwrap_or_default();
    for c in controllers {
        let has = |list: &str| list.split_whitespace().any(|x| x == c);
        if !has(&available) || has(&enabled) {
            continue;
        }
        if let Err(e) = write_file(&parent.join("cgroup.subtree_control"), &format!("+{c}")) {
            warn!(parent = %parent.display(), controller = %c, error = %e, "cannot delegate controller");
        }
    }
}

/// memory.max, memory.low, memory.swap.max.
pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let c = MemController::new(dir.to_owned(), dir.to_owned(), true);
    if let Some(l) = m.limit() {
        // cgroups-rs turns -1 into "max"; reject other negatives ourselves.
        if l < -1 {
            return Err(CgroupError::InvalidResource {
                what: "memory.limit",
                reason: format!("{l}"),
            });
        }
        ctl("memory.max", dir, c.set_limit(l))?;
    }
    if let Some(swap) = swap_v2(m.swap(), m.limit())? {
        if dir.join("memory.swap.max").exists() {
            ctl("memory.swap.max", dir, c.set_memswap_limit(swap))?;
        } else if swap != -1 {
            return Err(CgroupError::Unsupported(format!(
                "swap limit requested but {} has no memory.swap.max (swap accounting off)",
                dir.display()
            )));
        }
    }
    if let Some(r) = m.reservation() {
        ctl("memory.low", dir, c.set_soft_limit(r))?;
    }
    // cgroups-rs's set_swappiness writes memory.swap.max on v2, which would
    // turn a swappiness into a swap limit: v2 has no swappiness, say so.
    if m.swappiness().is_some() {
        warn!(dir = %dir.display(), "memory.swappiness does not exist on cgroup v2; ignored");
    }
    if m.disable_oom_killer() == Some(true) {
        warn!(dir = %dir.display(), "disableOOMKiller is not available on cgroup v2; ignored");
    }
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        warn!(dir = %dir.display(), "kernel memory limits do not exist on cgroup v2; ignored");
    }
    Ok(())
}

/// cpu.weight (from shares), cpu.max, cpu.max.burst, cpu.idle.
pub fn cpu(dir: &Path, r: &LinuxCpu) -> Result<(), CgroupError> {
    if r.realtime_runtime().is_some_and(|v| v != 0) || r.realtime_period().is_some_and(|v| v != 0) {
        return Err(CgroupError::Unsupported(
            "realtime cpu runtime/period is not supported on cgroup v2".into(),
        ));
    }
    let c = CpuController::new(dir.to_owned(), dir.to_owned(), true);
    if let Some(shares) = r.shares().filter(|s| *s != 0) {
        // cgroups-rs writes the number as given; the conversion is ours.
        ctl("cpu.weight", dir, c.set_shares(shares_to_weight(shares)))?;
    }
    let quota = r.quota().filter(|q| *q != 0);
    let period = r.period().filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        ctl("cpu.max", dir, c.set_cfs_quota_and_period(quota, period))?;
    }
    if let Some(b) = r.burst() {
        write_file(&dir.join("cpu.max.burst"), &b.to_string())?;
    }
    if let Some(idle) = r.idle() {
        write_file(&dir.join("cpu.idle"), &idle.to_string())?;
    }
    Ok(())
}

/// cpuset.cpus / cpuset.mems.
pub fn cpuset(dir: &Path, r: &LinuxCpu) -> Result<(), CgroupError> {
    let c = CpuSetController::new(dir.to_owned(), dir.to_owned(), true);
    if let Some(cpus) = r.cpus().as_deref().filter(|s| !s.is_empty()) {
        ctl("cpuset.cpus", dir, c.set_cpus(cpus))?;
    }
    if let Some(mems) = r.mems().as_deref().filter(|s| !s.is_empty()) {
        ctl("cpuset.mems", dir, c.set_mems(mems))?;
    }
    Ok(())
}

/// io.weight / io.bfq.weight and io.max throttles.
pub fn io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // cgroups-rs writes weights only to io.bfq.weight; without BFQ the
    // generic io.weight (different range) is the right file.
    if let Some(w) = b.weight() {
        let bfq = dir.join("io.bfq.weight");
        if bfq.exists() {
            write_file(&bfq, &w.to_string())?;
        } else {
            let f = dir.join("io.weight");
            write_file(&f, &format!("default {}", blkio_weight_to_io_weight(w)))?;
        }
    }
    if b.leaf_weight().is_some() {
        warn!(dir = %dir.display(), "blockIO.leafWeight does not exist on cgroup v2; ignored");
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            let bfq = dir.join("io.bfq.weight");
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            if bfq.exists() {
                write_file(&bfq, &line)?;
            } else {
                let line = format!(
                    "{}:{} {}",
                    wd.major(),
                    wd.minor(),
                    blkio_weight_to_io_weight(w)
                );
                write_file(&dir.join("io.weight"), &line)?;
            }
        }
    }
    throttles(dir, dir, true, b)
}

/// Writes cgroup.freeze and waits for `frozen` in cgroup.events.
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    // cgroups-rs's freezer only writes cgroup.freeze; the wait is ours.
    let want = if frozen { "1" } else { "0" };
    write_file(&dir.join("cgroup.freeze"), want)?;
    let events = dir.join("cgroup.events");
    let start = Instant::now();
    loop {
        let text = read_file(&events)?;
        let state = text
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .map(str::trim);
        match state {
            Some(s) if s == want => return Ok(()),
            None => {
                return Err(CgroupError::Parse {
                    path: events,
                    reason: "no \"frozen\" key".into(),
                })
            }
            _ if start.elapsed() > FREEZE_TIMEOUT => {
                if frozen {
                    let _ = write_file(&dir.join("cgroup.freeze"), "0");
                }
                return Err(CgroupError::FreezeTimeout {
                    path: dir.to_owned(),
                    state: if frozen { "frozen" } else { "thawed" },
                    waited: start.elapsed(),
                });
            }
            _ => sleep(Duration::from_millis(2)),
        }
    }
}

/// Validates a `linux.resources.unified` key: a plain file name of the form
/// `<controller>.<knob>`, never a path.
pub fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let bad = |reason: &str| CgroupError::InvalidResource {
        what: "unified",
        reason: format!("key {key:?}: {reason}"),
    };
    if key.is_empty() || key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return Err(bad("must be a cgroup file name"));
    }
    if !key.contains('.') {
        return Err(bad("must look like <controller>.<file>"));
    }
    Ok(())
}

/// Writes every `unified` key/value pair into the container's cgroup.
pub fn unified(dir: &Path, map: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        check_unified_key(k)?;
        let p = dir.join(k);
        match std::fs::write(&p, &map[k]) {
            Ok(()) => debug!(file = %p.display(), "unified resource written"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CgroupError::InvalidResource {
                    what: "unified",
                    reason: format!(
                        "{k}: no such file in {} (controller not enabled?)",
                        dir.display()
                    ),
                })
            }
            Err(source) => {
                return Err(CgroupError::Write {
                    path: p,
                    value: map[k].clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unified_keys() {
        assert!(check_unified_key("memory.high").is_ok());
        assert!(check_unified_key("../memory.max").is_err());
        assert!(check_unified_key("a/b.c").is_err());
        assert!(check_unified_key("nodot").is_err());
        assert!(check_unified_key("").is_err());
    }
}
