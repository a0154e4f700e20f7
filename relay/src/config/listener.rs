//! `[[listener]]` (one SMTP listener each) and `[limits]` (message limits).

use std::net::SocketAddr;

use serde::Deserialize;

/// How a listener uses TLS.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP, no TLS offered (tests and loopback benchmarks only).
    None,
    /// STARTTLS offered (port 25 / 587 style).
    Starttls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// Whether a listener asks for client certificates.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertMode {
    /// Not asked.
    #[default]
    None,
    /// Asked; verified against `tls.client_ca` when presented.
    Optional,
    /// Asked and required: the handshake fails without a valid one.
    Required,
}

/// One SMTP listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// Address to bind, e.g. `0.0.0.0:25` (port 0 picks a free port: tests).
    pub address: SocketAddr,
    /// TLS mode.
    pub tls: TlsMode,
    /// Refuse MAIL before TLS (`530 5.7.0`). Default true, except for `tls = "none"`.
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// Client certificates.
    #[serde(default)]
    pub client_cert: ClientCertMode,
    /// Offer AUTH PLAIN/LOGIN (after TLS only; needs `node.identities`). Default false.
    #[serde(default)]
    pub auth: bool,
    /// Refuse MAIL until the client is identified by AUTH or by a listed client
    /// certificate (`530 5.7.0`). Default false.
    #[serde(default)]
    pub require_auth: bool,
    /// Most concurrent sessions; the next one gets `421 4.7.0` and is closed.
    /// Default 1000.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Most concurrent sessions from one client address (after the PROXY
    /// header, when there is one); the next one gets `421 4.7.0` and is
    /// closed, so that one client cannot take every session (Postfix's
    /// `smtpd_client_connection_count_limit`). 0: no limit. Default 100.
    #[serde(default = "default_max_sessions_per_client")]
    pub max_sessions_per_client: usize,
    /// Idle time allowed waiting for a command (seconds). Default 300.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// Idle time allowed during message content (seconds). Default 180.
    #[serde(default = "default_data_timeout")]
    pub data_timeout_secs: u64,
    /// Longest TLS handshake (seconds). Default 30.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// A listener for the trust space's other operators (needs `[trust]` and
    /// `tls.client_ca` = the trust anchors): a client certificate is asked
    /// for, and MAIL FROM is refused (`550 5.7.1`, with the check that failed)
    /// unless TLS is up, the certificate chains to the anchors and its DN is
    /// listed for the sender's domain. Recipients must be domains this node
    /// has a route for. Default false.
    #[serde(default)]
    pub operators: bool,
    /// Expect a PROXY protocol v2 header first (behind a load balancer that
    /// does not keep the client's address); its source address is the
    /// client's for policy, logs and traces. Default false. See
    /// `relay::inbound::proxy` for what is refused.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Networks (CIDR) whose connections may send the PROXY header: the load
    /// balancers. Required with `proxy_protocol`; any other connection is
    /// closed at once.
    #[serde(default)]
    pub proxy_from: Vec<ipnet::IpNet>,
}

fn default_max_sessions() -> usize {
    1000
}
fn default_max_sessions_per_client() -> usize {
    100
}
fn default_command_timeout() -> u64 {
    300
}
fn default_data_timeout() -> u64 {
    180
}
fn default_handshake_timeout() -> u64 {
    30
}

impl ListenerConfig {
    /// Whether MAIL needs TLS first on this listener.
    pub fn requires_tls(&self) -> bool {
        self.require_tls.unwrap_or(self.tls != TlsMode::None)
    }
}

/// Message limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message in octets (SIZE advertised, DATA/BDAT enforced while
    /// streaming). Default 25 000 000 (Mon espace santé's limit).
    pub max_message_size: usize,
    /// Most recipients per message. Default 1000.
    pub max_recipients: usize,
    /// Longest content line, CRLF included. Default 1000 (RFC 5321).
    pub max_line_length: usize,
    /// Longest command line, CRLF included. Default 2048.
    pub max_command_line: usize,
    /// Protocol errors before the session is closed. Default 10.
    pub max_errors: usize,
    /// Content beyond this many octets goes to the spool in pieces of about
    /// this size while it arrives, and delivery reads it back piece by piece:
    /// a large message is never whole in memory (memory per session is about
    /// two pieces). Messages up to this size stay whole in memory and are
    /// written once. 0 keeps every message whole in memory. Default 1 MiB;
    /// 0 or at least 64 KiB.
    pub body_piece_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 25_000_000,
            max_recipients: 1000,
            max_line_length: 1000,
            max_command_line: 2048,
            max_errors: 10,
            body_piece_size: 1 << 20,
        }
    }
}
