//! `[outbound]` (delivery, retries, DNS) and `[[route]]` (destinations).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Delivery settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// CA certificates (PEM) that next hops' server certificates must chain to.
    /// Required as soon as a route uses TLS.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to next hops, with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Most concurrent connections per destination. Default 8.
    pub max_connections: usize,
    /// Most messages per connection before it is closed. Default 100.
    pub max_messages_per_connection: u32,
    /// Seconds an idle connection is kept for reuse; a reaper closes (QUIT)
    /// older ones, and every idle one is closed at shutdown. Default 5
    /// (servers commonly drop idle clients after a few tens of seconds).
    pub idle_timeout_secs: u64,
    /// Most messages being delivered at once by this node. Default 256.
    pub max_in_flight: usize,
    /// First retry delay (seconds). Default 60.
    pub retry_first_secs: u64,
    /// Longest retry delay (seconds); delays double up to it. Default 3600.
    pub retry_cap_secs: u64,
    /// Random spread of each delay, as a fraction. Default 0.2 (±20 %).
    pub retry_jitter: f64,
    /// Age after which a message gives up with a failure DSN (seconds).
    /// Default 432000 (5 days).
    pub max_age_secs: u64,
    /// Age after which the sender of a still-deferred recipient gets one delay
    /// warning DSN (when its NOTIFY asks for DELAY or is absent), seconds;
    /// 0: never. Default 14400 (4 h).
    pub delay_warning_secs: u64,
    /// Consecutive connection failures that park a destination. Default 5.
    pub circuit_threshold: u32,
    /// How often the scheduler scans the on-disk index for due messages
    /// (retries, released holds), in ms. Default 500.
    pub poll_ms: u64,
    /// A new message goes to delivery in memory; its on-disk index entry is
    /// dated this many seconds ahead, so the scan skips it while that first
    /// attempt runs. After a restart the first scan looks this far ahead, so
    /// no message waits for it. Default 300.
    pub handoff_grace_secs: u64,
    /// Most accepted messages waiting in memory for a delivery slot (16 bytes
    /// each); beyond it they are found by scanning. Default 100000.
    pub max_ready: usize,
    /// DNS servers for MX lookups (routes without `host`): `"system"`
    /// (`/etc/resolv.conf`, the default) or a list of `"ip:port"`.
    pub resolver: ResolverSetting,
    /// Seconds before a DNS query times out (hickory retries once). Default 5.
    pub resolver_timeout_secs: u64,
    /// Port of the MX hosts found by MX lookup. Default 25; anything else is
    /// a test/lab knob (a local server on an ephemeral port).
    pub mx_port: u16,
}

/// The keyword `"system"` of [`ResolverSetting`].
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SystemResolver {
    /// `/etc/resolv.conf`.
    System,
}

/// Which DNS servers MX lookups ask.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged, expecting = "\"system\" or a list of \"ip:port\" nameservers")]
pub enum ResolverSetting {
    /// `resolver = "system"`: `/etc/resolv.conf` (and `/etc/hosts`).
    System(SystemResolver),
    /// `resolver = ["192.0.2.53:53"]`: only these servers, no `/etc/hosts`.
    Servers(Vec<SocketAddr>),
}

impl Default for ResolverSetting {
    fn default() -> Self {
        Self::System(SystemResolver::System)
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            ca: None,
            client_cert: None,
            client_key: None,
            max_connections: 8,
            max_messages_per_connection: 100,
            idle_timeout_secs: 5,
            max_in_flight: 256,
            retry_first_secs: 60,
            retry_cap_secs: 3600,
            retry_jitter: 0.2,
            max_age_secs: 5 * 24 * 3600,
            delay_warning_secs: 4 * 3600,
            circuit_threshold: 5,
            poll_ms: 500,
            handoff_grace_secs: 300,
            max_ready: 100_000,
            resolver: ResolverSetting::default(),
            resolver_timeout_secs: 5,
            mx_port: 25,
        }
    }
}

/// How a route's next hop is secured.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteTls {
    /// STARTTLS required, server certificate verified; never plaintext. Default.
    #[default]
    Required,
    /// STARTTLS when offered, plaintext otherwise (only where a route says so).
    Opportunistic,
    /// Plaintext (loopback sinks, tests).
    None,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// A destination.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Recipient domain: `example.org` (exactly), `.example.org` (any
    /// subdomain) or `*` (everything).
    pub domain: String,
    /// Next hop `host:port`; absent means MX lookup of the recipient domain
    /// (`[outbound] resolver`, port `[outbound] mx_port`), with `tls` applied
    /// to every MX host.
    #[serde(default)]
    pub host: Option<String>,
    /// How the next hop is secured. Default `required`.
    #[serde(default)]
    pub tls: RouteTls,
    /// The next hop is this operator's own infrastructure (its mailbox
    /// servers), not another operator: the trust list's DN check does not
    /// apply, and `tls` is used as written. Default false.
    #[serde(default)]
    pub internal: bool,
    /// Largest message this destination takes, octets (Mon espace santé:
    /// 25 MB). A SIZE declared at MAIL FROM above it gets `552 5.3.4` at
    /// the RCPT of such a recipient (the others stay valid); without SIZE,
    /// such a recipient fails at once after DATA, with a DSN naming the
    /// limit. Default: `limits.max_message_size` only.
    #[serde(default)]
    pub max_message_size: Option<usize>,
}
