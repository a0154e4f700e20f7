use super::*;

fn feed(c: &mut Client, now: Instant, bytes: &[u8]) -> (Vec<ClientEvent>, String) {
    let used = c.handle_input(now, bytes);
    assert_eq!(used, bytes.len());
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    (events, String::from_utf8(out).unwrap())
}

fn config(tls: TlsPolicy) -> Arc<ClientConfig> {
    Arc::new(ClientConfig {
        hostname: "relay.test".into(),
        tls,
        ..ClientConfig::default()
    })
}

#[test]
fn falls_back_to_helo_and_refuses_plaintext_when_tls_required() {
    let now = Instant::now();
    let mut c = Client::new(config(TlsPolicy::Required), false, now);
    let (_, out) = feed(&mut c, now, b"220 old.test SMTP\r\n");
    assert_eq!(out, "EHLO relay.test\r\n");
    let (_, out) = feed(&mut c, now, b"502 5.5.1 what\r\n");
    assert_eq!(out, "HELO relay.test\r\n");
    let (events, out) = feed(&mut c, now, b"250 old.test\r\n");
    assert_eq!(out, "QUIT\r\n");
    assert!(events.contains(&ClientEvent::Failed(ClientError::TlsNotOffered)));
    assert!(c.is_closed());
}

#[test]
fn opportunistic_tls_goes_on_in_clear() {
    let now = Instant::now();
    let mut c = Client::new(config(TlsPolicy::Opportunistic), false, now);
    feed(&mut c, now, b"220 x\r\n");
    let (events, _) = feed(&mut c, now, b"250-x\r\n250 SIZE 100\r\n");
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
    assert_eq!(c.extensions().size, Some(100));
}

#[test]
fn bad_greeting_and_malformed_replies_fail() {
    let now = Instant::now();
    let mut c = Client::new(config(TlsPolicy::Never), false, now);
    let (events, _) = feed(&mut c, now, b"554 5.7.1 go away\r\n");
    assert!(matches!(
        events[1],
        ClientEvent::Failed(ClientError::Refused {
            stage: Stage::Greeting,
            ..
        })
    ));
    assert!(!events[1].eq(&ClientEvent::Closed));
    let mut c = Client::new(config(TlsPolicy::Never), false, now);
    let (events, _) = feed(&mut c, now, b"hello\r\n");
    assert!(matches!(
        events[0],
        ClientEvent::Failed(ClientError::Protocol {
            error: ReplyError::Syntax,
            ..
        })
    ));
    assert!(c.is_closed());
}

#[test]
fn partial_replies_wait_for_more() {
    let now = Instant::now();
    let mut c = Client::new(config(TlsPolicy::Never), false, now);
    assert_eq!(c.handle_input(now, b"220-multi\r\n220 line"), 0);
    let whole = b"220-multi\r\n220 line\r\n";
    assert_eq!(c.handle_input(now, whole), whole.len());
}

#[test]
fn transient_and_permanent_errors() {
    let r = |code| ClientError::Refused {
        stage: Stage::Ehlo,
        reply: Reply::new(code, EnhancedCode::new((code / 100) as u8, 0, 0), "x"),
    };
    assert!(r(421).is_transient());
    assert!(!r(554).is_transient());
    assert!(ClientError::TlsNotOffered.is_transient());
}

#[test]
fn dsn_and_body_parameters_only_where_offered() {
    use crate::address::{ForwardPath, Mailbox, ReversePath};
    use crate::params::{Body, Notify, Ret};
    let msg = || Outgoing {
        from: ReversePath::Path(Mailbox::parse("a@b.test").unwrap()),
        params: MailParams {
            ret: Some(Ret::Headers),
            envid: Some("E1".into()),
            body: Some(Body::EightBitMime),
            ..MailParams::default()
        },
        recipients: vec![(
            ForwardPath::Path(Mailbox::parse("c@d.test").unwrap()),
            RcptParams {
                notify: Some(Notify::NEVER),
                orcpt: None,
            },
        )],
        body: b"x\r\n".to_vec(),
        streamed: None,
    };
    let now = Instant::now();
    // A server offering nothing: plain MAIL and RCPT.
    let mut c = Client::new(config(TlsPolicy::Never), false, now);
    feed(&mut c, now, b"220 x\r\n");
    feed(&mut c, now, b"250 x\r\n");
    c.send_message(now, msg()).unwrap();
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(String::from_utf8(out).unwrap(), "MAIL FROM:<a@b.test>\r\n");
    feed(&mut c, now, b"250 ok\r\n");
    let (_, out) = feed(&mut c, now, b"");
    assert!(out.is_empty() || out == "RCPT TO:<c@d.test>\r\n");
    // A server offering DSN, 8BITMIME and SIZE: everything is passed on.
    let mut c = Client::new(config(TlsPolicy::Never), false, now);
    feed(&mut c, now, b"220 x\r\n");
    feed(
        &mut c,
        now,
        b"250-x\r\n250-DSN\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
    );
    c.send_message(now, msg()).unwrap();
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(
            "MAIL FROM:<a@b.test> SIZE=3 BODY=8BITMIME RET=HDRS ENVID=E1\r\nRCPT TO:<c@d.test> NOTIFY=NEVER\r\n"
        ),
        "{out}"
    );
}

const PIPELINING: &[u8] = b"250-x\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
const CHUNKING: &[u8] = b"250-x\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 1000\r\n";

/// A client past EHLO with a server offering what `ehlo` says.
fn ready(ehlo: &[u8], now: Instant) -> Client {
    let mut c = Client::new(config(TlsPolicy::Never), false, now);
    feed(&mut c, now, b"220 x\r\n");
    let (events, _) = feed(&mut c, now, ehlo);
    assert_eq!(events.last(), Some(&ClientEvent::Ready));
    c
}

/// One message to `c@d.test`: `body` whole, or streamed when `streamed`.
fn one_message(body: &[u8], streamed: bool) -> Outgoing {
    use crate::address::Mailbox;
    Outgoing {
        from: ReversePath::Path(Mailbox::parse("a@b.test").unwrap()),
        params: MailParams::default(),
        recipients: vec![(
            ForwardPath::Path(Mailbox::parse("c@d.test").unwrap()),
            RcptParams::default(),
        )],
        body: if streamed { Vec::new() } else { body.to_vec() },
        streamed: streamed.then_some(body.len() as u64),
    }
}

/// Sends `body` (whole when `pieces` is `None`, else streamed in those pieces)
/// through a pipelined session whose server accepts everything; returns
/// everything written after EHLO. Checks the final reply arrives.
fn transcript(ehlo: &[u8], body: &[u8], pieces: Option<&[&[u8]]>) -> Vec<u8> {
    let now = Instant::now();
    let mut c = ready(ehlo, now);
    c.send_message(now, one_message(body, pieces.is_some())).unwrap();
    let mut wire = Vec::new();
    c.poll_transmit(&mut wire);
    // MAIL and RCPT (and DATA unless chunking).
    let replies: &[u8] = if ehlo == CHUNKING {
        b"250 ok\r\n250 ok\r\n"
    } else {
        b"250 ok\r\n250 ok\r\n354 go\r\n"
    };
    let (events, out) = feed(&mut c, now, replies);
    wire.extend_from_slice(out.as_bytes());
    assert_eq!(
        events.contains(&ClientEvent::SendContent),
        pieces.is_some(),
        "{events:?}"
    );
    if let Some(pieces) = pieces {
        assert!(c.is_sending_content());
        for piece in pieces {
            c.send_content(now, piece);
            c.poll_transmit(&mut wire);
        }
        c.end_content(now);
        c.poll_transmit(&mut wire);
        assert!(!c.is_sending_content());
    }
    let (events, out) = feed(&mut c, now, b"250 queued\r\n");
    assert!(out.is_empty());
    match &events[..] {
        [ClientEvent::MessageDone(o), ClientEvent::Ready] => assert_eq!(o.data.as_ref().map(|r| r.code), Some(250)),
        other => panic!("{other:?}"),
    }
    wire
}

#[test]
fn streamed_data_writes_what_a_whole_body_writes() {
    let body: &[u8] = b".first\r\nline\r\n.\r\n..x\r\n\r\nno final line end.";
    let whole = transcript(PIPELINING, body, None);
    let text = String::from_utf8(whole.clone()).unwrap();
    let mail = format!("MAIL FROM:<a@b.test> SIZE={}\r\n", body.len());
    assert!(text.starts_with(&mail), "{text}");
    assert!(
        text.ends_with("\r\n..first\r\nline\r\n..\r\n...x\r\n\r\nno final line end.\r\n.\r\n"),
        "{text}"
    );
    for split in 0..=body.len() {
        let (a, b) = body.split_at(split);
        assert_eq!(transcript(PIPELINING, body, Some(&[a, b])), whole, "split at {split}");
    }
    let octets: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(transcript(PIPELINING, body, Some(&octets)), whole);
}

#[test]
fn streamed_bdat_writes_the_chunk_header_then_the_pieces() {
    let body: &[u8] = b"Subject: t\r\n\r\n.\r\n.x\r\n";
    let whole = transcript(CHUNKING, body, None);
    let streamed = transcript(CHUNKING, body, Some(&[&body[..5], b"", &body[5..15], &body[15..]]));
    assert_eq!(streamed, whole);
    let text = String::from_utf8(streamed).unwrap();
    let n = body.len();
    assert_eq!(
        text,
        format!(
            "MAIL FROM:<a@b.test> SIZE={n}\r\nRCPT TO:<c@d.test>\r\nBDAT {n} LAST\r\nSubject: t\r\n\r\n.\r\n.x\r\n"
        )
    );
}

/// A streamed message of `declared` octets, at the content state.
fn at_content(ehlo: &[u8], declared: u64, now: Instant) -> (Client, String) {
    let mut c = ready(ehlo, now);
    let mut msg = one_message(b"", true);
    msg.streamed = Some(declared);
    c.send_message(now, msg).unwrap();
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    let replies: &[u8] = if ehlo == CHUNKING {
        b"250 ok\r\n250 ok\r\n"
    } else {
        b"250 ok\r\n250 ok\r\n354 go\r\n"
    };
    let (events, out) = feed(&mut c, now, replies);
    assert_eq!(events.last(), Some(&ClientEvent::SendContent));
    (c, out)
}

/// Checks the session failed on a size mismatch: the message is reported
/// with a synthetic 4yz, then the failure, then Closed; nothing awaited.
fn assert_size_failure(c: &mut Client, declared: u64, given: u64) {
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    match &events[..] {
        [ClientEvent::MessageDone(o), ClientEvent::Failed(e), ClientEvent::Closed] => {
            assert_eq!(o.data.as_ref().map(|r| r.code), Some(451));
            assert_eq!(*e, ClientError::ContentSize { declared, given });
            assert!(e.is_transient());
        }
        other => panic!("{other:?}"),
    }
    assert!(c.is_closed() && !c.is_sending_content());
    assert_eq!(c.poll_timeout(), None, "no final reply is awaited");
    assert_eq!(c.handle_input(Instant::now(), b"250 ok\r\n"), 0);
}

#[test]
fn bdat_size_mismatch_fails_the_session_without_ending_the_content() {
    let now = Instant::now();
    // Too short: the end is refused.
    let (mut c, out) = at_content(CHUNKING, 10, now);
    assert_eq!(out, "BDAT 10 LAST\r\n");
    c.send_content(now, b"12345");
    c.end_content(now);
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(out, b"12345");
    assert_size_failure(&mut c, 10, 5);
    // Too long: the piece that goes past the size is not sent.
    let (mut c, _) = at_content(CHUNKING, 10, now);
    c.send_content(now, b"12345");
    c.send_content(now, b"678901");
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(out, b"12345");
    assert_size_failure(&mut c, 10, 11);
    // Calls after the failure do nothing.
    c.send_content(now, b"x");
    c.end_content(now);
    assert_eq!(c.poll_transmit(&mut out), 0);
    assert_eq!(c.poll_event(), None);
}

#[test]
fn data_size_mismatch_never_sends_the_terminator() {
    let now = Instant::now();
    let (mut c, out) = at_content(PIPELINING, 10, now);
    assert!(out.is_empty());
    c.send_content(now, b"cut\r\n");
    c.end_content(now);
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(out, b"cut\r\n");
    assert_size_failure(&mut c, 10, 5);
}

#[test]
fn content_calls_outside_the_content_state_do_nothing() {
    let now = Instant::now();
    let mut c = ready(PIPELINING, now);
    c.send_content(now, b"stray\r\n");
    c.end_content(now);
    let mut out = Vec::new();
    assert_eq!(c.poll_transmit(&mut out), 0);
    assert_eq!(c.poll_event(), None);
    assert!(c.is_idle());
}

#[test]
fn each_piece_must_come_within_the_data_block_timeout() {
    let now = Instant::now();
    let block = ClientConfig::default().timeouts.data_block;
    assert_eq!(block, std::time::Duration::from_secs(180));
    let (mut c, _) = at_content(PIPELINING, 4, now);
    assert_eq!(c.poll_timeout(), Some(now + block));
    let later = now + block / 2;
    c.send_content(later, b"ab");
    assert_eq!(c.poll_timeout(), Some(later + block), "each piece re-arms");
    c.handle_timeout(now + block);
    assert!(!c.is_closed());
    c.handle_timeout(later + block);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        events.contains(&ClientEvent::Failed(ClientError::Timeout { stage: Stage::Content })),
        "{events:?}"
    );
    assert!(c.is_closed());
}
