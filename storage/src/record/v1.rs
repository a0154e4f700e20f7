//! Record format 1, read only: `orcpt` and `last_reply` were strings. Kept so that a
//! spool written by an earlier release stays readable, and so that copies sent to
//! peers stay readable by a node of that release ([`super::Envelope::to_wire_bytes`]).
//!
//! rkyv lays a struct out by its field types and order, not names: these types repeat
//! the format-1 fields exactly, and must never change.

use super::{BodyType, DsnRet, Enhanced, Envelope, Notify, Orcpt, Recipient, RecipientStatus, StoredReply};

/// [`Envelope`] in format 1.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct EnvelopeV1 {
    pub sender: String,
    pub recipients: Vec<RecipientV1>,
    pub dsn_ret: Option<DsnRet>,
    pub envid: Option<String>,
    pub client_identity: Option<String>,
    pub peer_addr: String,
    pub helo: String,
    pub tls: Option<String>,
    pub received_at_ms: u64,
    pub body_size: u64,
    pub body_type: BodyType,
    pub smtputf8: bool,
}

/// [`Recipient`] in format 1.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct RecipientV1 {
    pub address: String,
    pub orcpt: Option<String>,
    pub notify: Notify,
    pub next_hop: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_reply: Option<String>,
}

impl From<EnvelopeV1> for Envelope {
    fn from(e: EnvelopeV1) -> Self {
        Self {
            sender: e.sender,
            recipients: e.recipients.into_iter().map(Recipient::from).collect(),
            dsn_ret: e.dsn_ret,
            envid: e.envid,
            client_identity: e.client_identity,
            peer_addr: e.peer_addr,
            helo: e.helo,
            tls: e.tls,
            received_at_ms: e.received_at_ms,
            body_size: e.body_size,
            body_type: e.body_type,
            smtputf8: e.smtputf8,
        }
    }
}

impl From<RecipientV1> for Recipient {
    fn from(r: RecipientV1) -> Self {
        Self {
            address: r.address,
            orcpt: r.orcpt.as_deref().map(parse_orcpt),
            notify: r.notify,
            next_hop: r.next_hop,
            status: r.status,
            attempts: r.attempts,
            next_attempt_ms: r.next_attempt_ms,
            last_reply: r.last_reply.as_deref().map(parse_reply),
        }
    }
}

impl From<&Envelope> for EnvelopeV1 {
    fn from(e: &Envelope) -> Self {
        Self {
            sender: e.sender.clone(),
            recipients: e
                .recipients
                .iter()
                .map(|r| RecipientV1 {
                    address: r.address.clone(),
                    orcpt: r.orcpt.as_ref().map(ToString::to_string),
                    notify: r.notify,
                    next_hop: r.next_hop.clone(),
                    status: r.status,
                    attempts: r.attempts,
                    next_attempt_ms: r.next_attempt_ms,
                    last_reply: r.last_reply.as_ref().map(ToString::to_string),
                })
                .collect(),
            dsn_ret: e.dsn_ret,
            envid: e.envid.clone(),
            client_identity: e.client_identity.clone(),
            peer_addr: e.peer_addr.clone(),
            helo: e.helo.clone(),
            tls: e.tls.clone(),
            received_at_ms: e.received_at_ms,
            body_size: e.body_size,
            body_type: e.body_type,
            smtputf8: e.smtputf8,
        }
    }
}

/// `addr-type;address`; format 1 always had the `;` (the relay wrote it), a text
/// without one is taken as an `rfc822` address.
fn parse_orcpt(s: &str) -> Orcpt {
    match s.split_once(';') {
        Some((t, a)) => Orcpt {
            addr_type: t.to_owned(),
            address: a.to_owned(),
        },
        None => Orcpt {
            addr_type: "rfc822".to_owned(),
            address: s.to_owned(),
        },
    }
}

/// `"451 4.7.1 text"` as the relay wrote it (proto's `Reply` displayed); a text that
/// does not start with a code is kept whole, with code 0.
fn parse_reply(s: &str) -> StoredReply {
    let whole = || StoredReply {
        code: 0,
        enhanced: None,
        text: s.to_owned(),
    };
    let (code, rest) = match s.split_at_checked(3) {
        Some((c, rest)) if c.bytes().all(|b| b.is_ascii_digit()) && (rest.is_empty() || rest.starts_with(' ')) => {
            match c.parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => (code, rest.strip_prefix(' ').unwrap_or(rest)),
                _ => return whole(),
            }
        }
        _ => return whole(),
    };
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    match parse_enhanced(first) {
        Some(e) if u16::from(e.class) == code / 100 => StoredReply {
            code,
            enhanced: Some(e),
            text: after.to_owned(),
        },
        _ => StoredReply {
            code,
            enhanced: None,
            text: rest.to_owned(),
        },
    }
}

fn parse_enhanced(s: &str) -> Option<Enhanced> {
    let mut parts = s.split('.');
    let mut next = |max: u16| -> Option<u16> {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok().filter(|&n| n <= max)
    };
    let class = u8::try_from(next(5)?).ok()?;
    let subject = next(999)?;
    let detail = next(999)?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some(Enhanced { class, subject, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_as_format_1_wrote_them() {
        let r = parse_reply("451 4.7.1 greylisted, try later");
        assert_eq!(r.code, 451);
        assert_eq!(
            r.enhanced,
            Some(Enhanced {
                class: 4,
                subject: 7,
                detail: 1
            })
        );
        assert_eq!(r.text, "greylisted, try later");
        assert_eq!(r.to_string(), "451 4.7.1 greylisted, try later");
        // No enhanced code, or one whose class is not the reply's: text.
        let r = parse_reply("550 no such user");
        assert_eq!((r.code, r.enhanced, r.text.as_str()), (550, None, "no such user"));
        let r = parse_reply("550 4.1.1 odd");
        assert_eq!((r.code, r.enhanced, r.text.as_str()), (550, None, "4.1.1 odd"));
        let r = parse_reply("250 ");
        assert_eq!((r.code, r.text.as_str()), (250, ""));
        // Not a reply at all: kept whole, code 0, displayed as it was.
        for s in ["", "connection reset", "99 x", "4510 x", "651 x", "45a x"] {
            let r = parse_reply(s);
            assert_eq!((r.code, r.enhanced, r.text.as_str()), (0, None, s));
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn orcpt_as_format_1_wrote_it() {
        let o = parse_orcpt("rfc822;Bob@Example.COM");
        assert_eq!(
            (o.addr_type.as_str(), o.address.as_str()),
            ("rfc822", "Bob@Example.COM")
        );
        assert_eq!(o.to_string(), "rfc822;Bob@Example.COM");
        let o = parse_orcpt("utf-8;a;b@c");
        assert_eq!((o.addr_type.as_str(), o.address.as_str()), ("utf-8", "a;b@c"));
        let o = parse_orcpt("bare@x");
        assert_eq!((o.addr_type.as_str(), o.address.as_str()), ("rfc822", "bare@x"));
    }
}
