use proptest::prelude::*;

use super::*;
use crate::address::Mailbox;
use crate::params::{Body, Notify, Orcpt, Ret};

fn mb(s: &str) -> Mailbox {
    Mailbox::parse(s).unwrap()
}

#[test]
fn parses_rfc5321_examples() {
    // RFC 5321 Appendix D.1 and friends.
    let cases: Vec<(&[u8], Command)> = vec![
        (b"EHLO bar.com", Command::Ehlo("bar.com".into())),
        (b"helo [192.0.2.1]", Command::Helo("[192.0.2.1]".into())),
        (
            b"MAIL FROM:<Smith@bar.com>",
            Command::Mail {
                from: ReversePath::Path(mb("Smith@bar.com")),
                params: MailParams::default(),
            },
        ),
        (
            b"mail from: <>",
            Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default(),
            },
        ),
        (
            b"RCPT TO:<Jones@foo.com>",
            Command::Rcpt {
                to: ForwardPath::Path(mb("Jones@foo.com")),
                params: RcptParams::default(),
            },
        ),
        (
            b"RCPT TO:<postmaster>",
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: RcptParams::default(),
            },
        ),
        (b"DATA", Command::Data),
        (b"data", Command::Data),
        (b"QUIT", Command::Quit),
        (b"RSET", Command::Rset),
        (b"NOOP anything", Command::Noop),
        (b"VRFY Smith", Command::Vrfy("Smith".into())),
        (b"HELP", Command::Help(None)),
        (b"HELP MAIL", Command::Help(Some("MAIL".into()))),
        (b"STARTTLS", Command::StartTls),
        // RFC 3030 §4.
        (b"BDAT 86 LAST", Command::Bdat { size: 86, last: true }),
        (
            b"BDAT 1000",
            Command::Bdat {
                size: 1000,
                last: false,
            },
        ),
        (b"BDAT 0 last", Command::Bdat { size: 0, last: true }),
        // RFC 4954 §4.
        (
            b"AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=",
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("dGVzdAB0ZXN0ADEyMzQ=".into()),
            },
        ),
        (
            b"auth login",
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None,
            },
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(Command::parse(line), Ok(expected), "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn known_but_unimplemented_verbs_parse() {
    let not_impl = |verb, args: &str| Command::NotImplemented {
        verb,
        args: args.into(),
    };
    let cases: Vec<(&[u8], Command)> = vec![
        // RFC 5321 §3.5.2 (EXPN "Example-People" in §3.5.3's examples).
        (b"EXPN Example-People", Command::Expn("Example-People".into())),
        (b"expn  staff list ", Command::Expn("staff list".into())),
        (b"TURN", not_impl(Unimplemented::Turn, "")),
        (b"turn  ", not_impl(Unimplemented::Turn, "")),
        (b"ETRN @example.org", not_impl(Unimplemented::Etrn, "@example.org")),
        (
            b"ATRN a.example,b.example",
            not_impl(Unimplemented::Atrn, "a.example,b.example"),
        ),
        (
            b"SEND FROM:<a@b.test>",
            not_impl(Unimplemented::Send, "FROM:<a@b.test>"),
        ),
        (b"Soml FROM:<>", not_impl(Unimplemented::Soml, "FROM:<>")),
        (
            b"SAML FROM:<a@b.test>",
            not_impl(Unimplemented::Saml, "FROM:<a@b.test>"),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line).as_ref(),
            Ok(&expected),
            "{}",
            String::from_utf8_lossy(line)
        );
        // Each encodes to a line that parses back to it.
        let wire = expected.to_bytes();
        assert_eq!(Command::parse(&wire[..wire.len() - 2]), Ok(expected.clone()));
    }
    assert_eq!(Command::Expn("x".into()).verb(), "EXPN");
    assert_eq!(Command::Expn("x".into()).to_bytes(), b"EXPN x\r\n");
    assert_eq!(not_impl(Unimplemented::Turn, "").to_bytes(), b"TURN\r\n");
    for v in Unimplemented::ALL {
        assert_eq!(Unimplemented::from_verb(v.verb()), Some(v));
        assert_eq!(Unimplemented::from_verb(&v.verb().to_ascii_lowercase()), Some(v));
        assert_eq!(not_impl(v, "a b").verb(), v.verb());
    }
    // Other verbs stay unknown (500), not unimplemented (502).
    for line in [&b"VERB"[..], b"XCLIENT ADDR=1.2.3.4", b"EXPNX a", b"TURNME"] {
        assert_eq!(Command::parse(line), Err(CommandError::UnknownCommand));
    }
}

#[test]
fn parses_rfc3461_dsn_parameters() {
    let c = Command::parse(b"MAIL FROM:<Alice@Example.ORG> RET=HDRS ENVID=QQ314159").unwrap();
    let Command::Mail { params, .. } = c else {
        panic!("not MAIL")
    };
    assert_eq!(params.ret, Some(Ret::Headers));
    assert_eq!(params.envid.as_deref(), Some("QQ314159"));
    let c = Command::parse(b"RCPT TO:<Bob@Example.COM> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@Example.COM").unwrap();
    let Command::Rcpt { params, .. } = c else {
        panic!("not RCPT")
    };
    assert_eq!(params.notify.map(|n| n.success), Some(true));
    assert_eq!(params.orcpt.map(|o| o.address), Some("Bob@Example.COM".to_string()));
}

#[test]
fn quoted_local_part_with_brackets_and_params() {
    let c = Command::parse(b"MAIL FROM:<\"a >b\"@x.y> SIZE=5").unwrap();
    let Command::Mail { from, params } = c else {
        panic!("not MAIL")
    };
    assert_eq!(from.mailbox().unwrap().local, "\"a >b\"");
    assert_eq!(params.size, Some(5));
}

#[test]
fn refusals_have_distinct_replies() {
    let cases: Vec<(&[u8], CommandError)> = vec![
        (b"FOO", CommandError::UnknownCommand),
        (b"", CommandError::UnknownCommand),
        (b"MAIL <a@b.c>", CommandError::Syntax { verb: "MAIL" }),
        (b"MAIL FROM:a@b.c", CommandError::BadAddress),
        (b"RCPT TO:<a@b.c>SIZE=1", CommandError::BadAddress),
        (b"RCPT TO:<>", CommandError::BadAddress),
        (
            b"RCPT TO:<a@b.c> SIZE=1",
            CommandError::BadParameter { name: "SIZE".into() },
        ),
        (b"DATA now", CommandError::Syntax { verb: "DATA" }),
        (b"BDAT", CommandError::Syntax { verb: "BDAT" }),
        (b"BDAT -1", CommandError::Syntax { verb: "BDAT" }),
        (b"BDAT 10 FIRST", CommandError::Syntax { verb: "BDAT" }),
        (b"BDAT 99999999999999999999", CommandError::Syntax { verb: "BDAT" }),
        (b"EHLO", CommandError::Syntax { verb: "EHLO" }),
        (b"EHLO a b", CommandError::Syntax { verb: "EHLO" }),
        (b"AUTH", CommandError::Syntax { verb: "AUTH" }),
        (b"AUTH PL@IN", CommandError::Syntax { verb: "AUTH" }),
        (b"EXPN", CommandError::Syntax { verb: "EXPN" }),
        (b"EXPN  ", CommandError::Syntax { verb: "EXPN" }),
        (b"TURN \x01", CommandError::BadCharacters),
        (b"MAIL FROM:<a@b.c>\r", CommandError::BareLineEnding),
        (b"NOOP\nRSET", CommandError::BareLineEnding),
        (b"NOOP \xff", CommandError::BadCharacters),
        (b"NOOP \x00", CommandError::BadCharacters),
    ];
    for (line, expected) in cases {
        assert_eq!(Command::parse(line), Err(expected), "{}", String::from_utf8_lossy(line));
    }
    // Every error kind maps to a distinct (code, enhanced code, text).
    let errors = [
        CommandError::UnknownCommand,
        CommandError::Syntax { verb: "MAIL" },
        CommandError::BadAddress,
        CommandError::BadParameter { name: "X".into() },
        CommandError::DuplicateParameter { name: "X".into() },
        CommandError::LineTooLong,
        CommandError::BareLineEnding,
        CommandError::BadCharacters,
    ];
    let replies: std::collections::HashSet<String> = errors.iter().map(|e| e.reply().to_string()).collect();
    assert_eq!(replies.len(), errors.len());
    for e in &errors {
        assert_eq!(e.reply().code / 100, 5, "{e}");
    }
}

fn arb_mailbox() -> impl Strategy<Value = Mailbox> {
    (
        prop_oneof![
            "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[a-zA-Z0-9_-]{1,8}){0,2}",
            "\"[a-z <>@.]{1,10}\"",
            "[a-zé]{1,6}",
        ],
        prop_oneof![
            "[a-z0-9]{1,10}(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){1,3}",
            Just("[192.0.2.7]".to_string())
        ],
    )
        .prop_map(|(l, d)| Mailbox::parse(&format!("{l}@{d}")).unwrap())
}

fn arb_xtext() -> impl Strategy<Value = String> {
    "[ -~é]{1,20}"
}

fn arb_command() -> impl Strategy<Value = Command> {
    let mail_params = (
        proptest::option::of(0u64..u64::MAX),
        proptest::option::of(prop_oneof![Just(Body::SevenBit), Just(Body::EightBitMime)]),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Headers)]),
        proptest::option::of(arb_xtext()),
        proptest::option::of(arb_xtext()),
    )
        .prop_map(|(size, body, smtputf8, ret, envid, auth)| MailParams {
            size,
            body,
            smtputf8,
            ret,
            envid,
            auth,
        });
    let rcpt_params = (
        proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>())),
        proptest::option::of(("rfc822|utf-8", arb_xtext())),
    )
        .prop_map(|(n, o)| RcptParams {
            notify: n.map(|(success, failure, delay)| Notify {
                success,
                failure,
                delay,
            }),
            orcpt: o.map(|(addr_type, address)| Orcpt { addr_type, address }),
        });
    prop_oneof![
        "[a-z0-9.-]{1,20}".prop_map(Command::Ehlo),
        "[a-z0-9.-]{1,20}".prop_map(Command::Helo),
        (proptest::option::of(arb_mailbox()), mail_params).prop_map(|(m, params)| Command::Mail {
            from: m.map_or(ReversePath::Null, ReversePath::Path),
            params
        }),
        (proptest::option::of(arb_mailbox()), rcpt_params).prop_map(|(m, params)| Command::Rcpt {
            to: m.map_or(ForwardPath::Postmaster, ForwardPath::Path),
            params
        }),
        Just(Command::Data),
        (any::<u64>(), any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
        Just(Command::Rset),
        Just(Command::Noop),
        Just(Command::Quit),
        Just(Command::StartTls),
        "[!-~]{1,20}".prop_map(Command::Vrfy),
        proptest::option::of("[!-~]{1,10}").prop_map(Command::Help),
        "[!-~]([ -~]{0,18}[!-~])?".prop_map(Command::Expn),
        (
            prop::sample::select(Unimplemented::ALL.to_vec()),
            prop_oneof![Just(String::new()), "[!-~]([ -~é]{0,18}[!-~])?"]
        )
            .prop_map(|(verb, args)| Command::NotImplemented { verb, args }),
        ("[A-Z0-9-]{1,10}", proptest::option::of("[A-Za-z0-9+/=]{1,30}"))
            .prop_map(|(mechanism, initial)| Command::Auth { mechanism, initial }),
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(c in arb_command()) {
        let bytes = c.to_bytes();
        prop_assert!(bytes.ends_with(b"\r\n"));
        prop_assert_eq!(Command::parse(&bytes[..bytes.len() - 2]), Ok(c));
    }

    #[test]
    fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Command::parse(&line);
    }
}
