//! The spool's envelope and the protocol's parameters, both ways, in one
//! place: what a client's MAIL/RCPT parameters become in the envelope
//! ([`notify_to_spool`], [`ret_to_spool`], [`body_to_spool`], [`orcpt_to_spool`]),
//! a reply as stored and back ([`reply_to_spool`], [`reply_from_spool`]),
//! what the envelope becomes on the way out ([`outgoing`]), and the DSN an
//! envelope owes ([`owed_dsn`]), built with [`super::dsn`].
//!
//! RFC 3461 §4: a relay keeps NOTIFY, ORCPT, RET and ENVID as it got them.
//!
//! Functions rather than `From` impls: both types are foreign to this crate
//! (the orphan rule), and storage stays free of proto (DESIGN §1).

use chrono::{DateTime, Utc};
use proto::address::{ForwardPath, Mailbox, ReversePath};
use proto::client::Outgoing;
use proto::params::{Body, MailParams, Notify, Orcpt, RcptParams, Ret};
use proto::{EnhancedCode, Reply};
use storage::Envelope;

use super::dsn::{self, Action, RecipientReport};

/// RFC 3461 NOTIFY as the spool's bitset; absent stays 0 ("not given").
pub fn notify_to_spool(n: Option<Notify>) -> storage::Notify {
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

/// The spool's NOTIFY bitset as the parameter; `None` when none was given.
pub fn notify_from_spool(n: storage::Notify) -> Option<Notify> {
    let n = n.keywords();
    if n.0 == 0 {
        return None;
    }
    Some(Notify {
        success: n.contains(storage::Notify::SUCCESS),
        failure: n.contains(storage::Notify::FAILURE),
        delay: n.contains(storage::Notify::DELAY),
    })
}

/// RET as stored.
pub fn ret_to_spool(r: Ret) -> storage::DsnRet {
    match r {
        Ret::Full => storage::DsnRet::Full,
        Ret::Headers => storage::DsnRet::Headers,
    }
}

/// BODY as stored (absent and 7BIT are the same).
pub fn body_to_spool(b: Option<Body>) -> storage::BodyType {
    match b {
        Some(Body::EightBitMime) => storage::BodyType::EightBitMime,
        _ => storage::BodyType::SevenBit,
    }
}

/// ORCPT as stored.
pub fn orcpt_to_spool(o: &Orcpt) -> storage::Orcpt {
    storage::Orcpt {
        addr_type: o.addr_type.clone(),
        address: o.address.clone(),
    }
}

/// A reply as stored: its lines' text joined by spaces.
pub fn reply_to_spool(r: &Reply) -> storage::StoredReply {
    storage::StoredReply {
        code: r.code,
        enhanced: r.enhanced.map(|e| storage::Enhanced {
            class: e.class,
            subject: e.subject,
            detail: e.detail,
        }),
        text: r.text(),
    }
}

/// A stored reply as a one-line reply; `None` for a format-1 text that was not a
/// reply (code 0).
pub fn reply_from_spool(r: &storage::StoredReply) -> Option<Reply> {
    (r.code != 0).then(|| Reply {
        code: r.code,
        enhanced: r.enhanced.map(|e| EnhancedCode::new(e.class, e.subject, e.detail)),
        lines: vec![r.text.clone()],
    })
}

/// A recipient's RCPT parameters from the spool.
pub fn rcpt_params(r: &storage::Recipient) -> RcptParams {
    RcptParams {
        notify: notify_from_spool(r.notify),
        orcpt: r.orcpt.as_ref().map(|o| Orcpt {
            addr_type: o.addr_type.clone(),
            address: o.address.clone(),
        }),
    }
}

/// The MAIL parameters of a stored message.
pub fn mail_params(env: &Envelope) -> MailParams {
    MailParams {
        body: match env.body_type {
            storage::BodyType::EightBitMime => Some(Body::EightBitMime),
            _ => None,
        },
        smtputf8: env.smtputf8,
        ret: env.dsn_ret.map(|r| match r {
            storage::DsnRet::Full => Ret::Full,
            storage::DsnRet::Headers => Ret::Headers,
        }),
        envid: env.envid.clone(),
        ..MailParams::default()
    }
}

/// The message for recipients `indexes` of `env`, with its DSN parameters
/// passed on.
pub fn outgoing(env: &Envelope, indexes: &[usize], body: &[u8]) -> Outgoing {
    let from = Mailbox::parse(&env.sender).map_or(ReversePath::Null, ReversePath::Path);
    let recipients = indexes
        .iter()
        .filter_map(|&i| env.recipients.get(i))
        .map(|r| {
            let to = Mailbox::parse(&r.address).map_or(ForwardPath::Postmaster, ForwardPath::Path);
            (to, rcpt_params(r))
        })
        .collect();
    Outgoing {
        from,
        params: mail_params(env),
        recipients,
        body: body.to_vec(),
        streamed: None,
    }
}

/// A DSN ready to be committed: its envelope (from `<>` to the original
/// sender, due at the `first_due_ms` given) and its body.
#[derive(Debug)]
pub struct OwedDsn {
    /// The report's recipient: the original envelope sender.
    pub to: Mailbox,
    /// The DSN's envelope.
    pub envelope: Envelope,
    /// The `multipart/report` message.
    pub body: Vec<u8>,
}

/// The DSN owed for `env`: one report per recipient for which `pick` gives
/// an action that its NOTIFY wants; `None` when nothing is owed (no such
/// recipient, or a null sender: a bounce is never bounced).
pub fn owed_dsn(
    reporting_mta: &str,
    env: &Envelope,
    body: &[u8],
    pick: impl Fn(&storage::Recipient) -> Option<Action>,
    first_due_ms: u64,
    now: DateTime<Utc>,
) -> Option<OwedDsn> {
    let sender = match Mailbox::parse(&env.sender) {
        Ok(m) => ReversePath::Path(m),
        Err(_) => return None,
    };
    let reports: Vec<RecipientReport> = env
        .recipients
        .iter()
        .filter_map(|r| {
            let action = pick(r)?;
            let params = rcpt_params(r);
            if !action.is_wanted(params.notify) {
                return None;
            }
            let diagnostic = r.last_reply.as_ref().and_then(reply_from_spool);
            Some(RecipientReport {
                recipient: ForwardPath::Path(Mailbox::parse(&r.address).ok()?),
                params,
                action,
                status: diagnostic.as_ref().map_or(
                    match action {
                        Action::Delayed => EnhancedCode::new(4, 0, 0),
                        _ => EnhancedCode::new(5, 0, 0),
                    },
                    dsn::status_of,
                ),
                remote_mta: None,
                diagnostic,
                last_attempt: Some(now),
            })
        })
        .collect();
    if reports.is_empty() {
        return None;
    }
    let mut params = mail_params(env);
    if (body.len() as u64) < env.body_size {
        // Only the start of a large message was read: quote its headers.
        params.ret = Some(Ret::Headers);
    }
    let report = dsn::Report {
        reporting_mta,
        sender: &sender,
        params: &params,
        arrival: DateTime::from_timestamp_millis(env.received_at_ms as i64).unwrap_or_default(),
        recipients: &reports,
        original: body,
    };
    let dsn = dsn::build(&report, now, &mut rand::rng())?;
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let envelope = Envelope {
        sender: String::new(),
        recipients: vec![storage::Recipient {
            address: dsn.to.to_string(),
            next_hop: dsn.to.domain_lowercase(),
            notify: storage::Notify(storage::Notify::NEVER),
            next_attempt_ms: first_due_ms,
            ..storage::Recipient::default()
        }],
        helo: reporting_mta.to_owned(),
        received_at_ms: now_ms,
        body_size: dsn.message.len() as u64,
        ..Envelope::default()
    };
    Some(OwedDsn {
        to: dsn.to,
        envelope,
        body: dsn.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_round_trips_through_the_spool() {
        for n in [
            None,
            Some(Notify {
                success: true,
                failure: false,
                delay: true,
            }),
            Some(Notify {
                success: false,
                failure: true,
                delay: false,
            }),
        ] {
            assert_eq!(notify_from_spool(notify_to_spool(n)), n);
        }
        // NOTIFY=NEVER: all false, stored as NEVER, read back as given.
        let never = Some(Notify {
            success: false,
            failure: false,
            delay: false,
        });
        assert_eq!(notify_to_spool(never), storage::Notify(storage::Notify::NEVER));
    }

    #[test]
    fn no_dsn_for_a_null_sender() {
        let env = Envelope {
            sender: String::new(),
            recipients: vec![storage::Recipient {
                address: "dr@cabinet.test".into(),
                ..storage::Recipient::default()
            }],
            ..Envelope::default()
        };
        assert!(owed_dsn("relay.test", &env, b"x", |_| Some(Action::Failed), 0, Utc::now()).is_none());
    }
}
