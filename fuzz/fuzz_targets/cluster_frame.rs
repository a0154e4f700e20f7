//! The cluster frame decoder on raw bytes (what a peer, or anything that got
//! through the handshake, may send): never panics, whatever the split; a
//! decoded frame re-encodes to bytes that decode to the same frame; a decoder
//! held to version 1 (a link that negotiated it) reads the same frames up to
//! the first one of a later version, where it stops.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::cluster::frame::{decode_stream, DEFAULT_MAX_FRAME};
use proto::cluster::{encode, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let (frames, _error) = decode_stream(data, DEFAULT_MAX_FRAME);
    // The same bytes fed in two pieces give the same frames.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
    d.push(&data[..split]);
    let mut again = Vec::new();
    while let Ok(Some(f)) = d.next_frame() {
        again.push(f);
    }
    d.push(&data[split..]);
    while let Ok(Some(f)) = d.next_frame() {
        again.push(f);
    }
    assert_eq!(frames, again);
    let mut v1 = FrameDecoder::new(DEFAULT_MAX_FRAME).with_max_version(1);
    v1.push(data);
    let mut old = Vec::new();
    while let Ok(Some(f)) = v1.next_frame() {
        old.push(f);
    }
    assert!(old.iter().all(|f| f.version() == 1));
    assert_eq!(old[..], frames[..old.len()]);
    for f in frames {
        let (back, err) = decode_stream(&encode(&f), DEFAULT_MAX_FRAME);
        assert!(err.is_none());
        assert_eq!(back, vec![f]);
    }
});
