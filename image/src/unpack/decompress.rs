//! Choosing and building the layer decompressor (gzip, zstd or none).
//!
//! The media type says what the blob should be; the first bytes say what it
//! is. Magic bytes win when they are recognised (registries and old tools
//! mislabel layers, and a plain tar never starts with a gzip or zstd magic),
//! so a mislabelled layer still unpacks — its digests are verified either way.

use std::io::{self, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (possibly several concatenated members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression a layer media type announces, or `None` for a media
    /// type berth does not unpack (encrypted, foreign, unknown).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// The compression recognised from a blob's first bytes, if any.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else if head.starts_with(&GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else {
            None
        }
    }
}

/// Reads up to four bytes from `blob` to sniff its compression, then returns
/// a reader of the decompressed stream (the sniffed bytes are replayed).
/// `declared` is what the media type said.
pub fn decompressor<'a, R: Read + 'a>(
    mut blob: R,
    declared: Compression,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match blob.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let sniffed = Compression::sniff(&head[..n]);
    // A blob declared compressed without the magic is left to the declared
    // decoder, which fails loudly; the reverse (magic on a plain tar media
    // type) is a mislabel we can serve.
    let kind = sniffed.unwrap_or(declared);
    if sniffed.is_some() && sniffed != Some(declared) {
        tracing::debug!(
            ?declared,
            ?kind,
            "layer compression differs from its media type"
        );
    }
    let replay = io::Cursor::new(head).take(n as u64).chain(blob);
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(replay),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(replay)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(replay)?),
    };
    Ok((kind, reader))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+encrypted"),
            None
        );
    }

    #[test]
    fn sniffing_overrides_a_wrong_label_and_replays_the_head() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"hello layer").unwrap();
        let gz = gz.finish().unwrap();
        let (kind, mut r) = decompressor(&gz[..], Compression::None).unwrap();
        assert_eq!(kind, Compression::Gzip);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello layer");

        let zs = zstd::encode_all(&b"zstd layer"[..], 3).unwrap();
        let (kind, mut r) = decompressor(&zs[..], Compression::Gzip).unwrap();
        assert_eq!(kind, Compression::Zstd);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "zstd layer");

        let (kind, mut r) = decompressor(&b"ab"[..], Compression::None).unwrap();
        assert_eq!(kind, Compression::None);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "ab");
    }
}
