use super::*;
use chrono::TimeZone;
use mail_parser::{MessageParser, MimeHeaders};
use rand::rngs::StdRng;
use rand::SeedableRng;

const ORIGINAL: &[u8] = b"From: dr.martin@chu.test\r\nTo: lab@clinique.test\r\nSubject: CR\r\nX-MSS-INS: 123\r\n\r\nBody line\r\n--not a boundary\r\n";

fn mbox(s: &str) -> Mailbox {
    Mailbox::parse(s).unwrap()
}

fn failed(addr: &str, notify: Option<Notify>) -> RecipientReport {
    RecipientReport {
        recipient: ForwardPath::Path(mbox(addr)),
        params: RcptParams {
            notify,
            orcpt: Some(Orcpt {
                addr_type: "rfc822".into(),
                address: format!("orig-{addr}"),
            }),
        },
        action: Action::Failed,
        status: EnhancedCode::new(5, 1, 1),
        remote_mta: Some("mx.clinique.test".into()),
        diagnostic: Some(Reply::new(550, EnhancedCode::new(5, 1, 1), "no such user")),
        last_attempt: Some(Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 5).unwrap()),
    }
}

fn build_one(sender: &ReversePath, params: &MailParams, rcpts: &[RecipientReport]) -> Option<Dsn> {
    let report = Report {
        reporting_mta: "relay.chu.test",
        sender,
        params,
        arrival: Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).unwrap(),
        recipients: rcpts,
        original: ORIGINAL,
    };
    build(
        &report,
        Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 6).unwrap(),
        &mut StdRng::seed_from_u64(3),
    )
}

fn sender() -> ReversePath {
    ReversePath::Path(mbox("dr.martin@chu.test"))
}

/// The raw bytes of each part of type `ctype/subtype`.
fn part_body<'a>(msg: &'a mail_parser::Message<'a>, ctype: &str, subtype: &str) -> &'a [u8] {
    let part = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == ctype && c.subtype() == Some(subtype))
        })
        .unwrap_or_else(|| panic!("no {ctype}/{subtype} part"));
    &msg.raw_message()[part.raw_body_offset() as usize..part.raw_end_offset() as usize]
}

#[test]
fn failure_report_with_full_message() {
    let params = MailParams {
        ret: Some(Ret::Full),
        envid: Some("ENV-42".into()),
        ..MailParams::default()
    };
    let dsn = build_one(&sender(), &params, &[failed("lab@clinique.test", None)]).unwrap();
    assert_eq!(dsn.to, mbox("dr.martin@chu.test"));
    assert!(
        !dsn.message.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "CRLF only"
    );

    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    assert_eq!(
        msg.from().unwrap().first().unwrap().address(),
        Some("MAILER-DAEMON@relay.chu.test")
    );
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    let ct = msg.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

    let status = String::from_utf8(part_body(&msg, "message", "delivery-status").to_vec()).unwrap();
    for field in [
        "Reporting-MTA: dns; relay.chu.test\r\n",
        "Original-Envelope-Id: ENV-42\r\n",
        "Arrival-Date: Sat, 1 Mar 2025 10:00:00 +0000\r\n",
        "\r\n\r\nOriginal-Recipient: rfc822; orig-lab@clinique.test\r\n",
        "Final-Recipient: rfc822; lab@clinique.test\r\n",
        "Action: failed\r\n",
        "Status: 5.1.1\r\n",
        "Remote-MTA: dns; mx.clinique.test\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
        "Last-Attempt-Date: Sat, 1 Mar 2025 10:00:05 +0000\r\n",
    ] {
        assert!(status.contains(field), "missing {field:?} in {status}");
    }
    let human = part_body(&msg, "text", "plain");
    assert!(String::from_utf8_lossy(human).contains("<lab@clinique.test>: failed: 550 5.1.1 no such user"));
    // RET=FULL: the original, byte for byte.
    assert_eq!(part_body(&msg, "message", "rfc822"), ORIGINAL);
}

#[test]
fn headers_only_by_default() {
    let dsn = build_one(&sender(), &MailParams::default(), &[failed("lab@clinique.test", None)]).unwrap();
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    let headers = part_body(&msg, "text", "rfc822-headers");
    assert_eq!(
        headers,
        b"From: dr.martin@chu.test\r\nTo: lab@clinique.test\r\nSubject: CR\r\nX-MSS-INS: 123\r\n"
    );
    assert!(!String::from_utf8_lossy(&dsn.message).contains("Body line"));
}

#[test]
fn never_bounce_a_bounce() {
    let dsn = build_one(
        &ReversePath::Null,
        &MailParams::default(),
        &[failed("lab@clinique.test", None)],
    );
    assert!(dsn.is_none());
}

#[test]
fn notify_filters_recipients() {
    let params = MailParams::default();
    let never = failed("a@clinique.test", Some(Notify::NEVER));
    assert!(build_one(&sender(), &params, std::slice::from_ref(&never)).is_none());
    let success_only = Notify {
        success: true,
        failure: false,
        delay: false,
    };
    assert!(build_one(&sender(), &params, &[failed("a@clinique.test", Some(success_only))]).is_none());
    let delivered = RecipientReport {
        action: Action::Delivered,
        status: EnhancedCode::new(2, 0, 0),
        diagnostic: Some(Reply::new(250, EnhancedCode::new(2, 0, 0), "ok")),
        ..failed("b@clinique.test", Some(success_only))
    };
    let dsn = build_one(&sender(), &params, &[never, delivered]).unwrap();
    let text = String::from_utf8(dsn.message).unwrap();
    assert!(text.contains("Subject: Successful Mail Delivery Report\r\n"));
    assert!(text.contains("Final-Recipient: rfc822; b@clinique.test\r\nAction: delivered\r\n"));
    assert!(!text.contains("a@clinique.test"));
}

#[test]
fn peer_chosen_values_cannot_inject_fields() {
    let params = MailParams {
        envid: Some("x\r\nBcc: victim@evil.test".into()),
        ..MailParams::default()
    };
    let mut r = failed("lab@clinique.test", None);
    r.diagnostic = Some(Reply::new(550, EnhancedCode::new(5, 0, 0), "bad\r\nAction: delivered"));
    let dsn = build_one(&sender(), &params, &[r]).unwrap();
    let text = String::from_utf8(dsn.message).unwrap();
    assert!(!text.contains("\r\nBcc:"));
    assert!(!text.contains("\r\nAction: delivered"));
    assert!(text.contains("Original-Envelope-Id: x  Bcc: victim@evil.test\r\n"));
}

#[test]
fn eight_bit_original_is_labelled_and_dsn_envelope_is_null() {
    let original = "Subject: Compte rendu\r\n\r\nRésultat\r\n".as_bytes();
    let params = MailParams {
        ret: Some(Ret::Full),
        ..MailParams::default()
    };
    let rcpts = [failed("lab@clinique.test", None)];
    let report = Report {
        reporting_mta: "relay.chu.test",
        sender: &sender(),
        params: &params,
        arrival: Utc::now(),
        recipients: &rcpts,
        original,
    };
    let dsn = build(&report, Utc::now(), &mut StdRng::seed_from_u64(9)).unwrap();
    assert!(memchr::memmem::find(&dsn.message, b"Content-Transfer-Encoding: 8bit\r\n").is_some());
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    assert_eq!(part_body(&msg, "message", "rfc822"), original);
    let out = dsn.into_outgoing();
    assert_eq!(out.from, ReversePath::Null);
    assert_eq!(out.recipients[0].1.notify, Some(Notify::NEVER));
}

#[test]
fn status_from_reply_class_when_no_enhanced_code() {
    assert_eq!(status_of(&Reply::plain(451, "later")), EnhancedCode::new(4, 0, 0));
    assert_eq!(
        status_of(&Reply::new(550, EnhancedCode::new(5, 7, 1), "no")),
        EnhancedCode::new(5, 7, 1)
    );
}
