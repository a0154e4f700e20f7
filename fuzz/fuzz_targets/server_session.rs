//! A whole server session on raw bytes, fed in two parts split where the first
//! byte says: never panics, every decision is answered, and everything the
//! server writes is a sequence of well-formed replies.
//!
//! The first byte's low bit also turns streamed content on (`content_chunk`
//! 16): then the pieces plus the body must add up to `DataDone::size`, and a
//! transaction with pieces must end in `Message`, `Reset` or `Closed` before
//! another MAIL is asked about.
#![no_main]
use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use proto::reply::{EnhancedCode, Reply};
use proto::server::{PeerInfo, Server, ServerConfig, ServerEvent, TlsInfo, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector) * input.len() / 255;
    let config = ServerConfig {
        starttls: true,
        auth_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        max_errors: 1000,
        content_chunk: if selector & 1 == 1 { 16 } else { 0 },
        ..ServerConfig::default()
    };
    let now = Instant::now();
    let peer = PeerInfo {
        remote: "fuzz".into(),
        tls: None,
    };
    let mut server = Server::new(Arc::new(config), peer, now);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    // Octets of pieces of the open transaction; `None` when it has none.
    let mut streamed: Option<u64> = None;
    for part in [&input[..split], &input[split..]] {
        pending.extend_from_slice(part);
        loop {
            let used = server.handle_input(now, &pending);
            pending.drain(..used);
            let mut answered = false;
            while let Some(ev) = server.poll_event() {
                answered = true;
                let no = || Verdict::Reject(Reply::new(550, EnhancedCode::new(5, 7, 1), "no"));
                match ev {
                    ServerEvent::Content(piece) => {
                        assert!(selector & 1 == 1, "a piece with content_chunk 0");
                        assert!(piece.len() >= 16, "a piece shorter than content_chunk");
                        *streamed.get_or_insert(0) += piece.len() as u64;
                    }
                    ServerEvent::Reset | ServerEvent::Closed(_) => streamed = None,
                    ServerEvent::Mail(r) => {
                        assert!(streamed.is_none(), "pieces of a transaction never ended");
                        server.answer_mail(r, Verdict::Accept);
                    }
                    ServerEvent::Rcpt(r) => {
                        let v = if r.to.to_string().len() % 2 == 0 {
                            Verdict::Accept
                        } else {
                            no()
                        };
                        server.answer_rcpt(r, v);
                    }
                    ServerEvent::Auth(r) => server.answer_auth(r, no()),
                    ServerEvent::Message(d) => {
                        let total = streamed.take().unwrap_or(0) + d.body.len() as u64;
                        assert_eq!(d.size, total, "pieces + body != DataDone::size");
                        server.message_stored(d, Ok("X"));
                    }
                    ServerEvent::StartTls { .. } => {
                        let tls = TlsInfo {
                            version: "TLSv1.3".into(),
                            cipher: "x".into(),
                        };
                        server.tls_established(now, tls);
                    }
                    _ => {}
                }
            }
            if used == 0 && !answered {
                break;
            }
        }
        server.poll_transmit(&mut out);
    }
    let mut pos = 0;
    while pos < out.len() {
        match Reply::parse(&out[pos..]) {
            Ok(Some((_, used))) => pos += used,
            other => panic!(
                "server wrote a malformed reply: {other:?} in {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
});
