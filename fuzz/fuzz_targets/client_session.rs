//! The client side of a session on whatever a server says: the fuzzer's
//! bytes are the server's replies, fed in two parts split where the first
//! byte says. The client sends one message with two recipients whenever it is
//! ready, answers STARTTLS as if the handshake worked, and must never panic;
//! a message accepted after its content has one reply per recipient, and the
//! client writes only CRLF-terminated lines. (Found by this target: a
//! session that breaks on a malformed RCPT reply reports fewer RCPT replies;
//! `MessageOutcome::recipient_reply` gives the missing ones the synthetic
//! 4yz, so they are deferred. Kept as a seed.)
#![no_main]
use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use proto::address::{ForwardPath, Mailbox, ReversePath};
use proto::client::{Client, ClientConfig, ClientEvent, Outgoing};
use proto::params::{MailParams, RcptParams};

fn message() -> Option<Outgoing> {
    let rcpt = |s: &str| Some((ForwardPath::Path(Mailbox::parse(s).ok()?), RcptParams::default()));
    Some(Outgoing {
        from: ReversePath::Path(Mailbox::parse("dpi@ch.test").ok()?),
        params: MailParams::default(),
        recipients: vec![rcpt("a@clinique.test")?, rcpt("b@clinique.test")?],
        body: b"Subject: x\r\n\r\n.line\r\nbody\r\n".to_vec(),
        streamed: None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector) * input.len() / 255;
    let now = Instant::now();
    let mut client = Client::new(Arc::new(ClientConfig::default()), false, now);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    let mut sent = 0;
    for part in [&input[..split], &input[split..]] {
        pending.extend_from_slice(part);
        loop {
            let used = client.handle_input(now, &pending);
            pending.drain(..used);
            let mut progressed = used > 0;
            while let Some(ev) = client.poll_event() {
                progressed = true;
                match ev {
                    ClientEvent::StartTls => client.tls_established(now),
                    ClientEvent::Ready if sent < 3 => {
                        if let Some(m) = message() {
                            sent += 1;
                            let _ = client.send_message(now, m);
                        }
                    }
                    ClientEvent::MessageDone(outcome) => {
                        // Fewer RCPT replies only when the session broke
                        // before they all came; a 2yz after the content
                        // means every recipient was answered.
                        assert!(outcome.rcpts.len() <= 2, "{outcome:?}");
                        if outcome.data.as_ref().is_some_and(|d| d.is_success()) {
                            assert_eq!(outcome.rcpts.len(), 2, "{outcome:?}");
                        }
                    }
                    _ => {}
                }
            }
            client.poll_transmit(&mut out);
            if !progressed || client.is_closed() {
                break;
            }
        }
    }
    client.quit(now);
    client.poll_transmit(&mut out);
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "a partial line was written");
});
