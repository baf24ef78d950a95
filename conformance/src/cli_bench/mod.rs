//! `bench-cli` (issue 6, item 6): the wall time of starting a throw-away
//! container from a terminal — `berth run --rm IMAGE true` against
//! `podman run --rm IMAGE true` (Debian's podman) and the CRI sequence a
//! kubelet-less user types with crictl (`runp`, `create`, `start`, poll
//! `inspect` until exited, `rmp -f`) — every command a fresh process, as
//! in a shell, the subjects alternating per iteration so they share the
//! machine's noise.
//!
//! berthd, its loopback registry and the image come from the conformance
//! harness ([`Berth::start`]); podman pulls the same image from that
//! registry into private `--root`/`--runroot` directories.

pub mod podman;
pub mod subjects;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::harness::{Berth, HarnessError};
use crate::pod_bench::stats::Percentiles;

use self::subjects::Subject;

/// Where crictl is looked for.
pub const CRICTL_BIN: &str = "/opt/bin/crictl";

/// Errors of a CLI benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum CliBenchError {
    /// The harness (berthd, registry, images) failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A program could not be started.
    #[error("running {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command of a subject failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A container never reached the exited state.
    #[error("{what}: container {id} did not exit within {waited:?}")]
    NeverExited {
        /// The subject.
        what: &'static str,
        /// The container id.
        id: String,
        /// How long it was polled.
        waited: Duration,
    },
    /// A file or directory of the benchmark could not be written.
    #[error("writing {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed runs per subject.
    pub runs: usize,
    /// Untimed runs per subject first.
    pub warmup: usize,
    /// Leave podman out.
    pub skip_podman: bool,
    /// Install podman with apt-get when it is missing.
    pub install_podman: bool,
    /// crictl's path (its column is skipped when it is absent).
    pub crictl: PathBuf,
}

/// One measured subject.
#[derive(Debug, Clone)]
pub struct Column {
    /// What was run (`berth run --rm`, ...).
    pub name: String,
    /// Wall time of each timed run.
    pub samples: Vec<Duration>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    /// berth first, then the others that could run.
    pub columns: Vec<Column>,
    /// Versions of what was measured.
    pub versions: Vec<String>,
    /// Why a subject is missing or how it had to be configured.
    pub notes: Vec<String>,
}

/// Runs the benchmark (blocking; starts and cleans up its own daemons).
pub fn run(opts: &Options) -> Result<Report, CliBenchError> {
    let berth = Berth::start()?;
    let mut notes = Vec::new();
    let mut subjects: Vec<Box<dyn Subject>> = vec![Box::new(subjects::BerthRun::new(&berth)?)];
    if opts.skip_podman {
        notes.push("podman: skipped (--skip-podman)".to_string());
    } else {
        match podman::Podman::prepare(&berth, opts.install_podman) {
            Ok((p, mut n)) => {
                notes.append(&mut n);
                subjects.push(Box::new(p));
            }
            Err(why) => notes.push(format!("podman: not measured: {why}")),
        }
    }
    if opts.crictl.is_file() {
        subjects.push(Box::new(subjects::Crictl::new(&berth, &opts.crictl)?));
    } else {
        notes.push(format!(
            "crictl: not measured: {} is not installed",
            opts.crictl.display()
        ));
    }
    let versions = subjects.iter().map(|s| s.version()).collect();
    let measured = measure(&mut subjects, opts);
    for s in &mut subjects {
        s.cleanup();
    }
    let columns = measured?;
    drop(subjects);
    drop(berth);
    Ok(Report {
        columns,
        versions,
        notes,
    })
}

/// Warm-up then timed runs, the subjects alternating within each round.
fn measure(
    subjects: &mut [Box<dyn Subject>],
    opts: &Options,
) -> Result<Vec<Column>, CliBenchError> {
    for i in 0..opts.warmup {
        for s in subjects.iter_mut() {
            s.once(i)?;
        }
    }
    let mut columns: Vec<Column> = subjects
        .iter()
        .map(|s| Column {
            name: s.name(),
            samples: Vec::with_capacity(opts.runs),
        })
        .collect();
    for i in 0..opts.runs {
        for (s, col) in subjects.iter_mut().zip(&mut columns) {
            col.samples.push(s.once(opts.warmup + i)?);
        }
        tracing::info!(run = i + 1, of = opts.runs, "timed round done");
    }
    Ok(columns)
}

/// The result table: median and p90 per subject and its median over
/// berth's; then whether berth met the target (at most half of podman's
/// median).
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| command (wall time per container, {} runs) | median ms | p90 ms | median / berth's |",
        report.columns.first().map_or(0, |c| c.samples.len())
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let base = report
        .columns
        .first()
        .and_then(|c| Percentiles::of(&c.samples));
    for col in &report.columns {
        let Some(p) = Percentiles::of(&col.samples) else {
            continue;
        };
        let ratio = match base {
            Some(b) if b.median > 0.0 => format!("{:.2}x", p.median / b.median),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {ratio} |",
            col.name, p.median, p.p90
        );
    }
    let podman = report
        .columns
        .iter()
        .find(|c| c.name.starts_with("podman"))
        .and_then(|c| Percentiles::of(&c.samples));
    if let (Some(b), Some(p)) = (base, podman) {
        let verdict = if b.median <= p.median / 2.0 {
            "met"
        } else {
            "NOT met"
        };
        let _ = writeln!(
            out,
            "\ntarget (berth median <= half of podman's): {verdict} ({:.1} ms vs {:.1} ms / 2 = {:.1} ms)",
            b.median,
            p.median,
            p.median / 2.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ms: &[u64]) -> Column {
        Column {
            name: name.into(),
            samples: ms.iter().map(|m| Duration::from_millis(*m)).collect(),
        }
    }

    #[test]
    fn table_has_ratios_against_berth_and_the_verdict() {
        let r = Report {
            columns: vec![
                col("berth run --rm", &[100, 110, 120]),
                col("podman run --rm (runc)", &[300, 310, 320]),
            ],
            versions: vec![],
            notes: vec![],
        };
        let t = table(&r);
        assert!(
            t.contains("| berth run --rm | 110.0 | 120.0 | 1.00x |"),
            "{t}"
        );
        assert!(
            t.contains("| podman run --rm (runc) | 310.0 | 320.0 | 2.82x |"),
            "{t}"
        );
        assert!(
            t.contains("target (berth median <= half of podman's): met"),
            "{t}"
        );
        let slow = Report {
            columns: vec![col("berth", &[200]), col("podman", &[300])],
            versions: vec![],
            notes: vec![],
        };
        assert!(table(&slow).contains("NOT met"));
    }
}
