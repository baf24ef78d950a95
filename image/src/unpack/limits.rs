//! Bounds on what one layer may unpack to (decompression bombs, inode floods).

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Limits applied to a single layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Maximum size of the decompressed tar stream (file contents plus tar
    /// headers and padding). A regular file whose declared size would cross
    /// it is refused before any of it is written.
    pub max_unpacked_bytes: u64,
    /// Maximum number of tar entries (whiteouts and directories included).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    /// 32 GiB and 4 million entries: far above any real image layer, far
    /// below what fills a node's disk or inode table by surprise.
    fn default() -> Self {
        UnpackLimits {
            max_unpacked_bytes: 32 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// Shared view of a [`LimitedReader`]'s progress, readable while the reader
/// itself is borrowed deep inside the decompressor/tar stack. The tar crate
/// re-wraps I/O errors, so the flag (not the error value) is what tells a
/// limit hit apart from a corrupt stream.
#[derive(Debug, Clone, Default)]
pub struct LimitProbe {
    read: Rc<Cell<u64>>,
    exceeded: Rc<Cell<bool>>,
}

impl LimitProbe {
    /// Bytes that passed through so far.
    pub fn bytes(&self) -> u64 {
        self.read.get()
    }

    /// Whether a read was refused because the limit was reached.
    pub fn exceeded(&self) -> bool {
        self.exceeded.get()
    }
}

/// A reader that fails once more than `limit` bytes have been read.
pub struct LimitedReader<R> {
    inner: R,
    limit: u64,
    probe: LimitProbe,
}

impl<R: Read> LimitedReader<R> {
    /// Wraps `inner`; the probe reports progress and whether the limit hit.
    pub fn new(inner: R, limit: u64) -> (Self, LimitProbe) {
        let probe = LimitProbe::default();
        (
            LimitedReader {
                inner,
                limit,
                probe: probe.clone(),
            },
            probe,
        )
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let used = self.probe.read.get();
        let room = self.limit.saturating_sub(used);
        if room == 0 {
            // Only an error if there really is more data: a stream of
            // exactly `limit` bytes is fine.
            let mut one = [0u8; 1];
            return match self.inner.read(&mut one)? {
                0 => Ok(0),
                _ => {
                    self.probe.exceeded.set(true);
                    Err(io::Error::other(format!(
                        "unpacked size limit of {} bytes exceeded",
                        self.limit
                    )))
                }
            };
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.probe.read.set(used + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exact_size_passes_larger_fails() {
        let data = [0u8; 100];
        let (mut r, probe) = LimitedReader::new(&data[..], 100);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(probe.bytes(), 100);
        assert!(!probe.exceeded());

        let (mut r, probe) = LimitedReader::new(&data[..], 99);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(probe.exceeded());
        assert_eq!(probe.bytes(), 99);
    }
}
