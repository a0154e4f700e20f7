//! The line limit is counted on the decoded line: in DATA the transparency dot
//! is not part of it (RFC 5321 §4.5.3.1.6), in BDAT every octet is. Every case
//! runs at every split point (`check_with` / `all_splits`) and against the
//! reference decoder, exactly at the limit and one over.

use super::*;

/// `text` as one DATA line (no CR, LF), dot-stuffed as a client sends it, then
/// the terminator.
fn data_wire(text: &[u8]) -> Vec<u8> {
    let mut body = text.to_vec();
    body.extend_from_slice(b"\r\n");
    encoded(&body)
}

#[test]
fn small_limit_counts_the_unstuffed_line() {
    let limits = DataLimits {
        max_line_len: 10,
        ..LIMITS
    };
    let long = DataError::LineTooLong { limit: 10 };
    // Exactly 10 octets with CRLF, without and with a transparency dot (11 on
    // the wire).
    check_with(limits, b"12345678\r\n.\r\n", b"12345678\r\n", ok(10), 13);
    check_with(limits, b".12345678\r\n.\r\n", b"12345678\r\n", ok(10), 14);
    check_with(limits, b"..2345678\r\n.\r\n", b".2345678\r\n", ok(10), 14);
    // One over once unstuffed: refused at the terminator, the rest consumed,
    // the output cut at the limit.
    check_with(
        limits,
        b"123456789\r\nnext\r\n.\r\nQUIT\r\n",
        b"12345678",
        err(long.clone()),
        20,
    );
    check_with(limits, b".123456789\r\n.\r\n", b"12345678", err(long.clone()), 15);
    check_with(limits, b"..23456789\r\n.\r\n", b".2345678", err(long.clone()), 15);
    // Stuffed lines after other lines, at the limit; then one over.
    check_with(
        limits,
        b"ok\r\n.12345678\r\n..2345678\r\n.\r\n",
        b"ok\r\n12345678\r\n.2345678\r\n",
        ok(24),
        29,
    );
    check_with(
        limits,
        b"ok\r\n..23456789\r\n.\r\n",
        b"ok\r\n.2345678",
        err(long.clone()),
        19,
    );
    // A long last line, a long line later.
    check_with(
        limits,
        b"ok\r\n1234567890abc\r\n.\r\n",
        b"ok\r\n12345678",
        err(long.clone()),
        22,
    );
    // A bare LF after a too-long line is still fatal.
    check_with(limits, b"1234567890\n.\r\n", b"12345678", err(DataError::BareLf), 11);
    check_with(limits, b".1234567890\n.\r\n", b"12345678", err(DataError::BareLf), 12);
}

#[test]
fn tiny_limits() {
    // Under 3, only empty lines: `..` decodes to `.`, one octet too many.
    let two = DataLimits {
        max_line_len: 2,
        ..LIMITS
    };
    check_with(
        two,
        b"\r\n..\r\n.\r\n",
        b"\r\n",
        err(DataError::LineTooLong { limit: 2 }),
        9,
    );
    check_with(two, b"\r\n\r\n.\r\n", b"\r\n\r\n", ok(4), 7);
    // 3 allows one octet, stuffed or not.
    let three = DataLimits {
        max_line_len: 3,
        ..LIMITS
    };
    check_with(three, b"..\r\nx\r\n.\r\n", b".\r\nx\r\n", ok(6), 10);
    check_with(
        three,
        b"...\r\n.\r\n",
        b".",
        err(DataError::LineTooLong { limit: 3 }),
        8,
    );
}

#[test]
fn default_limit_takes_998_octet_text_lines_starting_with_a_dot() {
    assert_eq!(DataLimits::default().max_line_len, 1000);
    let limits = DataLimits {
        max_message_size: 1 << 20,
        ..DataLimits::default()
    };
    // 998 octets of text: 1,000 on the wire without a leading dot, 1,001 with
    // one (as Postfix sends it), accepted either way.
    for first in [&b"a"[..], b"."] {
        let mut text = first.to_vec();
        text.resize(998, b'a');
        let wire = data_wire(&text);
        assert_eq!(wire.len(), 1000 + usize::from(first == b".") + 3);
        let mut body = text.clone();
        body.extend_from_slice(b"\r\n");
        check_with(limits, &wire, &body, ok(1000), wire.len());
    }
    // 999 octets of text: refused, with or without the dot; the output stops
    // after the 998 octets that fit.
    for first in [&b"a"[..], b"."] {
        let mut text = first.to_vec();
        text.resize(999, b'a');
        let wire = data_wire(&text);
        check_with(
            limits,
            &wire,
            &text[..998],
            err(DataError::LineTooLong { limit: 1000 }),
            wire.len(),
        );
    }
    // The same line after a header, and followed by a pipelined command.
    let mut text = vec![b'.'];
    text.resize(998, b'x');
    let mut wire = b"Subject: dots\r\n\r\n".to_vec();
    let body_start = wire.len();
    wire.extend_from_slice(&data_wire(&text));
    let end = wire.len();
    wire.extend_from_slice(b"QUIT\r\n");
    let mut body = b"Subject: dots\r\n\r\n".to_vec();
    body.extend_from_slice(&text);
    body.extend_from_slice(b"\r\n");
    assert_eq!(end - body_start, 1004);
    check_with(limits, &wire, &body, ok(body.len()), end);
}

#[test]
fn bdat_counts_every_octet() {
    // No stuffing in BDAT: a leading dot is text and counts.
    let limits = DataLimits {
        max_line_len: 10,
        ..LIMITS
    };
    let o = all_splits(limits, true, b".1234567\r\n..234567\r\n");
    assert_eq!(o.finish, Ok(20));
    assert_eq!(o.out, b".1234567\r\n..234567\r\n");
    assert_eq!(reference(limits, true, b".1234567\r\n..234567\r\n"), o);
    let o = all_splits(limits, true, b"ok\r\n.12345678\r\n");
    assert_eq!(o.finish, Err(DataError::LineTooLong { limit: 10 }));
    assert_eq!(o.out, b"ok\r\n.1234567");
    assert_eq!(reference(limits, true, b"ok\r\n.12345678\r\n"), o);
    // Default limit: 998 octets of text starting with a dot are 1,000 with CRLF.
    let mut chunk = vec![b'.'];
    chunk.resize(998, b'a');
    chunk.extend_from_slice(b"\r\n");
    assert_eq!(all_splits(LIMITS, true, &chunk).finish, Ok(1000));
    chunk.insert(0, b'.');
    assert_eq!(
        all_splits(LIMITS, true, &chunk).finish,
        Err(DataError::LineTooLong { limit: 1000 })
    );
}
