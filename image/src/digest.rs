//! Content digests (`sha256:<hex>`) and readers that verify what flows through them.
//!
//! Every byte berth takes from a registry or a layout passes through a
//! [`VerifyingReader`]; nothing read is trusted until [`VerifyingReader::finish`]
//! has confirmed that the stream ended and hashed to the expected digest.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Errors from parsing or verifying digests.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The string is not `<algorithm>:<hex>` with a supported algorithm.
    #[error("invalid digest {value:?}: {reason}")]
    Invalid {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The content hashed to something else (tampered or truncated content).
    #[error("digest mismatch: expected {expected}, got {actual} after {bytes} bytes")]
    Mismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// The digest of what was actually read.
        actual: Digest,
        /// How many bytes were read.
        bytes: u64,
    },
    /// The content was longer or shorter than announced.
    #[error("size mismatch for {expected_digest}: expected {expected} bytes, got {actual}")]
    Size {
        /// The digest whose content had the wrong size.
        expected_digest: Digest,
        /// The announced size.
        expected: u64,
        /// The size actually read.
        actual: u64,
    },
    /// Reading the rest of the stream to confirm its end failed.
    #[error("reading the end of the stream for {expected}")]
    Io {
        /// The digest being verified.
        expected: Digest,
        /// The underlying read error.
        #[source]
        source: io::Error,
    },
}

/// A validated content digest. Only `sha256` is supported (the only
/// algorithm registries and runtimes actually use).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The algorithm name (always `sha256`).
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The lower-case hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of an in-memory byte string.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self::from_sha256(Sha256::new_with_prefix(data))
    }

    /// Finalises a running SHA-256 into a digest.
    pub(crate) fn from_sha256(h: Sha256) -> Self {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| DigestError::Invalid {
            value: s.to_string(),
            reason,
        };
        let (alg, hex) = s.split_once(':').ok_or_else(|| invalid("missing ':'"))?;
        if alg != "sha256" {
            return Err(invalid("unsupported algorithm (only sha256)"));
        }
        if hex.len() != 64 {
            return Err(invalid("sha256 hex must be 64 characters"));
        }
        // Upper case is refused: digests are compared as strings everywhere
        // (registry URLs, store paths), so exactly one spelling must exist.
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("hex must be lower-case 0-9a-f"));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A `Read` wrapper that hashes everything read through it.
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    expected_size: Option<u64>,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must produce content with digest `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifyingReader {
            inner,
            expected,
            expected_size: None,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Also requires the content to be exactly `size` bytes long; reading
    /// stops with an error as soon as more arrives, so a hostile server
    /// cannot stream forever.
    pub fn with_size(mut self, size: Option<u64>) -> Self {
        self.expected_size = size;
        self
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The digest this reader verifies against.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Reads whatever the consumer left unread (so trailing bytes are
    /// covered by the digest too), then checks size and digest. Returns the
    /// total length of the content.
    pub fn finish(mut self) -> Result<u64, DigestError> {
        io::copy(&mut self, &mut io::sink()).map_err(|source| DigestError::Io {
            expected: self.expected.clone(),
            source,
        })?;
        if let Some(size) = self.expected_size {
            if size != self.bytes {
                return Err(DigestError::Size {
                    expected_digest: self.expected,
                    expected: size,
                    actual: self.bytes,
                });
            }
        }
        let actual = Digest::from_sha256(self.hasher);
        if actual != self.expected {
            return Err(DigestError::Mismatch {
                expected: self.expected,
                actual,
                bytes: self.bytes,
            });
        }
        Ok(self.bytes)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if let Some(size) = self.expected_size {
            if self.bytes > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is longer than its announced {size} bytes",
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_display() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::of_bytes(b""));
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:abcd".parse::<Digest>().is_err());
        assert!(EMPTY
            .to_uppercase()
            .replace("SHA256", "sha256")
            .parse::<Digest>()
            .is_err());
        assert!(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse::<Digest>()
                .is_err()
        );
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn verifies_good_content_even_if_consumer_stops_early() {
        let data = b"hello world, this is content".to_vec();
        let mut r = VerifyingReader::new(&data[..], Digest::of_bytes(&data));
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), data.len() as u64);
    }

    #[test]
    fn tampered_content_names_both_digests() {
        let data = b"original".to_vec();
        let expected = Digest::of_bytes(&data);
        let r = VerifyingReader::new(&b"0riginal"[..], expected.clone());
        match r.finish() {
            Err(DigestError::Mismatch {
                expected: e,
                actual,
                bytes,
            }) => {
                assert_eq!(e, expected);
                assert_eq!(actual, Digest::of_bytes(b"0riginal"));
                assert_eq!(bytes, 8);
            }
            other => panic!("expected mismatch, got {other:?}"),
        }
    }

    #[test]
    fn truncated_content_fails() {
        let data = vec![7u8; 10_000];
        let r = VerifyingReader::new(&data[..9_000], Digest::of_bytes(&data));
        assert!(matches!(r.finish(), Err(DigestError::Mismatch { .. })));
        let r =
            VerifyingReader::new(&data[..9_000], Digest::of_bytes(&data)).with_size(Some(10_000));
        assert!(matches!(
            r.finish(),
            Err(DigestError::Size { actual: 9_000, .. })
        ));
    }

    #[test]
    fn overlong_content_stops_reading() {
        let data = [1u8; 100];
        let mut r =
            VerifyingReader::new(&data[..], Digest::of_bytes(&data[..50])).with_size(Some(50));
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
