//! OCI/AUFS whiteout names and their overlayfs equivalents.
//!
//! A layer marks a deleted lower file `x` with an empty entry `.wh.x`, and a
//! directory whose lower contents are hidden with `.wh..wh..opq` inside it.
//! overlayfs expresses the same with a 0/0 character device named `x` and
//! the `trusted.overlay.opaque="y"` xattr on the directory; the snapshot is
//! mounted as an overlay layer, so the conversion happens at unpack time.

use super::Refusal;

/// Prefix of every whiteout file name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS metadata names (`.wh..wh.plnk`, `.wh..wh.aufs`, ...).
const META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// The overlayfs xattr marking an opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a file name means for whiteout handling.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout: an ordinary entry.
    None,
    /// Hide the lower directory's contents (opaque marker in the parent).
    Opaque,
    /// Hide the lower entry with this name (in the same parent).
    Remove(&'a [u8]),
    /// AUFS bookkeeping that has no overlay meaning; skipped.
    AufsMeta,
}

/// Classifies the last component of an entry path. A whiteout whose target
/// name could step out of its directory (`.wh..`, `.wh.`) is refused: the
/// name alone must designate a sibling.
pub fn classify(name: &[u8]) -> Result<Whiteout<'_>, Refusal> {
    if name == OPAQUE {
        return Ok(Whiteout::Opaque);
    }
    if name.starts_with(META_PREFIX) {
        return Ok(Whiteout::AufsMeta);
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Whiteout::None),
        Some(b"") | Some(b".") | Some(b"..") => Err(Refusal::BadWhiteout),
        Some(target) if target.contains(&b'/') || target.contains(&0) => Err(Refusal::BadWhiteout),
        Some(target) => Ok(Whiteout::Remove(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(classify(b"file"), Ok(Whiteout::None));
        assert_eq!(classify(b".wh.file"), Ok(Whiteout::Remove(b"file")));
        assert_eq!(classify(b".wh..hidden"), Ok(Whiteout::Remove(b".hidden")));
        assert_eq!(classify(b".wh..wh..opq"), Ok(Whiteout::Opaque));
        assert_eq!(classify(b".wh..wh.plnk"), Ok(Whiteout::AufsMeta));
        assert_eq!(classify(b".wh..."), Err(Refusal::BadWhiteout));
        assert_eq!(classify(b".wh.."), Err(Refusal::BadWhiteout));
        assert_eq!(classify(b".wh."), Err(Refusal::BadWhiteout));
    }
}
