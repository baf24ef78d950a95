//! Parsing what a container printed about itself.

/// The value of `Key:` in /proc/<pid>/status text (whitespace-trimmed, tabs kept between fields).
pub fn status_field(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_owned())
}

/// A capability set line (`CapEff` ...) as a number.
#[track_caller]
pub fn cap_mask(text: &str, key: &str) -> u64 {
    let v = status_field(text, key).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    u64::from_str_radix(&v, 16).unwrap()
}

/// Bit mask of capability numbers.
pub fn caps(bits: &[u32]) -> u64 {
    bits.iter().fold(0, |m, b| m | (1u64 << b))
}

/// Capability numbers (linux/capability.h) the tests use.
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const KILL: u32 = 5;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const SYS_ADMIN: u32 = 21;
    pub const AUDIT_WRITE: u32 = 29;
}

/// The value printed after `KEY=` on its own line (`echo KEY=$(...)` style probes).
pub fn kv(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
}

/// Mountinfo lines parsed: (mount point, fs type, per-mount options).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountEntry {
                mount_point: f.get(4)?.to_string(),
                options: f.get(5)?.to_string(),
                fstype: p.first()?.to_string(),
                source: p.get(1).unwrap_or(&"").to_string(),
                super_options: p.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// One line of /proc/<pid>/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountEntry {
    pub mount_point: String,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// The last mount at `point` (the visible one).
pub fn mount_at<'a>(mounts: &'a [MountEntry], point: &str) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mount_point == point)
}
