//! Streamed content ([`ServerConfig::content_chunk`]): pieces as they arrive, and
//! the contract that a transaction with pieces ends in `Message`, `Reset` or
//! `Closed`.

use super::*;

const OPEN: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\n";

fn streaming(chunk: usize) -> ServerConfig {
    ServerConfig {
        content_chunk: chunk,
        ..config()
    }
}

/// About 20 KB of CRLF lines, a third of them starting with a dot (one is a
/// lone dot), as the driver must get it back.
fn message() -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..700 {
        match i % 3 {
            0 if i % 9 == 0 => m.extend_from_slice(b"."),
            0 => m.extend_from_slice(format!(".dot line {i} with some text after it").as_bytes()),
            1 => m.extend_from_slice(format!("plain line {i}, the quick brown fox jumps").as_bytes()),
            _ => m.extend_from_slice(format!("..two dots {i}").as_bytes()),
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// `message` dot-stuffed by hand (not by the encoder under test elsewhere),
/// without the terminator.
fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire
}

/// Feeds `bytes` in slices whose sizes cycle through `sizes`.
fn feed_sliced(h: &mut Harness, bytes: &[u8], sizes: &[usize]) -> String {
    let mut out = String::new();
    let mut rest = bytes;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(n.min(rest.len()));
        out.push_str(&h.feed(now));
        rest = later;
    }
    out
}

fn last_content(events: &[String]) -> usize {
    events
        .iter()
        .rposition(|e| e.starts_with("content "))
        .expect("pieces were sent")
}

#[test]
fn data_pieces_arrive_in_order_for_any_slicing() {
    let msg = message();
    assert!(msg.len() > 18_000, "{}", msg.len());
    let wire = stuffed(&msg);
    for sizes in [&[1, 7, 333][..], &[333], &[4096], &[usize::MAX]] {
        let mut h = Harness::new(streaming(1000));
        h.feed(OPEN);
        assert!(h.feed(b"DATA\r\n").starts_with("354 "));
        feed_sliced(&mut h, &wire, sizes);
        // Pieces leave while the message is still arriving.
        assert_eq!(h.stored, 0);
        assert!(h.pieces.len() >= 15, "{sizes:?}: {} pieces", h.pieces.len());
        let out = h.feed(b".\r\n");
        assert_eq!(out, "250 2.0.0 queued as Q1\r\n", "{sizes:?}");
        // At least a chunk each, and never much more however large the slices.
        for p in &h.pieces {
            assert!((1000..=1001).contains(&p.len()), "{sizes:?}: piece of {}", p.len());
        }
        let streamed = h.pieces.concat();
        assert_eq!(streamed, msg[..streamed.len()], "{sizes:?}");
        // The harness checked DataDone::size == pieces + body.
        assert_eq!(h.bodies(), vec![msg.clone()], "{sizes:?}");
    }
}

#[test]
fn data_body_holds_only_the_rest() {
    let msg = message();
    let mut wire = stuffed(&msg);
    wire.extend_from_slice(b".\r\n");
    let mut h = Harness::new(streaming(1000));
    h.feed(OPEN);
    h.feed(b"DATA\r\n");
    h.feed(&wire);
    // DataDone::body is what is left after the last piece: less than a piece.
    let streamed = h.pieces.concat().len();
    assert!(streamed < msg.len() && msg.len() - streamed < 1000, "{streamed}");
    assert_eq!(h.bodies(), vec![msg]);
}

#[test]
fn bdat_pieces_span_chunks() {
    let msg = message();
    // Chunk boundaries off the piece boundaries, one inside a CRLF.
    let cut1 = 4500;
    let cut2 = msg
        .iter()
        .skip(9000)
        .position(|&b| b == b'\r')
        .map(|i| 9001 + i)
        .unwrap();
    let mut wire = OPEN.to_vec();
    for range in [0..cut1, cut1..cut2] {
        wire.extend_from_slice(format!("BDAT {}\r\n", range.len()).as_bytes());
        wire.extend_from_slice(&msg[range]);
    }
    let mut h = Harness::new(streaming(1000));
    let out = feed_sliced(&mut h, &wire, &[1, 7, 333]);
    assert!(out.contains(&format!("250 2.0.0 {cut1} octets received\r\n")), "{out}");
    assert_eq!(out.matches(" octets received\r\n").count(), 2, "{out}");
    assert_eq!(h.stored, 0);
    assert!(h.pieces.len() >= 9, "{} pieces", h.pieces.len());
    let mut tail = format!("BDAT {} LAST\r\n", msg.len() - cut2).into_bytes();
    tail.extend_from_slice(&msg[cut2..]);
    let out = feed_sliced(&mut h, &tail, &[1, 7, 333]);
    assert_eq!(out, "250 2.0.0 queued as Q1\r\n");
    assert!(h.pieces.len() >= 15, "{} pieces", h.pieces.len());
    assert!(h.pieces.iter().all(|p| p.len() >= 1000));
    assert_eq!(h.bodies(), vec![msg]);
}

#[test]
fn no_pieces_when_content_chunk_is_zero() {
    let msg = message();
    let mut wire = OPEN.to_vec();
    wire.extend_from_slice(b"DATA\r\n");
    wire.extend_from_slice(&stuffed(&msg));
    wire.extend_from_slice(b".\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nBDAT 5000 LAST\r\n");
    wire.extend_from_slice(&msg[..5000]);
    let mut h = Harness::new(config());
    let out = feed_sliced(&mut h, &wire, &[1, 7, 333]);
    assert!(out.ends_with("250 2.0.0 queued as Q2\r\n"), "{out}");
    assert!(h.pieces.is_empty());
    assert!(!h.events.iter().any(|e| e.starts_with("content")));
    assert_eq!(h.bodies(), vec![msg.clone(), msg[..5000].to_vec()]);
}

#[test]
fn rset_and_ehlo_after_pieces_reset_then_a_new_transaction_works() {
    let msg = message();
    for abandon in [&b"RSET\r\n"[..], b"EHLO again\r\n"] {
        let mut h = Harness::new(streaming(1000));
        let mut wire = OPEN.to_vec();
        wire.extend_from_slice(b"BDAT 5000\r\n");
        wire.extend_from_slice(&msg[..5000]);
        h.feed(&wire);
        assert_eq!(h.pieces.len(), 5);
        h.feed(abandon);
        assert_eq!(h.events[last_content(&h.events) + 1], "reset", "{:?}", h.events);
        assert!(h.server.sender().is_none());
        // The next transaction starts from nothing: a driver that discarded
        // the pieces on Reset stores exactly the new message.
        let out = h.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nDATA\r\nnew\r\n.\r\n");
        assert!(out.ends_with("250 2.0.0 queued as Q1\r\n"), "{out}");
        assert_eq!(h.bodies(), vec![b"new\r\n".to_vec()]);
    }
}

#[test]
fn too_large_after_pieces_resets_with_552() {
    let msg = message();
    let mut cfg = streaming(1000);
    cfg.data.max_message_size = 5500;
    // DATA: refused at the terminator.
    let mut h = Harness::new(cfg.clone());
    h.feed(OPEN);
    h.feed(b"DATA\r\n");
    feed_sliced(&mut h, &stuffed(&msg), &[1, 7, 333]);
    assert_eq!(h.pieces.len(), 5, "no piece past the limit");
    let out = h.feed(b".\r\nNOOP\r\n");
    assert!(out.starts_with("552 5.3.4 "), "{out}");
    assert!(out.ends_with("250 2.0.0 OK\r\n"), "{out}");
    let i = last_content(&h.events);
    assert_eq!(h.events[i + 1..], ["reset", "refused 552"], "{:?}", h.events);
    assert_eq!(h.stored, 0);
    // BDAT: refused at the end of the chunk that overflows.
    let mut h = Harness::new(cfg);
    let mut wire = OPEN.to_vec();
    wire.extend_from_slice(b"BDAT 3000\r\n");
    wire.extend_from_slice(&msg[..3000]);
    wire.extend_from_slice(b"BDAT 3000\r\n");
    wire.extend_from_slice(&msg[3000..6000]);
    let out = feed_sliced(&mut h, &wire, &[1, 7, 333]);
    assert!(
        out.ends_with("552 5.3.4 message exceeds fixed maximum message size of 5500 octets\r\n"),
        "{out}"
    );
    let i = last_content(&h.events);
    assert_eq!(h.events[i + 1..], ["reset", "refused 552"], "{:?}", h.events);
}

#[test]
fn fatal_and_session_ends_after_pieces_end_the_transaction() {
    let msg = message();
    let open_data = |h: &mut Harness| {
        h.feed(OPEN);
        h.feed(b"DATA\r\n");
        h.feed(&stuffed(&msg)[..3000]);
        assert_eq!(h.pieces.len(), 2, "{:?}", h.events);
    };
    // Bare LF: Reset, then Closed.
    let mut h = Harness::new(streaming(1000));
    open_data(&mut h);
    h.feed(b"smuggled\n.\nRSET\r\n");
    assert!(h.server.is_closed());
    let i = last_content(&h.events);
    assert_eq!(
        h.events[i + 1..],
        ["reset", "refused 554", "closed BadFraming"],
        "{:?}",
        h.events
    );
    // Bare LF in a BDAT chunk after pieces.
    let mut h = Harness::new(streaming(1000));
    let mut wire = OPEN.to_vec();
    wire.extend_from_slice(b"BDAT 3000\r\n");
    wire.extend_from_slice(&msg[..2990]);
    wire.extend_from_slice(b"bare\nLF...");
    h.feed(&wire);
    assert!(h.server.is_closed());
    let i = last_content(&h.events);
    assert_eq!(
        h.events[i + 1..],
        ["reset", "refused 554", "closed BadFraming"],
        "{:?}",
        h.events
    );
    // Timeout in the middle of DATA.
    let mut h = Harness::new(streaming(1000));
    open_data(&mut h);
    let deadline = h.server.poll_timeout().unwrap();
    h.server.handle_timeout(deadline);
    h.answer_events();
    assert_eq!(h.events.last().map(String::as_str), Some("closed Timeout"));
    assert!(last_content(&h.events) < h.events.len() - 1);
    // The driver closes in the middle of DATA.
    let mut h = Harness::new(streaming(1000));
    open_data(&mut h);
    h.server.close();
    h.answer_events();
    assert_eq!(h.events.last().map(String::as_str), Some("closed Shutdown"));
    // QUIT between BDAT chunks.
    let mut h = Harness::new(streaming(1000));
    let mut wire = OPEN.to_vec();
    wire.extend_from_slice(b"BDAT 2000\r\n");
    wire.extend_from_slice(&msg[..2000]);
    wire.extend_from_slice(b"QUIT\r\n");
    h.feed(&wire);
    assert_eq!(h.pieces.len(), 2);
    assert_eq!(h.events.last().map(String::as_str), Some("closed Quit"));
}
