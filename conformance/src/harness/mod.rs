//! A fresh berthd for end-to-end tests: built binaries, private root and
//! state dirs, a private CNI bridge network with a FORWARD drop rule, a
//! loopback registry with the test images (pulled through a hosts.toml
//! mirror), and cleanup of all of it on drop.
//!
//! ```no_run
//! # async fn t() {
//! let berth = berth_conformance::harness::shared().unwrap();
//! let cri = berth.client();
//! let pod = berth.pod_config("web");
//! let id = cri.run_pod(&pod).await.unwrap();
//! # }
//! ```

pub mod cleanup;
pub mod cli;
pub mod images;
pub mod net;
pub mod procs;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_proto::cri;
use berth_test_images::Registry;

use self::cleanup::Footprint;
use self::images::TestImage;
use self::net::TestNetwork;
use crate::client::{self, Cri};

/// Environment variable naming the directory with `berthd` and `berth-shim`.
pub const BIN_DIR_ENV: &str = "BERTH_BIN_DIR";
/// Environment variable: keep the root dir (logs, config) after the run.
pub const KEEP_ENV: &str = "BERTH_TEST_KEEP";
/// Environment variable: berthd's `--log-level` (default `info`).
pub const LOG_LEVEL_ENV: &str = "BERTH_TEST_LOG_LEVEL";

/// berthd's `[runtime] exec_sync_max_output` in tests: small, so the cap
/// is easy to exceed.
pub const EXEC_SYNC_MAX_OUTPUT: usize = 64 * 1024;

/// Errors starting or driving a test daemon.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The binaries are missing.
    #[error(
        "{bin} not found in {searched:?}: run `cargo build --workspace` first \
         (or set {BIN_DIR_ENV} to the directory holding berthd and berth-shim)"
    )]
    MissingBinary {
        /// Which binary.
        bin: &'static str,
        /// Directories searched.
        searched: Vec<PathBuf>,
    },
    /// Not running as root.
    #[error("the conformance harness needs root (namespaces, mounts, iptables)")]
    NotRoot,
    /// A file or directory could not be prepared.
    #[error("preparing {path}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// berthd could not be spawned.
    #[error("spawning {bin}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// berthd exited during start-up.
    #[error("berthd exited during start-up ({status}); its log {log}:\n{tail}")]
    Exited {
        /// Exit status.
        status: std::process::ExitStatus,
        /// Log path.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// berthd did not answer in time.
    #[error("berthd did not answer Version on {socket} within {waited:?}; log {log}:\n{tail}")]
    NotReady {
        /// The socket.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Log path.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// The registry did not start.
    #[error("starting the loopback registry")]
    Registry(#[source] berth_test_images::RegistryError),
    /// Images could not be built, pushed or described.
    #[error(transparent)]
    Images(#[from] images::ImageError),
    /// The test network could not be set up.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// Pulling a test image through berthd failed.
    #[error("pulling {image} through berthd")]
    Pull {
        /// The image.
        image: String,
        /// The gRPC status.
        #[source]
        source: Box<tonic::Status>,
    },
    /// A helper thread or runtime failed.
    #[error("harness runtime: {0}")]
    Runtime(String),
    /// The shared daemon failed to start earlier in this process.
    #[error("the shared test daemon failed to start: {0}")]
    Shared(String),
}

/// The built binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// berthd.
    pub berthd: PathBuf,
    /// berth-shim.
    pub shim: PathBuf,
}

/// Finds `berthd` and `berth-shim`: `$BERTH_BIN_DIR`, else the target dir
/// of the running executable (`target/<profile>/deps/x` → `target/<profile>`).
pub fn locate_binaries() -> Result<Binaries, HarnessError> {
    Ok(Binaries {
        berthd: locate("berthd")?,
        shim: locate("berth-shim")?,
    })
}

/// Finds one built binary of the workspace where [`locate_binaries`] looks.
pub fn locate(bin: &'static str) -> Result<PathBuf, HarnessError> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(BIN_DIR_ENV) {
        dirs.push(PathBuf::from(d));
    } else if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(2).map(Path::to_path_buf));
    }
    dirs.iter()
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .ok_or_else(|| HarnessError::MissingBinary {
            bin,
            searched: dirs.clone(),
        })
}

/// A short random hex string from /dev/urandom (pid and time as fallback).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok();
    if !ok {
        let seed = std::process::id() as u128
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn prep(path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Prepare {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `f` to completion on a private tokio runtime in a fresh thread, so
/// it works whether or not the caller is inside a runtime.
pub fn block_on_fresh<F, T>(f: F) -> Result<T, HarnessError>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map(|rt| rt.block_on(f))
            .map_err(|e| HarnessError::Runtime(e.to_string()))
    })
    .join()
    .map_err(|_| HarnessError::Runtime("helper thread panicked".into()))?
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A berthd under test with everything it needs.
pub struct Berth {
    /// Paths and names owned by this daemon.
    pub fp: Footprint,
    /// The binaries.
    pub bins: Binaries,
    /// The pod network.
    pub net: TestNetwork,
    /// berthd's config file.
    pub config: PathBuf,
    /// berthd's log (stdout + stderr, appended across restarts).
    pub log: PathBuf,
    /// Parent of the pods' log directories.
    pub pod_logs: PathBuf,
    /// CNI conflist directory.
    pub cni_dir: PathBuf,
    /// hosts.toml directory.
    pub certs_d: PathBuf,
    child: Mutex<Option<Child>>,
    registry: Mutex<Option<Registry>>,
    registry_host: String,
}

impl std::fmt::Debug for Berth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Berth")
            .field("id", &self.fp.id)
            .field("socket", &self.fp.socket)
            .field("log", &self.log)
            .finish()
    }
}

/// berthd's config: private dirs, the test CNI network, the shim built
/// beside it, the registry mirror.
pub fn berthd_config(b: &Berth, log_level: &str) -> String {
    format!(
        "# generated by the berth conformance harness\n\
         root = \"{root}\"\nstate = \"{state}\"\nsocket = \"{socket}\"\nlog_level = \"{log_level}\"\n\n\
         [registry]\nconfig_path = \"{certs}\"\n\n\
         [cni]\nconf_dir = \"{cni}\"\nbin_dirs = [\"{bin}\"]\n\n\
         [runtime]\nshim_path = \"{shim}\"\ncgroup_parent = \"/{cgroup}\"\n\
         exec_sync_max_output = {EXEC_SYNC_MAX_OUTPUT}\n",
        root = b.fp.root.join("root").display(),
        state = b.fp.state.display(),
        socket = b.fp.socket.display(),
        certs = b.certs_d.display(),
        cni = b.cni_dir.display(),
        bin = b.net.bin_dir.display(),
        shim = b.bins.shim.display(),
        cgroup = b.fp.cgroup,
    )
}

impl Berth {
    /// Starts a fresh berthd (see the module docs) and pulls the test
    /// images into it. Blocking; callable from inside a tokio runtime.
    pub fn start() -> Result<Berth, HarnessError> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(HarnessError::NotRoot);
        }
        let bins = locate_binaries()?;
        cleanup::sweep_stale();
        let id = random_hex(4);
        let fp = Footprint::new(&id);
        for d in [&fp.root, &fp.state] {
            std::fs::create_dir_all(d).map_err(prep(d))?;
        }
        let net = TestNetwork::create(&id, &fp.root.join("cni-ipam"))?;
        if let Err(e) = fp.write_manifest(&net) {
            tracing::warn!(error = %e, "writing the harness manifest");
        }
        let mut berth = Berth {
            config: fp.root.join("config.toml"),
            log: fp.root.join("berthd.log"),
            pod_logs: fp.root.join("pod-logs"),
            cni_dir: fp.root.join("net.d"),
            certs_d: fp.root.join("certs.d"),
            fp,
            bins,
            net,
            child: Mutex::new(None),
            registry: Mutex::new(None),
            registry_host: String::new(),
        };
        // From here on, Drop cleans whatever was set up.
        berth.net.write_conflist(&berth.cni_dir)?;
        std::fs::create_dir_all(&berth.pod_logs).map_err(prep(&berth.pod_logs))?;
        let registry = Registry::start().map_err(HarnessError::Registry)?;
        berth.registry_host = registry.host();
        let layouts = berth.fp.root.join("layouts");
        let registry = block_on_fresh(async move {
            images::publish(&registry, &layouts)
                .await
                .map(|()| registry)
        })??;
        *lock(&berth.registry) = Some(registry);
        images::write_hosts_dir(&berth.certs_d, &berth.registry_host)?;
        let level = std::env::var(LOG_LEVEL_ENV).unwrap_or_else(|_| "info".to_string());
        std::fs::write(&berth.config, berthd_config(&berth, &level))
            .map_err(prep(&berth.config))?;
        berth.spawn()?;
        let socket = berth.fp.socket.clone();
        let pulled = block_on_fresh(async move {
            let cri = Cri::new(&socket);
            for img in [images::BUSYBOX, images::BUSYBOX_STOPSIGNAL] {
                let r = img.reference();
                cri.pull(&r).await.map_err(|s| HarnessError::Pull {
                    image: r,
                    source: Box::new(s),
                })?;
            }
            Ok::<(), HarnessError>(())
        })?;
        pulled?;
        tracing::info!(id = %berth.fp.id, socket = %berth.fp.socket.display(), "test berthd up");
        Ok(berth)
    }

    /// Spawns berthd with the config and waits for `Version` to answer.
    pub fn spawn(&self) -> Result<(), HarnessError> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(prep(&self.log))?;
        let err = out.try_clone().map_err(prep(&self.log))?;
        let root = self.fp.root.join("root");
        let child = Command::new(&self.bins.berthd)
            .arg("--config")
            .arg(&self.config)
            .arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(&self.fp.state)
            .arg("--socket")
            .arg(&self.fp.socket)
            .current_dir(&self.fp.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                bin: self.bins.berthd.clone(),
                source,
            })?;
        *lock(&self.child) = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let start = Instant::now();
        loop {
            if let Some(child) = lock(&self.child).as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(HarnessError::Exited {
                        status,
                        log: self.log.clone(),
                        tail: log_tail(&self.log, 30),
                    });
                }
            }
            if std::os::unix::net::UnixStream::connect(&self.fp.socket).is_ok() {
                let socket = self.fp.socket.clone();
                let answered =
                    block_on_fresh(async move { Cri::new(&socket).version().await.is_ok() })?;
                if answered {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                return Err(HarnessError::NotReady {
                    socket: self.fp.socket.clone(),
                    waited: start.elapsed(),
                    log: self.log.clone(),
                    tail: log_tail(&self.log, 30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A CRI client (create it inside the runtime that uses it).
    pub fn client(&self) -> Cri {
        Cri::new(&self.fp.socket)
    }

    /// berthd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// Pids of this daemon's shims.
    pub fn shim_pids(&self) -> Vec<u32> {
        self.fp.shim_pids()
    }

    /// `kill -9` berthd and reap it (its shims keep running).
    pub fn kill9(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM berthd, SIGKILL after `grace`. Idempotent.
    pub fn terminate(&self, grace: Duration) {
        let Some(mut child) = lock(&self.child).take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid = child.id(), "berthd ignored SIGTERM; killing");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The reference of a test image as berthd pulls it.
    pub fn image(&self, image: TestImage) -> String {
        image.reference()
    }

    /// The loopback registry's `127.0.0.1:PORT` (plain HTTP), for pushes.
    pub fn registry_host(&self) -> &str {
        &self.registry_host
    }

    /// The busybox reference.
    pub fn busybox(&self) -> String {
        images::BUSYBOX.reference()
    }

    /// A kubelet-like pod config: unique uid, its own log directory
    /// (created, as the kubelet does), cgroup parent under this daemon's
    /// cgroup, pod network / container PID / pod IPC namespaces.
    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        let uid = random_hex(8);
        let log_dir = self.pod_logs.join(&uid);
        if let Err(e) = std::fs::create_dir_all(&log_dir) {
            tracing::warn!(dir = %log_dir.display(), error = %e, "creating a pod log dir");
        }
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: uid.clone(),
                namespace: "conformance".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: log_dir.display().to_string(),
            labels: client::labels(&[("conformance/pod", name), ("conformance/uid", &uid)]),
            annotations: client::labels(&[("conformance/annotation", "yes")]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod{uid}", self.fp.cgroup),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Removes everything: pods through CRI while berthd still answers
    /// (so CNI DEL runs), then berthd, shims, cgroups, mounts, the
    /// network, the registry and the directories. Errors are logged.
    pub fn shutdown(&mut self) {
        if self.pid().is_some() {
            let socket = self.fp.socket.clone();
            let r = block_on_fresh(async move {
                let cri = Cri::new(&socket);
                let work = async {
                    for p in cri.list_pods(None).await.unwrap_or_default() {
                        cri.cleanup_pod(&p.id).await;
                    }
                };
                tokio::time::timeout(Duration::from_secs(60), work)
                    .await
                    .is_ok()
            });
            if !matches!(r, Ok(true)) {
                tracing::warn!("removing pods through CRI did not finish; forcing cleanup");
            }
        }
        self.terminate(Duration::from_secs(10));
        let steps = [
            ("shims", self.fp.kill_shims()),
            ("cgroups", self.fp.remove_cgroups()),
            ("mounts", self.fp.unmount_all()),
        ];
        for (step, r) in steps {
            if let Err(e) = r {
                tracing::warn!(step, error = %e, "test daemon cleanup");
            }
        }
        if let Err(e) = self.net.cleanup() {
            tracing::warn!(error = %e, "test network cleanup");
        }
        if let Some(mut r) = lock(&self.registry).take() {
            r.stop();
        }
        if std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("berth test daemon kept: {}", self.fp.root.display());
            let _ = std::fs::remove_dir_all(&self.fp.state);
        } else if let Err(e) = self.fp.remove_dirs() {
            tracing::warn!(error = %e, "removing test dirs");
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The daemon shared by the tests of one test binary, or why it failed.
static SHARED: Mutex<Option<Result<Arc<Berth>, String>>> = Mutex::new(None);

extern "C" fn drop_shared_at_exit() {
    // Statics are never dropped: without this the shared berthd, its
    // shims, mounts and iptables rule would outlive the test binary.
    let taken = lock(&SHARED).take();
    drop(taken);
}

fn register_exit_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `atexit` only stores the function pointer; the handler
        // is a plain `extern "C" fn` with no arguments that does not unwind
        // (Berth's Drop logs errors instead of panicking).
        let rc = unsafe { libc::atexit(drop_shared_at_exit) };
        if rc != 0 {
            tracing::warn!("atexit registration failed; the shared daemon will leak");
        }
    });
}

/// The test binary's shared daemon, started on first use and cleaned up
/// when the process exits.
pub fn shared() -> Result<Arc<Berth>, HarnessError> {
    let mut guard = lock(&SHARED);
    if guard.is_none() {
        register_exit_hook();
        *guard = Some(Berth::start().map(Arc::new).map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        }));
    }
    match guard.as_ref() {
        Some(Ok(b)) => Ok(Arc::clone(b)),
        Some(Err(msg)) => Err(HarnessError::Shared(msg.clone())),
        None => Err(HarnessError::Shared("not started".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_length_asked() {
        let a = random_hex(4);
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_hex(8), random_hex(8));
    }

    #[test]
    fn missing_binaries_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        // Safe here: no other test in this binary reads BERTH_BIN_DIR.
        std::env::set_var(BIN_DIR_ENV, dir.path());
        let err = locate_binaries().unwrap_err();
        std::env::remove_var(BIN_DIR_ENV);
        let msg = err.to_string();
        assert!(msg.contains("cargo build --workspace"), "{msg}");
        assert!(msg.contains("berthd"), "{msg}");
    }

    #[test]
    fn block_on_fresh_works_inside_and_outside_a_runtime() {
        assert_eq!(block_on_fresh(async { 7 }).unwrap(), 7);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            assert_eq!(block_on_fresh(async { 8 }).unwrap(), 8);
        });
    }
}
