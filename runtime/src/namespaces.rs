//! Namespace planning and joining.
//!
//! How each namespace is entered:
//! - new user/mnt/net/ipc/uts/pid: `CLONE_NEW*` flags of the single clone,
//!   unless the user namespace is joined by path; then the child unshares
//!   them after `setns(user)`, so they are owned by the joined user namespace
//!   (mounting /proc needs that), and forks once more when a new pid
//!   namespace is among them (it only applies to children);
//! - new cgroup: unshared by the child after the parent put it into the
//!   container cgroup (the namespace root is the cgroup at unshare time);
//! - pid and time by path, and new time: entered by the *parent* before the
//!   clone (they only apply to children) and restored right after;
//! - every other path: `setns` in the child, user first — except the
//!   namespaces a joined user namespace does not own (a pod's network
//!   namespace made on the host): those are joined before `setns(user)`,
//!   since inside the child user namespace the process has no privilege
//!   over namespaces owned by its ancestors.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, LinuxTimeOffset, Spec};

/// Errors from namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A namespace file could not be opened.
    #[error("opening namespace {path}: {source}")]
    Open {
        /// Namespace file.
        path: PathBuf,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// `setns(2)` failed.
    #[error("joining {typ} namespace {path}: {source}")]
    Setns {
        /// Namespace type name.
        typ: &'static str,
        /// Namespace file.
        path: PathBuf,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// `unshare(2)` failed.
    #[error("unshare({flags:?}): {source}")]
    Unshare {
        /// Flags passed.
        flags: CloneFlags,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// Writing an id map or time offsets failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The proc file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The `/proc/<pid>/ns/` name of a namespace type.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The `CLONE_NEW*` flag of a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(typ as i32)
}

/// All namespace types, user first: the order in which to join.
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// A namespace to join, with its file already opened.
#[derive(Debug)]
pub struct JoinNs {
    /// Namespace type.
    pub typ: LinuxNamespaceType,
    /// Path it was opened from (for errors).
    pub path: PathBuf,
    /// Open namespace file.
    pub fd: OwnedFd,
}

/// Opens a namespace file (O_CLOEXEC).
pub fn open_ns(typ: LinuxNamespaceType, path: &Path) -> Result<JoinNs, NamespaceError> {
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| {
        NamespaceError::Open {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(JoinNs {
        typ,
        path: path.to_path_buf(),
        fd,
    })
}

/// Identity (device, inode) of an open namespace file.
fn ns_identity(fd: &OwnedFd) -> Option<(u64, u64)> {
    nix::sys::stat::fstat(fd.as_fd())
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

/// The user namespace owning the namespace `fd` refers to (`NS_GET_USERNS`).
fn owning_userns(fd: &OwnedFd) -> Result<OwnedFd, nix::Error> {
    // _IO(0xb7, 0x1) from linux/nsfs.h.
    const NS_GET_USERNS: libc::Ioctl = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument; `fd` is a valid open
    // namespace file for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_USERNS) };
    if r < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: on success the ioctl returned a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Puts the namespaces a joined user namespace does not own before it (see
/// the module doc); the rest keep their order after it. Without a user
/// namespace among `joins` the order is unchanged.
pub fn order_joins(joins: Vec<JoinNs>) -> Vec<JoinNs> {
    let Some(user_id) = joins
        .iter()
        .find(|j| j.typ == LinuxNamespaceType::User)
        .and_then(|j| ns_identity(&j.fd))
    else {
        return joins;
    };
    let (mut before, mut rest) = (Vec::new(), Vec::new());
    for j in joins {
        let foreign = j.typ != LinuxNamespaceType::User
            && owning_userns(&j.fd)
                .ok()
                .and_then(|owner| ns_identity(&owner))
                .is_some_and(|owner| owner != user_id);
        if foreign {
            before.push(j);
        } else {
            rest.push(j);
        }
    }
    before.extend(rest);
    before
}

/// `setns(2)` into an opened namespace.
pub fn join(ns: &JoinNs) -> Result<(), NamespaceError> {
    nix::sched::setns(ns.fd.as_fd(), clone_flag(ns.typ)).map_err(|source| NamespaceError::Setns {
        typ: proc_name(ns.typ),
        path: ns.path.clone(),
        source,
    })
}

/// `unshare(2)` with context.
pub fn unshare(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })
}

/// Whether `path` is the namespace the calling process is already in.
pub fn is_current(typ: LinuxNamespaceType, path: &Path) -> bool {
    let own = format!("/proc/self/ns/{}", proc_name(typ));
    match (std::fs::metadata(own), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// How the container's namespaces are obtained (see the module doc).
#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Flags for the clone itself.
    pub clone_flags: CloneFlags,
    /// Flags the child unshares after joining (cgroup always lands here).
    pub unshare_flags: CloneFlags,
    /// Namespaces the child joins by path, in join order (user first).
    pub join_in_child: Vec<(LinuxNamespaceType, PathBuf)>,
    /// pid/time namespaces the parent joins before the clone.
    pub join_in_parent: Vec<(LinuxNamespaceType, PathBuf)>,
    /// The parent unshares a new time namespace before the clone.
    pub new_time: bool,
    /// The container gets a new user namespace from the clone.
    pub new_user: bool,
    /// The container runs in a user namespace (new or joined).
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace.
    pub cgroup_ns: bool,
    /// The container has its own (new) uts namespace.
    pub new_uts: bool,
    /// A new pid namespace must be owned by a *joined* user namespace: the
    /// child unshares it after `setns(user)` and forks the real init.
    pub fork_after_unshare: bool,
}

impl NamespacePlan {
    /// Plans namespace creation for `spec` (already validated).
    pub fn from_spec(spec: &Spec) -> Self {
        let mut plan = NamespacePlan {
            clone_flags: CloneFlags::empty(),
            unshare_flags: CloneFlags::empty(),
            join_in_child: Vec::new(),
            join_in_parent: Vec::new(),
            new_time: false,
            new_user: false,
            in_user_ns: false,
            cgroup_ns: false,
            new_uts: false,
            fork_after_unshare: false,
        };
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let user_joined = nss
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
        for typ in JOIN_ORDER {
            let Some(ns) = nss.iter().find(|n| n.typ() == typ) else {
                continue;
            };
            match (typ, ns.path()) {
                (LinuxNamespaceType::Pid | LinuxNamespaceType::Time, Some(p)) => {
                    plan.join_in_parent.push((typ, p.clone()))
                }
                (_, Some(p)) => plan.join_in_child.push((typ, p.clone())),
                (LinuxNamespaceType::Time, None) => plan.new_time = true,
                (LinuxNamespaceType::Cgroup, None) => plan.unshare_flags |= clone_flag(typ),
                (_, None) if user_joined => {
                    plan.unshare_flags |= clone_flag(typ);
                    plan.fork_after_unshare |= typ == LinuxNamespaceType::Pid;
                }
                (LinuxNamespaceType::Pid, None) => plan.clone_flags |= clone_flag(typ),
                (_, None) => plan.clone_flags |= clone_flag(typ),
            }
            match typ {
                LinuxNamespaceType::User => {
                    plan.in_user_ns = true;
                    plan.new_user = ns.path().is_none();
                }
                LinuxNamespaceType::Cgroup => plan.cgroup_ns = true,
                LinuxNamespaceType::Uts => plan.new_uts = ns.path().is_none(),
                _ => {}
            }
        }
        plan
    }
}

/// Restores the parent's pid/time namespaces-for-children when dropped.
#[derive(Debug)]
pub struct ParentNsGuard {
    saved: Vec<JoinNs>,
}

impl ParentNsGuard {
    /// Enters `joins` (pid/time by path) and, if `new_time`, a fresh time
    /// namespace with `offsets`, for the next child only.
    pub fn enter(
        joins: &[(LinuxNamespaceType, PathBuf)],
        new_time: bool,
        offsets: Option<&std::collections::HashMap<String, LinuxTimeOffset>>,
    ) -> Result<Self, NamespaceError> {
        let mut guard = ParentNsGuard { saved: Vec::new() };
        for (typ, path) in joins {
            if is_current(*typ, path) {
                continue;
            }
            let target = open_ns(*typ, path)?;
            guard.save(*typ)?;
            join(&target)?;
        }
        if new_time {
            guard.save(LinuxNamespaceType::Time)?;
            unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))?;
            if let Some(offsets) = offsets {
                write_time_offsets(offsets)?;
            }
        }
        Ok(guard)
    }

    fn save(&mut self, typ: LinuxNamespaceType) -> Result<(), NamespaceError> {
        if self.saved.iter().any(|s| s.typ == typ) {
            return Ok(());
        }
        let path = PathBuf::from(format!("/proc/self/ns/{}", proc_name(typ)));
        self.saved.push(open_ns(typ, &path)?);
        Ok(())
    }
}

impl Drop for ParentNsGuard {
    fn drop(&mut self) {
        for ns in &self.saved {
            // Re-entering our own active pid/time namespace is always allowed.
            if let Err(err) = join(ns) {
                tracing::error!(%err, "restoring the parent's namespace failed");
            }
        }
    }
}

/// Writes `/proc/self/timens_offsets` for the not-yet-entered time namespace.
fn write_time_offsets(
    offsets: &std::collections::HashMap<String, LinuxTimeOffset>,
) -> Result<(), NamespaceError> {
    let path = PathBuf::from("/proc/self/timens_offsets");
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write(&path, text).map_err(|source| NamespaceError::Write { path, source })
}

/// Writes uid/gid maps of `pid`'s new user namespace (we are root, so the
/// parent writes them directly; no newuidmap).
pub fn write_id_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let fmt = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (name, maps) in [("uid_map", uid_maps), ("gid_map", gid_maps)] {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::write(&path, fmt(maps))
            .map_err(|source| NamespaceError::Write { path, source })?;
    }
    Ok(())
}

/// The namespace files of a running process, by proc name.
pub fn paths_of(pid: i32) -> BTreeMap<String, PathBuf> {
    JOIN_ORDER
        .iter()
        .map(|t| {
            let name = proc_name(*t);
            (
                name.to_string(),
                PathBuf::from(format!("/proc/{pid}/ns/{name}")),
            )
        })
        .filter(|(_, p)| p.exists())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A process in a new user namespace (and, with `own_net`, a network
    /// namespace that user namespace owns); killed on drop.
    struct NsHolder(std::process::Child);
    impl NsHolder {
        fn start(own_net: bool) -> Self {
            let mut cmd = std::process::Command::new("unshare");
            cmd.args(["--user", "--map-root-user"]);
            if own_net {
                cmd.arg("--net");
            }
            let child = cmd.args(["sleep", "30"]).spawn().unwrap();
            let me = std::fs::metadata("/proc/self/ns/user").unwrap().ino();
            let path = format!("/proc/{}/ns/user", child.id());
            for _ in 0..200 {
                if std::fs::metadata(&path)
                    .map(|m| m.ino() != me)
                    .unwrap_or(false)
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            NsHolder(child)
        }
        fn ns(&self, typ: LinuxNamespaceType) -> JoinNs {
            open_ns(
                typ,
                Path::new(&format!("/proc/{}/ns/{}", self.0.id(), proc_name(typ))),
            )
            .unwrap()
        }
    }
    impl Drop for NsHolder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn host_owned_namespaces_are_joined_before_a_child_user_ns() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let pod = NsHolder::start(true);
        let host_net =
            open_ns(LinuxNamespaceType::Network, Path::new("/proc/self/ns/net")).unwrap();
        let joins = vec![
            pod.ns(LinuxNamespaceType::User),
            pod.ns(LinuxNamespaceType::Ipc),
            host_net,
        ];
        let order: Vec<_> = order_joins(joins).into_iter().map(|j| j.typ).collect();
        // The host's netns and ipc ns (the holder kept the host's ipc) come
        // first; nothing the pod's user namespace owns is ahead of it.
        assert_eq!(order[2], LinuxNamespaceType::User, "{order:?}");
        let pod_net = vec![
            pod.ns(LinuxNamespaceType::User),
            pod.ns(LinuxNamespaceType::Network),
        ];
        let order: Vec<_> = order_joins(pod_net).into_iter().map(|j| j.typ).collect();
        assert_eq!(
            order,
            [LinuxNamespaceType::User, LinuxNamespaceType::Network]
        );
    }

    #[test]
    fn order_is_kept_without_a_user_namespace() {
        let joins = vec![
            open_ns(LinuxNamespaceType::Uts, Path::new("/proc/self/ns/uts")).unwrap(),
            open_ns(LinuxNamespaceType::Network, Path::new("/proc/self/ns/net")).unwrap(),
        ];
        let order: Vec<_> = order_joins(joins).into_iter().map(|j| j.typ).collect();
        assert_eq!(
            order,
            [LinuxNamespaceType::Uts, LinuxNamespaceType::Network]
        );
    }

    fn spec_with(ns: &str) -> Spec {
        let json = format!(
            r#"{{"ociVersion":"1.2.0","root":{{"path":"r"}},"linux":{{"namespaces":{ns}}}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn plan_new_namespaces() {
        let p = NamespacePlan::from_spec(&spec_with(
            r#"[{"type":"mount"},{"type":"pid"},{"type":"network"},{"type":"cgroup"},{"type":"uts"}]"#,
        ));
        assert_eq!(
            p.clone_flags,
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWUTS
        );
        assert_eq!(p.unshare_flags, CloneFlags::CLONE_NEWCGROUP);
        assert!(p.cgroup_ns && p.new_uts && !p.in_user_ns);
    }

    #[test]
    fn plan_joined_user_ns_unshares_the_rest() {
        let p = NamespacePlan::from_spec(&spec_with(
            r#"[{"type":"mount"},{"type":"pid","path":"/proc/1/ns/pid"},{"type":"user","path":"/x/user"},{"type":"ipc"}]"#,
        ));
        assert!(p.clone_flags.is_empty());
        assert_eq!(
            p.unshare_flags,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC
        );
        assert_eq!(p.join_in_child[0].0, LinuxNamespaceType::User);
        assert_eq!(p.join_in_parent.len(), 1);
        assert!(p.in_user_ns && !p.new_user);
    }

    #[test]
    fn current_namespace_detected() {
        assert!(is_current(
            LinuxNamespaceType::Network,
            Path::new("/proc/self/ns/net")
        ));
        assert!(paths_of(std::process::id() as i32).contains_key("mnt"));
    }
}
