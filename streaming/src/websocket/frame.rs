//! RFC 6455 frame encoding and parsing (section 5).
//!
//! The parser is a pure function over a byte slice so that it can be fuzzed
//! and property-tested without a socket; the connection layer decides what a
//! frame means (roles, fragmentation, control replies).

use super::WsError;

/// Largest payload a control frame may carry (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation,
    /// First frame of a text message.
    Text,
    /// First frame of a binary message.
    Binary,
    /// Close control frame.
    Close,
    /// Ping control frame.
    Ping,
    /// Pong control frame.
    Pong,
}

impl OpCode {
    /// The opcode for a wire value; `None` for the reserved values.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One parsed frame, its payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// Whether the sender masked the payload.
    pub masked: bool,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

/// The fixed part of a frame, known once its header bytes have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Last fragment of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, when the sender masked the payload.
    pub mask: Option<[u8; 4]>,
    /// Header length in bytes (payload starts here).
    pub header_len: usize,
    /// Payload length in bytes.
    pub payload_len: usize,
}

/// Parses a frame header from the front of `buf`: `Ok(None)` when more bytes
/// are needed. A frame over `max_payload` is refused as soon as its length is
/// known, before its payload is buffered.
pub fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let rsv = b0 & 0x70;
    if rsv != 0 {
        // No extension is ever negotiated, so RSV1-3 must be zero (5.2).
        return Err(WsError::ReservedBits(rsv >> 4));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(WsError::UnknownOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(WsError::FragmentedControl(opcode));
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlTooLong {
                opcode,
                len: u64::from(len7),
            });
        }
    }
    let (len, mut at) = match len7 {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            let len = u64::from_be_bytes(a);
            if len >> 63 != 0 {
                // The most significant bit must be 0 (5.2).
                return Err(WsError::LengthHighBit);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let payload_len = match usize::try_from(len) {
        Ok(l) if l <= max_payload => l,
        _ => {
            return Err(WsError::FrameTooLarge {
                len,
                max: max_payload,
            })
        }
    };
    let mask = if masked {
        let Some(b) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len,
    }))
}

/// Parses one whole frame from the front of `buf`: the frame and the number
/// of bytes it used, or `Ok(None)` when `buf` does not hold all of it yet.
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, WsError> {
    let Some(h) = parse_header(buf, max_payload)? else {
        return Ok(None);
    };
    let end = h.header_len + h.payload_len;
    let Some(body) = buf.get(h.header_len..end) else {
        return Ok(None);
    };
    let mut payload = body.to_vec();
    if let Some(key) = h.mask {
        apply_mask(&mut payload, key, 0);
    }
    let frame = Frame {
        fin: h.fin,
        opcode: h.opcode,
        masked: h.mask.is_some(),
        payload,
    };
    Ok(Some((frame, end)))
}

/// XORs `data` with the masking key; `offset` is the position of `data[0]`
/// within the frame's payload (masking is its own inverse).
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    // Word at a time: this runs over every byte a client sends.
    let word = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Appends the encoding of one frame to `out`, masked with `mask` if given.
pub fn encode(fin: bool, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut b0 = opcode.as_u8();
    if fin {
        b0 |= 0x80;
    }
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(14 + payload.len());
    out.push(b0);
    match payload.len() {
        n if n < 126 => out.push(mbit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mbit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mbit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], key, 0);
        }
        None => out.extend_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(fin: bool, op: OpCode, p: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut v = Vec::new();
        encode(fin, op, p, mask, &mut v);
        v
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: unmasked and masked "Hello".
        let (f, n) = parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1024)
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.fin, f.opcode, f.masked, n),
            (true, OpCode::Text, false, 7)
        );
        assert_eq!(f.payload, b"Hello");
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (f, n) = parse(&masked, 1024).unwrap().unwrap();
        assert_eq!(
            (f.masked, n, f.payload.as_slice()),
            (true, 11, &b"Hello"[..])
        );
        assert_eq!(
            enc(true, OpCode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d])),
            masked
        );
        // Fragmented unmasked text "Hel" + "lo".
        let (f, _) = parse(&[0x01, 0x03, 0x48, 0x65, 0x6c], 10).unwrap().unwrap();
        assert!(!f.fin && f.opcode == OpCode::Text);
        let (f, _) = parse(&[0x80, 0x02, 0x6c, 0x6f], 10).unwrap().unwrap();
        assert!(f.fin && f.opcode == OpCode::Continuation);
        // 256-byte and 64 KiB binary headers.
        assert_eq!(
            &enc(true, OpCode::Binary, &[0; 256], None)[..4],
            &[0x82, 0x7E, 0x01, 0x00]
        );
        let big = enc(true, OpCode::Binary, &[0; 65536], None);
        assert_eq!(&big[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(parse(&big, 65536).unwrap().unwrap().1, 65546);
    }

    #[test]
    fn length_boundaries() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let e = enc(false, OpCode::Binary, &p, Some([1, 2, 3, 4]));
            let (f, n) = parse(&e, len).unwrap().unwrap();
            assert_eq!((n, f.payload.len(), f.fin), (e.len(), len, false));
            assert_eq!(f.payload, p);
            // Every proper prefix asks for more bytes.
            for cut in [0, 1, 2, e.len() / 2, e.len() - 1] {
                if cut < e.len() {
                    assert!(
                        parse(&e[..cut], len).unwrap().is_none(),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        assert!(matches!(
            parse(&[0xC1, 0x00], 10),
            Err(WsError::ReservedBits(4))
        ));
        assert!(matches!(
            parse(&[0x93, 0x00], 10),
            Err(WsError::ReservedBits(1))
        ));
        assert!(matches!(
            parse(&[0x83, 0x00], 10),
            Err(WsError::UnknownOpcode(3))
        ));
        assert!(matches!(
            parse(&[0x8B, 0x00], 10),
            Err(WsError::UnknownOpcode(0xB))
        ));
        assert!(matches!(
            parse(&[0x09, 0x00], 10),
            Err(WsError::FragmentedControl(OpCode::Ping))
        ));
        assert!(matches!(
            parse(&[0x88, 0x7E, 0x00, 0x7E], 1000),
            Err(WsError::ControlTooLong {
                opcode: OpCode::Close,
                ..
            })
        ));
        let mut huge = vec![0x82, 0x7F];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(matches!(
            parse(&huge, usize::MAX),
            Err(WsError::LengthHighBit)
        ));
        // The cap applies from the header alone: no payload bytes needed.
        assert!(matches!(
            parse(&[0x82, 0x7E, 0x10, 0x00], 4095),
            Err(WsError::FrameTooLarge {
                len: 4096,
                max: 4095
            })
        ));
        let ok = enc(true, OpCode::Ping, &[7; 125], None);
        assert!(parse(&ok, 10_000).unwrap().is_some());
    }

    #[test]
    fn mask_offsets_compose() {
        let key = [9, 8, 7, 6];
        let data: Vec<u8> = (0..37).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut split = data.clone();
        let (a, b) = split.split_at_mut(11);
        apply_mask(a, key, 0);
        apply_mask(b, key, 11);
        assert_eq!(whole, split);
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, data);
    }

    fn opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(op in opcode(), fin in any::<bool>(), mask in any::<Option<[u8; 4]>>(),
                      payload in proptest::collection::vec(any::<u8>(), 0..70_000),
                      trailing in proptest::collection::vec(any::<u8>(), 0..8)) {
            let fin = fin || op.is_control();
            let payload = if op.is_control() { &payload[..payload.len().min(125)] } else { &payload[..] };
            let mut e = enc(fin, op, payload, mask);
            let used = e.len();
            e.extend_from_slice(&trailing);
            let (f, n) = parse(&e, payload.len()).unwrap().unwrap();
            prop_assert_eq!(n, used);
            prop_assert_eq!(f, Frame { fin, opcode: op, masked: mask.is_some(), payload: payload.to_vec() });
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..1000) {
            if let Ok(Some((f, n))) = parse(&bytes, max) {
                prop_assert!(n <= bytes.len());
                prop_assert!(f.payload.len() <= max);
            }
        }
    }
}
