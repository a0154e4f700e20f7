//! End of DATA: add the trace headers, build the envelope, store durably.
//!
//! The body is changed in exactly two ways, both at the top: a `Received:`
//! header is prepended, and a `Message-ID:` is prepended only when the message
//! has none. Everything else (X-MSS-* headers, attachments) stays byte for byte.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::params::{Body, Notify, Ret};
use proto::server::{DataDone, Server};
use proto::{EnhancedCode, Reply};

use super::listener::ListenerCtx;
use super::session::Session;
use crate::ops::indicators;

/// Stores a complete message; `Ok(id)` only once it is on stable storage.
///
/// # Errors
/// The reply to send instead of 250: `451 4.3.0` on a spool timeout or
/// transient error, `452 4.3.1` when the disk is full.
pub(crate) async fn store(
    ctx: &ListenerCtx,
    server: &Server,
    session: &Session,
    done: &DataDone,
    body: Vec<u8>,
) -> Result<String, Reply> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let counters = {
        let rcpts: Vec<&str> = done
            .recipients
            .iter()
            .filter_map(|r| r.to.mailbox().map(|m| m.domain.as_str()))
            .collect();
        let from = done.from.mailbox().map(|m| m.domain.as_str()).unwrap_or_default();
        indicators::accepted(from, &rcpts, &body)
    };
    let body = with_trace_headers(ctx, server, session, done, body, now_ms);
    let envelope = envelope(
        server,
        session,
        done,
        now_ms,
        ctx.queue.first_due(now_ms),
        body.len() as u64,
    );
    let size = body.len() as u64;
    let stored = tokio::time::timeout(ctx.accept_timeout, ctx.spool.accept(envelope, body)).await;
    match stored {
        Ok(Ok(id)) => {
            ctx.queue.submit(id);
            indicators::add(&ctx.spool, &indicators::month_of(now_ms), &counters);
            ctx.queue.metrics().message_accepted(&ctx.listener.name, size);
            let event = storage::Event {
                at_ms: now_ms,
                kind: storage::EventKind::Accepted,
                detail: format!(
                    "from <{}> to {} recipient(s) peer {} listener {} tls {} identity {}",
                    done.from.mailbox().map(ToString::to_string).unwrap_or_default(),
                    done.recipients.len(),
                    session.peer,
                    ctx.listener.name,
                    server
                        .tls()
                        .map_or_else(|| "none".into(), |t| format!("{} {}", t.version, t.cipher)),
                    server
                        .authenticated()
                        .map(str::to_owned)
                        .or_else(|| session.client_cert.as_ref().map(ToString::to_string))
                        .unwrap_or_else(|| "-".into()),
                ),
            };
            if let Err(e) = ctx.spool.record_event(id, &event) {
                tracing::warn!(%id, error = %e, "trace event not recorded");
            }
            Ok(id.to_string())
        }
        Ok(Err(e)) => Err(spool_reply(&e)),
        Err(_) => Err(Reply::new(
            451,
            EnhancedCode::new(4, 3, 0),
            "spool did not confirm in time, try again later",
        )),
    }
}

/// The reply for a spool error (the storage error classes of DESIGN §3).
fn spool_reply(e: &storage::Error) -> Reply {
    match e {
        storage::Error::NoSpace { .. } => Reply::new(452, EnhancedCode::new(4, 3, 1), "insufficient system storage"),
        _ => Reply::new(
            451,
            EnhancedCode::new(4, 3, 0),
            "local error in processing, try again later",
        ),
    }
}

/// `first_due_ms`: see [`crate::queue::Queue::first_due`].
fn envelope(
    server: &Server,
    session: &Session,
    done: &DataDone,
    now_ms: u64,
    first_due_ms: u64,
    size: u64,
) -> storage::Envelope {
    let recipients = done
        .recipients
        .iter()
        .map(|r| storage::Recipient {
            address: r
                .to
                .mailbox()
                .map_or_else(|| "postmaster".to_string(), ToString::to_string),
            orcpt: r
                .params
                .orcpt
                .as_ref()
                .map(|o| format!("{};{}", o.addr_type, o.address)),
            notify: notify(r.params.notify),
            next_hop: r.to.mailbox().map(|m| m.domain_lowercase()).unwrap_or_default(),
            next_attempt_ms: first_due_ms,
            ..storage::Recipient::default()
        })
        .collect();
    storage::Envelope {
        sender: done.from.mailbox().map(ToString::to_string).unwrap_or_default(),
        recipients,
        dsn_ret: done.params.ret.map(|r| match r {
            Ret::Full => storage::DsnRet::Full,
            Ret::Headers => storage::DsnRet::Headers,
        }),
        envid: done.params.envid.clone(),
        client_identity: server
            .authenticated()
            .map(str::to_owned)
            .or_else(|| session.client_cert.as_ref().map(ToString::to_string)),
        peer_addr: session.peer.to_string(),
        helo: server.helo().unwrap_or_default().to_owned(),
        tls: server.tls().map(|t| format!("{} {}", t.version, t.cipher)),
        received_at_ms: now_ms,
        body_size: size,
        body_type: match done.params.body {
            Some(Body::EightBitMime) => storage::BodyType::EightBitMime,
            _ => storage::BodyType::SevenBit,
        },
        smtputf8: done.params.smtputf8,
    }
}

/// RFC 3461 NOTIFY as the spool's bitset; absent stays 0 ("not given").
fn notify(n: Option<Notify>) -> storage::Notify {
    let Some(n) = n else {
        return storage::Notify::default();
    };
    let mut bits = 0;
    for (on, bit) in [
        (n.success, storage::Notify::SUCCESS),
        (n.failure, storage::Notify::FAILURE),
        (n.delay, storage::Notify::DELAY),
    ] {
        if on {
            bits |= bit;
        }
    }
    storage::Notify(if bits == 0 { storage::Notify::NEVER } else { bits })
}

/// Prepends `Received:` (and `Message-ID:` when missing) to the body.
fn with_trace_headers(
    ctx: &ListenerCtx,
    server: &Server,
    session: &Session,
    done: &DataDone,
    body: Vec<u8>,
    now_ms: u64,
) -> Vec<u8> {
    let protocol = match (server.tls().is_some(), server.authenticated().is_some()) {
        (true, true) => "ESMTPSA",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (false, false) => "ESMTP",
    };
    let tls = server
        .tls()
        .map(|t| format!("\r\n\t(version={} cipher={})", t.version, t.cipher))
        .unwrap_or_default();
    let rcpt = match done.recipients.as_slice() {
        [one] => format!("\r\n\tfor {}", one.to),
        _ => String::new(),
    };
    let date = rfc5322_date(now_ms);
    let mut head = format!(
        "Received: from {} ({})\r\n\tby {} (Estafette) with {protocol}{tls}{rcpt};\r\n\t{date}\r\n",
        server.helo().unwrap_or("unknown"),
        session.peer.ip(),
        ctx.hostname,
    );
    if !has_header(&body, b"message-id") {
        head.push_str(&format!("Message-ID: <{}@{}>\r\n", unique_token(now_ms), ctx.hostname));
    }
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Whether the header section (up to the first empty line) has field `name`
/// (lower case, without colon).
fn has_header(body: &[u8], name: &[u8]) -> bool {
    let header_end = memchr::memmem::find(body, b"\r\n\r\n").map_or(body.len(), |i| i + 2);
    let headers = &body[..header_end];
    let mut start = 0;
    while start < headers.len() {
        let line_end = memchr::memmem::find(&headers[start..], b"\r\n").map_or(headers.len(), |i| start + i);
        let line = &headers[start..line_end];
        if line.len() > name.len() && line[name.len()] == b':' && line[..name.len()].eq_ignore_ascii_case(name) {
            return true;
        }
        start = line_end + 2;
    }
    false
}

fn unique_token(now_ms: u64) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{now_ms:x}.{seq:x}.{:x}", std::process::id())
}

/// `Mon, 23 Nov 2026 14:32:00 +0000`.
fn rfc5322_date(now_ms: u64) -> String {
    let secs = i64::try_from(now_ms / 1000).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_headers_only_in_the_header_section() {
        let body = b"Subject: x\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n";
        assert!(has_header(body, b"message-id"));
        let body = b"Subject: x\r\n\r\nMessage-ID: <in body>\r\n";
        assert!(!has_header(body, b"message-id"));
        assert!(!has_header(b"Message-IDx: y\r\n\r\n", b"message-id"));
        assert!(has_header(b"message-id: <a@b>", b"message-id"));
        assert!(!has_header(b"", b"message-id"));
    }

    #[test]
    fn date_format() {
        assert_eq!(rfc5322_date(1_795_444_320_000), "Mon, 23 Nov 2026 14:32:00 +0000");
    }
}
