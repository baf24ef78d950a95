use super::*;
use proptest::prelude::*;

fn roundtrip(f: Frame) {
    let mut buf = Vec::new();
    encode(&f, &mut buf).unwrap();
    // Every strict prefix asks for more bytes instead of failing.
    for cut in 0..buf.len() {
        assert_eq!(parse(&buf[..cut]), Ok(None), "prefix {cut} of {f:?}");
    }
    buf.extend_from_slice(b"trailing");
    let (back, n) = parse(&buf).unwrap().unwrap();
    assert_eq!(back, f);
    assert_eq!(n, buf.len() - 8);
}

#[test]
fn every_frame_type_round_trips() {
    roundtrip(Frame::SynStream {
        stream_id: 1,
        associated_id: 0,
        priority: 7,
        slot: 3,
        flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
        header_block: vec![1, 2, 3],
    });
    roundtrip(Frame::SynReply {
        stream_id: 0x7fff_ffff,
        flags: FLAG_FIN,
        header_block: vec![],
    });
    roundtrip(Frame::RstStream {
        stream_id: 5,
        status: rst::CANCEL,
    });
    roundtrip(Frame::Settings {
        flags: FLAG_SETTINGS_CLEAR,
        entries: vec![
            Setting {
                flags: 1,
                id: SETTINGS_INITIAL_WINDOW_SIZE,
                value: 1 << 20,
            },
            Setting {
                flags: 0,
                id: 0x00ab_cdef,
                value: 0,
            },
        ],
    });
    roundtrip(Frame::Settings {
        flags: 0,
        entries: vec![],
    });
    roundtrip(Frame::Ping { id: 0xffff_ffff });
    roundtrip(Frame::GoAway {
        last_good_stream_id: 9,
        status: goaway::PROTOCOL_ERROR,
    });
    roundtrip(Frame::Headers {
        stream_id: 2,
        flags: 0,
        header_block: vec![0; 100],
    });
    roundtrip(Frame::WindowUpdate {
        stream_id: 0,
        delta: 0x7fff_ffff,
    });
    roundtrip(Frame::Data {
        stream_id: 3,
        flags: FLAG_FIN,
        data: vec![],
    });
    roundtrip(Frame::Data {
        stream_id: 3,
        flags: 0,
        data: vec![0xaa; 70_000],
    });
    roundtrip(Frame::Unknown {
        frame_type: 10,
        flags: 0x42,
        payload: vec![9; 12],
    });
}

#[test]
fn known_wire_bytes() {
    // PING id 1 as written by any SPDY/3 peer.
    let wire = [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
    assert_eq!(parse(&wire), Ok(Some((Frame::Ping { id: 1 }, 12))));
    let mut out = Vec::new();
    encode(&Frame::Ping { id: 1 }, &mut out).unwrap();
    assert_eq!(out, wire);
    // DATA on stream 1 with FIN and two bytes.
    let wire = [0, 0, 0, 1, 0x01, 0, 0, 2, b'h', b'i'];
    assert_eq!(
        parse(&wire),
        Ok(Some((
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: b"hi".to_vec()
            },
            10
        )))
    );
}

#[test]
fn bad_version_is_rejected() {
    let wire = [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
    assert_eq!(
        parse(&wire),
        Err(FrameError::BadVersion {
            version: 2,
            frame_type: 6
        })
    );
}

#[test]
fn huge_length_is_rejected_from_the_header_alone() {
    // Only the 8-byte header is present: the cap must trip before any payload.
    let wire = [0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
    assert_eq!(
        parse_with_limit(&wire, 1 << 16),
        Err(FrameError::TooLarge {
            len: 0xff_ffff,
            max: 1 << 16
        })
    );
    // The default cap is the format maximum: the same header just needs more bytes.
    assert_eq!(parse(&wire), Ok(None));
}

#[test]
fn wrong_fixed_lengths_are_rejected() {
    // PING with 5-byte payload, RST_STREAM with 4, GOAWAY with 4 (SPDY/2 layout),
    // WINDOW_UPDATE with 12, SYN_STREAM with 9, SYN_REPLY with 3.
    for (ty, len) in [(6u8, 5usize), (3, 4), (7, 4), (9, 12), (1, 9), (2, 3)] {
        let mut wire = vec![0x80, 0x03, 0x00, ty, 0x00, 0x00, 0x00, len as u8];
        wire.extend(std::iter::repeat_n(1u8, len));
        assert!(
            matches!(parse(&wire), Err(FrameError::BadLength { .. })),
            "type {ty} len {len}: {:?}",
            parse(&wire)
        );
    }
}

#[test]
fn bad_settings_counts_are_rejected() {
    // count 2 but only one entry; count u32::MAX (would overflow a naive 4+8n).
    for count in [2u32, u32::MAX, 0] {
        let mut wire = vec![0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 12];
        wire.extend_from_slice(&count.to_be_bytes());
        wire.extend_from_slice(&[0, 0, 0, 7, 0, 1, 0, 0]);
        assert_eq!(
            parse(&wire),
            Err(FrameError::BadSettingsCount { count, len: 12 })
        );
    }
}

#[test]
fn stream_zero_is_rejected_where_a_stream_is_required() {
    let data = [0, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        parse(&data),
        Err(FrameError::ZeroStreamId { frame_type: "DATA" })
    ));
    let rst = [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5];
    assert!(matches!(parse(&rst), Err(FrameError::ZeroStreamId { .. })));
}

#[test]
fn reserved_bits_are_masked() {
    // WINDOW_UPDATE with the reserved high bits set on both words.
    let wire = [0x80, 3, 0, 9, 0, 0, 0, 8, 0x80, 0, 0, 1, 0x80, 0, 0, 2];
    assert_eq!(
        parse(&wire).unwrap().unwrap().0,
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 2
        }
    );
}

#[test]
fn encode_refuses_oversized_payloads_and_ids() {
    let mut out = vec![7];
    let big = Frame::Data {
        stream_id: 1,
        flags: 0,
        data: vec![0; MAX_PAYLOAD_LEN + 1],
    };
    assert!(matches!(
        encode(&big, &mut out),
        Err(FrameError::TooLarge { .. })
    ));
    let bad_id = Frame::RstStream {
        stream_id: 0x8000_0000,
        status: 1,
    };
    assert!(matches!(
        encode(&bad_id, &mut out),
        Err(FrameError::IdOutOfRange { .. })
    ));
    assert_eq!(out, vec![7], "a failed encode leaves the buffer untouched");
}

fn id31() -> impl Strategy<Value = u32> {
    1..=0x7fff_ffffu32
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        (
            id31(),
            0..=0x7fff_ffffu32,
            0..8u8,
            any::<u8>(),
            any::<u8>(),
            bytes()
        )
            .prop_map(
                |(stream_id, associated_id, priority, slot, flags, header_block)| {
                    Frame::SynStream {
                        stream_id,
                        associated_id,
                        priority,
                        slot,
                        flags,
                        header_block,
                    }
                }
            ),
        (id31(), any::<u8>(), bytes()).prop_map(|(stream_id, flags, header_block)| {
            Frame::SynReply {
                stream_id,
                flags,
                header_block,
            }
        }),
        (id31(), any::<u32>())
            .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
        (
            any::<u8>(),
            proptest::collection::vec((any::<u8>(), 0..0x0100_0000u32, any::<u32>()), 0..20)
        )
            .prop_map(|(flags, e)| Frame::Settings {
                flags,
                entries: e
                    .into_iter()
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect()
            }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (0..=0x7fff_ffffu32, any::<u32>()).prop_map(|(last_good_stream_id, status)| {
            Frame::GoAway {
                last_good_stream_id,
                status,
            }
        }),
        (id31(), any::<u8>(), bytes()).prop_map(|(stream_id, flags, header_block)| {
            Frame::Headers {
                stream_id,
                flags,
                header_block,
            }
        }),
        (0..=0x7fff_ffffu32, 0..=0x7fff_ffffu32)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        (id31(), any::<u8>(), bytes()).prop_map(|(stream_id, flags, data)| Frame::Data {
            stream_id,
            flags,
            data
        }),
        (10..=u16::MAX, any::<u8>(), bytes()).prop_map(|(frame_type, flags, payload)| {
            Frame::Unknown {
                frame_type,
                flags,
                payload,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(frames in proptest::collection::vec(arb_frame(), 1..8)) {
        let mut buf = Vec::new();
        for f in &frames {
            encode(f, &mut buf).unwrap();
        }
        let mut at = 0;
        for f in &frames {
            let (back, n) = parse(&buf[at..]).unwrap().unwrap();
            prop_assert_eq!(&back, f);
            at += n;
        }
        prop_assert_eq!(at, buf.len());
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), cap in 0usize..5000) {
        if let Ok(Some((_, n))) = parse_with_limit(&bytes, cap) {
            prop_assert!(n <= bytes.len());
        }
    }

    #[test]
    fn parse_never_panics_on_control_headers(
        ty in any::<u16>(), flags in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        // Arbitrary bytes rarely form a valid v3 control header; build one.
        let mut wire = vec![0x80, 0x03];
        wire.extend_from_slice(&ty.to_be_bytes());
        wire.push(flags);
        wire.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&body);
        match parse(&wire) {
            Ok(Some((_, n))) => prop_assert_eq!(n, wire.len()),
            Ok(None) => prop_assert!(false, "complete frame reported as partial"),
            Err(_) => {}
        }
    }
}
