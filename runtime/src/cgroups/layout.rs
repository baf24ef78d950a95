//! Detection of the cgroup layout (v1, v2 or hybrid) and resolution of a
//! container's cgroup path into one directory per hierarchy.
//!
//! cgroups-rs picks v1 or v2 from the type of `/sys/fs/cgroup` alone, so on a
//! hybrid host (v1 controllers plus a cgroup2 mount at
//! `/sys/fs/cgroup/unified` that owns e.g. hugetlb) it never sees the cgroup2
//! mount. We therefore read `/proc/self/mountinfo` and `/proc/self/cgroup`
//! ourselves and hand cgroups-rs controllers the exact directories.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// v1 controllers berth manages when their hierarchy is mounted.
pub const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
    "misc",
];

/// How cgroups are mounted on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a cgroup2 mount beside them (e.g. `/sys/fs/cgroup/unified`).
    Hybrid,
    /// `/sys/fs/cgroup` itself is cgroup2.
    V2,
}

/// One cgroup mount seen in mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup (inside the hierarchy) shown at the mount point.
    pub root: PathBuf,
    /// v1 controllers (or `name=...`) of the hierarchy; empty for cgroup2.
    pub controllers: Vec<String>,
    /// cgroup2 rather than cgroup (v1).
    pub v2: bool,
}

/// Parses `/proc/self/mountinfo` text, keeping only cgroup and cgroup2 mounts.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let v2 = match post[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            post[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_owned)
                .collect()
        };
        out.push(CgroupMount {
            mount_point: PathBuf::from(unescape_mountinfo(pre[4])),
            root: PathBuf::from(unescape_mountinfo(pre[3])),
            controllers,
            v2,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/cgroup`: controller (or `name=...`, or "" for cgroup2) → cgroup path.
pub fn parse_proc_cgroup(text: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), PathBuf::from(path));
        } else {
            for c in ctrls.split(',') {
                out.insert(c.to_owned(), PathBuf::from(path));
            }
        }
    }
    out
}

/// The host's cgroup mounts and the caller's own cgroups.
#[derive(Clone, Debug)]
pub struct Layout {
    /// v1, v2 or hybrid.
    pub mode: Mode,
    /// v1 controller → its mount.
    pub v1: BTreeMap<String, CgroupMount>,
    /// The cgroup2 mount, if any.
    pub unified: Option<CgroupMount>,
    /// Controllers available in the cgroup2 hierarchy (its root `cgroup.controllers`).
    pub v2_controllers: Vec<String>,
    /// The caller's cgroup per controller ("" = cgroup2).
    pub own: BTreeMap<String, PathBuf>,
}

impl Layout {
    /// Reads the layout of the calling process.
    pub fn detect() -> Result<Self, CgroupError> {
        let mi = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        let mounts = parse_mountinfo(&mi);
        let v2_controllers = match pick_unified(&mounts) {
            Some(u) => {
                let p = u.mount_point.join("cgroup.controllers");
                read(&p)?.split_whitespace().map(str::to_owned).collect()
            }
            None => Vec::new(),
        };
        Self::from_parts(mounts, v2_controllers, parse_proc_cgroup(&own))
    }

    /// Builds a layout from parsed pieces (the pure part of [`Layout::detect`]).
    pub fn from_parts(
        mounts: Vec<CgroupMount>,
        v2_controllers: Vec<String>,
        own: BTreeMap<String, PathBuf>,
    ) -> Result<Self, CgroupError> {
        let mut v1 = BTreeMap::new();
        let unified = pick_unified(&mounts).cloned();
        for m in mounts {
            if !m.v2 {
                for c in &m.controllers {
                    if !c.starts_with("name=") {
                        v1.entry(c.clone()).or_insert_with(|| m.clone());
                    }
                }
            }
        }
        let mode = match &unified {
            None if v1.is_empty() => return Err(CgroupError::NoHierarchy),
            None => Mode::V1,
            Some(u) if u.mount_point == Path::new("/sys/fs/cgroup") || v1.is_empty() => Mode::V2,
            Some(_) => Mode::Hybrid,
        };
        if mode == Mode::V2 {
            v1.clear();
        }
        Ok(Self {
            mode,
            v1,
            unified,
            v2_controllers,
            own,
        })
    }

    /// Whether `controller` is handled through the cgroup2 hierarchy.
    pub fn v2_owns(&self, controller: &str) -> bool {
        self.unified.is_some()
            && !self.v1.contains_key(controller)
            && self.v2_controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup2 mount to use: one on /sys/fs/cgroup (pure v2) wins, else the
/// first one; among mounts on the same point the last one, since it shadows
/// the earlier ones.
fn pick_unified(mounts: &[CgroupMount]) -> Option<&CgroupMount> {
    let mut best: Option<&CgroupMount> = None;
    for m in mounts.iter().filter(|m| m.v2) {
        let take = match best {
            None => true,
            Some(b) if b.mount_point == m.mount_point => true,
            Some(b) => {
                m.mount_point == Path::new("/sys/fs/cgroup")
                    && b.mount_point != Path::new("/sys/fs/cgroup")
            }
        };
        if take {
            best = Some(m);
        }
    }
    best
}

fn read(path: impl AsRef<Path>) -> Result<String, CgroupError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The container's cgroup path after validation: absolute (from the host
/// hierarchy root) or relative to the caller's own cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupPath {
    /// Starts at the hierarchy root.
    Absolute(PathBuf),
    /// Below the caller's cgroup in each hierarchy (runc's behaviour).
    Relative(PathBuf),
}

/// Validates `cgroupsPath` from the spec; `None` means `/berth/<id>`.
pub fn parse_cgroups_path(path: Option<&Path>, id: &str) -> Result<CgroupPath, CgroupError> {
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(CgroupError::InvalidPath {
                path: PathBuf::from(id),
                reason: "container id cannot be used as a cgroup name",
            });
        }
        return Ok(CgroupPath::Absolute(Path::new("berth").join(id)));
    };
    let s = path.to_string_lossy();
    if !s.starts_with('/') && s.split(':').count() == 3 {
        return Err(CgroupError::SystemdPath {
            path: path.to_owned(),
        });
    }
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => clean.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::InvalidPath {
                    path: path.to_owned(),
                    reason: "\"..\" is not allowed in a cgroup path",
                })
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(CgroupError::InvalidPath {
            path: path.to_owned(),
            reason: "the container cannot use the root cgroup",
        });
    }
    Ok(if path.is_absolute() {
        CgroupPath::Absolute(clean)
    } else {
        CgroupPath::Relative(clean)
    })
}

/// The directory of `cg` in the hierarchy mounted as `mount`, for a caller
/// whose own cgroup in that hierarchy is `own`.
pub fn dir_in(mount: &CgroupMount, own: Option<&Path>, cg: &CgroupPath) -> PathBuf {
    // Both are paths inside the hierarchy, e.g. "/berth/x".
    let in_hier = match cg {
        CgroupPath::Absolute(p) => Path::new("/").join(p),
        CgroupPath::Relative(p) => own.unwrap_or(Path::new("/")).join(p),
    };
    // The mount shows the hierarchy from `mount.root` down (not "/" inside a
    // cgroup namespace or a bind mount): strip it when it is a prefix.
    let rel = in_hier
        .strip_prefix(&mount.root)
        .unwrap_or_else(|_| in_hier.strip_prefix("/").unwrap_or(&in_hier));
    mount.mount_point.join(rel)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_layout_keeps_cpu_and_cpuacct_apart() {
        let own = parse_proc_cgroup("4:memory:/a/b\n1:cpu:/\n0::/\n");
        let l = Layout::from_parts(parse_mountinfo(HYBRID), vec!["hugetlb".into()], own).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.v1["cpu"].mount_point, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(
            l.v1["cpuacct"].mount_point,
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert!(!l.v1.contains_key("name=systemd"));
        assert!(l.v2_owns("hugetlb"));
        assert!(!l.v2_owns("memory"));
        assert_eq!(l.own["memory"], Path::new("/a/b"));
        assert_eq!(l.own[""], Path::new("/"));
    }

    #[test]
    fn pure_v2_and_comounted_v1() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l =
            Layout::from_parts(parse_mountinfo(v2), vec!["cpu".into()], BTreeMap::new()).unwrap();
        assert_eq!(l.mode, Mode::V2);
        assert!(l.v2_owns("cpu"));

        // cgroup2 mounted over a hybrid layout: the /sys/fs/cgroup one wins.
        let over = format!("{HYBRID}50 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let mounts = parse_mountinfo(&over);
        assert_eq!(
            pick_unified(&mounts).unwrap().mount_point,
            Path::new("/sys/fs/cgroup")
        );
        let l = Layout::from_parts(mounts, vec![], BTreeMap::new()).unwrap();
        assert_eq!(l.mode, Mode::V2);
        assert!(l.v1.is_empty());

        let v1 = "29 26 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let l = Layout::from_parts(parse_mountinfo(v1), vec![], BTreeMap::new()).unwrap();
        assert_eq!(l.mode, Mode::V1);
        assert_eq!(l.v1["cpu"], l.v1["cpuacct"]);
        assert!(Layout::from_parts(vec![], vec![], BTreeMap::new()).is_err());
    }

    #[test]
    fn mountinfo_unescapes_octal() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/a\\"), r"/a\\");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn cgroups_path_forms() {
        assert_eq!(
            parse_cgroups_path(None, "c1").unwrap(),
            CgroupPath::Absolute("berth/c1".into())
        );
        assert_eq!(
            parse_cgroups_path(Some(Path::new("/x/y/")), "c1").unwrap(),
            CgroupPath::Absolute("x/y".into())
        );
        assert_eq!(
            parse_cgroups_path(Some(Path::new("x/./y")), "c1").unwrap(),
            CgroupPath::Relative("x/y".into())
        );
        assert!(matches!(
            parse_cgroups_path(Some(Path::new("system.slice:berth:c1")), "c1"),
            Err(CgroupError::SystemdPath { .. })
        ));
        assert!(parse_cgroups_path(Some(Path::new("/x/../y")), "c1").is_err());
        assert!(parse_cgroups_path(Some(Path::new("/")), "c1").is_err());
        assert!(parse_cgroups_path(None, "a/b").is_err());
    }

    #[test]
    fn dirs_resolve_against_own_cgroup_and_mount_root() {
        let m = CgroupMount {
            mount_point: "/sys/fs/cgroup/memory".into(),
            root: "/".into(),
            controllers: vec!["memory".into()],
            v2: false,
        };
        let rel = CgroupPath::Relative("c1".into());
        assert_eq!(
            dir_in(&m, Some(Path::new("/pa/pb")), &rel),
            Path::new("/sys/fs/cgroup/memory/pa/pb/c1")
        );
        let abs = CgroupPath::Absolute("berth/c1".into());
        assert_eq!(
            dir_in(&m, Some(Path::new("/pa")), &abs),
            Path::new("/sys/fs/cgroup/memory/berth/c1")
        );
        let nested = CgroupMount {
            root: "/pa".into(),
            ..m
        };
        assert_eq!(
            dir_in(&nested, Some(Path::new("/pa")), &rel),
            Path::new("/sys/fs/cgroup/memory/c1")
        );
    }
}
