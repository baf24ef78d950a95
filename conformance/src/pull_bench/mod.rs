//! Cold-pull benchmark: berthd against containerd 1.6 (CRI plugin), both
//! pulling the same images from one loopback registry through the same
//! `hosts.toml` mirror, driven by the same CRI client code.
//!
//! Modules: [`images`] (fixtures, generation, push, hosts.toml),
//! [`daemons`] (the two runtimes in private temp dirs), [`cri`] (the
//! client), [`measure`] (timings, RSS, disk usage, table).

pub mod cri;
pub mod daemons;
pub mod images;
pub mod measure;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_test_images::Registry;

use self::cri::{CriClient, CriError};
use self::daemons::{Daemon, DaemonError};
use self::images::{BenchImage, BigImageParams, ImagesError};
use self::measure::{MeasureError, Series};

/// Bytes a data directory may keep after a removal and still count as
/// empty (directory entries, a stray lock file).
const COLD_SLACK: u64 = 512 << 10;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The loopback registry did not start.
    #[error("starting the loopback registry")]
    Registry(#[source] berth_test_images::RegistryError),
    /// Images could not be built or pushed.
    #[error(transparent)]
    Images(#[from] ImagesError),
    /// A daemon failed to start or stop.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// A CRI call failed (a failed pull lands here).
    #[error(transparent)]
    Cri(#[from] CriError),
    /// Reading RSS failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// A removal left the image's data on disk, so the next pull would not
    /// be cold.
    #[error("{runtime}: {image} still uses {left} bytes in {dirs:?} {waited:?} after RemoveImage")]
    NotCold {
        /// The daemon.
        runtime: &'static str,
        /// The image.
        image: String,
        /// Bytes above the empty-store baseline.
        left: u64,
        /// Its data directories.
        dirs: Vec<PathBuf>,
        /// How long we waited for GC.
        waited: Duration,
    },
    /// PullImage succeeded but ImageStatus does not know the image.
    #[error("{runtime}: ImageStatus of {image} is empty right after PullImage")]
    Missing {
        /// The daemon.
        runtime: &'static str,
        /// The image.
        image: String,
    },
    /// A daemon has no pid (it exited).
    #[error("{0} is not running")]
    NotRunning(&'static str),
    /// The work directory could not be created.
    #[error("creating the work directory under {dir}")]
    WorkDir {
        /// The parent.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed cold pulls per image and runtime.
    pub iterations: usize,
    /// Untimed cold pulls per image and runtime first (registry and page
    /// cache warm for both).
    pub warmup: usize,
    /// Shape of the big image.
    pub big: BigImageParams,
    /// The berthd binary.
    pub berthd: PathBuf,
    /// berthd's `--log-level`.
    pub berthd_log_level: String,
    /// Parent of the temporary work directory.
    pub work_parent: PathBuf,
    /// Keep the work directory (logs) instead of deleting it.
    pub keep: bool,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    /// One series per (image, runtime), images in push order.
    pub series: Vec<Series>,
    /// `Version` answers: (daemon name, runtime name and version).
    pub versions: Vec<(String, String)>,
    /// The images pulled.
    pub images: Vec<BenchImage>,
    /// Where logs were kept, when `keep` was set.
    pub kept: Option<PathBuf>,
}

/// A daemon under test with its client and empty-store disk usage.
struct Subject {
    daemon: Daemon,
    client: CriClient,
    baseline: u64,
}

impl Subject {
    fn pid(&self) -> Result<u32, BenchError> {
        self.daemon
            .pid()
            .ok_or(BenchError::NotRunning(self.daemon.name))
    }

    fn usage_above_baseline(&self) -> u64 {
        measure::usage_bytes(&self.daemon.data_dirs).saturating_sub(self.baseline)
    }

    /// Removes every benchmark image and waits until their blobs and
    /// snapshots are gone: each pull starts from an empty store.
    async fn make_cold(&mut self, all: &[String], image: &str) -> Result<(), BenchError> {
        for name in all {
            self.client.remove(name).await?;
        }
        let start = Instant::now();
        loop {
            let left = self.usage_above_baseline();
            let mut present = false;
            for name in all {
                present |= self.client.status(name).await?.is_some();
            }
            if !present && left <= COLD_SLACK {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::NotCold {
                    runtime: self.daemon.name,
                    image: image.to_string(),
                    left,
                    dirs: self.daemon.data_dirs.clone(),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One cold pull: returns (duration, peak RSS, disk used after).
    async fn cold_pull(
        &mut self,
        all: &[String],
        image: &str,
    ) -> Result<(Duration, u64, u64), BenchError> {
        self.make_cold(all, image).await?;
        // Flush the previous pull's dirty pages now, not during this one.
        nix::unistd::sync();
        let pid = self.pid()?;
        measure::reset_peak_rss(pid)?;
        let start = Instant::now();
        let image_ref = self.client.pull(image).await?;
        let took = start.elapsed();
        let rss = measure::peak_rss(pid)?;
        if self.client.status(image).await?.is_none() {
            return Err(BenchError::Missing {
                runtime: self.daemon.name,
                image: image.to_string(),
            });
        }
        let disk = self.usage_above_baseline();
        tracing::info!(
            runtime = self.daemon.name,
            image,
            image_ref,
            secs = took.as_secs_f64(),
            rss_mb = rss / 1_000_000,
            "pulled"
        );
        Ok((took, rss, disk))
    }
}

async fn start_subject(daemon: Daemon) -> Result<(Subject, String), BenchError> {
    let mut client = CriClient::new(&daemon.socket);
    let version = client.wait_ready(Duration::from_secs(30)).await?;
    let baseline = measure::usage_bytes(&daemon.data_dirs);
    Ok((
        Subject {
            daemon,
            client,
            baseline,
        },
        version,
    ))
}

/// Runs the whole benchmark; everything started is stopped and removed
/// on every path (daemons and registry on drop, the work dir unless `keep`).
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let work = tempfile::Builder::new()
        .prefix("berth-bench-pull-")
        .tempdir_in(&opts.work_parent)
        .map_err(|source| BenchError::WorkDir {
            dir: opts.work_parent.clone(),
            source,
        })?;
    let result = run_in(opts, work.path()).await;
    let kept = if opts.keep {
        let p = work.keep();
        tracing::info!(dir = %p.display(), "kept the work directory");
        Some(p)
    } else {
        if let Err(e) = daemons::unmount_under(work.path()) {
            tracing::warn!(error = %e, "unmounting before removing the work dir");
        }
        drop(work);
        None
    };
    result.map(|mut r| {
        r.kept = kept;
        r
    })
}

async fn run_in(opts: &Options, work: &std::path::Path) -> Result<Report, BenchError> {
    let mut registry = Registry::start().map_err(BenchError::Registry)?;
    tracing::info!(registry = %registry.host(), "loopback registry up");
    let images = images::publish(&registry, &work.join("layouts"), opts.big).await?;
    let certs_d = work.join("certs.d");
    images::write_hosts_dir(&certs_d, &registry.host())?;

    let (ctd, ctd_version) = start_subject(Daemon::start_containerd(
        &work.join("containerd"),
        &certs_d,
    )?)
    .await?;
    let (berth, berth_version) = start_subject(Daemon::start_berthd(
        &opts.berthd,
        &work.join("berthd"),
        &certs_d,
        &opts.berthd_log_level,
    )?)
    .await?;
    let versions = vec![
        ("containerd".to_string(), ctd_version),
        ("berthd".to_string(), berth_version),
    ];
    let mut subjects = [ctd, berth];
    let all: Vec<String> = images.iter().map(|i| i.reference.clone()).collect();

    let mut series: Vec<Series> = images
        .iter()
        .flat_map(|img| {
            subjects.iter().map(move |s| Series {
                image: img.label.to_string(),
                compressed_bytes: img.compressed_bytes,
                runtime: s.daemon.name.to_string(),
                ..Default::default()
            })
        })
        .collect();

    for round in 0..opts.warmup + opts.iterations {
        let timed = round >= opts.warmup;
        for (i, img) in images.iter().enumerate() {
            // Alternate who goes first so neither always follows the
            // other's writeback or cache effects.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for s in order {
                let (took, rss, disk) = subjects[s].cold_pull(&all, &img.reference).await?;
                if timed {
                    let entry = &mut series[i * 2 + s];
                    entry.pulls.push(took);
                    entry.peak_rss.push(rss);
                    entry.disk_after.push(disk);
                }
            }
        }
    }
    for s in &mut subjects {
        s.daemon.stop(Duration::from_secs(10))?;
    }
    registry.stop();
    Ok(Report {
        series,
        versions,
        images,
        kept: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The whole benchmark on a tiny image: both daemons pull through the
    /// mirror, removals really free the data, samples are recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root, /usr/bin/containerd and a berthd binary in $BERTHD"]
    async fn tiny_run_measures_both_runtimes() {
        let berthd = PathBuf::from(std::env::var_os("BERTHD").expect("set BERTHD"));
        let parent = tempfile::tempdir().unwrap();
        let opts = Options {
            iterations: 2,
            warmup: 0,
            big: BigImageParams {
                layers: 2,
                layer_mib: 2,
            },
            berthd,
            berthd_log_level: "info".to_string(),
            work_parent: parent.path().to_path_buf(),
            keep: false,
        };
        let report = run(&opts).await.unwrap();
        assert_eq!(report.series.len(), 4);
        for s in &report.series {
            assert_eq!(s.pulls.len(), 2, "{}/{}", s.image, s.runtime);
            assert!(s.peak_rss.iter().all(|r| *r > 1_000_000));
            assert!(s.disk_after.iter().all(|d| *d > 1_000_000), "{s:?}");
        }
        // The work dir is gone and nothing stayed mounted.
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
        assert!(daemons::mounts_under(parent.path()).is_empty());
    }
}
