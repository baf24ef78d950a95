use super::*;
use crate::spdy::frame::{self, Frame};
use proptest::prelude::*;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[test]
fn dictionary_is_the_spdy3_one() {
    assert_eq!(DICTIONARY.len(), 1423);
    assert_eq!(adler32(DICTIONARY), DICTIONARY_ID);
}

/// Two SYN_STREAM frames written by moby/spdystream v0.5.1's framer (the
/// kubelet's and crictl's SPDY library), captured with `go run`: stream 1
/// with `Streamtype: stdout`, stream 3 with `Port: 8080` and
/// `X-Multi: a, b` (two values). Both blocks share one zlib stream.
const GO_FRAMES: &str = "800300010000002e0000000100000000000078f9e3c6a7c262606060646060e02a2e294a4dcc8516256cc52529f9a52500000000ffff800300010000003300000003000000000000626060608294cd45250c0c0c2c160616060c0c0cec15bab9a53925990c0c0ccc890c4900000000ffff";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn decodes_blocks_compressed_by_go_spdystream() {
    let wire = unhex(GO_FRAMES);
    let mut dec = HeaderDecoder::new(HeaderLimits::default());
    let (f1, n) = frame::parse(&wire).unwrap().unwrap();
    let (f2, m) = frame::parse(&wire[n..]).unwrap().unwrap();
    assert_eq!(n + m, wire.len());
    let Frame::SynStream { header_block, .. } = f1 else {
        panic!("{f1:?}")
    };
    assert_eq!(
        dec.decode(&header_block).unwrap(),
        h(&[("streamtype", "stdout")])
    );
    let Frame::SynStream { header_block, .. } = f2 else {
        panic!("{f2:?}")
    };
    let mut got = dec.decode(&header_block).unwrap();
    got.sort();
    assert_eq!(
        got,
        h(&[("port", "8080"), ("x-multi", "a"), ("x-multi", "b")])
    );
}

#[test]
fn first_block_announces_the_dictionary() {
    let block = HeaderEncoder::new()
        .unwrap()
        .encode(&h(&[("streamtype", "error")]))
        .unwrap();
    // zlib header: CMF, FLG with FDICT (0x20), then the dictionary id.
    assert_eq!(block[0] & 0x0f, 8, "deflate method");
    assert_ne!(block[1] & 0x20, 0, "FDICT set");
    assert_eq!(&block[2..6], &DICTIONARY_ID.to_be_bytes());
    assert_eq!(&block[block.len() - 4..], &[0, 0, 0xff, 0xff], "sync flush");
}

#[test]
fn contexts_are_stateful_across_blocks() {
    let mut enc = HeaderEncoder::new().unwrap();
    let mut dec = HeaderDecoder::new(HeaderLimits::default());
    let hdrs = h(&[("streamtype", "stdin"), ("requestid", "7"), ("port", "80")]);
    let first = enc.encode(&hdrs).unwrap();
    let second = enc.encode(&hdrs).unwrap();
    assert!(
        second.len() < first.len(),
        "history makes the repeat cheaper"
    );
    assert_eq!(dec.decode(&first).unwrap(), hdrs);
    assert_eq!(dec.decode(&second).unwrap(), hdrs);
    // A fresh decoder cannot read the second block on its own.
    assert!(HeaderDecoder::new(HeaderLimits::default())
        .decode(&second)
        .is_err());
}

#[test]
fn repeated_names_are_joined_with_nul_and_lower_cased() {
    let raw = encode_raw(&h(&[("A", "1"), ("b", "2"), ("a", "3")])).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(&2u32.to_be_bytes());
    want.extend_from_slice(&1u32.to_be_bytes());
    want.extend_from_slice(b"a");
    want.extend_from_slice(&3u32.to_be_bytes());
    want.extend_from_slice(b"1\x003");
    want.extend_from_slice(&1u32.to_be_bytes());
    want.extend_from_slice(b"b");
    want.extend_from_slice(&1u32.to_be_bytes());
    want.extend_from_slice(b"2");
    assert_eq!(raw, want);
    assert_eq!(
        decode_raw(&raw, &HeaderLimits::default()).unwrap(),
        h(&[("a", "1"), ("a", "3"), ("b", "2")])
    );
}

fn block(pairs: &[(&[u8], &[u8])], count: u32) -> Vec<u8> {
    let mut out = count.to_be_bytes().to_vec();
    for (n, v) in pairs {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

#[test]
fn malformed_raw_blocks_are_rejected() {
    let lim = HeaderLimits::default();
    let err = |b: &[u8]| decode_raw(b, &lim).unwrap_err();
    assert!(matches!(err(&[]), HeaderBlockError::Truncated { .. }));
    assert!(matches!(
        err(&block(&[(b"a", b"1")], 2)),
        HeaderBlockError::TooManyPairs { count: 2, .. }
    ));
    assert!(matches!(
        err(&block(&[], u32::MAX)),
        HeaderBlockError::TooManyPairs { .. }
    ));
    assert!(matches!(
        err(&block(&[(b"", b"1")], 1)),
        HeaderBlockError::EmptyName
    ));
    assert!(matches!(
        err(&block(&[(b"Host", b"1")], 1)),
        HeaderBlockError::InvalidName { .. }
    ));
    assert!(matches!(
        err(&block(&[(b"a", b"1"), (b"a", b"2")], 2)),
        HeaderBlockError::DuplicateName { .. }
    ));
    assert!(matches!(
        err(&block(&[(b"a", b"\xff")], 1)),
        HeaderBlockError::NotUtf8 { what: "value" }
    ));
    let mut trailing = block(&[(b"a", b"1")], 1);
    trailing.push(0);
    assert!(matches!(
        err(&trailing),
        HeaderBlockError::TrailingBytes { len: 1 }
    ));
    // A name length pointing past the end.
    let mut long = 1u32.to_be_bytes().to_vec();
    long.extend_from_slice(&u32::MAX.to_be_bytes());
    long.extend_from_slice(&[0; 8]);
    assert!(matches!(err(&long), HeaderBlockError::Truncated { at: 8 }));
    let few = HeaderLimits {
        max_block_size: 1024,
        max_pairs: 1,
    };
    assert!(matches!(
        decode_raw(&block(&[(b"a", b"1"), (b"b", b"2")], 2), &few),
        Err(HeaderBlockError::TooManyPairs { count: 2, max: 1 })
    ));
}

#[test]
fn zlib_bombs_stop_at_the_limit_and_poison_the_context() {
    let big = "x".repeat(100_000);
    let block = HeaderEncoder::new()
        .unwrap()
        .encode(&h(&[("a", &big)]))
        .unwrap();
    assert!(block.len() < 2_000);
    let mut dec = HeaderDecoder::new(HeaderLimits {
        max_block_size: 10_000,
        max_pairs: 10,
    });
    let e = dec.decode(&block).unwrap_err();
    assert!(
        matches!(e, HeaderBlockError::TooLarge { max: 10_000 }),
        "{e:?}"
    );
    assert!(e.is_fatal());
    assert!(matches!(
        dec.decode(&block),
        Err(HeaderBlockError::Poisoned)
    ));
}

#[test]
fn garbage_and_foreign_dictionaries_are_rejected() {
    let mut dec = HeaderDecoder::new(HeaderLimits::default());
    assert!(dec.decode(b"not zlib at all").unwrap_err().is_fatal());
    // zlib header with FDICT and a different dictionary id.
    let mut dec = HeaderDecoder::new(HeaderLimits::default());
    let e = dec
        .decode(&[0x78, 0xbb, 0xde, 0xad, 0xbe, 0xef, 0x01])
        .unwrap_err();
    assert!(
        matches!(
            e,
            HeaderBlockError::UnknownDictionary { adler: 0xdead_beef }
        ),
        "{e:?}"
    );
}

fn arb_headers() -> impl Strategy<Value = Headers> {
    proptest::collection::vec(("[a-z:][a-z0-9-]{0,20}", "[ -~]{1,40}"), 0..20)
}

proptest! {
    #[test]
    fn compressed_blocks_round_trip(blocks in proptest::collection::vec(arb_headers(), 1..6)) {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut dec = HeaderDecoder::new(HeaderLimits::default());
        for hdrs in &blocks {
            let got = dec.decode(&enc.encode(hdrs).unwrap()).unwrap();
            // Decoding groups values by name in first-seen name order.
            let mut want: Vec<(String, String)> = Vec::new();
            let mut names: Vec<&String> = Vec::new();
            for (n, _) in hdrs {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            for n in names {
                for (m, v) in hdrs {
                    if m == n {
                        want.push((n.clone(), v.clone()));
                    }
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_raw(&bytes, &HeaderLimits::default());
        let mut dec = HeaderDecoder::new(HeaderLimits::default());
        let _ = dec.decode(&bytes);
        let _ = dec.decode(&bytes);
    }

    #[test]
    fn decoder_never_panics_after_a_valid_prefix(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut dec = HeaderDecoder::new(HeaderLimits::default());
        let first = enc.encode(&h(&[("streamtype", "stdout")])).unwrap();
        prop_assert!(dec.decode(&first).is_ok());
        let _ = dec.decode(&tail);
    }
}
