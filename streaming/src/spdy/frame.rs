//! The SPDY/3.1 frame codec. Header blocks stay compressed at this layer
//! (see [`super::header_block`]); stream semantics live in the session.
//!
//! Wire layout (all integers big-endian):
//! - control frame: `1 | version:15 | type:16 | flags:8 | length:24 | payload`
//! - data frame:    `0 | stream-id:31 | flags:8 | length:24 | payload`

use thiserror::Error;

/// The only protocol version this codec speaks.
pub const VERSION: u16 = 3;
/// Bytes of the common frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD_LEN: usize = 0x00ff_ffff;
/// Default cap on payload lengths accepted by [`parse`]: the format's maximum,
/// which is also what Go's spdystream accepts. Lower it with [`parse_with_limit`].
pub const DEFAULT_MAX_FRAME_LEN: usize = MAX_PAYLOAD_LEN;

/// FIN flag of DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL flag of SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// CLEAR_SETTINGS flag of SETTINGS.
pub const FLAG_SETTINGS_CLEAR: u8 = 0x01;

/// SETTINGS id: the initial per-stream flow-control window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// SETTINGS id: the most concurrent streams the sender accepts.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u32 = 4;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const ID_MASK: u32 = 0x7fff_ffff;

/// RST_STREAM status codes (SPDY/3.1 section 2.6.3).
pub mod rst {
    /// Generic protocol violation.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame arrived for a stream that is not active.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The peer's SPDY version is not supported.
    pub const UNSUPPORTED_VERSION: u32 = 4;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// An internal error of the sender.
    pub const INTERNAL_ERROR: u32 = 6;
    /// The peer violated flow control.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    /// A SYN_REPLY arrived for a stream that already has one.
    pub const STREAM_IN_USE: u32 = 8;
    /// Data or headers arrived on a half-closed stream.
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    /// The client certificate was not accepted.
    pub const INVALID_CREDENTIALS: u32 = 10;
    /// The frame was too large to process.
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes (SPDY/3.1 section 2.6.6).
pub mod goaway {
    /// Normal session teardown.
    pub const OK: u32 = 0;
    /// The peer violated the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// An internal error of the sender.
    pub const INTERNAL_ERROR: u32 = 2;
}

/// Errors from [`parse`] and [`encode`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A control frame announced a version other than 3.
    #[error("unsupported SPDY version {version} in control frame type {frame_type}")]
    BadVersion { version: u16, frame_type: u16 },
    /// The announced payload length is above the configured cap.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// A fixed-size control frame has the wrong length.
    #[error("control frame type {frame_type} has length {len}, expected {expected}")]
    BadLength {
        frame_type: u16,
        len: usize,
        expected: &'static str,
    },
    /// A SETTINGS frame's entry count disagrees with its length.
    #[error("SETTINGS frame claims {count} entries in a {len}-byte payload")]
    BadSettingsCount { count: u32, len: usize },
    /// A frame that must name a stream names stream 0.
    #[error("frame type {frame_type} on stream 0")]
    ZeroStreamId { frame_type: &'static str },
    /// A frame to encode carries a stream id above 2^31-1.
    #[error("stream id {id} does not fit in 31 bits")]
    IdOutOfRange { id: u32 },
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// PERSIST_VALUE (0x1) / PERSISTED (0x2).
    pub flags: u8,
    /// Setting id (24 bits).
    pub id: u32,
    /// Setting value.
    pub value: u32,
}

/// One SPDY/3.1 frame. Header blocks are the compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM: opens a stream.
    SynStream {
        stream_id: u32,
        associated_id: u32,
        /// 3-bit priority, 0 is highest.
        priority: u8,
        slot: u8,
        flags: u8,
        header_block: Vec<u8>,
    },
    /// SYN_REPLY: accepts a stream.
    SynReply {
        stream_id: u32,
        flags: u8,
        header_block: Vec<u8>,
    },
    /// RST_STREAM: aborts a stream.
    RstStream { stream_id: u32, status: u32 },
    /// SETTINGS.
    Settings { flags: u8, entries: Vec<Setting> },
    /// PING.
    Ping { id: u32 },
    /// GOAWAY: no new streams after `last_good_stream_id`.
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// HEADERS: more headers for a stream.
    Headers {
        stream_id: u32,
        flags: u8,
        header_block: Vec<u8>,
    },
    /// WINDOW_UPDATE; stream 0 is the session window (SPDY/3.1).
    WindowUpdate { stream_id: u32, delta: u32 },
    /// DATA.
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A version-3 control frame of a type this codec does not know; the
    /// spec says to ignore it, the session does so.
    Unknown {
        frame_type: u16,
        flags: u8,
        payload: Vec<u8>,
    },
}

/// Parses one frame from the front of `buf` with [`DEFAULT_MAX_FRAME_LEN`].
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, n)))` consumed `n` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    parse_with_limit(buf, DEFAULT_MAX_FRAME_LEN)
}

/// Like [`parse`], rejecting payloads longer than `max_len` as soon as the
/// header is read, before any of the payload is buffered.
pub fn parse_with_limit(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let word0 = be32(head, 0);
    let flags = head[4];
    let len = (be32(head, 4) & 0x00ff_ffff) as usize;
    let is_control = word0 & 0x8000_0000 != 0;
    let frame_type = (word0 & 0xffff) as u16;
    if is_control {
        let version = ((word0 >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::BadVersion {
                version,
                frame_type,
            });
        }
    }
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let frame = if is_control {
        parse_control(frame_type, flags, payload)?
    } else {
        let stream_id = word0 & ID_MASK;
        if stream_id == 0 {
            return Err(FrameError::ZeroStreamId { frame_type: "DATA" });
        }
        Frame::Data {
            stream_id,
            flags,
            data: payload.to_vec(),
        }
    };
    Ok(Some((frame, HEADER_LEN + len)))
}

fn parse_control(frame_type: u16, flags: u8, p: &[u8]) -> Result<Frame, FrameError> {
    let length_ok = |ok: bool, what: &'static str| {
        ok.then_some(()).ok_or(FrameError::BadLength {
            frame_type,
            len: p.len(),
            expected: what,
        })
    };
    let exact = |expected: usize, what| length_ok(p.len() == expected, what);
    let at_least = |min: usize, what| length_ok(p.len() >= min, what);
    let nonzero = |id: u32, name: &'static str| {
        if id == 0 {
            Err(FrameError::ZeroStreamId { frame_type: name })
        } else {
            Ok(id)
        }
    };
    Ok(match frame_type {
        TYPE_SYN_STREAM => {
            at_least(10, ">= 10")?;
            Frame::SynStream {
                stream_id: nonzero(be32(p, 0) & ID_MASK, "SYN_STREAM")?,
                associated_id: be32(p, 4) & ID_MASK,
                priority: p[8] >> 5,
                slot: p[9],
                flags,
                header_block: p[10..].to_vec(),
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            at_least(4, ">= 4")?;
            let name = if frame_type == TYPE_SYN_REPLY {
                "SYN_REPLY"
            } else {
                "HEADERS"
            };
            let stream_id = nonzero(be32(p, 0) & ID_MASK, name)?;
            let header_block = p[4..].to_vec();
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    header_block,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    header_block,
                }
            }
        }
        TYPE_RST_STREAM => {
            exact(8, "8")?;
            Frame::RstStream {
                stream_id: nonzero(be32(p, 0) & ID_MASK, "RST_STREAM")?,
                status: be32(p, 4),
            }
        }
        TYPE_SETTINGS => {
            at_least(4, ">= 4")?;
            let count = be32(p, 0);
            // Compare in u64 so a huge count cannot wrap; the allocation below
            // is then bounded by the (capped) payload length.
            if 4 + 8 * u64::from(count) != p.len() as u64 {
                return Err(FrameError::BadSettingsCount {
                    count,
                    len: p.len(),
                });
            }
            let entries = p[4..]
                .chunks_exact(8)
                .map(|e| Setting {
                    flags: e[0],
                    id: be32(e, 0) & 0x00ff_ffff,
                    value: be32(e, 4),
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            exact(4, "4")?;
            Frame::Ping { id: be32(p, 0) }
        }
        TYPE_GOAWAY => {
            exact(8, "8")?;
            Frame::GoAway {
                last_good_stream_id: be32(p, 0) & ID_MASK,
                status: be32(p, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            exact(8, "8")?;
            Frame::WindowUpdate {
                stream_id: be32(p, 0) & ID_MASK,
                delta: be32(p, 4) & ID_MASK,
            }
        }
        _ => Frame::Unknown {
            frame_type,
            flags,
            payload: p.to_vec(),
        },
    })
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn check_id(id: u32) -> Result<u32, FrameError> {
    if id > ID_MASK {
        Err(FrameError::IdOutOfRange { id })
    } else {
        Ok(id)
    }
}

/// Appends the wire form of `frame` to `out`. Fails, leaving `out` as it
/// was, when a payload exceeds the 24-bit length or an id exceeds 31 bits.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    let res = encode_inner(frame, out);
    if res.is_err() {
        out.truncate(start);
    }
    res
}

fn encode_inner(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    match frame {
        Frame::SynStream {
            stream_id,
            associated_id,
            priority,
            slot,
            flags,
            header_block,
        } => {
            control_header(out, TYPE_SYN_STREAM, *flags, 10 + header_block.len())?;
            out.extend_from_slice(&check_id(*stream_id)?.to_be_bytes());
            out.extend_from_slice(&check_id(*associated_id)?.to_be_bytes());
            out.push((priority & 0x07) << 5);
            out.push(*slot);
            out.extend_from_slice(header_block);
        }
        Frame::SynReply {
            stream_id,
            flags,
            header_block,
        } => {
            control_header(out, TYPE_SYN_REPLY, *flags, 4 + header_block.len())?;
            out.extend_from_slice(&check_id(*stream_id)?.to_be_bytes());
            out.extend_from_slice(header_block);
        }
        Frame::Headers {
            stream_id,
            flags,
            header_block,
        } => {
            control_header(out, TYPE_HEADERS, *flags, 4 + header_block.len())?;
            out.extend_from_slice(&check_id(*stream_id)?.to_be_bytes());
            out.extend_from_slice(header_block);
        }
        Frame::RstStream { stream_id, status } => {
            control_header(out, TYPE_RST_STREAM, 0, 8)?;
            out.extend_from_slice(&check_id(*stream_id)?.to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        Frame::Settings { flags, entries } => {
            let len = entries
                .len()
                .checked_mul(8)
                .and_then(|n| n.checked_add(4))
                .unwrap_or(usize::MAX);
            control_header(out, TYPE_SETTINGS, *flags, len)?;
            // The length check above bounds the count well below u32::MAX.
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                out.extend_from_slice(
                    &((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff)).to_be_bytes(),
                );
                out.extend_from_slice(&e.value.to_be_bytes());
            }
        }
        Frame::Ping { id } => {
            control_header(out, TYPE_PING, 0, 4)?;
            out.extend_from_slice(&id.to_be_bytes());
        }
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            control_header(out, TYPE_GOAWAY, 0, 8)?;
            out.extend_from_slice(&check_id(*last_good_stream_id)?.to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        Frame::WindowUpdate { stream_id, delta } => {
            control_header(out, TYPE_WINDOW_UPDATE, 0, 8)?;
            out.extend_from_slice(&check_id(*stream_id)?.to_be_bytes());
            out.extend_from_slice(&check_id(*delta)?.to_be_bytes());
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let len = checked_len(data.len())?;
            out.extend_from_slice(&check_id(*stream_id)?.to_be_bytes());
            out.extend_from_slice(&((u32::from(*flags) << 24) | len).to_be_bytes());
            out.extend_from_slice(data);
        }
        Frame::Unknown {
            frame_type,
            flags,
            payload,
        } => {
            control_header(out, *frame_type, *flags, payload.len())?;
            out.extend_from_slice(payload);
        }
    }
    Ok(())
}

fn checked_len(len: usize) -> Result<u32, FrameError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    // Bounded by MAX_PAYLOAD_LEN just above.
    Ok(len as u32)
}

fn control_header(
    out: &mut Vec<u8>,
    frame_type: u16,
    flags: u8,
    len: usize,
) -> Result<(), FrameError> {
    let len = checked_len(len)?;
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | len).to_be_bytes());
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
