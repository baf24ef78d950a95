//! Fuzzes the WebSocket frame parser and the k8s channel decoder: neither may
//! panic, the parser never returns more than the cap or reads past its
//! input, and every frame it accepts re-encodes to bytes that parse back to
//! the same frame.
#![no_main]

use berth_streaming::websocket::channel::{decode, Framing};
use berth_streaming::websocket::frame::{encode, parse};
use berth_streaming::websocket::Message;
use libfuzzer_sys::fuzz_target;

const CAP: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, n))) = parse(rest, CAP) {
        assert!(n <= rest.len() && n > 0);
        assert!(frame.payload.len() <= CAP);
        let mask = frame.masked.then(|| [rest[0], 0x5a, rest[n - 1], 0xa5]);
        let mut out = Vec::new();
        encode(frame.fin, frame.opcode, &frame.payload, mask, &mut out);
        let (back, m) = parse(&out, CAP)
            .expect("re-encoded frame parses")
            .expect("re-encoded frame is complete");
        assert_eq!(back, frame);
        assert_eq!(m, out.len());
        let msg = match String::from_utf8(frame.payload.clone()) {
            Ok(t) => Message::Text(t),
            Err(e) => Message::Binary(e.into_bytes()),
        };
        let _ = decode(Framing::Binary, &msg);
        let _ = decode(Framing::Base64, &msg);
        rest = &rest[n..];
    }
});
