//! Debian's podman as a benchmark subject: private `--root`/`--runroot`,
//! the image pulled over plain HTTP from the harness's loopback registry,
//! cgroupfs (this machine is cgroup v1 hybrid), crun if it can run here,
//! else runc.
//!
//! Two things this machine forces, both recorded as notes in the report:
//! - podman as root asks for RLIMIT_NOFILE 1048576 and a high RLIMIT_NPROC,
//!   which needs CAP_SYS_RESOURCE (not held here): `--ulimit` lowers both
//!   to 1024.
//! - crun 1.8.1 refuses a hybrid hierarchy whose cgroup2 mount owns a
//!   controller (hugetlb here): "cgroups in hybrid mode not supported,
//!   drop all controllers from cgroupv2", even with `--cgroups=disabled`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::subjects::{exec, version_of, Subject};
use super::CliBenchError;
use crate::harness::Berth;

/// Debian's podman.
pub const PODMAN_BIN: &str = "/usr/bin/podman";
/// The bridge podman's default CNI network creates.
const PODMAN_BRIDGE: &str = "cni-podman0";
/// Limits podman may set without CAP_SYS_RESOURCE.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// podman configured for this machine.
pub struct Podman {
    runtime: &'static str,
    dir: tempfile::TempDir,
    image: String,
    bridge_existed: bool,
}

fn bridge_exists() -> bool {
    Path::new("/sys/class/net").join(PODMAN_BRIDGE).exists()
}

impl Podman {
    fn global(&self) -> Command {
        global_cmd(self.dir.path(), self.runtime)
    }

    /// Installs podman if asked and missing, pulls the image and finds a
    /// runtime that works; the notes say what had to be adapted. The
    /// error says why podman cannot be measured.
    pub fn prepare(berth: &Berth, install: bool) -> Result<(Podman, Vec<String>), String> {
        let mut notes = Vec::new();
        if !Path::new(PODMAN_BIN).is_file() {
            if !install {
                return Err(format!("{PODMAN_BIN} is not installed (--no-install)"));
            }
            tracing::info!("installing podman with apt-get");
            let r = exec(
                Command::new("apt-get")
                    .args(["install", "-y", "podman"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            );
            if let Err(e) = r {
                return Err(format!("apt-get install -y podman failed: {e}"));
            }
            notes.push("podman: installed by this run (apt-get install -y podman)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("bench-cli-podman-")
            .tempdir()
            .map_err(|e| format!("creating podman's private root: {e}"))?;
        let image = format!("{}/busybox:1", berth.registry_host());
        let bridge_existed = bridge_exists();
        let mut p = Podman {
            runtime: "crun",
            dir,
            image,
            bridge_existed,
        };
        exec(
            p.global()
                .args(["pull", "--quiet", "--tls-verify=false", &p.image]),
        )
        .map_err(|e| format!("pulling {} from the loopback registry: {e}", p.image))?;
        let mut failures = Vec::new();
        for runtime in ["crun", "runc"] {
            p.runtime = runtime;
            match p.once(0) {
                Ok(_) => {
                    if !failures.is_empty() {
                        notes.push(format!(
                            "podman: measured with {runtime} because {}",
                            failures.join("; ")
                        ));
                    }
                    notes.push(format!(
                        "podman: --cgroup-manager cgroupfs, private --root/--runroot, default CNI \
                         network, {} (no CAP_SYS_RESOURCE here)",
                        ULIMITS.join(" ")
                    ));
                    return Ok((p, notes));
                }
                Err(e) => failures.push(format!("podman --runtime {runtime} cannot run here: {e}")),
            }
        }
        p.cleanup();
        Err(failures.join("; "))
    }
}

fn global_cmd(dir: &Path, runtime: &str) -> Command {
    let mut c = Command::new(PODMAN_BIN);
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args([
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--storage-driver",
            "overlay",
            "--runtime",
            runtime,
        ]);
    c
}

impl Subject for Podman {
    fn name(&self) -> String {
        format!("podman run --rm IMAGE true ({})", self.runtime)
    }

    fn version(&self) -> String {
        let rt = PathBuf::from(format!("/usr/bin/{}", self.runtime));
        let rt = if rt.is_file() {
            rt
        } else {
            PathBuf::from(format!("/usr/sbin/{}", self.runtime))
        };
        format!(
            "{}; {}",
            version_of(Path::new(PODMAN_BIN), &["--version"]),
            version_of(&rt, &["--version"])
        )
    }

    fn once(&mut self, _i: usize) -> Result<Duration, CliBenchError> {
        let mut cmd = self.global();
        cmd.args(["run", "--rm"])
            .args(ULIMITS)
            .args([&self.image, "true"]);
        let t = Instant::now();
        exec(&mut cmd)?;
        Ok(t.elapsed())
    }

    fn cleanup(&mut self) {
        if let Err(e) = exec(self.global().args(["system", "reset", "--force"])) {
            tracing::warn!(error = %e, "podman system reset");
        }
        if let Err(e) = crate::harness::cleanup::unmount_under(self.dir.path()) {
            tracing::warn!(error = %e, "unmounting podman's private root");
        }
        if !self.bridge_existed && bridge_exists() {
            if let Err(e) = exec(Command::new("ip").args(["link", "del", PODMAN_BRIDGE])) {
                tracing::warn!(error = %e, "removing the bridge podman made");
            }
        }
    }
}
