use super::*;
use crate::cluster::placement::Member;

fn id(n: u8) -> MessageId {
    MessageId([n; 16])
}

fn samples() -> Vec<Frame> {
    let placement = Placement {
        origin: Member {
            node: NodeId(0),
            volume: 7,
        },
        holders: vec![
            Member {
                node: NodeId(2),
                volume: 3,
            },
            Member {
                node: NodeId(1),
                volume: 9,
            },
        ],
    };
    vec![
        Frame::Hello(Hello {
            node: NodeId(1),
            name: "estafette-1".into(),
            epoch: 12,
            volume: 3,
        }),
        Frame::Heartbeat(Heartbeat {
            node: NodeId(2),
            epoch: 4,
            volume: 1,
            queue_depth: 1_000_000,
            draining: true,
        }),
        Frame::Replicate(Replicate {
            id: id(1),
            placement: placement.clone(),
            offset: 0,
            envelope: b"envelope".to_vec(),
            chunk: vec![0xAB; 3000],
            last: false,
        }),
        Frame::Replicate(Replicate {
            id: id(1),
            placement,
            offset: 3000,
            envelope: Vec::new(),
            chunk: Vec::new(),
            last: true,
        }),
        Frame::Ack(id(2)),
        Frame::Nack(Nack {
            id: id(3),
            reason: NackReason::NoSpace,
        }),
        Frame::Release(vec![id(4), id(5)]),
        Frame::Release(Vec::new()),
        Frame::Takeover(Takeover {
            origin: NodeId(0),
            ids: vec![id(6)],
        }),
        Frame::Reconcile(Reconcile {
            epoch: 3,
            volume: 1,
            reply: true,
            items: vec![
                Item {
                    id: id(7),
                    status: CopyStatus::Active,
                },
                Item {
                    id: id(8),
                    status: CopyStatus::Standby,
                },
                Item {
                    id: id(9),
                    status: CopyStatus::Absent,
                },
            ],
        }),
        Frame::Handoff(vec![id(10)]),
    ]
}

#[test]
fn every_frame_round_trips() {
    for f in samples() {
        let bytes = encode(&f);
        let (frames, err) = decode_stream(&bytes, DEFAULT_MAX_FRAME);
        assert_eq!(err, None, "{f:?}");
        assert_eq!(frames, vec![f]);
    }
}

#[test]
fn any_split_of_a_stream_gives_the_same_frames() {
    let frames = samples();
    let mut stream = Vec::new();
    for f in &frames {
        encode_into(f, &mut stream);
    }
    for split in 0..=stream.len() {
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            d.push(part);
            while let Some(f) = d.next_frame().expect("valid stream") {
                got.push(f);
            }
        }
        assert_eq!(got, frames, "split at {split}");
        assert_eq!(d.buffered(), 0);
    }
    // Byte by byte.
    let mut d = FrameDecoder::default();
    let mut got = Vec::new();
    for b in &stream {
        d.push(std::slice::from_ref(b));
        while let Some(f) = d.next_frame().expect("valid stream") {
            got.push(f);
        }
    }
    assert_eq!(got, frames);
}

#[test]
fn header_errors() {
    let mut d = FrameDecoder::new(100);
    d.push(&101u32.to_be_bytes());
    assert_eq!(d.next_frame(), Err(FrameError::TooLong { len: 101, max: 100 }));
    // Poisoned: the same error again, whatever comes next.
    d.push(&encode(&Frame::Ack(id(1))));
    assert_eq!(d.next_frame(), Err(FrameError::TooLong { len: 101, max: 100 }));

    let mut d = FrameDecoder::default();
    d.push(&[0, 0, 0, 0]);
    assert_eq!(d.next_frame(), Err(FrameError::Empty));

    let mut bytes = encode(&Frame::Ack(id(1)));
    for version in [0, FRAME_VERSION + 1] {
        bytes[4] = version;
        assert_eq!(
            decode_stream(&bytes, DEFAULT_MAX_FRAME).1,
            Some(FrameError::UnknownVersion(version))
        );
    }

    // Incomplete is not an error.
    let bytes = encode(&Frame::Ack(id(1)));
    for cut in 0..bytes.len() {
        assert_eq!(
            decode_stream(&bytes[..cut], DEFAULT_MAX_FRAME),
            (Vec::new(), None),
            "cut at {cut}"
        );
    }
}

/// splitmix64: a deterministic byte source for the garbage tests.
fn rng(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let mut seed = 1;
    for round in 0..4000 {
        let len = usize::try_from(rng(&mut seed) % 200).unwrap_or(0);
        let mut record: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
        if round % 2 == 0 {
            // A valid header, so that bytecheck sees the garbage.
            let mut framed = u32::try_from(record.len() + 1).unwrap_or(0).to_be_bytes().to_vec();
            framed.push(FRAME_VERSION);
            framed.append(&mut record);
            record = framed;
        }
        let (frames, _err) = decode_stream(&record, DEFAULT_MAX_FRAME);
        // Whatever decoded must re-encode to a decodable frame.
        for f in frames {
            assert_eq!(decode_stream(&encode(&f), DEFAULT_MAX_FRAME).0, vec![f]);
        }
    }
}

#[test]
fn corrupted_frames_are_errors_never_panics() {
    let mut seed = 7;
    for f in samples() {
        let good = encode(&f);
        for _ in 0..300 {
            let mut bad = good.clone();
            let flips = 1 + rng(&mut seed) % 4;
            for _ in 0..flips {
                let i = 5 + usize::try_from(rng(&mut seed)).unwrap_or(0) % (bad.len() - 5);
                bad[i] ^= 1 << (rng(&mut seed) % 8);
            }
            // Either a valid (different) frame or an error: never a panic.
            let _ = decode_stream(&bad, DEFAULT_MAX_FRAME);
            // Truncating the record under a fixed-up length is invalid, not incomplete.
            let cut = 5 + usize::try_from(rng(&mut seed)).unwrap_or(0) % (good.len() - 5);
            let mut short = good[..cut].to_vec();
            let n = u32::try_from(cut - 4).unwrap_or(0);
            short[..4].copy_from_slice(&n.to_be_bytes());
            let (frames, err) = decode_stream(&short, DEFAULT_MAX_FRAME);
            assert!(err.is_some() || frames.len() == 1, "{frames:?}");
        }
    }
}

/// `v1-samples.bin` holds `samples()` as the build of wire version 1 (commit
/// 13e0e05) encoded them. A node of that build must read what this one sends on
/// a link that negotiated version 1, and this one must read what it sends: so
/// every frame of version 1 keeps its bytes exactly.
#[test]
fn version_1_frames_keep_their_bytes() {
    let old = include_bytes!("v1-samples.bin");
    let (frames, err) = decode_stream(old, DEFAULT_MAX_FRAME);
    assert_eq!(err, None);
    assert_eq!(frames, samples());
    let mut now = Vec::new();
    for f in samples() {
        assert_eq!(f.version(), 1, "{f:?}");
        encode_into(&f, &mut now);
    }
    assert!(now == old, "a version-1 frame changed its encoding");
}

#[test]
fn seen_is_version_2_and_refused_by_a_decoder_of_version_1() {
    let seen = Frame::Seen(vec![Sighting {
        node: NodeId(2),
        volume: 17,
        age_ms: 1200,
    }]);
    let bytes = encode(&seen);
    assert_eq!(bytes[4], 2, "written with the lowest version that reads it");
    assert_eq!(decode_stream(&bytes, DEFAULT_MAX_FRAME), (vec![seen.clone()], None));
    // A link that negotiated version 1 reads nothing newer: the connection
    // closes, as an old build's would (its decoder knows only byte 1).
    let mut v1 = FrameDecoder::new(DEFAULT_MAX_FRAME).with_max_version(1);
    v1.push(&bytes);
    assert_eq!(v1.next_frame(), Err(FrameError::UnknownVersion(2)));
    // The same record under version byte 1 claims a version too old for it.
    let mut relabelled = bytes.clone();
    relabelled[4] = 1;
    assert_eq!(
        decode_stream(&relabelled, DEFAULT_MAX_FRAME).1,
        Some(FrameError::Invalid)
    );
}
