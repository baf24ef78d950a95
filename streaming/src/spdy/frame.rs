//! The SPDY/3.1 frame codec. Header blocks stay compressed at this layer.

use thiserror::Error;

/// Errors from [`parse`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A control frame announced a version other than 3.
    #[error("unsupported SPDY version {version} in control frame type {frame_type}")]
    BadVersion { version: u16, frame_type: u16 },
}

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// Parses one frame from the front of `buf`; `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let _ = buf;
    todo!()
}

/// Appends the wire form of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let _ = (frame, out);
    todo!()
}
