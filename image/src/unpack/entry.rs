//! Reading one tar entry's name and metadata, and deciding whether its path
//! is acceptable at all (before anything touches the file system).

use std::ffi::CString;
use std::io::Read;

use nix::sys::time::TimeSpec;

use super::Refusal;

/// A validated, normalised entry path: no NUL, not absolute, no `..`,
/// `.` and empty components dropped. An empty component list is the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath {
    components: Vec<Vec<u8>>,
}

impl EntryPath {
    /// Validates raw tar path bytes.
    ///
    /// Absolute paths are refused rather than re-rooted: Docker and buildkit
    /// never write them, so one in a layer is a crafted archive (the issue
    /// asks for refusal; containerd instead strips the leading `/`).
    pub fn parse(raw: &[u8]) -> Result<Self, Refusal> {
        if raw.contains(&0) {
            return Err(Refusal::Nul);
        }
        if raw.first() == Some(&b'/') {
            return Err(Refusal::Absolute);
        }
        let mut components = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(Refusal::DotDot),
                c => components.push(c.to_vec()),
            }
        }
        Ok(EntryPath { components })
    }

    /// Whether this is the root of the layer (`./`).
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The parent directory, `a/b` for `a/b/c` (empty for a top-level entry).
    pub fn parent(&self) -> Vec<u8> {
        join(&self.components[..self.components.len().saturating_sub(1)])
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &[u8] {
        self.components.last().map(Vec::as_slice).unwrap_or(b"")
    }

    /// The whole normalised path, `a/b/c`.
    pub fn joined(&self) -> Vec<u8> {
        join(&self.components)
    }
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

/// Ownership, mode, time and extended attributes of an entry.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Owner (PAX `uid` already folded in by the tar reader).
    pub uid: u32,
    /// Group (PAX `gid` likewise).
    pub gid: u32,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Modification time (PAX `mtime` with sub-second precision when present).
    pub mtime: TimeSpec,
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Reads the metadata of `entry`, refusing xattrs berth will not apply.
///
/// `trusted.overlay.*` attributes are refused (not skipped with a warning):
/// the snapshot becomes an overlay layer, and forged `opaque`, `redirect` or
/// `metacopy` attributes would make overlayfs show files from elsewhere in
/// the stack. Images express whiteouts with `.wh.` names; a legitimate image
/// never carries these.
pub fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, MetaError> {
    let header = entry.header();
    let uid = header.uid().map_err(MetaError::Header)?;
    let gid = header.gid().map_err(MetaError::Header)?;
    let mode = header.mode().map_err(MetaError::Header)? & 0o7777;
    let mut mtime = TimeSpec::new(
        i64::try_from(header.mtime().map_err(MetaError::Header)?).unwrap_or(i64::MAX),
        0,
    );
    let uid = u32::try_from(uid).map_err(|_| MetaError::Refused(Refusal::IdOutOfRange(uid)))?;
    let gid = u32::try_from(gid).map_err(|_| MetaError::Refused(Refusal::IdOutOfRange(gid)))?;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(MetaError::Header)? {
        for ext in exts {
            let ext = ext.map_err(MetaError::Header)?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            } else if let Some(name) = key.strip_prefix(XATTR_PREFIX) {
                if name.starts_with(b"trusted.overlay.") {
                    return Err(MetaError::Refused(Refusal::OverlayXattr(
                        String::from_utf8_lossy(name).into_owned(),
                    )));
                }
                let cname = CString::new(name).map_err(|_| MetaError::Refused(Refusal::Nul))?;
                xattrs.push((cname, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode,
        mtime,
        xattrs,
    })
}

/// Parses a PAX time (`seconds[.fraction]`, possibly negative).
fn parse_pax_time(v: &str) -> Option<TimeSpec> {
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    // For negative times the fraction counts towards the epoch.
    if secs < 0 || v.starts_with('-') {
        Some(TimeSpec::new(
            secs - i64::from(nanos > 0),
            (1_000_000_000 - nanos) % 1_000_000_000,
        ))
    } else {
        Some(TimeSpec::new(secs, nanos))
    }
}

/// Why an entry's metadata could not be read.
#[derive(Debug)]
pub enum MetaError {
    /// The header or PAX records are malformed.
    Header(std::io::Error),
    /// The metadata asks for something berth refuses.
    Refused(Refusal),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = EntryPath::parse(b"./usr//bin/./sh").unwrap();
        assert_eq!(p.joined(), b"usr/bin/sh");
        assert_eq!(p.parent(), b"usr/bin");
        assert_eq!(p.name(), b"sh");
        assert!(EntryPath::parse(b"./").unwrap().is_root());
        assert!(EntryPath::parse(b".").unwrap().is_root());
        assert_eq!(EntryPath::parse(b"/etc/x"), Err(Refusal::Absolute));
        assert_eq!(EntryPath::parse(b"a/../../b"), Err(Refusal::DotDot));
        assert_eq!(EntryPath::parse(b"a/.."), Err(Refusal::DotDot));
        assert_eq!(EntryPath::parse(b"a\0b"), Err(Refusal::Nul));
        // "..." is an ordinary name.
        assert_eq!(EntryPath::parse(b"a/...").unwrap().name(), b"...");
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time("1700000000.25").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 250_000_000));
        let t = parse_pax_time("12").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 0));
        assert!(parse_pax_time("x").is_none());
    }
}
