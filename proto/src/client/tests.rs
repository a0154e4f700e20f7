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
