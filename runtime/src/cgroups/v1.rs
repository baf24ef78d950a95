//! Applying resources to cgroup v1 hierarchies (also pids and hugetlb for
//! cgroup2, where cgroups-rs uses the same controller with its v2 flag).

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use cgroups_rs::fs::blkio::BlkIoController;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hugetlb::HugeTlbController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue};
use cgroups_rs::FreezerState;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};
use tracing::warn;

use super::{read_file, write_file, CgroupError};

/// Wraps a cgroups-rs error with what we were doing and where.
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

fn u64_dev(what: &'static str, major: i64, minor: i64) -> Result<(u64, u64), CgroupError> {
    match (u64::try_from(major), u64::try_from(minor)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(CgroupError::InvalidResource {
            what,
            reason: format!("invalid device {major}:{minor}"),
        }),
    }
}

/// Whether a memory section asks for nothing.
pub fn memory_is_empty(m: &LinuxMemory) -> bool {
    m.limit().is_none()
        && m.reservation().is_none()
        && m.swap().is_none()
        && m.kernel().is_none()
        && m.kernel_tcp().is_none()
        && m.swappiness().is_none()
        && m.disable_oom_killer() != Some(true)
}

/// memory.limit_in_bytes, memsw, soft limit, kmem.tcp, swappiness, oom_control.
pub fn memory(dir: &Path, mount: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let c = MemController::new(dir.to_owned(), mount.to_owned(), false);
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let swap = match m.swap() {
        // Without swap accounting (swapaccount=0) there is no memsw file:
        // "unlimited" needs nothing, anything else cannot be honoured.
        Some(-1) if !memsw.exists() => None,
        Some(s) if !memsw.exists() => {
            return Err(CgroupError::Unsupported(format!(
                "swap limit {s} needs swap accounting: {} does not exist",
                memsw.display()
            )))
        }
        other => other,
    };
    match (m.limit(), swap) {
        (Some(limit), Some(swap)) => {
            // The kernel keeps memsw >= limit at every step: raise memsw
            // before the limit, lower it after.
            let text = read_file(&memsw)?;
            let current: i128 = text.trim().parse().map_err(|_| CgroupError::Parse {
                path: memsw.clone(),
                reason: format!("not a number: {:?}", text.trim()),
            })?;
            if swap == -1 || i128::from(swap) > current {
                ctl("memsw limit", dir, c.set_memswap_limit(swap))?;
                ctl("memory limit", dir, c.set_limit(limit))?;
            } else {
                ctl("memory limit", dir, c.set_limit(limit))?;
                ctl("memsw limit", dir, c.set_memswap_limit(swap))?;
            }
        }
        (Some(limit), None) => ctl("memory limit", dir, c.set_limit(limit))?,
        (None, Some(swap)) => ctl("memsw limit", dir, c.set_memswap_limit(swap))?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        ctl("memory soft limit", dir, c.set_soft_limit(r))?;
    }
    if m.kernel().is_some() {
        // memory.kmem.limit_in_bytes is deprecated and refused by current kernels; runc ignores it too.
        warn!(dir = %dir.display(), "linux.resources.memory.kernel is ignored (deprecated by the kernel)");
    }
    if let Some(t) = m.kernel_tcp() {
        ctl("kmem.tcp limit", dir, c.set_tcp_limit(t))?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidResource {
                what: "memory.swappiness",
                reason: format!("{s} is above 100"),
            });
        }
        ctl("swappiness", dir, c.set_swappiness(s))?;
    }
    if m.disable_oom_killer() == Some(true) {
        ctl("disable oom killer", dir, c.disable_oom_killer())?;
    }
    Ok(())
}

/// Whether a cpu section sets anything besides cpus/mems.
pub fn cpu_is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
        || c.idle().is_some()
        || c.burst().is_some()
}

/// cpu.shares, CFS quota/period/burst, realtime runtime/period, idle.
pub fn cpu(dir: &Path, mount: &Path, r: &LinuxCpu) -> Result<(), CgroupError> {
    let c = CpuController::new(dir.to_owned(), mount.to_owned(), false);
    if let Some(shares) = r.shares().filter(|s| *s != 0) {
        ctl("cpu.shares", dir, c.set_shares(shares))?;
        // The kernel clamps shares silently; report it instead of pretending.
        let got = ctl("cpu.shares", dir, c.shares())?;
        if got != shares {
            return Err(CgroupError::InvalidResource {
                what: "cpu.shares",
                reason: format!("asked for {shares}, the kernel set {got}"),
            });
        }
    }
    // A shorter period can be refused while the old quota is in place
    // (quota/period would exceed the parent's); retry it after the quota.
    let mut period_pending = None;
    if let Some(p) = r.period().filter(|p| *p != 0) {
        if let Err(e) = c.set_cfs_period(p) {
            if r.quota().is_none() {
                return ctl("cpu.cfs_period_us", dir, Err(e));
            }
            period_pending = Some(p);
        }
    }
    if let Some(q) = r.quota().filter(|q| *q != 0) {
        ctl("cpu.cfs_quota_us", dir, c.set_cfs_quota(q))?;
    }
    if let Some(p) = period_pending {
        ctl("cpu.cfs_period_us", dir, c.set_cfs_period(p))?;
    }
    if let Some(b) = r.burst() {
        // cgroups-rs has no setter for the CFS burst.
        write_file(&dir.join("cpu.cfs_burst_us"), &b.to_string())?;
    }
    if let Some(p) = r.realtime_period().filter(|p| *p != 0) {
        ctl("cpu.rt_period_us", dir, c.set_rt_period_us(p))?;
    }
    if let Some(rt) = r.realtime_runtime().filter(|r| *r != 0) {
        ctl("cpu.rt_runtime_us", dir, c.set_rt_runtime(rt))?;
    }
    if let Some(idle) = r.idle() {
        // cgroups-rs has no setter for cpu.idle.
        write_file(&dir.join("cpu.idle"), &idle.to_string())?;
    }
    Ok(())
}

/// Creates a cpuset cgroup. cgroups-rs's create copies cpus/mems into every
/// empty ancestor (a v1 cpuset with empty cpus refuses tasks) but only logs
/// when that fails, so we check the result.
pub fn create_cpuset(dir: &Path, mount: &Path) -> Result<(), CgroupError> {
    let c = CpuSetController::new(dir.to_owned(), mount.to_owned(), false);
    ctl("create cpuset", dir, c.create())?;
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let p = dir.join(f);
        if read_file(&p)?.trim().is_empty() {
            return Err(CgroupError::Parse {
                path: p,
                reason: "still empty after copying from the parent cgroups".into(),
            });
        }
    }
    Ok(())
}

/// cpuset.cpus and cpuset.mems.
pub fn cpuset(dir: &Path, mount: &Path, r: &LinuxCpu) -> Result<(), CgroupError> {
    let c = CpuSetController::new(dir.to_owned(), mount.to_owned(), false);
    if let Some(cpus) = r.cpus().as_deref().filter(|s| !s.is_empty()) {
        ctl("cpuset.cpus", dir, c.set_cpus(cpus))?;
    }
    if let Some(mems) = r.mems().as_deref().filter(|s| !s.is_empty()) {
        ctl("cpuset.mems", dir, c.set_mems(mems))?;
    }
    Ok(())
}

/// pids.max (same file on v1 and v2); a negative limit means "max".
pub fn pids(dir: &Path, mount: &Path, v2: bool, limit: i64) -> Result<(), CgroupError> {
    let c = PidController::new(dir.to_owned(), mount.to_owned(), v2);
    let v = if limit > 0 {
        MaxValue::Value(limit)
    } else {
        MaxValue::Max
    };
    ctl("pids.max", dir, c.set_pid_max(v))
}

/// Per page size hugetlb limits (v1 `limit_in_bytes`, v2 `max`).
pub fn hugetlb(
    dir: &Path,
    mount: &Path,
    v2: bool,
    limits: &[LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    let c = HugeTlbController::new(dir.to_owned(), mount.to_owned(), v2);
    for l in limits {
        let size = l.page_size();
        if !c.size_supported(size) {
            return Err(CgroupError::InvalidResource {
                what: "hugepageLimits",
                reason: format!("page size {size} not supported (have {:?})", c.get_sizes()),
            });
        }
        let limit = u64::try_from(l.limit()).map_err(|_| CgroupError::InvalidResource {
            what: "hugepageLimits",
            reason: format!("negative limit {} for {size}", l.limit()),
        })?;
        ctl("hugetlb limit", dir, c.set_limit_in_bytes(size, limit))?;
        // The reservation counter (cgroups-rs does not know it) must follow,
        // or a reserved-but-unfaulted mapping escapes the limit.
        let rsvd = if v2 {
            dir.join(format!("hugetlb.{size}.rsvd.max"))
        } else {
            dir.join(format!("hugetlb.{size}.rsvd.limit_in_bytes"))
        };
        if rsvd.exists() {
            write_file(&rsvd, &limit.to_string())?;
        }
    }
    Ok(())
}

/// Whether a blockIO section asks for nothing.
pub fn blkio_is_empty(b: &LinuxBlockIo) -> bool {
    let empty = |v: &Option<Vec<_>>| v.as_ref().is_none_or(|v: &Vec<_>| v.is_empty());
    b.weight().is_none()
        && b.leaf_weight().is_none()
        && b.weight_device().as_ref().is_none_or(|v| v.is_empty())
        && empty(b.throttle_read_bps_device())
        && empty(b.throttle_write_bps_device())
        && empty(b.throttle_read_iops_device())
        && empty(b.throttle_write_iops_device())
}

/// The first of `names` that exists in `dir`.
fn first_existing(dir: &Path, names: &[&str]) -> Option<std::path::PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.exists())
}

fn unsupported(dir: &Path, what: &str) -> CgroupError {
    CgroupError::Unsupported(format!(
        "{what} needs an I/O scheduler with weights (no such file in {})",
        dir.display()
    ))
}

/// blkio weights and throttles.
pub fn blkio(dir: &Path, mount: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // Weights are written directly: cgroups-rs only knows blkio.weight
    // (CFQ), which current kernels lack; BFQ exposes blkio.bfq.weight.
    if let Some(w) = b.weight() {
        let f = first_existing(dir, &["blkio.weight", "blkio.bfq.weight"])
            .ok_or_else(|| unsupported(dir, "blockIO.weight"))?;
        write_file(&f, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight() {
        let f = first_existing(dir, &["blkio.leaf_weight"])
            .ok_or_else(|| unsupported(dir, "blockIO.leafWeight"))?;
        write_file(&f, &w.to_string())?;
    }
    for wd in b.weight_device().iter().flatten() {
        let (maj, min) = u64_dev("blockIO.weightDevice", wd.major(), wd.minor())?;
        if let Some(w) = wd.weight() {
            let f = first_existing(dir, &["blkio.weight_device", "blkio.bfq.weight_device"])
                .ok_or_else(|| unsupported(dir, "blockIO.weightDevice"))?;
            write_file(&f, &format!("{maj}:{min} {w}"))?;
        }
        if let Some(w) = wd.leaf_weight() {
            let f = first_existing(dir, &["blkio.leaf_weight_device"])
                .ok_or_else(|| unsupported(dir, "blockIO.weightDevice.leafWeight"))?;
            write_file(&f, &format!("{maj}:{min} {w}"))?;
        }
    }
    throttles(dir, mount, false, b)
}

/// Throttles through cgroups-rs, which writes the right v1 files and v2 io.max keys.
pub fn throttles(dir: &Path, mount: &Path, v2: bool, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    type Setter = fn(&BlkIoController, u64, u64, u64) -> cgroups_rs::fs::error::Result<()>;
    let c = BlkIoController::new(dir.to_owned(), mount.to_owned(), v2);
    let sets: [(&'static str, _, Setter); 4] = [
        (
            "throttle read bps",
            b.throttle_read_bps_device(),
            BlkIoController::throttle_read_bps_for_device,
        ),
        (
            "throttle write bps",
            b.throttle_write_bps_device(),
            BlkIoController::throttle_write_bps_for_device,
        ),
        (
            "throttle read iops",
            b.throttle_read_iops_device(),
            BlkIoController::throttle_read_iops_for_device,
        ),
        (
            "throttle write iops",
            b.throttle_write_iops_device(),
            BlkIoController::throttle_write_iops_for_device,
        ),
    ];
    for (op, devs, set) in sets {
        for d in devs.iter().flatten() {
            let (maj, min) = u64_dev("blockIO throttle", d.major(), d.minor())?;
            ctl(op, dir, set(&c, maj, min, d.rate()))?;
        }
    }
    Ok(())
}

/// How long freezing may take before we give up (runc waits similarly).
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes freezer.state and waits until the kernel reports the new state.
pub fn freeze(dir: &Path, mount: &Path, frozen: bool) -> Result<(), CgroupError> {
    let c = FreezerController::new(dir.to_owned(), mount.to_owned(), false);
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        // Re-writing FROZEN while FREEZING is harmless and nudges tasks that
        // were in an uninterruptible sleep during the first attempt.
        if frozen {
            ctl("freezer.state FROZEN", dir, c.freeze())?;
        } else {
            ctl("freezer.state THAWED", dir, c.thaw())?;
        }
        let state = ctl("freezer.state", dir, c.state())?;
        match (frozen, state) {
            (true, FreezerState::Frozen) | (false, FreezerState::Thawed) => return Ok(()),
            _ if start.elapsed() > FREEZE_TIMEOUT => {
                if frozen {
                    // Never leave a half-frozen container behind.
                    let _ = c.thaw();
                }
                return Err(CgroupError::FreezeTimeout {
                    path: dir.to_owned(),
                    state: if frozen { "FROZEN" } else { "THAWED" },
                    waited: start.elapsed(),
                });
            }
            _ => {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}
