use std::time::Duration;

use super::*;

mod content;

/// Drives a server with a fixed policy: rejects recipients at `reject.test`,
/// accepts password `secret`, stores every message as `Q1`, `Q2`…
struct Harness {
    server: Server,
    now: Instant,
    pending: Vec<u8>,
    messages: Vec<Vec<u8>>,
    events: Vec<String>,
    stored: usize,
    /// Every [`ServerEvent::Content`] piece, in order.
    pieces: Vec<Vec<u8>>,
    /// The pieces of the open transaction, as a streaming driver keeps them.
    streamed: Vec<u8>,
}

fn tls() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        hostname: "mx.test".into(),
        starttls: true,
        auth_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        ..ServerConfig::default()
    }
}

impl Harness {
    fn new(config: ServerConfig) -> Self {
        let now = Instant::now();
        let peer = PeerInfo {
            remote: "192.0.2.1:1234".into(),
            tls: None,
        };
        let mut h = Self {
            server: Server::new(Arc::new(config), peer, now),
            now,
            pending: Vec::new(),
            messages: Vec::new(),
            events: Vec::new(),
            stored: 0,
            pieces: Vec::new(),
            streamed: Vec::new(),
        };
        assert_eq!(h.take_output(), "220 mx.test ESMTP Estafette\r\n");
        h
    }

    fn take_output(&mut self) -> String {
        let mut buf = Vec::new();
        self.server.poll_transmit(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    /// Feeds bytes, answers every decision, returns everything written.
    fn feed(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        loop {
            let used = self.server.handle_input(self.now, &self.pending);
            self.pending.drain(..used);
            let answered = self.answer_events();
            if used == 0 && !answered {
                break;
            }
        }
        self.take_output()
    }

    fn answer_events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.server.poll_event() {
            any = true;
            match ev {
                ServerEvent::Mail(req) => {
                    self.events.push(format!("mail {}", req.from));
                    self.server.answer_mail(req, Verdict::Accept);
                }
                ServerEvent::Rcpt(req) => {
                    self.events.push(format!("rcpt {}", req.to));
                    let verdict = if req.to.mailbox().is_some_and(|m| m.domain == "reject.test") {
                        Verdict::Reject(Reply::new(550, EnhancedCode::new(5, 7, 1), "relay denied"))
                    } else {
                        Verdict::Accept
                    };
                    self.server.answer_rcpt(req, verdict);
                }
                ServerEvent::Auth(req) => {
                    self.events.push(format!("auth {} {}", req.mechanism, req.authcid));
                    let verdict = if req.password == "secret" {
                        Verdict::Accept
                    } else {
                        Verdict::Reject(Reply::new(535, EnhancedCode::new(5, 7, 8), "bad credentials"))
                    };
                    self.server.answer_auth(req, verdict);
                }
                ServerEvent::Content(piece) => {
                    self.events.push(format!("content {}", piece.len()));
                    self.streamed.extend_from_slice(&piece);
                    self.pieces.push(piece);
                }
                ServerEvent::Message(mut done) => {
                    self.stored += 1;
                    let id = format!("Q{}", self.stored);
                    let mut body = std::mem::take(&mut self.streamed);
                    body.append(&mut done.body);
                    assert_eq!(done.size, body.len() as u64, "DataDone::size counts pieces and body");
                    self.server.message_stored(done, Ok(&id));
                    self.messages.push(body);
                }
                ServerEvent::StartTls { discarded } => self.events.push(format!("starttls discarded={discarded}")),
                ServerEvent::Hello { name, extended } => self.events.push(format!("hello {name} {extended}")),
                ServerEvent::Reset => {
                    self.streamed.clear();
                    self.events.push("reset".into());
                }
                ServerEvent::Refused(r) => self.events.push(format!("refused {}", r.code)),
                ServerEvent::Closed(reason) => {
                    self.streamed.clear();
                    self.events.push(format!("closed {reason:?}"));
                }
            }
        }
        any
    }

    fn bodies(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.messages)
    }
}

const SESSION: &[u8] = b"EHLO client.test\r\nMAIL FROM:<a@src.test> SIZE=20\r\nRCPT TO:<b@dst.test>\r\nRCPT TO:<c@reject.test>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";

fn codes(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect()
}

#[test]
fn whole_transaction_pipelined_in_one_write() {
    let mut h = Harness::new(config());
    let out = h.feed(SESSION);
    assert_eq!(codes(&out), ["250", "250", "250", "550", "354", "250", "221"], "{out}");
    assert!(out.contains("250-PIPELINING\r\n"));
    assert!(out.contains("250-STARTTLS\r\n"));
    assert!(!out.contains("AUTH"), "AUTH must not be offered in clear: {out}");
    assert!(out.contains("250 2.0.0 queued as Q1\r\n"));
    assert_eq!(h.bodies(), vec![b"Subject: hi\r\n\r\n.dot\r\nbody\r\n".to_vec()]);
    assert!(h.server.is_closed());
    assert_eq!(h.events.last().map(String::as_str), Some("closed Quit"));
}

#[test]
fn same_replies_at_every_split_point() {
    let mut whole = Harness::new(config());
    let expected = whole.feed(SESSION);
    let expected_bodies = whole.bodies();
    for split in 0..=SESSION.len() {
        let mut h = Harness::new(config());
        let mut out = h.feed(&SESSION[..split]);
        out += &h.feed(&SESSION[split..]);
        assert_eq!(out, expected, "split at {split}");
        assert_eq!(h.bodies(), expected_bodies, "split at {split}");
    }
    let mut h = Harness::new(config());
    let out: String = SESSION.iter().map(|b| h.feed(&[*b])).collect();
    assert_eq!(out, expected, "byte by byte");
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut h = Harness::new(config());
    h.feed(b"EHLO c\r\n");
    let injected = b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@dst.test>\r\n";
    h.pending.extend_from_slice(injected);
    let used = h.server.handle_input(h.now, &h.pending);
    assert_eq!(used, injected.len(), "everything after STARTTLS is consumed");
    h.pending.clear();
    h.answer_events();
    assert_eq!(h.take_output(), "220 2.0.0 ready to start TLS\r\n");
    let expected = format!("starttls discarded={}", injected.len() - b"STARTTLS\r\n".len());
    assert!(h.events.contains(&expected), "{:?}", h.events);
    assert!(!h.events.iter().any(|e| e.starts_with("mail")));
    // Input during the handshake is not consumed.
    assert_eq!(h.server.handle_input(h.now, b"NOOP\r\n"), 0);
    h.server.tls_established(h.now, tls());
    // The session starts over: EHLO is needed again, and STARTTLS is gone.
    let out = h.feed(b"MAIL FROM:<a@b.test>\r\nEHLO c\r\n");
    assert!(out.starts_with("503 5.5.1 send EHLO or HELO first\r\n"), "{out}");
    assert!(!out.contains("STARTTLS"));
    assert!(out.contains("250 AUTH PLAIN LOGIN\r\n"), "{out}");
    assert_eq!(h.feed(b"STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n");
}

#[test]
fn auth_requires_tls_and_reports_credentials() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.feed(b"EHLO c\r\nAUTH PLAIN AGEAc2VjcmV0\r\n").lines().last(),
        Some("538 5.7.11 encryption required for AUTH")
    );
    h.feed(b"STARTTLS\r\n");
    h.server.tls_established(h.now, tls());
    h.feed(b"EHLO c\r\n");
    // PLAIN with initial response: "\0user\0wrong" then "\0a\0secret".
    assert_eq!(
        h.feed(b"AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n"),
        "535 5.7.8 bad credentials\r\n"
    );
    assert_eq!(h.feed(b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.feed(b"AGEAc2VjcmV0\r\n"), "235 2.7.0 authentication successful\r\n");
    assert_eq!(h.server.authenticated(), Some("a"));
    assert_eq!(
        h.feed(b"AUTH PLAIN AGEAc2VjcmV0\r\n"),
        "503 5.5.1 already authenticated\r\n"
    );
    assert!(h.events.contains(&"auth PLAIN user".to_string()));
}

#[test]
fn auth_login_exchange_and_cancel() {
    let mut cfg = config();
    cfg.require_auth = true;
    let mut h = Harness::new(cfg);
    h.feed(b"EHLO c\r\nSTARTTLS\r\n");
    h.server.tls_established(h.now, tls());
    h.feed(b"EHLO c\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b.test>\r\n"),
        "530 5.7.0 authentication required\r\n"
    );
    assert_eq!(h.feed(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.feed(b"*\r\n"), "501 5.0.0 authentication cancelled\r\n");
    assert_eq!(h.feed(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.feed(b"!!!\r\n"), "501 5.5.2 invalid base64 in AUTH response\r\n");
    assert_eq!(
        h.feed(b"AUTH CRAM-MD5\r\n"),
        "504 5.5.4 unrecognised authentication mechanism\r\n"
    );
    // "dXNlcg==" = user, "c2VjcmV0" = secret
    let out = h.feed(b"AUTH LOGIN dXNlcg==\r\nc2VjcmV0\r\nMAIL FROM:<a@b.test>\r\n");
    assert_eq!(
        out,
        "334 UGFzc3dvcmQ6\r\n235 2.7.0 authentication successful\r\n250 2.1.0 sender OK\r\n"
    );
}

#[test]
fn too_many_auth_failures_close() {
    let mut h = Harness::new(config());
    h.feed(b"EHLO c\r\nSTARTTLS\r\n");
    h.server.tls_established(h.now, tls());
    h.feed(b"EHLO c\r\n");
    let bad = b"AUTH PLAIN AHUAeA==\r\n";
    h.feed(bad);
    h.feed(bad);
    let out = h.feed(bad);
    assert!(
        out.ends_with("421 4.7.0 too many authentication failures, closing connection\r\n"),
        "{out}"
    );
    assert!(h.server.is_closed());
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new(config());
    let out = h.feed(b"MAIL FROM:<a@b.test>\r\nHELO c\r\nRCPT TO:<b@c.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\nRSET\r\nBDAT 3 LAST\r\nabcNOOP\r\n");
    let expected = [
        "503 5.5.1 send EHLO or HELO first",
        "250 mx.test",
        "503 5.5.1 need MAIL before RCPT",
        "503 5.5.1 need MAIL before DATA",
        "250 2.1.0 sender OK",
        "503 5.5.1 nested MAIL command",
        "554 5.5.1 no valid recipients",
        "250 2.0.0 reset OK",
        "503 5.5.1 need MAIL before BDAT",
        "250 2.0.0 OK",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn policy_limits() {
    let mut cfg = config();
    cfg.max_recipients = 2;
    cfg.data.max_message_size = 100;
    let mut h = Harness::new(cfg);
    h.feed(b"EHLO c\r\n");
    assert_eq!(
        h.feed(b"MAIL FROM:<a@b.test> SIZE=101\r\n"),
        "552 5.3.4 declared size exceeds the 100-octet limit\r\n"
    );
    assert_eq!(
        h.feed("MAIL FROM:<é@b.test>\r\n".as_bytes()),
        "553 5.6.7 non-ASCII address requires SMTPUTF8\r\n"
    );
    let out =
        h.feed(b"MAIL FROM:<a@b.test> SIZE=100\r\nRCPT TO:<1@d.test>\r\nRCPT TO:<2@d.test>\r\nRCPT TO:<3@d.test>\r\n");
    assert!(
        out.ends_with("250 2.1.5 recipient OK\r\n452 4.5.3 too many recipients\r\n"),
        "{out}"
    );
    // Content over the limit: refused after the terminator, session goes on.
    let mut big = b"DATA\r\n".to_vec();
    big.extend(std::iter::repeat_n(b"0123456789\r\n".as_slice(), 20).flatten());
    big.extend_from_slice(b".\r\nNOOP\r\n");
    let out = h.feed(&big);
    assert!(out.starts_with("354 "), "{out}");
    assert!(out.contains("552 5.3.4"), "{out}");
    assert!(out.ends_with("250 2.0.0 OK\r\n"), "{out}");
    assert_eq!(h.stored, 0);
    assert!(h.server.recipients().is_empty(), "transaction was reset");
}

#[test]
fn long_and_malformed_lines() {
    let mut cfg = config();
    cfg.max_command_line = 64;
    let mut h = Harness::new(cfg);
    let mut line = vec![b'N'; 200];
    line.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(h.feed(&line), "500 5.5.2 command line too long\r\n250 2.0.0 OK\r\n");
    assert_eq!(h.feed(b"NOOP\n"), "500 5.5.2 bare CR or LF in command line\r\n");
    assert_eq!(h.feed(b"FOO\r\n"), "500 5.5.2 command unrecognised\r\n");
    assert_eq!(h.feed(b"NO\rOP\r\n"), "500 5.5.2 bare CR or LF in command line\r\n");
}

#[test]
fn too_many_errors_close_the_session() {
    let mut h = Harness::new(config());
    let out = h.feed(&b"XXXX\r\n".repeat(20));
    assert_eq!(out.lines().count(), 11, "{out}");
    assert!(out.ends_with("421 4.7.0 too many errors, closing connection\r\n"));
    assert!(h.server.is_closed());
    assert_eq!(h.server.handle_input(h.now, b"NOOP\r\n"), 0);
}

#[test]
fn bare_lf_in_data_closes_without_reading_further() {
    for smuggle in [
        &b"a\n.\nMAIL FROM:<x@y.test>\r\n"[..],
        b"a\r\n.\nRSET\r\n",
        b"a\r.\r\nNOOP\r\n",
    ] {
        let mut h = Harness::new(config());
        h.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nDATA\r\n");
        let out = h.feed(smuggle);
        assert!(out.starts_with("554 5.5.2 "), "{out}");
        assert!(h.server.is_closed());
        assert_eq!(h.stored, 0);
        assert!(!h.events.iter().any(|e| e == "mail <x@y.test>"));
    }
}

#[test]
fn data_line_limit_does_not_count_the_transparency_dot() {
    // A 998-octet text line starting with a dot, as Postfix sends it: 1,001
    // octets on the wire with its CRLF (RFC 5321 §4.5.3.1.6).
    let mut text = vec![b'.'];
    text.resize(998, b'x');
    let mut wire = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nDATA\r\n.".to_vec();
    wire.extend_from_slice(&text);
    wire.extend_from_slice(b"\r\n.\r\n");
    let mut h = Harness::new(config());
    let out = h.feed(&wire);
    assert!(out.ends_with("250 2.0.0 queued as Q1\r\n"), "{out}");
    let mut body = text.clone();
    body.extend_from_slice(b"\r\n");
    assert_eq!(h.bodies(), vec![body]);
    // One more octet of text is over the limit.
    let mut wire = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nDATA\r\n..".to_vec();
    wire.extend_from_slice(&text);
    wire.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let out = h.feed(&wire);
    assert!(
        out.ends_with("500 5.5.2 line too long in message data (limit 1000 octets including CRLF)\r\n250 2.0.0 OK\r\n"),
        "{out}"
    );
    assert_eq!(h.stored, 1);
    // BDAT carries the text unstuffed: the same line is 1,000 octets.
    let mut wire = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nBDAT 1000 LAST\r\n".to_vec();
    wire.extend_from_slice(&text);
    wire.extend_from_slice(b"\r\n");
    let out = h.feed(&wire);
    assert!(out.ends_with("250 2.0.0 queued as Q2\r\n"), "{out}");
}

#[test]
fn bdat_chunks_and_errors() {
    let mut h = Harness::new(config());
    let out = h.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nBDAT 7\r\nHello\r\nBDAT 0 LAST\r\n");
    assert!(
        out.ends_with("250 2.0.0 7 octets received\r\n250 2.0.0 queued as Q1\r\n"),
        "{out}"
    );
    assert_eq!(h.bodies(), vec![b"Hello\r\n".to_vec()]);
    // Chunk boundaries may split CRLF; DATA after BDAT is refused.
    let out = h.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nBDAT 2\r\na\rDATA\r\nBDAT 2 LAST\r\n\nb");
    assert!(out.contains("503 5.5.1 DATA not allowed after BDAT"), "{out}");
    assert!(out.ends_with("250 2.0.0 queued as Q2\r\n"), "{out}");
    assert_eq!(h.bodies(), vec![b"a\r\nb".to_vec()]);
    // A bare LF inside a chunk closes the session.
    let out = h.feed(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nBDAT 4 LAST\r\na\nbc");
    assert!(
        out.ends_with("554 5.5.2 bare LF in message content refused (RFC 5321 2.3.8)\r\n") || out.contains("554 5.5.2"),
        "{out}"
    );
    assert!(h.server.is_closed());
}

#[test]
fn bdat_over_size_refused_at_the_chunk_that_overflows() {
    let mut cfg = config();
    cfg.data.max_message_size = 10;
    let mut h = Harness::new(cfg);
    let out = h.feed(
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nBDAT 12\r\n0123456789\r\nBDAT 2 LAST\r\nxyNOOP\r\n",
    );
    let tail: Vec<&str> = out.lines().rev().take(3).collect();
    assert!(tail[2].starts_with("552 5.3.4 "), "{out}");
    assert_eq!(tail[1], "503 5.5.1 need MAIL before BDAT", "{out}");
    assert_eq!(tail[0], "250 2.0.0 OK", "{out}");
    assert!(!out.contains("octets received"), "{out}");
    assert_eq!(h.stored, 0);
    assert!(h.server.recipients().is_empty(), "transaction was reset");
}

#[test]
fn timeouts() {
    let mut h = Harness::new(config());
    let deadline = h.server.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(300));
    h.server.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!h.server.is_closed());
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nDATA\r\npartial");
    let data_deadline = h.server.poll_timeout().unwrap();
    assert_eq!(data_deadline, h.now + Duration::from_secs(180));
    h.server.handle_timeout(data_deadline);
    assert_eq!(
        h.take_output(),
        "421 4.4.2 mx.test timeout waiting for input, closing connection\r\n"
    );
    assert!(h.server.is_closed());
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn require_tls_refuses_mail_in_clear() {
    let mut cfg = config();
    cfg.require_tls = true;
    let mut h = Harness::new(cfg);
    assert_eq!(
        h.feed(b"HELO c\r\nMAIL FROM:<a@b.test>\r\n").lines().last(),
        Some("530 5.7.0 must issue a STARTTLS command first")
    );
}

#[test]
fn misc_commands() {
    let mut h = Harness::new(config());
    let out = h.feed(b"VRFY root\r\nHELP\r\nNOOP\r\nRSET\r\n");
    assert!(out.starts_with("252 2.5.0 "));
    assert!(out.contains("214 2.0.0 see RFC 5321\r\n"));
    // Known but not implemented: 502 5.5.1 (RFC 5321 §4.2.4), not 500; syntax
    // errors first; unknown verbs stay 500. The session goes on.
    let out = h.feed(b"EXPN staff\r\nEXPN\r\nTURN\r\nETRN example.org\r\nSEND FROM:<a@b.test>\r\nXYZZY\r\nNOOP\r\n");
    assert_eq!(
        out,
        "502 5.5.1 EXPN not implemented\r\n\
         501 5.5.4 syntax error in EXPN arguments\r\n\
         502 5.5.1 TURN not implemented\r\n\
         502 5.5.1 ETRN not implemented\r\n\
         502 5.5.1 SEND not implemented\r\n\
         500 5.5.2 command unrecognised\r\n\
         250 2.0.0 OK\r\n"
    );
    assert_eq!(h.events.iter().filter(|e| *e == "refused 502").count(), 4);
    // Inside a transaction, EXPN leaves it alone.
    let out = h.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@c.test>\r\nEXPN x\r\nDATA\r\nhi\r\n.\r\n");
    assert!(out.contains("\r\n502 5.5.1 EXPN not implemented\r\n354 "), "{out}");
    assert!(out.ends_with("250 2.0.0 queued as Q1\r\n"), "{out}");
    let mut cfg = config();
    cfg.starttls = false;
    let mut h = Harness::new(cfg);
    assert_eq!(
        h.feed(b"EHLO c\r\nSTARTTLS\r\n").lines().last(),
        Some("502 5.5.1 STARTTLS not offered")
    );
    h.server.close();
    assert_eq!(h.take_output(), "421 4.3.2 mx.test shutting down, try again later\r\n");
}

#[test]
fn refuse_constructor_closes_at_once() {
    let reply = Reply::new(421, EnhancedCode::new(4, 7, 0), "too many sessions");
    let mut s = Server::new_refused(
        Arc::new(config()),
        PeerInfo {
            remote: "x".into(),
            tls: None,
        },
        &reply,
    );
    let mut buf = Vec::new();
    s.poll_transmit(&mut buf);
    assert_eq!(buf, b"421 4.7.0 too many sessions\r\n");
    assert!(s.is_closed());
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "RcptRequest dropped without an answer")]
fn dropping_a_token_is_a_driver_bug() {
    let mut h = Harness::new(config());
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
    h.server.handle_input(h.now, b"RCPT TO:<b@c.test>\r\n");
    drop(h.server.poll_event());
}
