//! The Kubernetes channel framing over WebSocket messages.
//!
//! Every message carries one channel's data. With the binary protocols
//! (`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`) the first byte
//! is the channel number; with the base64 ones (`base64.channel.k8s.io`,
//! `v4.base64.channel.k8s.io`; there is no v5 base64 protocol) the message
//! is text: the channel as the character `'0' + n`, then the payload in
//! standard base64. `v5.channel.k8s.io` adds one control message, `[255, n]`:
//! "channel n is closed" (the client's way to half-close stdin).
//!
//! Remote command channels are stdin 0, stdout 1, stderr 2, error 3,
//! resize 4. Port-forward uses channel `2i` for port i's data and `2i+1` for
//! its errors; the server's first message on each of these is the port
//! number, two bytes little-endian. The remote command server's first
//! message is an empty one on the lowest channel it writes (stdout, else
//! stderr, else error), which tells the client the streams are set up.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{Message, WsError};

/// stdin channel (client to server).
pub const STDIN: u8 = 0;
/// stdout channel.
pub const STDOUT: u8 = 1;
/// stderr channel.
pub const STDERR: u8 = 2;
/// error channel: a `metav1.Status` JSON on v4 and later, plain text before.
pub const ERROR: u8 = 3;
/// resize channel: `{"Width":w,"Height":h}` JSON messages (client to server).
pub const RESIZE: u8 = 4;
/// v5 "close channel" marker, followed by the channel number.
pub const CLOSE_SIGNAL: u8 = 255;

/// The original binary protocol (also what an empty protocol means).
pub const CHANNEL: &str = "channel.k8s.io";
/// The original base64 protocol.
pub const BASE64_CHANNEL: &str = "base64.channel.k8s.io";
/// Binary, with the v4 error channel semantics.
pub const V4_CHANNEL: &str = "v4.channel.k8s.io";
/// Base64, with the v4 error channel semantics.
pub const V4_BASE64_CHANNEL: &str = "v4.base64.channel.k8s.io";
/// Binary, v4 plus the close-channel message.
pub const V5_CHANNEL: &str = "v5.channel.k8s.io";
/// Prefix naming an SPDY protocol tunnelled through WebSocket.
pub const SPDY_TUNNEL_PREFIX: &str = "SPDY/3.1+";
/// Port-forward over SPDY tunnelled through WebSocket (what
/// `crictl port-forward --transport websocket` asks for).
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// How channel data is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Binary messages, first byte the channel.
    Binary,
    /// Text messages, first character the channel digit, payload base64.
    Base64,
}

/// The framing a negotiated protocol name implies (`""` is binary).
pub fn framing_for(protocol: &str) -> Framing {
    if protocol == BASE64_CHANNEL || protocol.ends_with(".base64.channel.k8s.io") {
        Framing::Base64
    } else {
        Framing::Binary
    }
}

/// Whether the protocol has the v5 close-channel message.
pub fn supports_close_signal(protocol: &str) -> bool {
    protocol == V5_CHANNEL
}

/// Whether the protocol is SPDY tunnelled through WebSocket binary messages
/// (the name with [`SPDY_TUNNEL_PREFIX`] removed is the SPDY protocol).
pub fn is_spdy_tunnel(protocol: &str) -> bool {
    protocol.starts_with(SPDY_TUNNEL_PREFIX) && protocol.ends_with(".k8s.io")
}

/// One channel message.
pub fn encode(f: Framing, channel: u8, data: &[u8]) -> Message {
    match f {
        Framing::Binary => {
            let mut v = Vec::with_capacity(data.len() + 1);
            v.push(channel);
            v.extend_from_slice(data);
            Message::Binary(v)
        }
        Framing::Base64 => {
            let mut s = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            // Channels above 9 become the ASCII characters after '9', as the
            // Go servers write them; a channel that would leave ASCII cannot
            // be text and is sent as its raw byte in a binary message.
            match b'0'.checked_add(channel).filter(u8::is_ascii) {
                Some(c) => {
                    s.push(char::from(c));
                    B64.encode_string(data, &mut s);
                    Message::Text(s)
                }
                None => {
                    let mut v = vec![b'0'.wrapping_add(channel)];
                    v.extend_from_slice(B64.encode(data).as_bytes());
                    Message::Binary(v)
                }
            }
        }
    }
}

/// The v5 message that closes `channel` (binary framing only).
pub fn close_signal(channel: u8) -> Message {
    Message::Binary(vec![CLOSE_SIGNAL, channel])
}

/// Channel number and payload of a message. Text and binary messages are
/// both accepted under either framing (the Go servers read both alike).
/// Under binary framing a v5 close message decodes as channel
/// [`CLOSE_SIGNAL`] with the closed channel as its one payload byte.
pub fn decode(f: Framing, m: &Message) -> Result<(u8, Vec<u8>), WsError> {
    let raw: &[u8] = match m {
        Message::Binary(b) => b,
        Message::Text(t) => t.as_bytes(),
        Message::Close(_) => return Err(WsError::NotChannelMessage),
    };
    let [first, rest @ ..] = raw else {
        return Err(WsError::EmptyChannelMessage);
    };
    match f {
        Framing::Binary => Ok((*first, rest.to_vec())),
        Framing::Base64 => {
            let channel = first.wrapping_sub(b'0');
            let data = B64
                .decode(rest)
                .map_err(|source| WsError::Base64 { channel, source })?;
            Ok((channel, data))
        }
    }
}

/// Port-forward's data channel for the i-th requested port.
pub fn port_data_channel(i: usize) -> Option<u8> {
    u8::try_from(i.checked_mul(2)?).ok()
}

/// Port-forward's error channel for the i-th requested port.
pub fn port_error_channel(i: usize) -> Option<u8> {
    u8::try_from(i.checked_mul(2)?.checked_add(1)?).ok()
}

/// The first payload on each port-forward channel: the port, little-endian.
pub fn port_prefix(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn protocol_names() {
        assert_eq!(framing_for(""), Framing::Binary);
        assert_eq!(framing_for(CHANNEL), Framing::Binary);
        assert_eq!(framing_for(V4_CHANNEL), Framing::Binary);
        assert_eq!(framing_for(V5_CHANNEL), Framing::Binary);
        assert_eq!(framing_for(BASE64_CHANNEL), Framing::Base64);
        assert_eq!(framing_for(V4_BASE64_CHANNEL), Framing::Base64);
        assert!(supports_close_signal(V5_CHANNEL) && !supports_close_signal(V4_CHANNEL));
        assert!(is_spdy_tunnel(PORT_FORWARD_TUNNEL) && !is_spdy_tunnel(V4_CHANNEL));
    }

    #[test]
    fn wire_forms() {
        assert_eq!(
            encode(Framing::Binary, STDIN, b"foo\n"),
            Message::Binary(vec![0, 102, 111, 111, 10])
        );
        assert_eq!(
            encode(Framing::Base64, STDOUT, b"hi"),
            Message::Text("1aGk=".into())
        );
        assert_eq!(
            encode(Framing::Base64, ERROR, b""),
            Message::Text("3".into())
        );
        assert_eq!(
            decode(Framing::Base64, &Message::Text("2aGk=".into())).unwrap(),
            (STDERR, b"hi".to_vec())
        );
        assert_eq!(
            decode(Framing::Binary, &close_signal(STDIN)).unwrap(),
            (CLOSE_SIGNAL, vec![STDIN])
        );
        assert_eq!(port_prefix(8080), [0x90, 0x1F]);
        assert_eq!(
            (port_data_channel(3), port_error_channel(3)),
            (Some(6), Some(7))
        );
        assert_eq!(
            (port_error_channel(127), port_error_channel(128)),
            (Some(255), None)
        );
    }

    #[test]
    fn decode_errors() {
        assert!(matches!(
            decode(Framing::Binary, &Message::Binary(vec![])),
            Err(WsError::EmptyChannelMessage)
        ));
        assert!(matches!(
            decode(Framing::Binary, &Message::Close(None)),
            Err(WsError::NotChannelMessage)
        ));
        assert!(matches!(
            decode(Framing::Base64, &Message::Text("1!!".into())),
            Err(WsError::Base64 { channel: 1, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(ch in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..2000), b64 in any::<bool>()) {
            let f = if b64 { Framing::Base64 } else { Framing::Binary };
            prop_assert_eq!(decode(f, &encode(f, ch, &data)).unwrap(), (ch, data));
        }
    }
}
