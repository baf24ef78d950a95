//! Fuzzes the SPDY header block decoders: raw blocks and zlib-compressed
//! blocks on a context already primed by a real first block. Nothing may
//! panic, and an accepted raw block must survive a compress/decompress trip.
#![no_main]

use std::sync::OnceLock;

use berth_streaming::spdy::header_block::{
    decode_raw, HeaderDecoder, HeaderEncoder, HeaderLimits,
};
use libfuzzer_sys::fuzz_target;

fn first_block() -> &'static [u8] {
    static FIRST: OnceLock<Vec<u8>> = OnceLock::new();
    FIRST.get_or_init(|| {
        HeaderEncoder::new()
            .expect("compressor")
            .encode(&[("streamtype".to_owned(), "stdout".to_owned())])
            .expect("first block")
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = HeaderLimits {
        max_block_size: 64 * 1024,
        max_pairs: 200,
    };
    if let Ok(headers) = decode_raw(data, &limits) {
        let mut enc = HeaderEncoder::new().expect("compressor");
        let mut dec = HeaderDecoder::new(limits);
        let block = enc.encode(&headers).expect("decoded headers re-encode");
        assert_eq!(dec.decode(&block).expect("round trip decodes"), headers);
    }
    // As a first block: exercises the zlib header and dictionary handling.
    let mut fresh = HeaderDecoder::new(limits);
    let _ = fresh.decode(data);
    // As a later block of a live context, split where the input says.
    let mut live = HeaderDecoder::new(limits);
    live.decode(first_block()).expect("valid first block");
    for part in data.split(|&b| b == 0xa5) {
        let _ = live.decode(part);
    }
});
