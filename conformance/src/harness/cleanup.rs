//! Removing everything a test daemon may leave behind: its shims and their
//! processes, mounts (rootfs overlays, pinned namespaces), cgroups, the
//! test network and its directories. Also sweeps leftovers of earlier test
//! runs whose owning process died without cleaning up (SIGKILLed runner).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::net::TestNetwork;
use super::procs;

/// Prefix of the state directories under /run (`/run/berth-test-<id>`).
pub const STATE_PREFIX: &str = "/run/berth-test-";
/// Prefix of the root directories under /var/tmp.
pub const ROOT_PREFIX: &str = "/var/tmp/berth-test-";
/// The file in the state dir naming the owning process and resources.
pub const MANIFEST: &str = "harness.manifest";

/// Errors of a cleanup step.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// Unmounting failed.
    #[error("unmounting {path}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// Removing a directory failed.
    #[error("removing {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Processes survived SIGKILL.
    #[error("processes {pids:?} survived SIGKILL")]
    Survivors {
        /// Their pids.
        pids: Vec<u32>,
    },
    /// The network could not be torn down.
    #[error(transparent)]
    Net(#[from] super::net::NetError),
}

/// What one test daemon owns, enough to remove it without the daemon.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// The random id (`berth-test-<id>`).
    pub id: String,
    /// Persistent root (`/var/tmp/berth-test-<id>`).
    pub root: PathBuf,
    /// State dir (`/run/berth-test-<id>`).
    pub state: PathBuf,
    /// berthd's CRI socket.
    pub socket: PathBuf,
    /// The cgroup directory name pods are placed under (`berth-test-<id>`).
    pub cgroup: String,
}

impl Footprint {
    /// The footprint of test daemon `id`.
    pub fn new(id: &str) -> Footprint {
        let state = PathBuf::from(format!("{STATE_PREFIX}{id}"));
        Footprint {
            id: id.to_string(),
            root: PathBuf::from(format!("{ROOT_PREFIX}{id}")),
            socket: state.join("berth.sock"),
            state,
            cgroup: format!("berth-test-{id}"),
        }
    }

    /// The argument shims of this daemon carry (`-address <socket>`).
    pub fn shim_needle(&self) -> String {
        format!("-address {}", self.socket.display())
    }

    /// Pids of this daemon's shims.
    pub fn shim_pids(&self) -> Vec<u32> {
        procs::processes_with_arg(&self.shim_needle())
            .into_iter()
            .map(|p| p.pid)
            .collect()
    }

    /// Kills every shim and everything below them (containers, pod inits).
    pub fn kill_shims(&self) -> Result<(), CleanupError> {
        let shims = self.shim_pids();
        if shims.is_empty() {
            return Ok(());
        }
        let mut all = procs::descendants(&shims);
        all.extend(&shims);
        tracing::info!(?all, "killing leftover shims and their processes");
        procs::kill_all(&all);
        let left = procs::wait_gone(&all, Duration::from_secs(10));
        if left.is_empty() {
            Ok(())
        } else {
            Err(CleanupError::Survivors { pids: left })
        }
    }

    /// Removes the pods' cgroups on every hierarchy, killing any process
    /// still in them.
    pub fn remove_cgroups(&self) -> Result<(), CleanupError> {
        let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
            return Ok(());
        };
        let mut first = None;
        let mut tops: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path().join(&self.cgroup)))
            .filter(|p| p.is_dir())
            .collect();
        // cgroup2 only (not hybrid): the directory is right under the mount.
        let unified_root = Path::new("/sys/fs/cgroup").join(&self.cgroup);
        if unified_root.is_dir() && !tops.contains(&unified_root) {
            tops.push(unified_root);
        }
        for top in tops {
            if let Err(e) = remove_cgroup_tree(&top) {
                first = first.or(Some(e));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Unmounts everything under the state and root dirs.
    pub fn unmount_all(&self) -> Result<(), CleanupError> {
        for dir in [&self.state, &self.root] {
            unmount_under(dir)?;
        }
        Ok(())
    }

    /// Deletes the state and root directories.
    pub fn remove_dirs(&self) -> Result<(), CleanupError> {
        for dir in [&self.state, &self.root] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|source| CleanupError::Remove {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Records the owner and network so a later run can sweep this one.
    pub fn write_manifest(&self, net: &TestNetwork) -> std::io::Result<()> {
        let text = format!(
            "pid={}\nbridge={}\nsubnet={}\nipam={}\n",
            std::process::id(),
            net.bridge,
            net.subnet,
            net.ipam_dir.display()
        );
        std::fs::write(self.state.join(MANIFEST), text)
    }
}

fn remove_cgroup_tree(dir: &Path) -> Result<(), CleanupError> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    children.sort();
    for c in &children {
        remove_cgroup_tree(c)?;
    }
    let pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if !pids.is_empty() {
        procs::kill_all(&pids);
        procs::wait_gone(&pids, Duration::from_secs(5));
    }
    // A cgroup whose last process just died may need a moment to be removable.
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match last {
        Some(source) => Err(CleanupError::Remove {
            path: dir.to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything at or below `dir` (stacked mounts too).
pub fn unmount_under(dir: &Path) -> Result<(), CleanupError> {
    for _ in 0..4 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            match nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
                Err(source) => return Err(CleanupError::Unmount { path: m, source }),
            }
        }
    }
    Ok(())
}

fn manifest_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Cleans up after test daemons whose owning process is gone (their
/// manifest names a pid that no longer runs). Errors are logged, not
/// returned: a sweep never blocks a new run.
pub fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir("/run") else {
        return;
    };
    for entry in rd.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("berth-test-") else {
            continue;
        };
        let fp = Footprint::new(id);
        let text = std::fs::read_to_string(fp.state.join(MANIFEST)).unwrap_or_default();
        let owner = manifest_field(&text, "pid").and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(procs::alive) {
            continue;
        }
        // No manifest yet: a daemon of a live run may be starting right now
        // (it writes the manifest moments after creating the directory).
        // Only an old one is abandoned.
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if owner.is_none() && age < Duration::from_secs(600) {
            continue;
        }
        tracing::warn!(id, ?owner, "sweeping a stale test daemon");
        let daemons: Vec<u32> = procs::processes_with_arg(&fp.state.display().to_string())
            .into_iter()
            .map(|p| p.pid)
            .collect();
        procs::kill_all(&daemons);
        let steps: [(&str, Result<(), CleanupError>); 3] = [
            ("shims", fp.kill_shims()),
            ("cgroups", fp.remove_cgroups()),
            ("mounts", fp.unmount_all()),
        ];
        for (step, r) in steps {
            if let Err(e) = r {
                tracing::warn!(id, step, error = %e, "stale sweep");
            }
        }
        if let (Some(bridge), Some(ipam)) = (
            manifest_field(&text, "bridge"),
            manifest_field(&text, "ipam"),
        ) {
            let mut net = TestNetwork::adopt(bridge, Path::new(ipam));
            if let Err(e) = net.cleanup() {
                tracing::warn!(id, error = %e, "stale sweep: network");
            }
        }
        if let Err(e) = fp.remove_dirs() {
            tracing::warn!(id, error = %e, "stale sweep: directories");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn footprint_paths_are_short_and_unique() {
        let fp = Footprint::new("a1b2c3d4");
        assert_eq!(fp.state, PathBuf::from("/run/berth-test-a1b2c3d4"));
        assert_eq!(
            fp.socket,
            PathBuf::from("/run/berth-test-a1b2c3d4/berth.sock")
        );
        assert!(fp.socket.as_os_str().len() < 100);
        assert_eq!(
            fp.shim_needle(),
            "-address /run/berth-test-a1b2c3d4/berth.sock"
        );
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn manifest_fields_parse() {
        let t = "pid=12\nbridge=bt1\nipam=/var/tmp/x\n";
        assert_eq!(manifest_field(t, "pid"), Some("12"));
        assert_eq!(manifest_field(t, "ipam"), Some("/var/tmp/x"));
        assert_eq!(manifest_field(t, "subnet"), None);
    }

    #[test]
    fn nested_tmpfs_mounts_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = a.join("b");
        std::fs::create_dir_all(&a).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &a,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::create_dir_all(&b).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &b,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        assert_eq!(mounts_under(dir.path()).len(), 2);
        unmount_under(dir.path()).unwrap();
        assert!(mounts_under(dir.path()).is_empty());
    }
}
