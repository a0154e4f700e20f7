//! DATA decoder tables, run at every split point, smuggling vectors, limits, BDAT
//! mode, and property tests against a byte-at-a-time reference decoder.

use proptest::prelude::*;

use super::*;

mod encoder;
mod line_limit;

const LIMITS: DataLimits = DataLimits {
    max_line_len: 1000,
    max_message_size: 1 << 20,
};

/// Everything observable after feeding some chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    consumed: usize,
    out: Vec<u8>,
    status: DataStatus,
    size: u64,
    /// `finish_chunked` after the input ran out (or the same final result).
    finish: Result<u64, DataError>,
}

fn decoder(limits: DataLimits, chunked: bool) -> DataDecoder {
    if chunked {
        DataDecoder::new_chunked(limits)
    } else {
        DataDecoder::new(limits)
    }
}

/// Feeds `chunks` in order until the decoder is done; checks that a NeedMore call
/// consumed its whole chunk and that a done decoder stays done.
fn feed<'a>(limits: DataLimits, chunked: bool, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut d = decoder(limits, chunked);
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut status = DataStatus::NeedMore;
    for chunk in chunks {
        let (n, s) = d.decode(chunk, &mut out);
        assert!(n <= chunk.len());
        consumed += n;
        status = s;
        match &status {
            DataStatus::NeedMore => assert_eq!(n, chunk.len(), "NeedMore must consume everything"),
            DataStatus::Done(_) => break,
        }
    }
    let size = d.size();
    let finish = d.finish_chunked();
    if let DataStatus::Done(r) = &status {
        assert_eq!(&finish, r, "finish after done returns the same result");
        let before = out.len();
        assert_eq!(d.decode(b"more\r\n.\r\n", &mut out), (0, status.clone()));
        assert_eq!(out.len(), before);
    }
    assert!(out.len() <= limits.max_message_size);
    Outcome {
        consumed,
        out,
        status,
        size,
        finish,
    }
}

/// Feeds `input` whole, in two chunks at every split point, byte by byte, and (for
/// short inputs) in three chunks at every pair of split points; asserts every way
/// gives the same outcome, and returns it.
fn all_splits(limits: DataLimits, chunked: bool, input: &[u8]) -> Outcome {
    let whole = feed(limits, chunked, [input]);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(feed(limits, chunked, [a, b]), whole, "split at {cut} of {input:?}");
    }
    assert_eq!(feed(limits, chunked, input.chunks(1)), whole, "byte by byte: {input:?}");
    if input.len() <= 40 {
        for x in 0..=input.len() {
            for y in x..=input.len() {
                let chunks = [&input[..x], &input[x..y], &input[y..]];
                assert_eq!(feed(limits, chunked, chunks), whole, "split at {x},{y} of {input:?}");
            }
        }
    }
    whole
}

/// Asserts the DATA-mode outcome at every split.
#[track_caller]
fn check(input: &[u8], body: &[u8], status: DataStatus, consumed: usize) {
    check_with(LIMITS, input, body, status, consumed);
}

#[track_caller]
fn check_with(limits: DataLimits, input: &[u8], body: &[u8], status: DataStatus, consumed: usize) {
    let o = all_splits(limits, false, input);
    assert_eq!(
        (o.out.as_slice(), &o.status, o.consumed),
        (body, &status, consumed),
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    // The reference decoder agrees.
    assert_eq!(reference(limits, false, input), o);
}

fn ok(size: usize) -> DataStatus {
    DataStatus::Done(Ok(size as u64))
}

fn err(e: DataError) -> DataStatus {
    DataStatus::Done(Err(e))
}

const NEED: DataStatus = DataStatus::NeedMore;

#[test]
fn table() {
    #[rustfmt::skip]
    let cases: &[(&[u8], &[u8], DataStatus, usize)] = &[
        // Empty message: the terminator as the first line.
        (b".\r\n", b"", ok(0), 3),
        (b"a\r\n.\r\n", b"a\r\n", ok(3), 6),
        (b"Subject: x\r\n\r\nbody\r\n.\r\n", b"Subject: x\r\n\r\nbody\r\n", ok(20), 23),
        // Dot-stuffing.
        (b"..\r\n.\r\n", b".\r\n", ok(3), 7),
        (b"..foo\r\n.\r\n", b".foo\r\n", ok(6), 10),
        (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n", ok(7), 11),
        (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n", ok(7), 11),
        (b".a\r\n.\r\n", b"a\r\n", ok(3), 7),
        // Empty lines.
        (b"\r\n\r\n.\r\n", b"\r\n\r\n", ok(4), 7),
        // 8-bit content passes.
        (b"\xc3\xa9\xff\r\n.\r\n", b"\xc3\xa9\xff\r\n", ok(5), 8),
        // Incomplete: everything consumed, nothing final.
        (b"", b"", NEED, 0),
        (b".", b"", NEED, 1),
        (b".\r", b"", NEED, 2),
        (b"abc", b"abc", NEED, 3),
        (b"abc\r", b"abc", NEED, 4),
        (b"abc\r\n", b"abc\r\n", NEED, 5),
        (b"abc\r\n.", b"abc\r\n", NEED, 6),
        (b"abc\r\n.\r", b"abc\r\n", NEED, 7),
        (b"abc\r\n\r\n..", b"abc\r\n\r\n.", NEED, 9),
        // Bytes after the terminator are not consumed.
        (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", ok(3), 6),
        (b".\r\n.\r\n", b"", ok(0), 3),
        // Fatal errors stop at the offending octet.
        (b"\n", b"", err(DataError::BareLf), 1),
        (b"abc\ndef\r\n.\r\n", b"abc", err(DataError::BareLf), 4),
        (b"abc\rdef\r\n.\r\n", b"abc", err(DataError::BareCr), 4),
        (b"abc\r\r\n.\r\n", b"abc", err(DataError::BareCr), 4),
        (b"abc\r\n\n.\r\n", b"abc\r\n", err(DataError::BareLf), 6),
        (b".\n", b"", err(DataError::BareLf), 2),
        (b".\rx", b"", err(DataError::BareCr), 2),
        (b"..\r\r\n", b".", err(DataError::BareCr), 3),
        // NUL: refused at the terminator, nothing copied from it on.
        (b"a\0b\r\n.\r\n", b"a", err(DataError::Nul), 8),
        (b"\0\r\n.\r\n", b"", err(DataError::Nul), 6),
        (b".\0\r\n.\r\n", b"", err(DataError::Nul), 7),
        // A fatal error wins over an earlier NUL.
        (b"a\0\nb", b"a", err(DataError::BareLf), 3),
    ];
    for (input, body, status, consumed) in cases {
        check(input, body, status.clone(), *consumed);
    }
}

#[test]
fn smuggling_vectors() {
    // Each is either refused (fatal, session closes) or stays inside the message,
    // with consumption ending at the real terminator and never at an injected one.
    let mail = b"MAIL FROM:<evil@example>\r\nRCPT TO:<victim@example>\r\nDATA\r\n";
    #[rustfmt::skip]
    let cases: &[(&[u8], &[u8], DataStatus, usize)] = &[
        (b"a\n.\nMAIL", b"a", err(DataError::BareLf), 2),
        (b"a\n.\r\nMAIL", b"a", err(DataError::BareLf), 2),
        (b"a\r\n.\nMAIL", b"a\r\n", err(DataError::BareLf), 5),
        (b"a\r.\r\nMAIL", b"a", err(DataError::BareCr), 2),
        (b"a\r\n.\rMAIL", b"a\r\n", err(DataError::BareCr), 5),
        (b"a\r.\rMAIL", b"a", err(DataError::BareCr), 2),
        (b"a\r\n\r.\r\n", b"a\r\n", err(DataError::BareCr), 4),
        (b"\n.\n", b"", err(DataError::BareLf), 1),
        (b"\r.\r", b"", err(DataError::BareCr), 1),
        // NUL before a dot: downstream MTAs that strip NUL would see an end.
        (b"a\r\n\x00.\r\nMAIL\r\n.\r\n", b"a\r\n", err(DataError::Nul), 16),
        // A stuffed dot is no terminator: the "command" is body.
        (b"..\r\nMAIL\r\n.\r\n", b".\r\nMAIL\r\n", ok(9), 13),
        // Dot followed by space, or by text, is body.
        (b"a\r\n. \r\nMAIL\r\n.\r\n", b"a\r\n \r\nMAIL\r\n", ok(12), 16),
    ];
    for (input, body, status, consumed) in cases {
        check(input, body, status.clone(), *consumed);
    }
    // A whole injected transaction after a real end is left for the command parser.
    let mut input = b"hello\r\n.\r\n".to_vec();
    input.extend_from_slice(mail);
    input.extend_from_slice(b"evil\r\n.\r\n");
    check(&input, b"hello\r\n", ok(7), 10);
    // And an injected transaction before the real end is body.
    let mut input = b"hello\r\n..\r\n".to_vec();
    input.extend_from_slice(mail);
    input.extend_from_slice(b"evil\r\n.\r\n");
    let mut body = b"hello\r\n.\r\n".to_vec();
    body.extend_from_slice(mail);
    body.extend_from_slice(b"evil\r\n");
    let len = input.len();
    check(&input, &body, ok(body.len()), len);
}

#[test]
fn terminator_split_everywhere() {
    // `all_splits` feeds every split; spell out the terminator ones for the record.
    let input = b"x\r\n.\r\nRSET\r\n";
    for cut in 1..=6 {
        let (a, b) = input.split_at(cut);
        let o = feed(LIMITS, false, [a, b]);
        assert_eq!((o.consumed, o.status, o.out), (6, ok(3), b"x\r\n".to_vec()));
    }
}

#[test]
fn size_limit() {
    let limits = DataLimits {
        max_line_len: 1000,
        max_message_size: 10,
    };
    let big = DataError::TooLarge { limit: 10 };
    check_with(limits, b"1234\r\n5678\r\n.\r\n", b"1234\r\n5678", err(big.clone()), 15);
    check_with(limits, b"1234\r\n56\r\n.\r\n", b"1234\r\n56\r\n", ok(10), 13);
    check_with(limits, b"1234\r\n..6\r\n.\r\n", b"1234\r\n.6\r\n", ok(10), 14);
    check_with(limits, b"1234\r\n..67\r\n.\r\n", b"1234\r\n.67\r", err(big.clone()), 15);
    // The first error wins: size before NUL, NUL before size, size before length.
    check_with(limits, b"1234567890x\0\r\n.\r\n", b"1234567890", err(big.clone()), 17);
    check_with(limits, b"12\0\r\n4567890\r\n.\r\n", b"12", err(DataError::Nul), 17);
    let both = DataLimits {
        max_line_len: 14,
        max_message_size: 10,
    };
    check_with(both, b"1234567890123\r\n.\r\n", b"1234567890", err(big), 18);
    // Size keeps counting past the limit.
    let o = feed(limits, false, [&b"1234567890abcdef\r\n.\r\n"[..]]);
    assert_eq!(o.size, 18);
}

#[test]
fn fifty_megabytes_stay_bounded() {
    let limits = DataLimits {
        max_line_len: 1000,
        max_message_size: 1_000_000,
    };
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(line.len() * 840).collect();
    let mut d = DataDecoder::new(limits);
    let mut out = Vec::new();
    let mut fed = 0;
    while fed < 50_000_000 {
        let (n, status) = d.decode(&chunk, &mut out);
        assert_eq!((n, status), (chunk.len(), NEED));
        assert!(out.len() <= limits.max_message_size);
        fed += chunk.len();
    }
    assert_eq!(out.len(), limits.max_message_size);
    let (n, status) = d.decode(b".\r\nQUIT\r\n", &mut out);
    assert_eq!((n, status), (3, err(DataError::TooLarge { limit: 1_000_000 })));
    assert_eq!(d.size(), fed as u64);
}

#[test]
fn chunked_mode() {
    let bdat = |input: &[u8]| all_splits(LIMITS, true, input);
    // No terminator, no unstuffing: everything is body.
    let o = bdat(b"a\r\n.\r\n..b\r\n");
    assert_eq!(
        (o.consumed, o.status, o.out.as_slice()),
        (11, NEED, &b"a\r\n.\r\n..b\r\n"[..])
    );
    assert_eq!(o.finish, Ok(11));
    // CR at the end of one chunk, LF at the start of the next.
    let o = feed(LIMITS, true, [&b"abc\r"[..], b"\ndef\r\n"]);
    assert_eq!((o.status, o.out, o.finish), (NEED, b"abc\r\ndef\r\n".to_vec(), Ok(10)));
    // A CR ending the last chunk is a bare CR.
    let o = bdat(b"abc\r");
    assert_eq!((o.status, o.finish), (NEED, Err(DataError::BareCr)));
    // A final line without CRLF is accepted.
    assert_eq!(bdat(b"abc\r\nno end").finish, Ok(11));
    assert_eq!(bdat(b"").finish, Ok(0));
    // Bare LF and bare CR are fatal across chunks too.
    let o = feed(LIMITS, true, [&b"abc\r"[..], b"x"]);
    assert_eq!((o.consumed, o.status), (4, err(DataError::BareCr)));
    let o = bdat(b"abc\r\n.\n");
    assert_eq!((o.consumed, o.status), (7, err(DataError::BareLf)));
    // Non-fatal errors wait for finish_chunked.
    let o = bdat(b"a\0b\r\n");
    assert_eq!((o.consumed, o.status, o.finish), (5, NEED, Err(DataError::Nul)));
    let limits = DataLimits {
        max_line_len: 6,
        max_message_size: 8,
    };
    let o = all_splits(
        DataLimits {
            max_line_len: 6,
            ..LIMITS
        },
        true,
        b"..34\r\n12345\r\n",
    );
    assert_eq!(o.finish, Err(DataError::LineTooLong { limit: 6 }));
    assert_eq!(o.out, b"..34\r\n1234");
    let o = all_splits(limits, true, b"1234\r\n1234\r\n");
    assert_eq!((o.finish, o.out.len()), (Err(DataError::TooLarge { limit: 8 }), 8));
    // The pending error is visible before LAST.
    let mut d = DataDecoder::new_chunked(limits);
    let _ = d.decode(b"1234567", &mut Vec::new());
    assert_eq!(d.pending_error(), Some(&DataError::LineTooLong { limit: 6 }));
}

#[test]
fn replies() {
    let code = |e: DataError| {
        let r = e.reply();
        (r.code, r.enhanced.unwrap().to_string(), r.text())
    };
    let (c, e, t) = code(DataError::BareLf);
    assert_eq!((c, e.as_str()), (554, "5.5.2"));
    assert!(t.contains("bare LF") && t.contains("RFC 5321 section 2.3.8"));
    let (c, e, t) = code(DataError::BareCr);
    assert_eq!((c, e.as_str()), (554, "5.5.2"));
    assert!(t.contains("bare CR") && t.contains("RFC 5321 section 2.3.8"));
    assert_eq!(code(DataError::Nul).0, 554);
    assert_eq!(code(DataError::Nul).1, "5.6.0");
    let (c, e, t) = code(DataError::LineTooLong { limit: 1000 });
    assert_eq!((c, e.as_str()), (500, "5.5.2"));
    assert!(t.contains("1000"));
    let (c, e, t) = code(DataError::TooLarge { limit: 42 });
    assert_eq!((c, e.as_str()), (552, "5.3.4"));
    assert!(t.contains("42"));
    assert!(DataError::BareLf.is_fatal() && DataError::BareCr.is_fatal());
    assert!(!DataError::Nul.is_fatal());
    assert!(!DataError::LineTooLong { limit: 1 }.is_fatal());
    assert!(!DataError::TooLarge { limit: 1 }.is_fatal());
}

fn encoded(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_data(body, &mut out);
    out
}

#[test]
fn encode_examples() {
    assert_eq!(encoded(b""), b".\r\n");
    assert_eq!(encoded(b"a"), b"a\r\n.\r\n");
    assert_eq!(encoded(b"a\r\n"), b"a\r\n.\r\n");
    assert_eq!(encoded(b"a\r"), b"a\r\n.\r\n");
    assert_eq!(encoded(b"."), b"..\r\n.\r\n");
    assert_eq!(encoded(b".\r\n.\r\n"), b"..\r\n..\r\n.\r\n");
    assert_eq!(encoded(b"a\r\n..b\r\nc."), b"a\r\n...b\r\nc.\r\n.\r\n");
    assert_eq!(encoded(b"\r\n.\r\n"), b"\r\n..\r\n.\r\n");
    // Bare LF in a body we were given: dots after it are stuffed all the same.
    assert_eq!(encoded(b"a\n.b"), b"a\n..b\r\n.\r\n");
    // Appends to what `out` holds.
    let mut out = b"DATA\r\n".to_vec();
    encode_data(b"x", &mut out);
    assert_eq!(out, b"DATA\r\nx\r\n.\r\n");
}

/// The decoder written the slow and obvious way, one octet at a time.
fn reference(limits: DataLimits, chunked: bool, input: &[u8]) -> Outcome {
    let line_limit = limits.max_line_len.saturating_sub(2);
    let mut out = Vec::new();
    let mut size = 0u64;
    let mut error: Option<DataError> = None;
    let mut line_len = 0;
    let mut at_start = true;
    let mut i = 0;
    let too_long = DataError::LineTooLong {
        limit: limits.max_line_len,
    };
    let push = |b: u8, out: &mut Vec<u8>, size: &mut u64, error: &mut Option<DataError>| {
        if error.is_none() {
            if *size < limits.max_message_size as u64 {
                out.push(b);
            } else {
                *error = Some(DataError::TooLarge {
                    limit: limits.max_message_size,
                });
            }
        }
        *size += 1;
    };
    let finish = |error: &Option<DataError>, size: u64| error.clone().map_or(Ok(size), Err);
    let done = |consumed, out, size, r: Result<u64, DataError>| Outcome {
        consumed,
        out,
        status: DataStatus::Done(r.clone()),
        size,
        finish: r,
    };
    while i < input.len() {
        let b = input[i];
        if at_start && !chunked && b == b'.' {
            match (input.get(i + 1), input.get(i + 2)) {
                (None, _) | (Some(b'\r'), None) => {
                    let f = if input.len() == i + 2 {
                        Err(DataError::BareCr)
                    } else {
                        finish(&error, size)
                    };
                    return Outcome {
                        consumed: input.len(),
                        out,
                        status: NEED,
                        size,
                        finish: f,
                    };
                }
                (Some(b'\r'), Some(b'\n')) => return done(i + 3, out, size, finish(&error, size)),
                (Some(b'\r'), Some(_)) => return done(i + 2, out, size, Err(DataError::BareCr)),
                _ => {
                    // The stuffed dot is not part of the line (RFC 5321 §4.5.3.1.6).
                    line_len = 0;
                    at_start = false;
                    i += 1;
                    continue;
                }
            }
        }
        at_start = false;
        match b {
            b'\n' => return done(i + 1, out, size, Err(DataError::BareLf)),
            b'\r' => match input.get(i + 1) {
                Some(b'\n') => {
                    push(b'\r', &mut out, &mut size, &mut error);
                    push(b'\n', &mut out, &mut size, &mut error);
                    line_len = 0;
                    at_start = true;
                    i += 2;
                }
                Some(_) => return done(i + 1, out, size, Err(DataError::BareCr)),
                None => {
                    return Outcome {
                        consumed: input.len(),
                        out,
                        status: NEED,
                        size,
                        finish: Err(DataError::BareCr),
                    }
                }
            },
            _ => {
                line_len += 1;
                if error.is_none() && line_len > line_limit {
                    error = Some(too_long.clone());
                }
                if b == 0 {
                    error.get_or_insert(DataError::Nul);
                }
                push(b, &mut out, &mut size, &mut error);
                i += 1;
            }
        }
    }
    Outcome {
        consumed: input.len(),
        finish: finish(&error, size),
        out,
        status: NEED,
        size,
    }
}

/// Splits `input` at the given points (taken modulo its length, sorted).
fn split<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for c in cuts {
        chunks.push(&input[start..c]);
        start = c;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Bytes drawn mostly from the octets the decoder cares about.
fn smtp_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vec![b'\r', b'\n', b'.', 0, b'a', b'b']),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

/// Bodies of lines without CR, LF or NUL, many starting with dots.
fn body_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let line = prop_oneof![
        prop::collection::vec(
            any::<u8>().prop_filter("no CR, LF, NUL", |b| !matches!(b, b'\r' | b'\n' | 0)),
            0..40
        ),
        prop::collection::vec(prop::sample::select(vec![b'.', b'a', b' ']), 0..6),
    ];
    prop::collection::vec(line, 0..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_decode_round_trip(lines in body_lines(), crlf_end in any::<bool>(), points in prop::collection::vec(any::<usize>(), 0..4)) {
        let mut body = lines.join(&b"\r\n"[..]);
        if crlf_end && !body.is_empty() {
            body.extend_from_slice(b"\r\n");
        }
        let mut wire = encoded(&body);
        let end = wire.len();
        wire.extend_from_slice(b"QUIT\r\n");
        let o = feed(LIMITS, false, split(&wire, &points));
        let mut expected = body.clone();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(o.consumed, end);
        prop_assert_eq!(o.status, ok(expected.len()));
        prop_assert_eq!(o.out, expected);
    }

    #[test]
    fn bdat_carries_bodies_unchanged(lines in body_lines(), points in prop::collection::vec(any::<usize>(), 0..4)) {
        let mut body = lines.join(&b"\r\n"[..]);
        body.extend_from_slice(b"\r\n");
        let o = feed(LIMITS, true, split(&body, &points));
        prop_assert_eq!(o.finish, Ok(body.len() as u64));
        prop_assert_eq!(o.out, body);
    }

    #[test]
    fn any_split_same_outcome_as_reference(
        input in smtp_bytes(),
        chunked in any::<bool>(),
        max_line_len in 0usize..12,
        max_message_size in 0usize..40,
        points in prop::collection::vec(any::<usize>(), 0..5),
    ) {
        let limits = DataLimits { max_line_len, max_message_size };
        let expected = reference(limits, chunked, &input);
        prop_assert_eq!(&feed(limits, chunked, [&input[..]]), &expected);
        prop_assert_eq!(&feed(limits, chunked, split(&input, &points)), &expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..600), points in prop::collection::vec(any::<usize>(), 0..5)) {
        let whole = feed(LIMITS, false, [&input[..]]);
        prop_assert_eq!(&feed(LIMITS, false, split(&input, &points)), &whole);
        prop_assert_eq!(reference(LIMITS, false, &input), whole);
    }
}

#[test]
fn exhaustive_small_inputs() {
    // Every input up to 7 octets over the alphabet that matters, tiny limits, at
    // every split: the decoder matches the reference.
    let alphabet = [b'\r', b'\n', b'.', 0, b'a'];
    let limits = DataLimits {
        max_line_len: 4,
        max_message_size: 3,
    };
    let mut input = Vec::new();
    for len in 0..=7u32 {
        for mut n in 0..alphabet.len().pow(len) {
            input.clear();
            for _ in 0..len {
                input.push(alphabet[n % alphabet.len()]);
                n /= alphabet.len();
            }
            for chunked in [false, true] {
                let expected = reference(limits, chunked, &input);
                let whole = feed(limits, chunked, [&input[..]]);
                assert_eq!(whole, expected, "{input:?} chunked={chunked}");
                for cut in 0..=input.len() {
                    let (a, b) = input.split_at(cut);
                    assert_eq!(feed(limits, chunked, [a, b]), expected, "{input:?} at {cut}");
                }
            }
        }
    }
}
