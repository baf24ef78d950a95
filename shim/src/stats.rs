//! berth-runtime cgroup statistics as containerd's `cgroups.v1.Metrics`
//! (the message both containerd and berthd decode, for v1 and v2 hosts).

use berth_runtime::cgroups::CgroupStats;
use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

/// Type URL containerd uses for [`Metrics`].
pub const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";

/// Converts runtime stats into the protobuf message.
pub fn to_metrics(s: &CgroupStats) -> Metrics {
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    // cgroup v2 names the same counters differently.
    let either = |v1: &str, v2: &str| {
        s.memory
            .raw
            .get(v1)
            .or_else(|| s.memory.raw.get(v2))
            .copied()
            .unwrap_or(0)
    };
    macro_rules! entry {
        ($e:expr) => {
            MemoryEntry {
                limit: $e.limit,
                usage: $e.usage,
                max: $e.max,
                failcnt: $e.failcnt,
                ..Default::default()
            }
        };
    }
    let memory = MemoryStat {
        cache: either("cache", "file"),
        rss: either("rss", "anon"),
        rss_huge: either("rss_huge", "anon_thp"),
        mapped_file: either("mapped_file", "file_mapped"),
        dirty: either("dirty", "file_dirty"),
        writeback: either("writeback", "file_writeback"),
        pg_pg_in: raw("pgpgin"),
        pg_pg_out: raw("pgpgout"),
        pg_fault: raw("pgfault"),
        pg_maj_fault: raw("pgmajfault"),
        inactive_anon: raw("inactive_anon"),
        active_anon: raw("active_anon"),
        inactive_file: raw("inactive_file"),
        active_file: raw("active_file"),
        unevictable: raw("unevictable"),
        hierarchical_memory_limit: raw("hierarchical_memory_limit"),
        hierarchical_swap_limit: raw("hierarchical_memsw_limit"),
        total_cache: raw("total_cache"),
        total_rss: raw("total_rss"),
        total_rss_huge: raw("total_rss_huge"),
        total_mapped_file: raw("total_mapped_file"),
        total_dirty: raw("total_dirty"),
        total_writeback: raw("total_writeback"),
        total_pg_pg_in: raw("total_pgpgin"),
        total_pg_pg_out: raw("total_pgpgout"),
        total_pg_fault: raw("total_pgfault"),
        total_pg_maj_fault: raw("total_pgmajfault"),
        total_inactive_anon: raw("total_inactive_anon"),
        total_active_anon: raw("total_active_anon"),
        total_inactive_file: raw("total_inactive_file"),
        total_active_file: raw("total_active_file"),
        total_unevictable: raw("total_unevictable"),
        usage: Some(entry!(s.memory.usage)).into(),
        swap: Some(entry!(s.memory.swap)).into(),
        kernel: Some(entry!(s.memory.kernel)).into(),
        kernel_tcp: Some(entry!(s.memory.kernel_tcp)).into(),
        ..Default::default()
    };
    let cpu = CPUStat {
        usage: Some(CPUUsage {
            total: s.cpu.usage.total,
            kernel: s.cpu.usage.kernel,
            user: s.cpu.usage.user,
            per_cpu: s.cpu.usage.percpu.clone(),
            ..Default::default()
        })
        .into(),
        throttling: Some(Throttle {
            periods: s.cpu.throttling.periods,
            throttled_periods: s.cpu.throttling.throttled_periods,
            throttled_time: s.cpu.throttling.throttled_time,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let pids = PidsStat {
        current: s.pids.current,
        limit: s.pids.limit,
        ..Default::default()
    };
    Metrics {
        cpu: Some(cpu).into(),
        memory: Some(memory).into(),
        pids: Some(pids).into(),
        ..Default::default()
    }
}

/// Packs metrics into the `Any` of a `StatsResponse`.
pub fn to_any(m: &Metrics) -> Result<Any, containerd_shim_protos::protobuf::Error> {
    Ok(Any {
        type_url: METRICS_TYPE_URL.to_string(),
        value: m.write_to_bytes()?,
        ..Default::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn maps_v1_and_v2_memory_names() {
        let mut s = CgroupStats::default();
        s.cpu.usage.total = 5;
        s.cpu.usage.user = 3;
        s.memory.usage.usage = 100;
        s.memory.usage.limit = 200;
        s.memory.raw.insert("anon".into(), 7);
        s.memory.raw.insert("file".into(), 9);
        s.memory.raw.insert("pgfault".into(), 11);
        s.pids.current = 2;
        let m = to_metrics(&s);
        assert_eq!(m.cpu.usage.total, 5);
        assert_eq!(m.cpu.usage.user, 3);
        assert_eq!(m.memory.usage.usage, 100);
        assert_eq!(m.memory.usage.limit, 200);
        assert_eq!(m.memory.rss, 7);
        assert_eq!(m.memory.cache, 9);
        assert_eq!(m.memory.pg_fault, 11);
        assert_eq!(m.pids.current, 2);
        let any = to_any(&m).unwrap();
        assert_eq!(any.type_url, METRICS_TYPE_URL);
        assert_eq!(Metrics::parse_from_bytes(&any.value).unwrap(), m);
    }
}
