//! Feeds arbitrary bytes to the DATA decoder (and, by a flag, the BDAT one) whole
//! and split, and asserts both ways give the same body, status, consumption and
//! final result, and that the output never passes the size limit.
//!
//! Input layout: byte 0 picks the split point (as a fraction of the rest), byte 1's
//! low bit picks BDAT mode and bit 1 small limits (so that line and size limits
//! trip); the rest is the wire input. Run: `cargo fuzz run data_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::data::{DataDecoder, DataLimits, DataStatus};

struct Outcome {
    consumed: usize,
    out: Vec<u8>,
    status: DataStatus,
    size: u64,
    finish: Result<u64, proto::data::DataError>,
}

fn run(limits: DataLimits, chunked: bool, chunks: &[&[u8]]) -> Outcome {
    let mut d = if chunked {
        DataDecoder::new_chunked(limits)
    } else {
        DataDecoder::new(limits)
    };
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut status = DataStatus::NeedMore;
    for chunk in chunks {
        let (n, s) = d.decode(chunk, &mut out);
        assert!(n <= chunk.len());
        consumed += n;
        status = s;
        match status {
            DataStatus::NeedMore => assert_eq!(n, chunk.len()),
            DataStatus::Done(_) => break,
        }
        assert!(out.len() <= limits.max_message_size);
    }
    assert!(out.len() <= limits.max_message_size);
    assert!(out.len() as u64 <= d.size());
    Outcome {
        consumed,
        size: d.size(),
        finish: d.finish_chunked(),
        out,
        status,
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, flags, input @ ..] = data else {
        return;
    };
    let chunked = flags & 1 == 1;
    let limits = if flags & 2 == 2 {
        DataLimits {
            max_line_len: 8,
            max_message_size: 64,
        }
    } else {
        DataLimits::default()
    };
    let cut = input.len() * usize::from(*selector) / 255;
    let (a, b) = input.split_at(cut);
    let whole = run(limits, chunked, &[input]);
    let split = run(limits, chunked, &[a, b]);
    assert_eq!(whole.consumed, split.consumed);
    assert_eq!(whole.out, split.out);
    assert_eq!(whole.status, split.status);
    assert_eq!(whole.size, split.size);
    assert_eq!(whole.finish, split.finish);
    if let DataStatus::Done(r) = &whole.status {
        assert_eq!(&whole.finish, r);
    }
});
