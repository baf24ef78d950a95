//! Measuring: timing statistics, peak RSS of a process through
//! `/proc/<pid>/status` (VmHWM, reset via `clear_refs`), disk usage of
//! a daemon's data directories, and the result table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Errors reading process or filesystem statistics.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A /proc file could not be read or written.
    #[error("{op} {path}")]
    Proc {
        /// What we tried.
        op: &'static str,
        /// The /proc path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `/proc/<pid>/status` has no VmHWM line (kernel thread or gone).
    #[error("no VmHWM in /proc/{pid}/status")]
    NoHwm {
        /// The process.
        pid: u32,
    },
}

/// Resets the peak resident set size (VmHWM) of `pid` to its current RSS.
pub fn reset_peak_rss(pid: u32) -> Result<(), MeasureError> {
    let path = PathBuf::from(format!("/proc/{pid}/clear_refs"));
    // "5" resets the peak RSS counter (see proc(5), clear_refs).
    std::fs::write(&path, b"5").map_err(|source| MeasureError::Proc {
        op: "writing",
        path,
        source,
    })
}

/// The peak resident set size (VmHWM) of `pid` in bytes.
pub fn peak_rss(pid: u32) -> Result<u64, MeasureError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|source| MeasureError::Proc {
        op: "reading",
        path,
        source,
    })?;
    parse_kib_field(&text, "VmHWM:")
        .map(|kib| kib * 1024)
        .ok_or(MeasureError::NoHwm { pid })
}

fn parse_kib_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Allocated bytes (st_blocks * 512, hard links counted once per walk) and
/// entry count under `dirs`; missing directories count as empty.
pub fn disk_usage(dirs: &[PathBuf]) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    let mut entries = 0u64;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        bytes += md.blocks() * 512;
        entries += 1;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
    (bytes, entries)
}

/// Summary of repeated timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Middle value (mean of the two middle ones for even counts).
    pub median: f64,
    /// 90th percentile, nearest rank.
    pub p90: f64,
    /// Fastest.
    pub min: f64,
    /// Slowest.
    pub max: f64,
}

impl Stats {
    /// Statistics of `samples` in seconds; `None` when empty.
    pub fn of(samples: &[Duration]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        Some(Stats {
            median,
            p90: s[rank - 1],
            min: s[0],
            max: s[n - 1],
        })
    }
}

/// Everything measured for one (image, runtime) pair.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Image label.
    pub image: String,
    /// Compressed bytes of the image's layers.
    pub compressed_bytes: u64,
    /// Runtime name.
    pub runtime: String,
    /// Cold pull durations.
    pub pulls: Vec<Duration>,
    /// Peak RSS of the daemon during each pull.
    pub peak_rss: Vec<u64>,
    /// Data-directory usage right after each pull.
    pub disk_after: Vec<u64>,
}

const MB: f64 = 1_000_000.0;

fn mb(b: u64) -> f64 {
    b as f64 / MB
}

/// Markdown table: one row per series, plus the containerd/berth ratio of
/// medians on the berthd rows.
pub fn table(series: &[Series], baseline: &str, subject: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| image | runtime | n | median s | p90 s | min s | max s | MB/s (median) | containerd/berth | peak RSS MB (max) | disk MB after pull |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for s in series {
        let Some(st) = Stats::of(&s.pulls) else {
            continue;
        };
        let ratio = if s.runtime == subject {
            series
                .iter()
                .find(|o| o.image == s.image && o.runtime == baseline)
                .and_then(|o| Stats::of(&o.pulls))
                .map(|b| format!("**{:.2}x**", b.median / st.median))
                .unwrap_or_else(|| "-".to_string())
        } else {
            "-".to_string()
        };
        let rss = s
            .peak_rss
            .iter()
            .max()
            .map(|b| format!("{:.1}", mb(*b)))
            .unwrap_or_else(|| "-".to_string());
        let disk = s
            .disk_after
            .iter()
            .max()
            .map(|b| format!("{:.1}", mb(*b)))
            .unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            out,
            "| {} ({:.1} MB) | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
            s.image,
            mb(s.compressed_bytes),
            s.runtime,
            s.pulls.len(),
            st.median,
            st.p90,
            st.min,
            st.max,
            mb(s.compressed_bytes) / st.median,
            ratio,
            rss,
            disk,
        );
    }
    out
}

/// Every sample, for the record: `image runtime iteration seconds rss_mb`.
pub fn raw_samples(series: &[Series]) -> String {
    let mut out = String::new();
    for s in series {
        for (i, d) in s.pulls.iter().enumerate() {
            let rss = s.peak_rss.get(i).map(|b| mb(*b)).unwrap_or(0.0);
            let _ = writeln!(
                out,
                "{:<8} {:<10} #{i} {:>8.3} s  peak RSS {:>7.1} MB",
                s.image,
                s.runtime,
                d.as_secs_f64(),
                rss
            );
        }
    }
    out
}

/// Current usage of `dirs` in bytes (convenience over [`disk_usage`]).
pub fn usage_bytes(dirs: &[PathBuf]) -> u64 {
    disk_usage(dirs).0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secs(v: &[f64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[test]
    fn stats_median_p90_min_max() {
        let st = Stats::of(&secs(&[5.0, 1.0, 3.0, 2.0, 4.0])).unwrap();
        assert_eq!(st.median, 3.0);
        assert_eq!(st.p90, 5.0);
        assert_eq!(st.min, 1.0);
        assert_eq!(st.max, 5.0);
        let even = Stats::of(&secs(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        assert_eq!(even.median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn own_peak_rss_is_read_and_reset() {
        let pid = std::process::id();
        let before = peak_rss(pid).unwrap();
        assert!(before > 0);
        // Touch 64 MiB so the peak rises, then drop it and reset.
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let high = peak_rss(pid).unwrap();
        assert!(high >= 60 << 20, "{high}");
        drop(big);
        reset_peak_rss(pid).unwrap();
        assert!(peak_rss(pid).unwrap() < high);
    }

    #[test]
    fn kib_fields_parse() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\n";
        assert_eq!(parse_kib_field(s, "VmHWM:"), Some(2048));
        assert_eq!(parse_kib_field(s, "VmRSS:"), None);
    }

    #[test]
    fn disk_usage_counts_hardlinks_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 1 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let (bytes, entries) = disk_usage(&[dir.path().to_path_buf()]);
        assert!((1 << 20..2 << 20).contains(&bytes), "{bytes}");
        assert_eq!(entries, 2);
        assert_eq!(disk_usage(&[dir.path().join("missing")]), (0, 0));
    }

    #[test]
    fn table_shows_ratio_on_subject_rows() {
        let mk = |rt: &str, v: &[f64]| Series {
            image: "big".into(),
            compressed_bytes: 100_000_000,
            runtime: rt.into(),
            pulls: secs(v),
            peak_rss: vec![50_000_000],
            disk_after: vec![],
        };
        let t = table(
            &[
                mk("containerd", &[4.0, 4.0, 4.0]),
                mk("berthd", &[2.0, 2.0, 2.0]),
            ],
            "containerd",
            "berthd",
        );
        assert!(t.contains("**2.00x**"), "{t}");
        assert!(t.contains("| 50.0 |"), "{t}");
    }
}
