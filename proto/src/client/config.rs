//! Client settings: identity, TLS policy and per-stage timeouts.

use std::time::Duration;

/// Whether the client uses STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Use STARTTLS; if the server does not offer it, send QUIT and fail the
    /// connection (never fall back to plaintext). The default.
    Required,
    /// Use STARTTLS when offered, plaintext otherwise (only where a route says so).
    Opportunistic,
    /// Never use STARTTLS (implicit TLS connections, or test routes).
    Never,
}

/// How long to wait for each reply (RFC 5321 §4.5.3.2 gives the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The 220 greeting. Default 5 min.
    pub greeting: Duration,
    /// EHLO, STARTTLS, RSET, QUIT. Default 5 min.
    pub command: Duration,
    /// MAIL. Default 5 min.
    pub mail: Duration,
    /// Each RCPT. Default 5 min.
    pub rcpt: Duration,
    /// 354 after DATA. Default 2 min.
    pub data_command: Duration,
    /// The final reply after the content. Default 10 min.
    pub data_end: Duration,
    /// Each piece of a streamed content: from [`ClientEvent::SendContent`] or
    /// the last [`Client::send_content`] until the next piece or
    /// [`Client::end_content`]; the driver bounds its writes of the pieces by
    /// [`Client::poll_timeout`]. Default 3 min, like Postfix's
    /// `smtp_data_xfer_timeout` (180 s): a server that stops reading mid-body
    /// is given up without waiting for the 10 minutes of `data_end`.
    ///
    /// [`ClientEvent::SendContent`]: super::ClientEvent::SendContent
    /// [`Client::send_content`]: super::Client::send_content
    /// [`Client::end_content`]: super::Client::end_content
    /// [`Client::poll_timeout`]: super::Client::poll_timeout
    pub data_block: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Self {
            greeting: min(5),
            command: min(5),
            mail: min(5),
            rcpt: min(5),
            data_command: min(2),
            data_end: min(10),
            data_block: min(3),
        }
    }
}

/// Settings of the delivery client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent in EHLO/HELO. Default `localhost`.
    pub hostname: String,
    /// STARTTLS policy. Default [`TlsPolicy::Required`].
    pub tls: TlsPolicy,
    /// Use BDAT when the server offers CHUNKING. Default true.
    pub chunking: bool,
    /// Pipeline MAIL, RCPT and DATA when the server offers PIPELINING
    /// (RFC 2920). Default true; false sends one command per round trip (load
    /// tests compare both).
    pub pipelining: bool,
    /// Reply timeouts.
    pub timeouts: Timeouts,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            tls: TlsPolicy::Required,
            chunking: true,
            pipelining: true,
            timeouts: Timeouts::default(),
        }
    }
}
