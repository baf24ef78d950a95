//! Parsing of fstab-style mount options from the OCI spec into mount(2) flags,
//! propagation changes, recursive mount_setattr(2) attributes and filesystem data.

use nix::mount::MsFlags;

/// Errors while parsing mount options.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// An empty string in the options list (it would become `,,` in the mount data).
    #[error("empty mount option")]
    Empty,
    /// An option with a NUL byte cannot be passed to mount(2).
    #[error("mount option {option:?} contains a NUL byte")]
    Nul {
        /// The option as written in the spec.
        option: String,
    },
}

/// mount_setattr(2) attribute bits (linux/mount.h).
pub mod attr {
    /// MOUNT_ATTR_RDONLY
    pub const RDONLY: u64 = 0x0000_0001;
    /// MOUNT_ATTR_NOSUID
    pub const NOSUID: u64 = 0x0000_0002;
    /// MOUNT_ATTR_NODEV
    pub const NODEV: u64 = 0x0000_0004;
    /// MOUNT_ATTR_NOEXEC
    pub const NOEXEC: u64 = 0x0000_0008;
    /// MOUNT_ATTR__ATIME: the atime mode field, cleared as a whole to change it.
    pub const ATIME_MASK: u64 = 0x0000_0070;
    /// MOUNT_ATTR_RELATIME
    pub const RELATIME: u64 = 0x0000_0000;
    /// MOUNT_ATTR_NOATIME
    pub const NOATIME: u64 = 0x0000_0010;
    /// MOUNT_ATTR_STRICTATIME
    pub const STRICTATIME: u64 = 0x0000_0020;
    /// MOUNT_ATTR_NODIRATIME
    pub const NODIRATIME: u64 = 0x0000_0080;
    /// MOUNT_ATTR_NOSYMFOLLOW
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// Recursive attribute change applied with mount_setattr(AT_RECURSIVE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttr {
    /// Attributes to set.
    pub set: u64,
    /// Attributes to clear.
    pub clear: u64,
}

impl RecursiveAttr {
    /// True when no recursive attribute was requested.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

/// The parsed form of a mount's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// mount(2) flags to pass (MS_BIND, MS_REC, MS_RDONLY, ...), propagation excluded.
    pub flags: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid`, ...).
    pub recursive: RecursiveAttr,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: Vec<String>,
    /// `tmpcopyup`: copy the underlying directory's content into the new tmpfs.
    pub tmpcopyup: bool,
    /// `idmap` (Some(false)) or `ridmap` (Some(true)): an id-mapped bind mount.
    pub idmap: Option<bool>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            recursive: RecursiveAttr::default(),
            data: Vec::new(),
            tmpcopyup: false,
            idmap: None,
        }
    }
}

/// Flags a bind remount can change (the per-mount flags).
pub const REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW));

impl MountOptions {
    /// True for `bind` / `rbind`.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The data string for mount(2), None when empty.
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Flags a bind mount needs a second, remount call for (the kernel ignores them on MS_BIND).
    pub fn remount_flags(&self) -> MsFlags {
        self.flags & REMOUNT_FLAGS
    }
}

/// (name, clear instead of set, flag)
const FLAG_OPTIONS: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    (
        "nosymfollow",
        false,
        MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
    ),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    (
        "symfollow",
        true,
        MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
    ),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// Parses a propagation keyword (`shared`, `rslave`, ...) into mount(2) flags.
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    let flags = match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    };
    Some(flags)
}

/// Recursive (`r`-prefixed) attribute options: (name, set, clear).
///
/// The atime modes form one field: changing it needs the whole mask cleared.
/// `ratime` and `rnostrictatime` return to the kernel default (relatime);
/// `rnorelatime` selects strictatime, matching mount(8)'s meaning of norelatime.
const RECURSIVE_OPTIONS: &[(&str, u64, u64)] = &[
    ("rro", attr::RDONLY, 0),
    ("rrw", 0, attr::RDONLY),
    ("rnosuid", attr::NOSUID, 0),
    ("rsuid", 0, attr::NOSUID),
    ("rnodev", attr::NODEV, 0),
    ("rdev", 0, attr::NODEV),
    ("rnoexec", attr::NOEXEC, 0),
    ("rexec", 0, attr::NOEXEC),
    ("rnodiratime", attr::NODIRATIME, 0),
    ("rdiratime", 0, attr::NODIRATIME),
    ("rrelatime", attr::RELATIME, attr::ATIME_MASK),
    ("rnorelatime", attr::STRICTATIME, attr::ATIME_MASK),
    ("rnoatime", attr::NOATIME, attr::ATIME_MASK),
    ("ratime", attr::RELATIME, attr::ATIME_MASK),
    ("rstrictatime", attr::STRICTATIME, attr::ATIME_MASK),
    ("rnostrictatime", attr::RELATIME, attr::ATIME_MASK),
    ("rnosymfollow", attr::NOSYMFOLLOW, 0),
    ("rsymfollow", 0, attr::NOSYMFOLLOW),
];

/// Parses the spec's mount options.
pub fn parse(options: &[String]) -> Result<MountOptions, OptionsError> {
    let mut out = MountOptions::default();
    for option in options {
        let name = option.as_str();
        if name.is_empty() {
            return Err(OptionsError::Empty);
        }
        if name.contains('\0') {
            return Err(OptionsError::Nul {
                option: option.clone(),
            });
        }
        if let Some((_, clear, flag)) = FLAG_OPTIONS.iter().find(|(n, _, _)| *n == name) {
            if *clear {
                out.flags.remove(*flag);
            } else {
                out.flags.insert(*flag);
            }
            // The atime modes exclude each other; the last one written wins.
            match name {
                "noatime" => out
                    .flags
                    .remove(MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME),
                "relatime" => out
                    .flags
                    .remove(MsFlags::MS_NOATIME | MsFlags::MS_STRICTATIME),
                "strictatime" => out.flags.remove(MsFlags::MS_NOATIME | MsFlags::MS_RELATIME),
                _ => {}
            }
            continue;
        }
        if let Some(p) = propagation_flags(name) {
            out.propagation.push(p);
            continue;
        }
        if let Some((_, set, clear)) = RECURSIVE_OPTIONS.iter().find(|(n, _, _)| *n == name) {
            if *clear == attr::ATIME_MASK {
                out.recursive.set &= !attr::ATIME_MASK;
                out.recursive.clear |= attr::ATIME_MASK;
                out.recursive.set |= *set;
            } else {
                out.recursive.set = (out.recursive.set & !*clear) | *set;
                out.recursive.clear = (out.recursive.clear & !*set) | *clear;
            }
            continue;
        }
        match name {
            "idmap" => out.idmap = Some(false),
            "ridmap" => out.idmap = Some(true),
            "tmpcopyup" => out.tmpcopyup = true,
            _ => out.data.push(option.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_and_data_are_separated() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert!(!o.is_bind());
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = p(&[
            "ro", "rw", "nodev", "dev", "noexec", "sync", "async", "atime", "noatime", "relatime",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
        let o = p(&[
            "suid",
            "nosuid",
            "diratime",
            "nodiratime",
            "loud",
            "silent",
            "norelatime",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODIRATIME | MsFlags::MS_SILENT
        );
        let o = p(&[
            "strictatime",
            "nostrictatime",
            "mand",
            "dirsync",
            "remount",
            "lazytime",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_MANDLOCK | MsFlags::MS_DIRSYNC | MsFlags::MS_REMOUNT | MsFlags::MS_LAZYTIME
        );
    }

    #[test]
    fn bind_rbind_and_remount_flags() {
        let o = p(&["rbind", "ro", "nosuid", "nosymfollow"]);
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_REC));
        assert_eq!(
            o.remount_flags(),
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)
        );
        assert!(p(&["bind"]).is_bind());
        assert!(!p(&["bind"]).flags.contains(MsFlags::MS_REC));
    }

    #[test]
    fn propagation_is_kept_in_order() {
        let o = p(&[
            "rprivate",
            "shared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
            "private",
            "rshared",
        ]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_SLAVE,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                MsFlags::MS_UNBINDABLE,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                MsFlags::MS_PRIVATE,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ]
        );
        assert!(o.flags.is_empty());
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rro", "rnosuid", "rnoatime"]);
        assert_eq!(o.recursive.set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(o.recursive.clear, attr::ATIME_MASK);
        let o = p(&["rro", "rrw", "rstrictatime", "rrelatime"]);
        assert_eq!(o.recursive.set, attr::RELATIME);
        assert_eq!(o.recursive.clear, attr::RDONLY | attr::ATIME_MASK);
        assert!(p(&["ro"]).recursive.is_empty());
    }

    #[test]
    fn empty_and_nul_options_are_rejected() {
        assert!(matches!(parse(&[String::new()]), Err(OptionsError::Empty)));
        let err = parse(&["mode=755".to_string(), "size=1\0k".to_string()]).unwrap_err();
        assert!(
            matches!(err, OptionsError::Nul { ref option } if option == "size=1\0k"),
            "{err}"
        );
    }

    #[test]
    fn idmap_and_tmpcopyup_are_recorded() {
        assert_eq!(p(&["idmap"]).idmap, Some(false));
        assert_eq!(p(&["ridmap"]).idmap, Some(true));
        assert_eq!(p(&["rbind"]).idmap, None);
        assert!(p(&["tmpcopyup"]).tmpcopyup);
        assert!(p(&["tmpcopyup", "idmap"]).data.is_empty());
    }
}
