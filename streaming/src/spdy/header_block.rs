//! The SPDY/3 name/value header block and its zlib compression contexts.
//!
//! A block is `count:u32` then `count` times `name-len:u32 name value-len:u32
//! value`. Names are lower-case and unique; several values of one name travel
//! as one value joined with NUL. Each direction of a session compresses all
//! its blocks with one zlib stream primed with [`DICTIONARY`], each block
//! ending in a SYNC_FLUSH so the peer can decode it on its own.

use std::collections::HashSet;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use thiserror::Error;

use super::Headers;

/// The zlib dictionary of SPDY/3 (draft 3.1, section 2.6.10.1).
pub const DICTIONARY: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\
    \x03put\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\
    \x00\x00\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0facc\
    ept-language\x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05\
    allow\x00\x00\x00\x0dauthorization\x00\x00\x00\x0dcache-control\x00\x00\x00\
    \x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10content-encoding\
    \x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\x00\
    \x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\
    \x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\
    \x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04hos\
    t\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since\x00\x00\x00\x0dif\
    -none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmodified-since\x00\
    \x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forward\
    s\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13pro\
    xy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0b\
    retry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\
    \x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser\
    -agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\
    \x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\x00\
    \x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08H\
    TTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\x0aset-cookie\
    \x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin1001012012022052063003023033\
    04305306307402405406407408409410411412413414415416417502504505203 Non-Author\
    itative Information204 No Content301 Moved Permanently400 Bad Request401 Una\
    uthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemen\
    ted503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 0\
    0:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,im\
    age/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/java\
    script,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1\
    ,utf-,*,enq=0.";

/// Adler-32 of [`DICTIONARY`]: the dictionary id a SPDY/3 zlib stream announces.
pub const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

/// Limits the decoder enforces on one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Largest decompressed block, in bytes (bounds zlib bombs).
    pub max_block_size: usize,
    /// Most name/value pairs in one block.
    pub max_pairs: u32,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        // Kubernetes streams carry a handful of short headers; Go's framer
        // allows 1000 pairs, which we match.
        HeaderLimits {
            max_block_size: 256 * 1024,
            max_pairs: 1000,
        }
    }
}

/// Errors while encoding or decoding a header block.
#[derive(Debug, Error)]
pub enum HeaderBlockError {
    /// zlib refused to compress.
    #[error("compressing a header block failed")]
    Compress(#[source] flate2::CompressError),
    /// zlib refused the compressed bytes.
    #[error("decompressing a header block failed")]
    Decompress(#[source] flate2::DecompressError),
    /// The zlib stream asks for a dictionary other than SPDY/3's.
    #[error("header block wants zlib dictionary {adler:#010x}, not the SPDY/3 one")]
    UnknownDictionary { adler: u32 },
    /// An earlier error left the zlib context out of step with the peer's.
    #[error("header decompression context is unusable after an earlier error")]
    Poisoned,
    /// The decompressed block is larger than the limit.
    #[error("decompressed header block exceeds {max} bytes")]
    TooLarge { max: usize },
    /// The block ends inside a field.
    #[error("header block truncated at byte {at}")]
    Truncated { at: usize },
    /// More pairs than allowed, or than the block could hold.
    #[error("header block announces {count} pairs (limit {max})")]
    TooManyPairs { count: u32, max: u32 },
    /// A zero-length header name.
    #[error("empty header name")]
    EmptyName,
    /// A name with upper-case letters or a NUL.
    #[error("invalid header name {name:?} (must be lower-case, without NUL)")]
    InvalidName { name: String },
    /// A name that appears twice in one block.
    #[error("duplicate header name {name:?}")]
    DuplicateName { name: String },
    /// A name or value that is not UTF-8.
    #[error("header {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    /// Bytes after the last pair.
    #[error("{len} bytes after the last header pair")]
    TrailingBytes { len: usize },
    /// A name or value too long for its 32-bit length.
    #[error("header field of {len} bytes is too long to encode")]
    FieldTooLong { len: usize },
}

impl HeaderBlockError {
    /// Whether the compression context is now unusable, which makes the error
    /// fatal to the whole session rather than to one stream.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            HeaderBlockError::Compress(_)
                | HeaderBlockError::Decompress(_)
                | HeaderBlockError::UnknownDictionary { .. }
                | HeaderBlockError::Poisoned
                | HeaderBlockError::TooLarge { .. }
        )
    }
}

/// Serialises `headers` as an uncompressed block: names lower-cased, values
/// of repeated names joined with NUL in first-seen order.
pub fn encode_raw(headers: &[(String, String)]) -> Result<Vec<u8>, HeaderBlockError> {
    let mut grouped: Vec<(String, Vec<u8>)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name.is_empty() {
            return Err(HeaderBlockError::EmptyName);
        }
        if name.contains('\0') {
            return Err(HeaderBlockError::InvalidName { name });
        }
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(0);
                joined.extend_from_slice(value.as_bytes());
            }
            None => grouped.push((name, value.as_bytes().to_vec())),
        }
    }
    let mut out = Vec::new();
    put_len(&mut out, grouped.len())?;
    for (name, value) in &grouped {
        put_len(&mut out, name.len())?;
        out.extend_from_slice(name.as_bytes());
        put_len(&mut out, value.len())?;
        out.extend_from_slice(value);
    }
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), HeaderBlockError> {
    let n = u32::try_from(len).map_err(|_| HeaderBlockError::FieldTooLong { len })?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderBlockError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(HeaderBlockError::Truncated { at: self.at })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, HeaderBlockError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }
}

/// Parses an uncompressed block. A value holding NUL-separated values yields
/// one pair per value, in order.
pub fn decode_raw(buf: &[u8], limits: &HeaderLimits) -> Result<Headers, HeaderBlockError> {
    let mut cur = Cursor { buf, at: 0 };
    let count = cur.u32()?;
    // Each pair needs at least its two length words, so a count the rest of
    // the block cannot hold is rejected before anything is allocated for it.
    if count > limits.max_pairs || u64::from(count) * 8 > cur.remaining() as u64 {
        return Err(HeaderBlockError::TooManyPairs {
            count,
            max: limits.max_pairs,
        });
    }
    let mut headers = Vec::with_capacity(count as usize);
    let mut seen = HashSet::with_capacity(count as usize);
    for _ in 0..count {
        let len = cur.u32()? as usize;
        let name = cur.take(len)?;
        if name.is_empty() {
            return Err(HeaderBlockError::EmptyName);
        }
        let name =
            std::str::from_utf8(name).map_err(|_| HeaderBlockError::NotUtf8 { what: "name" })?;
        if name.bytes().any(|b| b.is_ascii_uppercase() || b == 0) {
            return Err(HeaderBlockError::InvalidName {
                name: name.to_owned(),
            });
        }
        if !seen.insert(name) {
            return Err(HeaderBlockError::DuplicateName {
                name: name.to_owned(),
            });
        }
        let len = cur.u32()? as usize;
        let value = cur.take(len)?;
        let value =
            std::str::from_utf8(value).map_err(|_| HeaderBlockError::NotUtf8 { what: "value" })?;
        for v in value.split('\0') {
            headers.push((name.to_owned(), v.to_owned()));
        }
    }
    if cur.remaining() != 0 {
        return Err(HeaderBlockError::TrailingBytes {
            len: cur.remaining(),
        });
    }
    Ok(headers)
}

/// The compressing side of one direction of a session.
pub struct HeaderEncoder {
    z: Compress,
}

impl HeaderEncoder {
    /// A fresh context primed with the SPDY/3 dictionary.
    pub fn new() -> Result<Self, HeaderBlockError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(HeaderBlockError::Compress)?;
        Ok(HeaderEncoder { z })
    }

    /// Encodes and compresses one block, ending it with a SYNC_FLUSH.
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, HeaderBlockError> {
        let raw = encode_raw(headers)?;
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(HeaderBlockError::Compress)?;
            consumed += (self.z.total_in() - before) as usize;
            // zlib has finished the flush once it stops short of filling the
            // output buffer with all input taken.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing side of one direction of a session.
pub struct HeaderDecoder {
    z: Decompress,
    limits: HeaderLimits,
    poisoned: bool,
}

impl HeaderDecoder {
    /// A fresh context; the dictionary is supplied when the stream asks for it.
    pub fn new(limits: HeaderLimits) -> Self {
        HeaderDecoder {
            z: Decompress::new(true),
            limits,
            poisoned: false,
        }
    }

    /// Decompresses and parses one block. After a fatal error (see
    /// [`HeaderBlockError::is_fatal`]) every later call fails too.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderBlockError> {
        if self.poisoned {
            return Err(HeaderBlockError::Poisoned);
        }
        let raw = self.inflate(block).inspect_err(|_| self.poisoned = true)?;
        decode_raw(&raw, &self.limits)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderBlockError> {
        let max = self.limits.max_block_size;
        let mut out = Vec::new();
        let mut consumed = 0;
        loop {
            if out.len() > max {
                return Err(HeaderBlockError::TooLarge { max });
            }
            // Grow in small steps, never past max + 1 bytes requested, so a
            // zlib bomb costs at most the limit.
            let want = (out.len() + 4096).min(max + 1);
            out.reserve_exact(want.saturating_sub(out.len()).max(1));
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let res = self
                .z
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.z.total_in() - in0) as usize;
            let progressed = self.z.total_in() != in0 || self.z.total_out() != out0;
            if let Err(e) = res {
                match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.z
                            .set_dictionary(DICTIONARY)
                            .map_err(HeaderBlockError::Decompress)?;
                        continue;
                    }
                    Some(adler) => return Err(HeaderBlockError::UnknownDictionary { adler }),
                    None => return Err(HeaderBlockError::Decompress(e)),
                }
            }
            if consumed == block.len() && out.len() < out.capacity() {
                if out.len() > max {
                    return Err(HeaderBlockError::TooLarge { max });
                }
                return Ok(out);
            }
            if !progressed {
                return Err(HeaderBlockError::Truncated { at: consumed });
            }
        }
    }
}

#[cfg(test)]
#[path = "header_block_tests.rs"]
mod tests;
