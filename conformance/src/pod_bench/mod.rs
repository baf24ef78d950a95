//! Pod lifecycle benchmark (issue 4 point 10): berthd against containerd
//! 1.6 + runc in the same run, with the same CNI conflist, the same images
//! from the same loopback registry, driven by the same CRI client.
//!
//! Latency: N iterations of RunPodSandbox → CreateContainer →
//! StartContainer → StopContainer → RemoveContainer → StopPodSandbox →
//! RemovePodSandbox, the runtimes alternating per iteration.
//! Density: RSS (and PSS) of the daemon plus all its shims with 10 and 100
//! idle pods, one `sleep` container each.

pub mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::{container_config, Cri};
use crate::harness::images::{BUSYBOX, PAUSE};
use crate::harness::{procs, Berth, HarnessError};
use crate::pull_bench::daemons::{containerd_config_with, CtdSettings, Daemon, DaemonError};

use self::stats::{Density, Timings, STEPS};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum PodBenchError {
    /// The berthd harness failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// containerd failed to start.
    #[error(transparent)]
    Containerd(#[from] DaemonError),
    /// A CRI call failed.
    #[error("{runtime}: {step} failed")]
    Cri {
        /// The runtime.
        runtime: &'static str,
        /// The step or RPC.
        step: &'static str,
        /// The gRPC status.
        #[source]
        source: Box<tonic::Status>,
    },
    /// A file could not be written.
    #[error("writing {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A process vanished while being measured.
    #[error(transparent)]
    Proc(#[from] procs::ProcError),
    /// The daemon is not running.
    #[error("{0} is not running")]
    NotRunning(&'static str),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed lifecycle iterations per runtime.
    pub iterations: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Pod counts at which to measure memory (ascending), empty to skip.
    pub density: Vec<usize>,
    /// Only berthd.
    pub skip_containerd: bool,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    /// berthd's step timings.
    pub berthd: Timings,
    /// containerd's, unless skipped.
    pub containerd: Option<Timings>,
    /// Density rows: (runtime, measurement).
    pub density: Vec<(String, Density)>,
    /// `Version` answers.
    pub versions: Vec<String>,
}

/// The runtime processes to account memory to.
#[derive(Debug, Default)]
struct RuntimeProcs {
    daemon: Option<u32>,
    shims: Vec<u32>,
    sandboxes: Vec<u32>,
}

/// One runtime under test.
struct Subject<'a> {
    name: &'static str,
    cri: Cri,
    procs: Box<dyn Fn() -> RuntimeProcs + 'a>,
}

fn cri_err(
    runtime: &'static str,
    step: &'static str,
) -> impl FnOnce(tonic::Status) -> PodBenchError {
    move |s| PodBenchError::Cri {
        runtime,
        step,
        source: Box::new(s),
    }
}

impl Subject<'_> {
    /// One timed lifecycle; `out[step]` gets each step's duration.
    async fn lifecycle(
        &self,
        berth: &Berth,
        i: usize,
        out: &mut [Duration; 7],
    ) -> Result<(), PodBenchError> {
        let n = self.name;
        let pod_cfg = berth.pod_config(&format!("bench-{n}-{i}"));
        let cfg = container_config("c", &BUSYBOX.reference(), &["sleep", "1000000"]);
        let t = Instant::now();
        let pod = self
            .cri
            .run_pod(&pod_cfg)
            .await
            .map_err(cri_err(n, STEPS[0]))?;
        out[0] = t.elapsed();
        let t = Instant::now();
        let ctr = self
            .cri
            .create_container(&pod, &cfg, &pod_cfg)
            .await
            .map_err(cri_err(n, STEPS[1]))?;
        out[1] = t.elapsed();
        let t = Instant::now();
        self.cri.start(&ctr).await.map_err(cri_err(n, STEPS[2]))?;
        out[2] = t.elapsed();
        let t = Instant::now();
        self.cri.stop(&ctr, 0).await.map_err(cri_err(n, STEPS[3]))?;
        out[3] = t.elapsed();
        let t = Instant::now();
        self.cri.remove(&ctr).await.map_err(cri_err(n, STEPS[4]))?;
        out[4] = t.elapsed();
        let t = Instant::now();
        self.cri
            .stop_pod(&pod)
            .await
            .map_err(cri_err(n, STEPS[5]))?;
        out[5] = t.elapsed();
        let t = Instant::now();
        self.cri
            .remove_pod(&pod)
            .await
            .map_err(cri_err(n, STEPS[6]))?;
        out[6] = t.elapsed();
        Ok(())
    }

    fn measure(&self, pods: usize) -> Result<Density, PodBenchError> {
        let p = (self.procs)();
        let daemon = p.daemon.ok_or(PodBenchError::NotRunning(self.name))?;
        let mut d = Density {
            pods,
            daemon_rss: procs::rss_bytes(daemon)?,
            total_pss: procs::pss_bytes(daemon)?,
            shims: p.shims.len(),
            ..Default::default()
        };
        for s in &p.shims {
            d.shims_rss += procs::rss_bytes(*s)?;
            d.total_pss += procs::pss_bytes(*s)?;
        }
        for s in &p.sandboxes {
            d.sandbox_rss += procs::rss_bytes(*s)?;
        }
        Ok(d)
    }

    /// Starts idle pods until `target` run; returns their ids appended to `pods`.
    async fn fill(
        &self,
        berth: &Berth,
        pods: &mut Vec<String>,
        target: usize,
    ) -> Result<(), PodBenchError> {
        let n = self.name;
        while pods.len() < target {
            let pod_cfg = berth.pod_config(&format!("idle-{n}-{}", pods.len()));
            let pod = self
                .cri
                .run_pod(&pod_cfg)
                .await
                .map_err(cri_err(n, "RunPodSandbox (density)"))?;
            pods.push(pod.clone());
            let cfg = container_config("idle", &BUSYBOX.reference(), &["sleep", "1000000"]);
            self.cri
                .create_started(&pod, &cfg, &pod_cfg)
                .await
                .map_err(cri_err(n, "Create/StartContainer (density)"))?;
        }
        Ok(())
    }

    async fn density(
        &self,
        berth: &Berth,
        counts: &[usize],
    ) -> Result<Vec<(String, Density)>, PodBenchError> {
        let mut pods = Vec::new();
        let mut rows = Vec::new();
        let mut result = Ok(());
        for &target in counts {
            if let Err(e) = self.fill(berth, &mut pods, target).await {
                result = Err(e);
                break;
            }
            // Let start-up allocations settle before reading RSS.
            tokio::time::sleep(Duration::from_secs(3)).await;
            match self.measure(target) {
                Ok(d) => {
                    tracing::info!(
                        runtime = self.name,
                        pods = target,
                        rss = d.total_rss(),
                        "density"
                    );
                    rows.push((self.name.to_string(), d));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for pod in &pods {
            self.cri.cleanup_pod(pod).await;
        }
        result.map(|()| rows)
    }
}

fn write(path: &Path, text: &str) -> Result<(), PodBenchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PodBenchError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| PodBenchError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Starts a private containerd using berth's test network conflist, the
/// same hosts.toml and the pause image from the same registry.
pub fn start_containerd(berth: &Berth) -> Result<Daemon, PodBenchError> {
    let base = berth.fp.root.join("containerd");
    let cni = base.join("net.d");
    berth.net.write_conflist(&cni).map_err(HarnessError::from)?;
    let sandbox = PAUSE.reference();
    let text = containerd_config_with(&CtdSettings {
        base: &base,
        certs_d: &berth.certs_d,
        sandbox_image: &sandbox,
        cni_conf_dir: &cni,
        cni_bin_dir: &berth.net.bin_dir,
    });
    write(&base.join("config.toml"), &text)?;
    Ok(Daemon::start_containerd_with(&base, &text)?)
}

/// containerd's shims (started with `-address <its socket>`) and the pause
/// processes under them.
fn containerd_procs(d: &Daemon) -> RuntimeProcs {
    let needle = format!("-address {}", d.socket.display());
    let shims: Vec<u32> = procs::processes_with_arg(&needle)
        .into_iter()
        .filter(|p| p.comm.starts_with("containerd-shim"))
        .map(|p| p.pid)
        .collect();
    let pause_marker = PAUSE.entrypoint.map(|e| e.join(" ")).unwrap_or_default();
    let sandboxes = procs::descendants(&shims)
        .into_iter()
        .filter(|pid| procs::proc_info(*pid).is_some_and(|p| p.cmdline.contains(&pause_marker)))
        .collect();
    RuntimeProcs {
        daemon: d.pid(),
        shims,
        sandboxes,
    }
}

/// Kills containerd's leftover shims and their children (containerd does
/// not stop them when it exits).
pub fn kill_containerd_shims(d: &Daemon) {
    let shims = containerd_procs(d).shims;
    let mut all = procs::descendants(&shims);
    all.extend(&shims);
    procs::kill_all(&all);
    procs::wait_gone(&all, Duration::from_secs(10));
}

/// Runs the benchmark. Everything is removed at the end (pods through CRI,
/// then both daemons, shims, mounts, network, registry).
pub async fn run(opts: &Options) -> Result<Report, PodBenchError> {
    let berth = tokio::task::block_in_place(Berth::start)?;
    let mut ctd = if opts.skip_containerd {
        None
    } else {
        Some(tokio::task::block_in_place(|| start_containerd(&berth))?)
    };
    let result = run_with(opts, &berth, ctd.as_ref()).await;
    if let Some(d) = ctd.as_mut() {
        // Pods first (CNI DEL, portmap rules), then the daemon, then shims.
        let c = Cri::new(&d.socket);
        if let Ok(pods) = c.list_pods(None).await {
            for p in pods {
                c.cleanup_pod(&p.id).await;
            }
        }
        if let Err(e) = d.stop(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "stopping containerd");
        }
        kill_containerd_shims(d);
    }
    drop(ctd);
    tokio::task::block_in_place(|| drop(berth));
    result
}

async fn run_with(
    opts: &Options,
    berth: &Berth,
    ctd: Option<&Daemon>,
) -> Result<Report, PodBenchError> {
    let mut subjects = vec![Subject {
        name: "berthd",
        cri: berth.client(),
        procs: Box::new(|| RuntimeProcs {
            daemon: berth.pid(),
            shims: berth.shim_pids(),
            sandboxes: Vec::new(),
        }),
    }];
    if let Some(d) = ctd {
        let cri = Cri::new(&d.socket);
        cri.wait_ready(Duration::from_secs(30))
            .await
            .map_err(cri_err("containerd", "Version"))?;
        for img in [BUSYBOX, PAUSE] {
            cri.pull(&img.reference())
                .await
                .map_err(cri_err("containerd", "PullImage"))?;
        }
        subjects.push(Subject {
            name: "containerd",
            cri,
            procs: Box::new(move || containerd_procs(d)),
        });
    }
    let mut versions = Vec::new();
    for s in &subjects {
        let v = s.cri.version().await.map_err(cri_err(s.name, "Version"))?;
        versions.push(format!(
            "{}: {} {}",
            s.name, v.runtime_name, v.runtime_version
        ));
    }

    let mut timings: Vec<Timings> = subjects.iter().map(|s| Timings::new(s.name)).collect();
    for i in 0..opts.warmup + opts.iterations {
        // Alternate who goes first so neither always runs on a warmer cache.
        let order: Vec<usize> = if i % 2 == 0 {
            (0..subjects.len()).collect()
        } else {
            (0..subjects.len()).rev().collect()
        };
        for s in order {
            let mut steps = [Duration::ZERO; 7];
            subjects[s].lifecycle(berth, i, &mut steps).await?;
            if i >= opts.warmup {
                for (k, d) in steps.iter().enumerate() {
                    timings[s].samples[k].push(*d);
                }
            }
        }
        if (i + 1) % 10 == 0 {
            tracing::info!(done = i + 1, "lifecycle iterations");
        }
    }

    let mut density = Vec::new();
    if !opts.density.is_empty() {
        for s in &subjects {
            density.extend(s.density(berth, &opts.density).await?);
        }
    }
    let mut it = timings.into_iter();
    let berthd = it.next().unwrap_or_else(|| Timings::new("berthd"));
    Ok(Report {
        berthd,
        containerd: it.next(),
        density,
        versions,
    })
}
