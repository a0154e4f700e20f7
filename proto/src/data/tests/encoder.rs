//! [`DataEncoder`] against [`encode_data`]: a body given in pieces, split at
//! every point and into three pieces at random points (fixed seed), is encoded
//! exactly as the whole body; `encode_data` itself against a byte-at-a-time
//! reference.

use super::*;

/// Bodies where piece boundaries matter: dots at line starts, a body starting
/// with a dot, no final CRLF, a final CR alone, bare LFs, lone terminators.
const BODIES: &[&[u8]] = &[
    b"",
    b".",
    b"a",
    b"\r",
    b"\n",
    b"\r\n",
    b".\r\n",
    b"..\r\n",
    b".\r\n.\r\n",
    b"\r\n.\r\n",
    b"Subject: t\r\n\r\n.\r\nbody\r\n.\r\n",
    b"Subject: t\r\n\r\nno final line end",
    b"ends with a CR\r",
    b"ends with a dot line\r\n.",
    b".starts with a dot\r\n..two dots\r\n...\r\n",
    b"bare\n.lf\n..\n",
    b"a\r\n..b\r\nc.",
    b"\r\r\n.\r.\n.",
    b"x\r\n.\r\n\r\n.\r\n.x\r\n\r",
];

/// `encode_data` written the slow and obvious way.
fn reference(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in body.iter().enumerate() {
        if b == b'.' && (i == 0 || body[i - 1] == b'\n') {
            out.push(b'.');
        }
        out.push(b);
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(if body.ends_with(b"\r") { b"\n" } else { b"\r\n" });
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn streamed<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut encoder = DataEncoder::new();
    let mut out = Vec::new();
    let mut len = 0;
    for piece in pieces {
        encoder.push(piece, &mut out);
        len += piece.len() as u64;
        assert_eq!(encoder.len(), len);
    }
    encoder.finish(&mut out);
    out
}

/// A small fixed-seed generator (xorshift64): reproducible splits without a
/// dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn encode_data_matches_the_reference() {
    for body in BODIES {
        assert_eq!(encoded(body), reference(body), "{:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn every_split_point_encodes_as_the_whole() {
    for body in BODIES {
        let whole = encoded(body);
        for split in 0..=body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(streamed([a, b]), whole, "{body:?} split at {split}");
        }
        // One octet per piece, with empty pieces in between.
        let octets: Vec<&[u8]> = body.chunks(1).flat_map(|c| [c, &[][..]]).collect();
        assert_eq!(streamed(octets), whole, "{body:?} octet by octet");
    }
}

#[test]
fn three_pieces_at_random_points_encode_as_the_whole() {
    let mut rng = Rng(0x5eed_e57a_fe77_0001);
    for body in BODIES {
        let whole = encoded(body);
        for _ in 0..200 {
            let mut cuts = [rng.below(body.len() + 1), rng.below(body.len() + 1)];
            cuts.sort_unstable();
            let pieces = [&body[..cuts[0]], &body[cuts[0]..cuts[1]], &body[cuts[1]..]];
            assert_eq!(streamed(pieces), whole, "{body:?} cut at {cuts:?}");
        }
    }
    // Longer random bodies from an alphabet dense in line ends and dots.
    for _ in 0..500 {
        let body: Vec<u8> = (0..rng.below(64)).map(|_| b".\r\nx"[rng.below(4)]).collect();
        let whole = encoded(&body);
        assert_eq!(whole, reference(&body));
        let mut cuts = [rng.below(body.len() + 1), rng.below(body.len() + 1)];
        cuts.sort_unstable();
        let pieces = [&body[..cuts[0]], &body[cuts[0]..cuts[1]], &body[cuts[1]..]];
        assert_eq!(streamed(pieces), whole, "{body:?} cut at {cuts:?}");
    }
}
