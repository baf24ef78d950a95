//! Latency percentiles, memory sums and the result tables of the pod
//! benchmark.

use std::fmt::Write as _;
use std::time::Duration;

/// The timed lifecycle steps, in order.
pub const STEPS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// Percentiles of one step's samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// 50th percentile (mean of the middle two for even counts).
    pub median: f64,
    /// 90th percentile, nearest rank.
    pub p90: f64,
    /// 99th percentile, nearest rank.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `samples`; `None` when empty.
    pub fn of(samples: &[Duration]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Some(Percentiles {
            median,
            p90: rank(0.90),
            p99: rank(0.99),
        })
    }
}

/// Step timings of one runtime: `samples[step][iteration]`.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Runtime name.
    pub runtime: String,
    /// One vector per entry of [`STEPS`].
    pub samples: Vec<Vec<Duration>>,
}

impl Timings {
    /// Empty timings for `runtime`.
    pub fn new(runtime: &str) -> Timings {
        Timings {
            runtime: runtime.to_string(),
            samples: vec![Vec::new(); STEPS.len()],
        }
    }

    /// Percentiles of the sum of steps `range` per iteration (e.g. the
    /// pod + container start: steps 0..3).
    pub fn combined(&self, range: std::ops::Range<usize>) -> Option<Percentiles> {
        let n = self.samples.first().map_or(0, Vec::len);
        let sums: Vec<Duration> = (0..n)
            .map(|i| range.clone().map(|s| self.samples[s][i]).sum())
            .collect();
        Percentiles::of(&sums)
    }
}

/// Memory of a runtime's own processes with a number of idle pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Density {
    /// Idle pods running.
    pub pods: usize,
    /// Daemon VmRSS, bytes.
    pub daemon_rss: u64,
    /// Sum of the shims' VmRSS, bytes.
    pub shims_rss: u64,
    /// Daemon + shims PSS, bytes.
    pub total_pss: u64,
    /// Number of shim processes.
    pub shims: usize,
    /// Sum of VmRSS of other per-pod runtime processes (containerd's pause
    /// sandbox containers), bytes.
    pub sandbox_rss: u64,
}

impl Density {
    /// Daemon + shims RSS.
    pub fn total_rss(&self) -> u64 {
        self.daemon_rss + self.shims_rss
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The latency table: one row per step (and the combined start), each
/// runtime's median/p90/p99 and the baseline/subject ratio of medians.
pub fn latency_table(subject: &Timings, baseline: Option<&Timings>) -> String {
    let mut out = String::new();
    let b_name = baseline.map_or("-", |b| b.runtime.as_str());
    let _ = writeln!(
        out,
        "| step | {s} median ms | {s} p90 | {s} p99 | {b} median ms | {b} p90 | {b} p99 | {b}/{s} |",
        s = subject.runtime,
        b = b_name
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let mut rows: Vec<(String, Option<Percentiles>, Option<Percentiles>)> = STEPS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                name.to_string(),
                Percentiles::of(&subject.samples[i]),
                baseline.and_then(|b| Percentiles::of(&b.samples[i])),
            )
        })
        .collect();
    rows.push((
        "pod+container start (Run+Create+Start)".into(),
        subject.combined(0..3),
        baseline.and_then(|b| b.combined(0..3)),
    ));
    rows.push((
        "whole lifecycle (7 steps)".into(),
        subject.combined(0..STEPS.len()),
        baseline.and_then(|b| b.combined(0..STEPS.len())),
    ));
    let cell = |p: Option<Percentiles>| match p {
        Some(p) => format!("{:.1} | {:.1} | {:.1}", p.median, p.p90, p.p99),
        None => "- | - | -".to_string(),
    };
    for (name, s, b) in rows {
        let ratio = match (s, b) {
            (Some(s), Some(b)) if s.median > 0.0 => format!("**{:.2}x**", b.median / s.median),
            _ => "-".into(),
        };
        let _ = writeln!(out, "| {name} | {} | {} | {ratio} |", cell(s), cell(b));
    }
    out
}

/// The density table and the per-pod overhead between the first and the
/// last measurement of each runtime.
pub fn density_table(rows: &[(String, Density)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| runtime | pods | daemon RSS MiB | shims | shims RSS MiB | daemon+shims RSS MiB | daemon+shims PSS MiB | sandbox (pause) RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (rt, d) in rows {
        let _ = writeln!(
            out,
            "| {rt} | {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            d.pods,
            mib(d.daemon_rss),
            d.shims,
            mib(d.shims_rss),
            mib(d.total_rss()),
            mib(d.total_pss),
            mib(d.sandbox_rss)
        );
    }
    let mut runtimes: Vec<&String> = rows.iter().map(|(r, _)| r).collect();
    runtimes.dedup();
    let _ = writeln!(out);
    for rt in runtimes {
        let mine: Vec<&Density> = rows
            .iter()
            .filter(|(r, _)| r == rt)
            .map(|(_, d)| d)
            .collect();
        if let (Some(first), Some(last)) = (mine.first(), mine.last()) {
            if last.pods > first.pods {
                let n = (last.pods - first.pods) as f64;
                let rss = (last.total_rss() as f64 - first.total_rss() as f64) / n;
                let pss = (last.total_pss as f64 - first.total_pss as f64) / n;
                let per_shim = if last.shims > 0 {
                    mib(last.shims_rss) / last.shims as f64
                } else {
                    0.0
                };
                let _ = writeln!(
                    out,
                    "{rt}: per-pod overhead {:.2} MiB RSS, {:.2} MiB PSS ({}→{} pods); mean shim RSS {:.2} MiB",
                    rss / (1024.0 * 1024.0),
                    pss / (1024.0 * 1024.0),
                    first.pods,
                    last.pods,
                    per_shim
                );
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = Percentiles::of(&ms(&(1..=100).collect::<Vec<_>>())).unwrap();
        assert_eq!(p.median, 50.5);
        assert_eq!(p.p90, 90.0);
        assert_eq!(p.p99, 99.0);
        let one = Percentiles::of(&ms(&[7])).unwrap();
        assert_eq!((one.median, one.p90, one.p99), (7.0, 7.0, 7.0));
        assert!(Percentiles::of(&[]).is_none());
    }

    #[test]
    fn tables_show_ratios_and_overhead() {
        let mut s = Timings::new("berthd");
        let mut b = Timings::new("containerd");
        for step in 0..STEPS.len() {
            s.samples[step] = ms(&[10, 10, 10]);
            b.samples[step] = ms(&[30, 30, 30]);
        }
        let t = latency_table(&s, Some(&b));
        assert!(
            t.contains("| RunPodSandbox | 10.0 | 10.0 | 10.0 | 30.0 | 30.0 | 30.0 | **3.00x** |"),
            "{t}"
        );
        assert!(
            t.contains("pod+container start (Run+Create+Start) | 30.0"),
            "{t}"
        );
        let d = |pods, shims_rss| Density {
            pods,
            daemon_rss: 10 << 20,
            shims_rss,
            total_pss: shims_rss,
            shims: pods,
            sandbox_rss: 0,
        };
        let out = density_table(&[
            ("berthd".into(), d(10, 10 << 20)),
            ("berthd".into(), d(100, 100 << 20)),
        ]);
        assert!(
            out.contains("berthd: per-pod overhead 1.00 MiB RSS"),
            "{out}"
        );
    }
}
