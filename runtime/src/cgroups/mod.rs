//! Container cgroups with the cgroupfs driver: v1, v2 and the hybrid layout
//! (v1 controllers plus a cgroup2 mount, e.g. `/sys/fs/cgroup/unified`, that
//! owns the controllers v1 does not have, such as hugetlb).
//!
//! Limits are written through `cgroups-rs` controllers where the crate does
//! the right thing; the crate's own hierarchy detection is not used because
//! it ignores the cgroup2 mount of a hybrid host (see `layout.rs`). Files the
//! crate gets wrong or does not know are written directly, with the reason
//! next to the write. Device rules use the v1 devices controller, or an eBPF
//! program on the cgroup2 directory when there is none (`bpf.rs`).

mod bpf;
mod convert;
mod devices;
mod join;
mod layout;
mod oom;
mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

pub use convert::{blkio_weight_to_io_weight, shares_to_weight, swap_v2};
pub use join::CgroupJoin;
pub use layout::Mode;
pub use oom::{OomEvent, OomNotifier};
pub use stats::CgroupStats;

use layout::{dir_in, parse_cgroups_path, CgroupPath, Layout};

/// Errors of the cgroups module.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup or cgroup2 mount found in mountinfo.
    #[error("no cgroup hierarchy is mounted (checked /proc/self/mountinfo)")]
    NoHierarchy,
    /// `cgroupsPath` in systemd's `slice:prefix:name` form.
    #[error("cgroupsPath {path:?} uses the systemd notation (slice:prefix:name) but the systemd cgroup driver is not supported; use a cgroupfs path")]
    SystemdPath {
        /// The path as given.
        path: PathBuf,
    },
    /// `cgroupsPath` cannot be used.
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Reading a cgroup file failed.
    #[error("reading {path}")]
    Read {
        /// File read.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Writing a cgroup file failed.
    #[error("writing {value:?} to {path}")]
    Write {
        /// File written.
        path: PathBuf,
        /// Value written.
        value: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroups-rs controller call failed.
    #[error("cgroups-rs: {op} in {path}")]
    Controller {
        /// What was being set.
        op: &'static str,
        /// Cgroup directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: cgroups_rs::fs::error::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("creating cgroup {path}")]
    Create {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (after retries).
    #[error("removing cgroup {path}")]
    Remove {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup file had unexpected content.
    #[error("parsing {path}: {reason}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A resource value cannot be applied.
    #[error("invalid {what} resource: {reason}")]
    InvalidResource {
        /// Which resource.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A resource was requested whose controller is not available on this host.
    #[error(
        "{resource} requested but the {controller} controller is not available (cgroup {path})"
    )]
    ControllerMissing {
        /// Resource asked for.
        resource: &'static str,
        /// Controller needed.
        controller: &'static str,
        /// Container cgroup path.
        path: PathBuf,
    },
    /// Feature not implemented or not possible on this cgroup version.
    #[error("{0}")]
    Unsupported(String),
    /// Freezing or thawing did not settle in time.
    #[error("cgroup {path} did not become {state} within {waited:?}")]
    FreezeTimeout {
        /// Cgroup directory.
        path: PathBuf,
        /// Wanted state.
        state: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// Sending a signal failed.
    #[error("sending {signal} to pid {pid}")]
    Signal {
        /// Target.
        pid: i32,
        /// Signal.
        signal: Signal,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// A system call of the OOM notifier or of the eBPF device program failed.
    #[error("{op} for {path}")]
    Notify {
        /// Operation.
        op: &'static str,
        /// Cgroup file or directory concerned.
        path: PathBuf,
        /// Cause.
        #[source]
        source: nix::Error,
    },
}

/// A v1 hierarchy directory of the container for one controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct V1Dir {
    /// The container's cgroup directory.
    dir: PathBuf,
    /// The hierarchy's mount point.
    mount: PathBuf,
}

/// The cgroups of one container across every hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupManager {
    /// cgroupsPath as given, or the default `/berth/<id>`.
    path: PathBuf,
    mode: Mode,
    /// v1 controller name → directories.
    v1: BTreeMap<String, V1Dir>,
    /// The container's directory in the cgroup2 hierarchy, when used.
    unified: Option<PathBuf>,
    /// The cgroup2 mount point, when used.
    unified_mount: Option<PathBuf>,
    /// Controllers handled through cgroup2.
    v2_controllers: Vec<String>,
}

impl CgroupManager {
    /// Detects v1 / v2 / hybrid and resolves `cgroups_path` (absolute, relative
    /// to the caller's cgroup like runc, or `None` → `/berth/<id>`).
    pub fn new(cgroups_path: Option<&Path>, container_id: &str) -> Result<Self, CgroupError> {
        let layout = Layout::detect()?;
        Self::with_layout(&layout, cgroups_path, container_id)
    }

    fn with_layout(
        layout: &Layout,
        cgroups_path: Option<&Path>,
        container_id: &str,
    ) -> Result<Self, CgroupError> {
        let cg = parse_cgroups_path(cgroups_path, container_id)?;
        let path = match (&cg, cgroups_path) {
            (CgroupPath::Absolute(p), None) => Path::new("/").join(p),
            (_, Some(p)) => p.to_owned(),
            (CgroupPath::Relative(p), None) => p.clone(),
        };
        let v1 = layout
            .v1
            .iter()
            .map(|(name, m)| {
                let own = layout.own.get(name).map(PathBuf::as_path);
                let d = V1Dir {
                    dir: dir_in(m, own, &cg),
                    mount: m.mount_point.clone(),
                };
                (name.clone(), d)
            })
            .collect();
        let v2_controllers: Vec<String> = layout
            .v2_controllers
            .iter()
            .filter(|c| layout.v2_owns(c))
            .cloned()
            .collect();
        let use_unified = layout.mode == Mode::V2 || !v2_controllers.is_empty();
        let (unified, unified_mount) = match (&layout.unified, use_unified) {
            (Some(m), true) => {
                let own = layout.own.get("").map(PathBuf::as_path);
                (Some(dir_in(m, own, &cg)), Some(m.mount_point.clone()))
            }
            _ => (None, None),
        };
        Ok(Self {
            path,
            mode: layout.mode,
            v1,
            unified,
            unified_mount,
            v2_controllers,
        })
    }

    /// The cgroup path (as stored in state).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected layout.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Every directory this container owns, v1 hierarchies first (deduplicated
    /// for co-mounted controllers), then the cgroup2 one.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for d in self.v1.values() {
            if !out.contains(&d.dir.as_path()) {
                out.push(&d.dir);
            }
        }
        if let Some(u) = &self.unified {
            out.push(u);
        }
        out
    }

    /// The directory for a v1 controller, if that controller is mounted.
    fn v1_dir(&self, controller: &str) -> Option<&V1Dir> {
        self.v1.get(controller)
    }

    /// The cgroup2 directory when `controller` is handled there.
    fn v2_dir(&self, controller: &str) -> Option<&Path> {
        let u = self.unified.as_deref()?;
        self.v2_controllers
            .iter()
            .any(|c| c == controller)
            .then_some(u)
    }

    /// Creates the cgroup in every hierarchy and applies `resources`.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        for (name, d) in &self.v1 {
            if name == "cpuset" {
                v1::create_cpuset(&d.dir, &d.mount)?;
            } else {
                mkdir_all(&d.dir)?;
            }
        }
        if let (Some(dir), Some(mount)) = (&self.unified, &self.unified_mount) {
            v2::create(dir, mount, &self.v2_controllers)?;
        }
        debug!(path = %self.path.display(), mode = ?self.mode, "cgroup created");
        match resources {
            Some(r) => self.update(r),
            None => Ok(()),
        }
    }

    /// Moves process `pid` (and its threads) into the container's cgroups.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        // The "tasks"/"cgroup.procs" write is a one-liner; cgroups-rs's Cgroup
        // handle would re-detect the hierarchy with its v1/v2-only logic.
        for d in self.dirs() {
            write_file(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies resource limits (also used by `update`).
    pub fn update(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.apply_memory(r)?;
        self.apply_cpu(r)?;
        self.apply_pids(r)?;
        self.apply_blkio(r)?;
        self.apply_hugetlb(r)?;
        self.apply_devices(r)?;
        self.apply_network(r)?;
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            warn!(path = %self.path.display(), "linux.resources.rdma is ignored");
        }
        if let Some(u) = r.unified().as_ref().filter(|m| !m.is_empty()) {
            match (self.mode, &self.unified) {
                (Mode::V2, Some(dir)) => v2::unified(dir, u)?,
                _ => {
                    return Err(CgroupError::Unsupported(
                        "unified resources need cgroup v2".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    fn missing(&self, resource: &'static str, controller: &'static str) -> CgroupError {
        CgroupError::ControllerMissing {
            resource,
            controller,
            path: self.path.clone(),
        }
    }

    fn apply_memory(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(m) = r.memory() else { return Ok(()) };
        if m.check_before_update() == Some(true) {
            self.check_memory_usage(m.limit())?;
        }
        if m.use_hierarchy() == Some(false) {
            warn!(path = %self.path.display(), "memory.useHierarchy=false is ignored: current kernels are always hierarchical");
        }
        if let Some(d) = self.v1_dir("memory") {
            v1::memory(&d.dir, &d.mount, m)
        } else if let Some(d) = self.v2_dir("memory") {
            v2::memory(d, m)
        } else if v1::memory_is_empty(m) {
            Ok(())
        } else {
            Err(self.missing("linux.resources.memory", "memory"))
        }
    }

    /// checkBeforeUpdate: refuse a memory limit below what the cgroup already uses,
    /// instead of letting the kernel reclaim or OOM-kill to get there.
    fn check_memory_usage(&self, limit: Option<i64>) -> Result<(), CgroupError> {
        let (Some(limit), Some((dir, v2))) = (limit, self.memory_dir()) else {
            return Ok(());
        };
        let Ok(limit) = u64::try_from(limit) else {
            return Ok(());
        };
        let file = dir.join(if v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        });
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            // Not created yet: nothing is using memory.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CgroupError::Read { path: file, source }),
        };
        let usage: u64 = text.trim().parse().map_err(|_| CgroupError::Parse {
            path: file.clone(),
            reason: format!("not a number: {:?}", text.trim()),
        })?;
        if usage > limit {
            return Err(CgroupError::InvalidResource {
                what: "memory.limit",
                reason: format!("{limit} is below the current usage {usage} (checkBeforeUpdate)"),
            });
        }
        Ok(())
    }

    fn apply_cpu(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(c) = r.cpu() else { return Ok(()) };
        if let Some(d) = self.v1_dir("cpu") {
            v1::cpu(&d.dir, &d.mount, c)?;
        } else if let Some(d) = self.v2_dir("cpu") {
            v2::cpu(d, c)?;
        } else if v1::cpu_is_set(c) {
            return Err(self.missing("linux.resources.cpu", "cpu"));
        }
        if c.cpus().is_none() && c.mems().is_none() {
            return Ok(());
        }
        if let Some(d) = self.v1_dir("cpuset") {
            v1::cpuset(&d.dir, &d.mount, c)
        } else if let Some(d) = self.v2_dir("cpuset") {
            v2::cpuset(d, c)
        } else {
            Err(self.missing("linux.resources.cpu.cpus/mems", "cpuset"))
        }
    }

    fn apply_pids(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(p) = r.pids() else { return Ok(()) };
        if p.limit() == 0 {
            return Ok(());
        }
        if let Some(d) = self.v1_dir("pids") {
            v1::pids(&d.dir, &d.mount, false, p.limit())
        } else if let (Some(d), Some(m)) = (self.v2_dir("pids"), &self.unified_mount) {
            v1::pids(d, m, true, p.limit())
        } else {
            Err(self.missing("linux.resources.pids", "pids"))
        }
    }

    fn apply_blkio(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(b) = r.block_io() else { return Ok(()) };
        if let Some(d) = self.v1_dir("blkio") {
            v1::blkio(&d.dir, &d.mount, b)
        } else if let Some(d) = self.v2_dir("io") {
            v2::io(d, b)
        } else if v1::blkio_is_empty(b) {
            Ok(())
        } else {
            Err(self.missing("linux.resources.blockIO", "blkio/io"))
        }
    }

    fn apply_hugetlb(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        if let Some(d) = self.v1_dir("hugetlb") {
            v1::hugetlb(&d.dir, &d.mount, false, limits)
        } else if let (Some(d), Some(m)) = (self.v2_dir("hugetlb"), &self.unified_mount) {
            v1::hugetlb(d, m, true, limits)
        } else {
            Err(self.missing("linux.resources.hugepageLimits", "hugetlb"))
        }
    }

    fn apply_devices(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(rules) = r.devices().as_ref().filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        if let Some(d) = self.v1_dir("devices") {
            devices::apply_v1(&d.dir, rules)
        } else if let Some(dir) = &self.unified {
            bpf::apply(dir, rules).or_else(|e| devices::v2_fallback(rules, e))
        } else {
            Err(self.missing("linux.resources.devices", "devices"))
        }
    }

    fn apply_network(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(n) = r.network() else { return Ok(()) };
        if let Some(id) = n.class_id() {
            let d = self
                .v1_dir("net_cls")
                .ok_or_else(|| self.missing("linux.resources.network.classID", "net_cls"))?;
            write_file(&d.dir.join("net_cls.classid"), &id.to_string())?;
        }
        if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            let d = self
                .v1_dir("net_prio")
                .ok_or_else(|| self.missing("linux.resources.network.priorities", "net_prio"))?;
            for p in prios {
                let line = format!("{} {}", p.name(), p.priority());
                write_file(&d.dir.join("net_prio.ifpriomap"), &line)?;
            }
        }
        Ok(())
    }

    /// Resource usage in the shape of runc's `events --stats` data.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        stats::collect(self)
    }

    /// Freezes every process of the container and waits until the kernel says frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaws the container and waits until it is running again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        if let Some(d) = self.v1_dir("freezer") {
            v1::freeze(&d.dir, &d.mount, frozen)
        } else if let (Mode::V2, Some(d)) = (self.mode, &self.unified) {
            v2::freeze(d, frozen)
        } else {
            Err(CgroupError::Unsupported(format!(
                "no freezer available for cgroup {}",
                self.path.display()
            )))
        }
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        if self.mode == Mode::V2 {
            return self.unified.as_deref();
        }
        ["pids", "memory", "freezer", "cpu", "devices"]
            .iter()
            .find_map(|c| self.v1_dir(c))
            .map(|d| d.dir.as_path())
            .or(self.unified.as_deref())
    }

    /// Every process in the cgroup, including sub-cgroups.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(dir) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        collect_pids(dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Number of OOM kills in the cgroup so far.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        oom::kill_count(
            self.memory_dir()
                .ok_or_else(|| self.missing("oom_kill_count", "memory"))?,
        )
    }

    /// A notifier that becomes readable when the cgroup hits an OOM.
    pub fn oom_notifier(&self) -> Result<OomNotifier, CgroupError> {
        let (dir, v2) = self
            .memory_dir()
            .ok_or_else(|| self.missing("oom_notifier", "memory"))?;
        if v2 {
            OomNotifier::v2(dir)
        } else {
            OomNotifier::v1(dir)
        }
    }

    fn memory_dir(&self) -> Option<(&Path, bool)> {
        match self.v1_dir("memory") {
            Some(d) => Some((&d.dir, false)),
            None => self.v2_dir("memory").map(|d| (d, true)),
        }
    }

    /// Signals every process; SIGKILL uses `cgroup.kill` on v2 when the kernel has it.
    pub fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        // Also on a hybrid host: every process is in the cgroup2 directory too.
        if let (Some(d), Signal::SIGKILL) = (&self.unified, signal) {
            let kill_file = d.join("cgroup.kill");
            if kill_file.exists() {
                return write_file(&kill_file, "1");
            }
        }
        // Freezing first stops processes from forking new ones between the
        // listing and the signal (runc does the same on v1). A container
        // that was already paused stays paused.
        let was_frozen = self.is_frozen();
        let froze = !was_frozen && self.freeze().is_ok();
        let result = self.signal_all(signal);
        if froze {
            self.thaw()?;
        }
        result
    }

    /// Whether the freezer currently holds the container (false when unknown).
    pub fn is_frozen(&self) -> bool {
        let (file, frozen) = match (self.v1_dir("freezer"), &self.unified) {
            (Some(d), _) => (d.dir.join("freezer.state"), "FROZEN"),
            (None, Some(u)) if self.mode == Mode::V2 => (u.join("cgroup.freeze"), "1"),
            _ => return false,
        };
        fs::read_to_string(file).is_ok_and(|s| s.trim() == frozen)
    }

    fn signal_all(&self, signal: Signal) -> Result<(), CgroupError> {
        for pid in self.pids()? {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Signal {
                        pid,
                        signal,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroup (and any sub-cgroups) from every hierarchy; missing is fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            remove_tree(d)?;
        }
        debug!(path = %self.path.display(), "cgroup removed");
        Ok(())
    }
}

fn mkdir_all(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(|source| CgroupError::Create {
        path: dir.to_owned(),
        source,
    })
}

/// Writes a whole cgroup file in one write(2), as the kernel expects.
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: procs,
                source,
            })
        }
    };
    for l in text.lines() {
        let pid = l.trim().parse().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            reason: format!("not a pid: {l:?}"),
        })?;
        out.push(pid);
    }
    for child in sub_cgroups(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}

fn sub_cgroups(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|source| CgroupError::Read {
            path: dir.to_owned(),
            source,
        })?;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Removes `dir` depth-first. rmdir of a cgroup fails with EBUSY for a short
/// while after its last process exited (the kernel still tears it down), so
/// each rmdir is retried with a growing delay (~1.3 s in total).
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in sub_cgroups(dir)? {
        remove_tree(&child)?;
    }
    let mut delay = Duration::from_millis(5);
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_millis(700) =>
            {
                debug!(dir = %dir.display(), elapsed = ?start.elapsed(), "cgroup busy, retrying rmdir");
                sleep(delay);
                delay *= 2;
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}
