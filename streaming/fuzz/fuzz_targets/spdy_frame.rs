//! Fuzzes the SPDY/3.1 frame parser: it must never panic, and every frame it
//! accepts must encode back to bytes that parse to the same frame.
#![no_main]

use berth_streaming::spdy::frame::{encode, parse, parse_with_limit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, n))) = parse_with_limit(rest, 1 << 20) {
        assert!(n <= rest.len());
        let mut out = Vec::new();
        encode(&frame, &mut out).expect("a parsed frame re-encodes");
        let (back, m) = parse(&out)
            .expect("re-encoded frame parses")
            .expect("re-encoded frame is complete");
        assert_eq!(back, frame);
        assert_eq!(m, out.len());
        rest = &rest[n..];
    }
});
