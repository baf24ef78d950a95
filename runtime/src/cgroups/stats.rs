//! Resource usage in the JSON shape of runc's `events --stats` `data` field.
//!
//! Read directly from the cgroup files: cgroups-rs's stat readers replace
//! unreadable files with zeroes (`unwrap_or_default`), which would report a
//! broken cgroup as an idle one.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::convert::hugepage_dir_to_size;
use super::{CgroupError, CgroupManager, Mode};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// cgroup statistics of a container (runc `types.Stats` field names).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CgroupStats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// cpuset configuration.
    pub cpuset: CpusetStats,
    /// Memory usage.
    pub memory: MemoryStats,
    /// Process count.
    pub pids: PidsStats,
    /// Block I/O.
    pub blkio: BlkioStats,
    /// Hugetlb usage per page size ("2MB", ...).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

/// CPU statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuStats {
    /// Usage in nanoseconds.
    pub usage: CpuUsage,
    /// CFS throttling.
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    /// Total.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per CPU, kernel mode.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU, user mode.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Kernel mode.
    pub kernel: u64,
    /// User mode.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Throttling {
    /// Elapsed periods.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total throttled time in nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// cpuset settings in effect.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpusetStats {
    /// CPUs the cgroup may use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    /// cpuset.cpu_exclusive (v1).
    pub cpu_exclusive: u64,
    /// Memory nodes the cgroup may use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    /// cpuset.mem_hardwall (v1).
    pub mem_hardwall: u64,
    /// cpuset.mem_exclusive (v1).
    pub mem_exclusive: u64,
    /// cpuset.memory_migrate (v1).
    pub memory_migrate: u64,
    /// cpuset.memory_spread_page (v1).
    pub memory_spread_page: u64,
    /// cpuset.memory_spread_slab (v1).
    pub memory_spread_slab: u64,
    /// cpuset.memory_pressure (v1).
    pub memory_pressure: u64,
    /// cpuset.sched_load_balance (v1).
    pub sched_load_balance: u64,
    /// cpuset.sched_relax_domain_level (v1).
    pub sched_relax_domain_level: i64,
}

/// One memory counter set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryEntry {
    /// Limit in bytes (u64::MAX when unlimited).
    pub limit: u64,
    /// Current usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Memory statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryStats {
    /// Page cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory + swap.
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// pids statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PidsStats {
    /// Processes now.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// pids.max (0 = unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One blkio counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", ...
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// Counter value.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BlkioStats {
    /// Bytes transferred.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Hugetlb statistics for one page size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HugetlbStats {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak (v1 only).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocation failures.
    pub failcnt: u64,
}

/// Reads a file, `None` when it does not exist (controller feature absent).
fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_err(path: &Path, text: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_owned(),
        reason: format!("unexpected content {:?}", text.trim()),
    }
}

/// A single number; "max" (and v1's huge "unlimited") map to u64::MAX.
fn read_num(path: &Path) -> Result<u64, CgroupError> {
    let Some(t) = read_opt(path)? else {
        return Ok(0);
    };
    match t.trim() {
        "max" => Ok(u64::MAX),
        s => s.parse().map_err(|_| parse_err(path, &t)),
    }
}

/// "key value" lines.
fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    let Some(t) = read_opt(path)? else {
        return Ok(BTreeMap::new());
    };
    parse_keyed(&t).ok_or_else(|| parse_err(path, &t))
}

fn parse_keyed(t: &str) -> Option<BTreeMap<String, u64>> {
    t.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn read_list(path: &Path) -> Result<Vec<u64>, CgroupError> {
    let Some(t) = read_opt(path)? else {
        return Ok(Vec::new());
    };
    t.split_whitespace()
        .map(|v| v.parse().map_err(|_| parse_err(path, &t)))
        .collect()
}

/// v1 "8:0 Read 123" lines (the "Total" line is skipped).
fn parse_blkio_v1(t: &str) -> Option<Vec<BlkioEntry>> {
    let mut out = Vec::new();
    for l in t.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let (maj, min) = f[0].split_once(':')?;
        out.push(BlkioEntry {
            major: maj.parse().ok()?,
            minor: min.parse().ok()?,
            op: f[1].to_owned(),
            value: f[2].parse().ok()?,
        });
    }
    Some(out)
}

/// v2 io.stat "8:0 rbytes=1 wbytes=2 rios=3 wios=4 ..." → (bytes, ios).
fn parse_io_stat(t: &str) -> Option<(Vec<BlkioEntry>, Vec<BlkioEntry>)> {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for l in t.lines() {
        let mut f = l.split_whitespace();
        let Some(dev) = f.next() else { continue };
        let (maj, min) = dev.split_once(':')?;
        let (major, minor) = (maj.parse().ok()?, min.parse().ok()?);
        for kv in f {
            let (k, v) = kv.split_once('=')?;
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value: v.parse().ok()?,
            });
        }
    }
    Some((bytes, ios))
}

/// A cpu or node list such as "0-3,6".
fn parse_list_ranges(t: &str) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    for part in t.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

fn read_ranges(path: &Path) -> Result<Vec<u16>, CgroupError> {
    let Some(t) = read_opt(path)? else {
        return Ok(Vec::new());
    };
    parse_list_ranges(&t).ok_or_else(|| parse_err(path, &t))
}

fn cpuset(dir: &Path, v2: bool) -> Result<CpusetStats, CgroupError> {
    if v2 {
        return Ok(CpusetStats {
            cpus: read_ranges(&dir.join("cpuset.cpus.effective"))?,
            mems: read_ranges(&dir.join("cpuset.mems.effective"))?,
            ..CpusetStats::default()
        });
    }
    let n = |f: &str| read_num(&dir.join(format!("cpuset.{f}")));
    let level = dir.join("cpuset.sched_relax_domain_level");
    let level = match read_opt(&level)? {
        Some(t) => t.trim().parse().map_err(|_| parse_err(&level, &t))?,
        None => 0,
    };
    Ok(CpusetStats {
        cpus: read_ranges(&dir.join("cpuset.cpus"))?,
        cpu_exclusive: n("cpu_exclusive")?,
        mems: read_ranges(&dir.join("cpuset.mems"))?,
        mem_hardwall: n("mem_hardwall")?,
        mem_exclusive: n("mem_exclusive")?,
        memory_migrate: n("memory_migrate")?,
        memory_spread_page: n("memory_spread_page")?,
        memory_spread_slab: n("memory_spread_slab")?,
        memory_pressure: n("memory_pressure")?,
        sched_load_balance: n("sched_load_balance")?,
        sched_relax_domain_level: level,
    })
}

fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    Ok(MemoryEntry {
        limit: read_num(&dir.join(format!("{prefix}.limit_in_bytes")))?,
        usage: read_num(&dir.join(format!("{prefix}.usage_in_bytes")))?,
        max: read_num(&dir.join(format!("{prefix}.max_usage_in_bytes")))?,
        failcnt: read_num(&dir.join(format!("{prefix}.failcnt")))?,
    })
}

fn memory_v1(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let raw = read_keyed(&dir.join("memory.stat"))?;
    Ok(MemoryStats {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: memory_entry_v1(dir, "memory")?,
        swap: memory_entry_v1(dir, "memory.memsw")?,
        kernel: memory_entry_v1(dir, "memory.kmem")?,
        kernel_tcp: memory_entry_v1(dir, "memory.kmem.tcp")?,
        raw,
    })
}

fn memory_v2(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let raw = read_keyed(&dir.join("memory.stat"))?;
    let events = read_keyed(&dir.join("memory.events"))?;
    let usage = MemoryEntry {
        limit: read_num(&dir.join("memory.max"))?,
        usage: read_num(&dir.join("memory.current"))?,
        max: read_num(&dir.join("memory.peak"))?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // Like v1's memsw (and runc), "swap" is memory + swap.
    let swap = MemoryEntry {
        limit: read_num(&dir.join("memory.swap.max"))?.saturating_add(usage.limit),
        usage: read_num(&dir.join("memory.swap.current"))?.saturating_add(usage.usage),
        max: 0,
        failcnt: 0,
    };
    Ok(MemoryStats {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        raw,
        ..MemoryStats::default()
    })
}

fn cpu_v1(acct: Option<&Path>, cpu: Option<&Path>) -> Result<CpuStats, CgroupError> {
    let mut s = CpuStats::default();
    if let Some(d) = acct {
        s.usage.total = read_num(&d.join("cpuacct.usage"))?;
        s.usage.percpu = read_list(&d.join("cpuacct.usage_percpu"))?;
        s.usage.percpu_kernel = read_list(&d.join("cpuacct.usage_percpu_sys"))?;
        s.usage.percpu_user = read_list(&d.join("cpuacct.usage_percpu_user"))?;
        s.usage.kernel = read_num(&d.join("cpuacct.usage_sys"))?;
        s.usage.user = read_num(&d.join("cpuacct.usage_user"))?;
    }
    if let Some(d) = cpu {
        let st = read_keyed(&d.join("cpu.stat"))?;
        s.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
    Ok(s)
}

fn cpu_v2(dir: &Path) -> Result<CpuStats, CgroupError> {
    let st = read_keyed(&dir.join("cpu.stat"))?;
    let us = |k: &str| st.get(k).copied().unwrap_or(0).saturating_mul(1000);
    Ok(CpuStats {
        usage: CpuUsage {
            total: us("usage_usec"),
            kernel: us("system_usec"),
            user: us("user_usec"),
            ..CpuUsage::default()
        },
        throttling: Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        },
    })
}

fn blkio_v1(dir: &Path) -> Result<BlkioStats, CgroupError> {
    let pick = |names: &[&str]| -> Result<Vec<BlkioEntry>, CgroupError> {
        for n in names {
            let p = dir.join(n);
            if let Some(t) = read_opt(&p)? {
                let e = parse_blkio_v1(&t).ok_or_else(|| parse_err(&p, &t))?;
                if !e.is_empty() {
                    return Ok(e);
                }
            }
        }
        Ok(Vec::new())
    };
    Ok(BlkioStats {
        io_service_bytes_recursive: pick(&[
            "blkio.io_service_bytes_recursive",
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ])?,
        io_serviced_recursive: pick(&[
            "blkio.io_serviced_recursive",
            "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        ])?,
    })
}

fn io_v2(dir: &Path) -> Result<BlkioStats, CgroupError> {
    let p = dir.join("io.stat");
    let Some(t) = read_opt(&p)? else {
        return Ok(BlkioStats::default());
    };
    let (bytes, ios) = parse_io_stat(&t).ok_or_else(|| parse_err(&p, &t))?;
    Ok(BlkioStats {
        io_service_bytes_recursive: bytes,
        io_serviced_recursive: ios,
    })
}

fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| hugepage_dir_to_size(&e.file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

fn hugetlb(dir: &Path, v2: bool) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in hugepage_sizes() {
        let f = |suffix: &str| dir.join(format!("hugetlb.{size}.{suffix}"));
        let s = if v2 {
            HugetlbStats {
                usage: read_num(&f("current"))?,
                max: 0,
                failcnt: read_keyed(&f("events"))?.get("max").copied().unwrap_or(0),
            }
        } else {
            HugetlbStats {
                usage: read_num(&f("usage_in_bytes"))?,
                max: read_num(&f("max_usage_in_bytes"))?,
                failcnt: read_num(&f("failcnt"))?,
            }
        };
        out.insert(size, s);
    }
    Ok(out)
}

/// Gathers the statistics of every hierarchy the container uses.
pub fn collect(m: &CgroupManager) -> Result<CgroupStats, CgroupError> {
    let mut s = CgroupStats::default();
    let v1 = |c: &str| m.v1_dir(c).map(|d| d.dir.as_path());
    if m.mode == Mode::V2 {
        if let Some(d) = m.unified.as_deref() {
            s.cpu = cpu_v2(d)?;
        }
    } else {
        s.cpu = cpu_v1(v1("cpuacct"), v1("cpu"))?;
    }
    if let Some(d) = v1("cpuset") {
        s.cpuset = cpuset(d, false)?;
    } else if let Some(d) = m.v2_dir("cpuset") {
        s.cpuset = cpuset(d, true)?;
    }
    if let Some((d, v2)) = m.memory_dir() {
        s.memory = if v2 { memory_v2(d)? } else { memory_v1(d)? };
    }
    if let Some(d) = v1("pids").or_else(|| m.v2_dir("pids")) {
        let limit = read_num(&d.join("pids.max"))?;
        s.pids = PidsStats {
            current: read_num(&d.join("pids.current"))?,
            limit: if limit == u64::MAX { 0 } else { limit },
        };
    }
    if let Some(d) = v1("blkio") {
        s.blkio = blkio_v1(d)?;
    } else if let Some(d) = m.v2_dir("io") {
        s.blkio = io_v2(d)?;
    }
    if let Some(d) = v1("hugetlb") {
        s.hugetlb = hugetlb(d, false)?;
    } else if let Some(d) = m.v2_dir("hugetlb") {
        s.hugetlb = hugetlb(d, true)?;
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_blkio_formats() {
        let v1 = "8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n";
        let e = parse_blkio_v1(v1).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        let v2 = "254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n";
        let (b, i) = parse_io_stat(v2).unwrap();
        assert_eq!(b.iter().map(|e| e.value).collect::<Vec<_>>(), vec![10, 20]);
        assert_eq!(i[1].op, "Write");
        assert!(parse_io_stat("x:y rbytes=1").is_none());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_list_ranges("0-2,5\n").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_list_ranges("").unwrap(), Vec::<u16>::new());
        assert!(parse_list_ranges("3-1").is_none());
        assert!(parse_list_ranges("a").is_none());
    }

    #[test]
    fn keyed_and_json_shape() {
        assert_eq!(parse_keyed("a 1\nb 2\n").unwrap()["b"], 2);
        assert!(parse_keyed("a x\n").is_none());
        let mut s = CgroupStats::default();
        s.memory.kernel_tcp.limit = 5;
        s.pids.current = 3;
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["memory"]["kernelTCP"]["limit"], 5);
        assert_eq!(j["pids"]["current"], 3);
        assert!(j["pids"].get("limit").is_none());
        assert!(j["cpu"]["usage"].get("kernel").is_some());
        s.cpu.throttling.throttled_periods = 2;
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["cpu"]["throttling"]["throttledPeriods"], 2);
        assert!(j["cpuset"].get("cpus").is_none());
    }
}
