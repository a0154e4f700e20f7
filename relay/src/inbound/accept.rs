//! End of DATA: [`prepare`] the message (trace headers, envelope, indicator
//! counters; pure, no I/O), then hand it to the node's one commit path
//! ([`crate::queue::Queue::commit`]).
//!
//! The body is changed in exactly two ways, both at the top: a `Received:`
//! header is prepended (with the queue id of the `250 queued as` reply in its
//! `id` clause, RFC 5321 §4.4, so that a recipient's copy leads back to the
//! trace and the logs), and a `Message-ID:` is prepended only when the message
//! has none. Everything else (X-MSS-* headers, attachments) stays byte for byte.

use std::net::SocketAddr;

use bytes::Bytes;
use proto::address::{Mailbox, ReversePath};
use proto::params::MailParams;
use proto::server::{AcceptedRcpt, DataDone, Server, TlsInfo};
use proto::Reply;
use storage::MessageId;

use super::policy::{Postmaster, SizeLimits};
use super::session::Session;
use super::ListenerCtx;
use crate::outbound::envelope;
use crate::queue::{Body, Prepared};
use crate::trust::indicators;

/// Who handed the message over, and how: the session facts that go into the
/// trace header, the envelope and the trace event.
#[derive(Clone, Debug)]
pub(crate) struct Origin<'a> {
    /// This node's name (the `by` clause).
    pub(crate) hostname: &'a str,
    /// The listener's name.
    pub(crate) listener: &'a str,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// What the client said at EHLO/HELO.
    pub(crate) helo: &'a str,
    /// The TLS protocol and cipher, when TLS is up.
    pub(crate) tls: Option<&'a TlsInfo>,
    /// The AUTH account or the verified certificate subject.
    pub(crate) identity: Option<String>,
    /// Whether the client authenticated with AUTH (`ESMTPA`).
    pub(crate) authenticated: bool,
    /// Where this node's postmaster's mail goes (`node.postmaster`).
    pub(crate) postmaster: Option<&'a Mailbox>,
    /// The routes' own size limits: a recipient whose destination takes
    /// less than the message fails at once.
    pub(crate) size_limits: Option<&'a SizeLimits>,
}

/// The envelope of one transaction, as the server state machine gives it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transaction<'a> {
    /// MAIL FROM.
    pub(crate) from: &'a ReversePath,
    /// MAIL parameters (BODY, SMTPUTF8, RET, ENVID).
    pub(crate) params: &'a MailParams,
    /// The accepted recipients, in order.
    pub(crate) recipients: &'a [AcceptedRcpt],
}

/// The content of one transaction as the session collected it.
#[derive(Debug)]
pub(crate) enum Content {
    /// The whole message in memory (up to `limits.body_piece_size`).
    Whole(Vec<u8>),
    /// A larger one, written to the spool in pieces while it arrived.
    Spilled {
        /// A copy of the first octets (up to [`HEAD_SCAN`]): the header
        /// section the trace headers and indicators look at.
        start: Vec<u8>,
        /// The pieces in the spool.
        spill: storage::Spill,
        /// What arrived after the last piece.
        tail: Vec<u8>,
    },
}

/// How much of a large message's start is kept to read its header section
/// (Message-ID, MSSanté indicators). A header section longer than this is
/// read up to here only: a `Message-ID:` past it is not seen and one is added.
pub(crate) const HEAD_SCAN: usize = 256 << 10;

/// Builds what [`crate::queue::Queue::commit`] stores for a message that
/// will be `id`: trace headers prepended to the content, the envelope
/// (recipients due at `first_due_ms`), the monthly indicator counters and the
/// trace event. No I/O; a whole body is copied once, to prepend the headers,
/// a spilled one not at all (its head becomes piece 0).
pub(crate) fn prepare(
    origin: &Origin<'_>,
    tx: Transaction<'_>,
    content: Content,
    id: MessageId,
    now_ms: u64,
    first_due_ms: u64,
) -> Prepared {
    let rcpt_domains: Vec<&str> = tx
        .recipients
        .iter()
        .filter_map(|r| r.to.mailbox().map(|m| m.domain.as_str()))
        .collect();
    let from_domain = tx.from.mailbox().map(|m| m.domain.as_str()).unwrap_or_default();
    let (start, client_size): (&[u8], u64) = match &content {
        Content::Whole(b) => (b, b.len() as u64),
        Content::Spilled { start, spill, tail } => (start, spill.len() + tail.len() as u64),
    };
    let counters = indicators::accepted(from_domain, &rcpt_domains, client_size, start);
    let head = trace_head(origin, tx, has_header(start, b"message-id"), id, now_ms);
    let size = head.len() as u64 + client_size;
    let body = match content {
        Content::Whole(b) => {
            let mut out = Vec::with_capacity(head.len() + b.len());
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(&b);
            Body::Whole(Bytes::from(out))
        }
        Content::Spilled { spill, tail, .. } => Body::Spilled {
            head: Bytes::from(head),
            spill,
            tail: Bytes::from(tail),
        },
    };
    let envelope = build_envelope(origin, tx, now_ms, first_due_ms, size);
    let event = storage::Event {
        at_ms: now_ms,
        kind: storage::EventKind::Accepted,
        detail: format!(
            "from <{}> to {} recipient(s) peer {} listener {} tls {} identity {}",
            tx.from.mailbox().map(ToString::to_string).unwrap_or_default(),
            tx.recipients.len(),
            origin.peer,
            origin.listener,
            origin
                .tls
                .map_or_else(|| "none".into(), |t| format!("{} {}", t.version, t.cipher)),
            origin.identity.as_deref().unwrap_or("-"),
        ),
    };
    let mut event = event;
    for r in envelope.recipients.iter().filter(|r| r.status.is_final()) {
        let why = r.last_reply.as_ref().map(ToString::to_string).unwrap_or_default();
        event.detail.push_str(&format!("; failed at once: {} {why}", r.address));
    }
    Prepared {
        id,
        envelope,
        body,
        counters,
        event: Some(event),
    }
}

/// Prepares and commits a complete message; `Ok(id)` only once it is on
/// stable storage (and on the peers the cluster requires).
///
/// # Errors
/// The reply to send instead of 250, from [`crate::queue::CommitError::reply`].
pub(crate) async fn store(
    ctx: &ListenerCtx,
    server: &Server,
    session: &Session,
    done: &DataDone,
    content: Content,
) -> Result<MessageId, Reply> {
    let now_ms = storage::now_ms();
    let origin = Origin {
        hostname: &ctx.hostname,
        listener: &ctx.listener.name,
        peer: session.peer,
        helo: server.helo().unwrap_or("unknown"),
        tls: server.tls(),
        identity: server
            .authenticated()
            .map(str::to_owned)
            .or_else(|| session.client_cert.as_ref().map(ToString::to_string)),
        authenticated: server.authenticated().is_some(),
        postmaster: ctx.policy.postmaster_for(&proto::address::ForwardPath::Postmaster),
        size_limits: Some(ctx.policy.size_limits()),
    };
    let tx = Transaction {
        from: &done.from,
        params: &done.params,
        recipients: &done.recipients,
    };
    let id = match &content {
        Content::Spilled { spill, .. } => spill.id(),
        Content::Whole(_) => ctx.queue.next_id(),
    };
    let prepared = prepare(&origin, tx, content, id, now_ms, ctx.queue.first_due(now_ms));
    let size = prepared.body.len();
    let started = std::time::Instant::now();
    match ctx.queue.commit(prepared, ctx.accept_timeout).await {
        Ok(id) => {
            ctx.metrics.accepted_in(started.elapsed());
            ctx.metrics.message_accepted(&ctx.listener.name, size);
            Ok(id)
        }
        Err(e) => {
            tracing::warn!(peer = %session.peer, error = %e, "message not committed");
            Err(e.reply())
        }
    }
}

/// `first_due_ms`: see [`crate::queue::Queue::first_due`].
fn build_envelope(
    origin: &Origin<'_>,
    tx: Transaction<'_>,
    now_ms: u64,
    first_due_ms: u64,
    size: u64,
) -> storage::Envelope {
    let recipients = tx
        .recipients
        .iter()
        .map(|r| {
            // The reserved postmaster goes to the operator's address (the
            // policy accepted it only when one is configured).
            let to = match origin.postmaster {
                Some(pm) if Postmaster::is_postmaster(origin.hostname, &r.to) => Some(pm),
                _ => r.to.mailbox(),
            };
            let next_hop = to.map(Mailbox::domain_lowercase).unwrap_or_default();
            // Too big for its destination: failed now, with a DSN naming the
            // limit, rather than refused downstream after retries.
            let too_big = origin
                .size_limits
                .and_then(|l| l.limit(&next_hop))
                .filter(|&limit| size > limit as u64)
                .map(|limit| {
                    envelope::reply_to_spool(&Reply::new(
                        552,
                        proto::EnhancedCode::new(5, 3, 4),
                        format!("message size {size} exceeds the limit of {limit} octets for {next_hop}"),
                    ))
                });
            storage::Recipient {
                address: to.map_or_else(|| "postmaster".to_string(), ToString::to_string),
                orcpt: r.params.orcpt.as_ref().map(envelope::orcpt_to_spool),
                notify: envelope::notify_to_spool(r.params.notify),
                status: if too_big.is_some() {
                    storage::RecipientStatus::Failed
                } else {
                    storage::RecipientStatus::Queued
                },
                last_reply: too_big,
                next_hop,
                next_attempt_ms: first_due_ms,
                ..storage::Recipient::default()
            }
        })
        .collect();
    storage::Envelope {
        sender: tx.from.mailbox().map(ToString::to_string).unwrap_or_default(),
        recipients,
        dsn_ret: tx.params.ret.map(envelope::ret_to_spool),
        envid: tx.params.envid.clone(),
        client_identity: origin.identity.clone(),
        peer_addr: origin.peer.to_string(),
        helo: origin.helo.to_owned(),
        tls: origin.tls.map(|t| format!("{} {}", t.version, t.cipher)),
        received_at_ms: now_ms,
        body_size: size,
        body_type: envelope::body_to_spool(tx.params.body),
        smtputf8: tx.params.smtputf8,
    }
}

/// The trace headers put before the client's content: `Received:`, and
/// `Message-ID:` when the message has none.
fn trace_head(origin: &Origin<'_>, tx: Transaction<'_>, has_message_id: bool, id: MessageId, now_ms: u64) -> String {
    let protocol = match (origin.tls.is_some(), origin.authenticated) {
        (true, true) => "ESMTPSA",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (false, false) => "ESMTP",
    };
    let tls = origin
        .tls
        .map(|t| format!("\r\n\t(version={} cipher={})", t.version, t.cipher))
        .unwrap_or_default();
    let rcpt = match tx.recipients {
        [one] => format!("\r\n\tfor {}", one.to),
        _ => String::new(),
    };
    let date = rfc5322_date(now_ms);
    let mut head = format!(
        "Received: from {} ({})\r\n\tby {} (Estafette) with {protocol}{tls}\r\n\tid {id}{rcpt};\r\n\t{date}\r\n",
        origin.helo,
        origin.peer.ip(),
        origin.hostname,
    );
    if !has_message_id {
        // The queue id is unique and sortable: the Message-ID leads back to the trace.
        head.push_str(&format!("Message-ID: <{id}@{}>\r\n", origin.hostname));
    }
    head
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
    use proto::address::ForwardPath;
    use proto::params::Ret;

    use super::*;

    fn whole(b: &Body) -> &[u8] {
        match b {
            Body::Whole(b) => b,
            Body::Spilled { .. } => panic!("a small body is kept whole"),
        }
    }

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
    fn prepare_adds_trace_headers_envelope_counters_and_event() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        };
        let origin = Origin {
            hostname: "relay.test",
            listener: "submission",
            peer: "192.0.2.7:40000".parse().expect("address"),
            helo: "dpi.ch.test",
            tls: Some(&tls),
            identity: Some("dpi".into()),
            authenticated: true,
            postmaster: None,
            size_limits: None,
        };
        let from = ReversePath::Path(Mailbox::parse("app@ch.test").expect("mailbox"));
        let params = MailParams {
            ret: Some(Ret::Headers),
            envid: Some("E1".into()),
            ..MailParams::default()
        };
        let recipients = vec![AcceptedRcpt {
            to: ForwardPath::Path(Mailbox::parse("dr@Cabinet.test").expect("mailbox")),
            params: proto::params::RcptParams::default(),
        }];
        let tx = Transaction {
            from: &from,
            params: &params,
            recipients: &recipients,
        };
        let id: MessageId = "00000T428JP8CG002CXPGYAAW1".parse().expect("id");
        let body = b"Subject: CR\r\nX-MSS-NIL: DPI 1.0\r\n\r\nBonjour\r\n".to_vec();
        let p = prepare(
            &origin,
            tx,
            Content::Whole(body.clone()),
            id,
            1_795_444_320_000,
            1_795_444_620_000,
        );
        let text = String::from_utf8(whole(&p.body).to_vec()).expect("utf8");
        assert!(
            text.starts_with(
                "Received: from dpi.ch.test (192.0.2.7)\r\n\tby relay.test (Estafette) with ESMTPSA\r\n\t\
                 (version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384)\r\n\tid 00000T428JP8CG002CXPGYAAW1\r\n\t\
                 for <dr@Cabinet.test>;\r\n\tMon, 23 Nov 2026 14:32:00 +0000\r\n\
                 Message-ID: <00000T428JP8CG002CXPGYAAW1@relay.test>\r\n"
            ),
            "{text}"
        );
        assert!(text.ends_with(std::str::from_utf8(&body).expect("utf8")));
        assert_eq!(p.id, id);
        assert_eq!(p.envelope.sender, "app@ch.test");
        assert_eq!(p.envelope.recipients[0].next_hop, "cabinet.test");
        assert_eq!(p.envelope.recipients[0].next_attempt_ms, 1_795_444_620_000);
        assert_eq!(p.envelope.dsn_ret, Some(storage::DsnRet::Headers));
        assert_eq!(p.envelope.envid.as_deref(), Some("E1"));
        assert_eq!(p.envelope.client_identity.as_deref(), Some("dpi"));
        assert_eq!(p.envelope.body_size, p.body.len());
        assert!(p.counters.iter().any(|(k, _)| k == "nil:DPI 1.0"), "{:?}", p.counters);
        let event = p.event.expect("trace event");
        assert!(event.detail.contains("identity dpi"), "{}", event.detail);
        // A message that has a Message-ID keeps it and gets none added.
        let p = prepare(
            &origin,
            tx,
            Content::Whole(b"Message-ID: <x@y>\r\n\r\nb\r\n".to_vec()),
            id,
            0,
            0,
        );
        assert_eq!(String::from_utf8_lossy(whole(&p.body)).matches("Message-ID").count(), 1);
    }

    #[test]
    fn postmaster_goes_to_the_configured_address() {
        let ops = Mailbox::parse("ops@operator.test").expect("mailbox");
        let origin = Origin {
            hostname: "relay.test",
            listener: "mta",
            peer: "192.0.2.7:40000".parse().expect("address"),
            helo: "mx.peer.test",
            tls: None,
            identity: None,
            authenticated: false,
            postmaster: Some(&ops),
            size_limits: None,
        };
        let from = ReversePath::Null;
        let params = MailParams::default();
        let recipients: Vec<AcceptedRcpt> = ["<postmaster>", "<Postmaster@RELAY.test>", "<dr@cabinet.test>"]
            .iter()
            .map(|s| AcceptedRcpt {
                to: ForwardPath::parse(s).expect("path"),
                params: proto::params::RcptParams::default(),
            })
            .collect();
        let tx = Transaction {
            from: &from,
            params: &params,
            recipients: &recipients,
        };
        let id: MessageId = "00000T428JP8CG002CXPGYAAW1".parse().expect("id");
        let p = prepare(&origin, tx, Content::Whole(b"\r\nx\r\n".to_vec()), id, 0, 0);
        let got: Vec<(&str, &str)> = p
            .envelope
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r.next_hop.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("ops@operator.test", "operator.test"),
                ("ops@operator.test", "operator.test"),
                ("dr@cabinet.test", "cabinet.test")
            ]
        );
    }

    #[test]
    fn date_format() {
        assert_eq!(rfc5322_date(1_795_444_320_000), "Mon, 23 Nov 2026 14:32:00 +0000");
    }
}
