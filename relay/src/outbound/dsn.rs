//! Delivery status notifications (RFC 3464 `multipart/report;
//! report-type=delivery-status`, RFC 3461 RET/ENVID/NOTIFY/ORCPT), built by
//! hand: three parts, CRLF lines, a boundary checked absent from the content.
//!
//! 1. `text/plain`: what happened, for a human.
//! 2. `message/delivery-status`: Reporting-MTA, Original-Envelope-Id,
//!    Arrival-Date, then per recipient Original-Recipient, Final-Recipient,
//!    Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date.
//! 3. the original: `message/rfc822` byte for byte (RET=FULL) or its header
//!    section as `text/rfc822-headers` (RET=HDRS, and the default).
//!
//! The report is sent from `<>` (From: MAILER-DAEMON@reporting-mta) to the
//! original envelope sender. No report is built for a message whose sender is
//! `<>` (never bounce a bounce) nor for recipients whose NOTIFY does not ask
//! for the action.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use proto::address::{ForwardPath, Mailbox, ReversePath};
use proto::client::Outgoing;
use proto::params::{MailParams, Notify, Orcpt, RcptParams, Ret};
use proto::{EnhancedCode, Reply};
use rand::Rng;

/// The `Action:` of a recipient (RFC 3464 §2.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed for good (5yz, or the message expired).
    Failed,
    /// Still trying (a delay warning).
    Delayed,
    /// Delivered (NOTIFY=SUCCESS).
    Delivered,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Delayed => "delayed",
            Self::Delivered => "delivered",
        }
    }

    /// Whether a recipient with this NOTIFY (`None`: RFC 3461's default,
    /// failure and delay) wants a report of this action.
    pub fn is_wanted(self, notify: Option<Notify>) -> bool {
        let n = notify.unwrap_or(Notify::DEFAULT);
        match self {
            Self::Failed => n.failure,
            Self::Delayed => n.delay,
            Self::Delivered => n.success,
        }
    }
}

/// One recipient's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// The envelope recipient.
    pub recipient: ForwardPath,
    /// Its RCPT parameters (NOTIFY filters, ORCPT is reported).
    pub params: RcptParams,
    /// What happened.
    pub action: Action,
    /// Enhanced status (see [`status_of`]).
    pub status: EnhancedCode,
    /// The host that gave the reply, if any.
    pub remote_mta: Option<String>,
    /// The reply that decided (reported as `smtp; <reply>`).
    pub diagnostic: Option<Reply>,
    /// When the last attempt was made.
    pub last_attempt: Option<DateTime<Utc>>,
}

/// What a report is about.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// This node's host name (Reporting-MTA, From: MAILER-DAEMON@…).
    pub reporting_mta: &'a str,
    /// The original envelope sender: the report goes there.
    pub sender: &'a ReversePath,
    /// The original MAIL parameters (RET, ENVID).
    pub params: &'a MailParams,
    /// When the message was received.
    pub arrival: DateTime<Utc>,
    /// Recipients to report on (filtered by their NOTIFY).
    pub recipients: &'a [RecipientReport],
    /// The original message as received.
    pub original: &'a [u8],
}

/// A built report: send `message` from `<>` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dsn {
    /// The original sender.
    pub to: Mailbox,
    /// The report, CRLF lines.
    pub message: Vec<u8>,
}

impl Dsn {
    /// The envelope for the report: MAIL FROM:<>, one recipient, NOTIFY=NEVER
    /// so that the report itself is never reported on.
    pub fn into_outgoing(self) -> Outgoing {
        let params = RcptParams {
            notify: Some(Notify::NEVER),
            orcpt: None,
        };
        Outgoing {
            from: ReversePath::Null,
            params: MailParams::default(),
            recipients: vec![(ForwardPath::Path(self.to), params)],
            body: self.message,
            streamed: None,
        }
    }
}

/// The enhanced status to report for a reply: its own, or `X.0.0` from the
/// reply code's class.
pub fn status_of(reply: &Reply) -> EnhancedCode {
    reply.enhanced.unwrap_or_else(|| {
        let class = (reply.code / 100).clamp(2, 5) as u8;
        EnhancedCode::new(class, 0, 0)
    })
}

/// Replaces CR, LF and other controls so that a value (ENVID, ORCPT, reply
/// text: all chosen by peers) can never start a new header field, and
/// shortens it to keep lines under the 998-octet limit.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

/// `550 5.1.1 text`, cleaned.
fn diagnostic(reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) => clean(&format!("{} {e} {}", reply.code, reply.text())),
        None => clean(&format!("{} {}", reply.code, reply.text())),
    }
}

fn address(r: &ForwardPath) -> String {
    match r.mailbox() {
        Some(m) => m.to_string(),
        None => "postmaster".into(),
    }
}

/// The header section of a message, without the blank line (the whole
/// message when it has no body).
fn header_section(msg: &[u8]) -> &[u8] {
    memchr::memmem::find(msg, b"\r\n\r\n").map_or(msg, |i| &msg[..i + 2])
}

/// Builds the report, or `None` when none is owed: the sender is `<>`, or no
/// recipient's NOTIFY asks for its action.
///
/// `now` is the report's Date; `rng` picks the MIME boundary and Message-ID.
pub fn build(report: &Report<'_>, now: DateTime<Utc>, rng: &mut impl Rng) -> Option<Dsn> {
    let to = report.sender.mailbox()?.clone();
    let rcpts: Vec<&RecipientReport> = report
        .recipients
        .iter()
        .filter(|r| r.action.is_wanted(r.params.notify))
        .collect();
    if rcpts.is_empty() {
        return None;
    }
    let worst = if rcpts.iter().any(|r| r.action == Action::Failed) {
        Action::Failed
    } else if rcpts.iter().any(|r| r.action == Action::Delayed) {
        Action::Delayed
    } else {
        Action::Delivered
    };
    let full = report.params.ret == Some(Ret::Full);
    let original = if full {
        report.original
    } else {
        header_section(report.original)
    };
    let human = human_part(report, &rcpts, worst);
    let status = status_part(report, &rcpts);
    let boundary = loop {
        let b = format!("=_estafette_{:016x}{:08x}", rng.random::<u64>(), rng.random::<u32>());
        let found = |hay: &[u8]| memchr::memmem::find(hay, b.as_bytes()).is_some();
        if !found(original) && !found(human.as_bytes()) && !found(status.as_bytes()) {
            break b;
        }
    };
    let host = clean(report.reporting_mta);
    let subject = match worst {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        Action::Delivered => "Successful Mail Delivery Report",
    };
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id:016x}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Description: Notification\r\n\
         \r\n\
         {human}\
         \r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         Content-Description: Delivery report\r\n\
         \r\n\
         {status}\
         \r\n--{boundary}\r\n",
        date = now.to_rfc2822(),
        id = rng.random::<u64>(),
    );
    let eight_bit = original.iter().any(|b| *b >= 0x80);
    let (ctype, desc) = if full {
        ("message/rfc822", "Undelivered Message")
    } else {
        ("text/rfc822-headers", "Undelivered Message Headers")
    };
    let _ = write!(m, "Content-Type: {ctype}\r\nContent-Description: {desc}\r\n");
    if eight_bit {
        m.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    m.push_str("\r\n");
    let mut message = m.into_bytes();
    message.extend_from_slice(original);
    if !original.ends_with(b"\r\n") {
        // The CRLF before a boundary belongs to the boundary: add one so that
        // the closing boundary starts a line (the part then ends with CRLF).
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(Dsn { to, message })
}

fn human_part(report: &Report<'_>, rcpts: &[&RecipientReport], worst: Action) -> String {
    let host = clean(report.reporting_mta);
    let mut h = format!("This is the mail system at host {host}.\r\n\r\n");
    h.push_str(match worst {
        Action::Failed => {
            "Your message could not be delivered to one or more recipients.\r\n\
             It is attached below (or its headers, as requested).\r\n"
        }
        Action::Delayed => {
            "Your message could not be delivered yet to one or more recipients.\r\n\
             Delivery will be retried; you need not resend it.\r\n"
        }
        Action::Delivered => "Your message was delivered to the following recipients.\r\n",
    });
    h.push_str("\r\n");
    for r in rcpts {
        let _ = write!(h, "<{}>: {}", address(&r.recipient), r.action.as_str());
        if let Some(d) = &r.diagnostic {
            let _ = write!(h, ": {}", diagnostic(d));
        }
        h.push_str("\r\n");
    }
    h
}

fn status_part(report: &Report<'_>, rcpts: &[&RecipientReport]) -> String {
    let mut s = String::new();
    let _ = write!(s, "Reporting-MTA: dns; {}\r\n", clean(report.reporting_mta));
    if let Some(envid) = &report.params.envid {
        let _ = write!(s, "Original-Envelope-Id: {}\r\n", clean(envid));
    }
    let _ = write!(s, "Arrival-Date: {}\r\n", report.arrival.to_rfc2822());
    for r in rcpts {
        s.push_str("\r\n");
        if let Some(Orcpt { addr_type, address }) = &r.params.orcpt {
            let _ = write!(s, "Original-Recipient: {}; {}\r\n", clean(addr_type), clean(address));
        }
        let _ = write!(s, "Final-Recipient: rfc822; {}\r\n", address(&r.recipient));
        let _ = write!(s, "Action: {}\r\n", r.action.as_str());
        let _ = write!(s, "Status: {}\r\n", r.status);
        if let Some(mta) = &r.remote_mta {
            let _ = write!(s, "Remote-MTA: dns; {}\r\n", clean(mta));
        }
        if let Some(d) = &r.diagnostic {
            let _ = write!(s, "Diagnostic-Code: smtp; {}\r\n", diagnostic(d));
        }
        if let Some(t) = r.last_attempt {
            let _ = write!(s, "Last-Attempt-Date: {}\r\n", t.to_rfc2822());
        }
    }
    s
}

#[cfg(test)]
mod tests;
