//! A minimal /proc/self/mountinfo reader (proc(5)), for the few decisions that
//! need the mount table: the initramfs check, the parent mount of the rootfs,
//! the host cgroup hierarchies and mounts to detach for `--no-pivot`.

use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Root of the mount within its filesystem (field 4).
    pub root: String,
    /// Mount point relative to the process root (field 5).
    pub mount_point: PathBuf,
    /// Optional fields such as `shared:12` or `master:3`.
    pub optional: Vec<String>,
    /// Filesystem type (`ext4`, `cgroup`, `rootfs`, ...).
    pub fstype: String,
    /// Per-superblock options (`rw,cpu` for a cgroup v1 hierarchy).
    pub super_options: String,
}

impl MountInfo {
    /// True when the mount is in a shared peer group.
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

/// Decodes the octal escapes (`\040` for space) the kernel writes in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line; None when malformed.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let _devno = l.next()?;
    let root = unescape(l.next()?);
    let mount_point = PathBuf::from(unescape(l.next()?));
    let _opts = l.next()?;
    let optional = l.filter(|s| !s.is_empty()).map(str::to_string).collect();
    let mut r = right.split(' ');
    let fstype = r.next()?.to_string();
    let _source = r.next()?;
    let super_options = r.next().unwrap_or_default().to_string();
    Some(MountInfo {
        root,
        mount_point,
        optional,
        fstype,
        super_options,
    })
}

/// Reads and parses /proc/self/mountinfo.
pub fn read() -> std::io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The mount that contains `path`: the last-listed mount whose mount point is the longest prefix of it.
pub fn containing_mount<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point) {
            let better = match best {
                None => true,
                Some(b) => m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len(),
            };
            if better {
                best = Some(m);
            }
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let m = parse_line("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue")
            .unwrap();
        assert_eq!(m.root, "/mnt1");
        assert_eq!(m.mount_point, PathBuf::from("/mnt two"));
        assert_eq!(
            m.optional,
            vec!["master:1".to_string(), "shared:7".to_string()]
        );
        assert!(m.is_shared());
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.super_options, "rw,errors=continue");
        let m = parse_line("30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu")
            .unwrap();
        assert!(!m.is_shared());
        assert_eq!(m.super_options, "rw,cpu");
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn containing_mount_picks_longest_prefix() {
        let mounts: Vec<MountInfo> = [
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw",
            "2 1 0:5 / /var rw shared:2 - ext4 /dev/sda2 rw",
            "3 1 0:6 / /variable rw - tmpfs tmpfs rw",
        ]
        .iter()
        .filter_map(|l| parse_line(l))
        .collect();
        let m = containing_mount(&mounts, Path::new("/var/lib/x")).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/var"));
        let m = containing_mount(&mounts, Path::new("/variable2")).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/"));
        assert!(read()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == Path::new("/proc")));
    }
}
