//! What the server state machine needs to know about its listener and its peer.

use std::time::Duration;

use crate::data::DataLimits;

/// Per-listener settings of the SMTP server state machine.
///
/// Plain data with documented defaults; the relay fills it from its TOML config.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Name in the greeting, EHLO reply and Received headers. Default `localhost`.
    pub hostname: String,
    /// Text after the name in the 220 greeting. Default `ESMTP Estafette`.
    pub greeting: String,
    /// Longest command line, CRLF included, in octets. Default 2048: RFC 5321
    /// allows 512, but MAIL with DSN and AUTH parameters and UTF-8 addresses goes
    /// beyond it in the wild (Postfix uses 2048 too).
    pub max_command_line: usize,
    /// Longest SASL response line, CRLF included (RFC 4954 §4 says at least
    /// 12288 octets must be accepted). Default 12288.
    pub max_auth_line: usize,
    /// DATA/BDAT limits: line length (default 1000, RFC 5321) and message size
    /// (default 25 MiB: what Mon espace santé accepts).
    pub data: DataLimits,
    /// Most recipients per transaction; further RCPTs get `452 4.5.3`.
    /// Default 1000 (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Protocol errors (syntax, sequence) tolerated before `421` and close.
    /// Default 10: stops scanners and broken loops from holding a session.
    pub max_errors: usize,
    /// Failed AUTH attempts tolerated before `421` and close. Default 3.
    pub max_auth_failures: usize,
    /// Offer STARTTLS (only while the session is not yet encrypted). Default false:
    /// the relay turns it on when the listener has a certificate.
    pub starttls: bool,
    /// Refuse MAIL until the session is encrypted (`530 5.7.0`). Default false.
    pub require_tls: bool,
    /// SASL mechanisms offered, upper case, advertised only once the session is
    /// encrypted (AUTH never runs in clear). Supported: `PLAIN`, `LOGIN`. Default none.
    pub auth_mechanisms: Vec<String>,
    /// Refuse MAIL until the client authenticated (AUTH or, as the relay decides,
    /// a client certificate: see [`Server::set_authenticated`](super::Server::set_authenticated)).
    /// Default false.
    pub require_auth: bool,
    /// Offer CHUNKING (BDAT). Default true.
    pub chunking: bool,
    /// Idle time allowed while waiting for a command line (RFC 5321 §4.5.3.2.7
    /// suggests 5 minutes). Default 5 min.
    pub command_timeout: Duration,
    /// Idle time allowed between two pieces of message content (RFC 5321 §4.5.3.2.5
    /// suggests 3 minutes for a data block). Default 3 min.
    pub data_timeout: Duration,
    /// Hand content to the driver in pieces of at least this many octets as it
    /// arrives ([`ServerEvent::Content`](super::ServerEvent::Content)); 0 keeps
    /// the whole message for [`DataDone::body`](super::DataDone::body).
    /// Default 0. With a non-zero value the server holds about this many octets
    /// of a message at a time, whatever its size and however the driver reads.
    pub content_chunk: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            greeting: "ESMTP Estafette".into(),
            max_command_line: 2048,
            max_auth_line: 12288,
            data: DataLimits::default(),
            max_recipients: 1000,
            max_errors: 10,
            max_auth_failures: 3,
            starttls: false,
            require_tls: false,
            auth_mechanisms: Vec::new(),
            require_auth: false,
            chunking: true,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            content_chunk: 0,
        }
    }
}

/// The encrypted channel's parameters, as the relay's TLS layer reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// Cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// Who is at the other end of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Remote address as text (`192.0.2.1:49152`), for Received headers and logs.
    pub remote: String,
    /// Set when the connection is encrypted from the start (port 465).
    pub tls: Option<TlsInfo>,
}
