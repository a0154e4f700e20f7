//! The node's configuration: one TOML file, typed, with defaults, validated at
//! start. `relay/estafette.example.toml` documents every field and is loaded by
//! the tests, so it cannot drift from this struct.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration cannot be used. Each error names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        source: Box<toml::de::Error>,
    },
    /// A value that parses but cannot work.
    #[error("invalid config: {field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `listener[1].tls`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The whole configuration of one node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity and storage of this node.
    pub node: NodeConfig,
    /// Server certificate and client-certificate trust anchors.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// SMTP listeners.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Message limits, shared by every listener.
    #[serde(default)]
    pub limits: Limits,
    /// Destinations this node relays to: a RCPT is accepted only when a route
    /// matches its domain.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Delivery: trust anchors, client certificate, pool and retry settings.
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// The MSSanté trust space. Absent: a plain relay (routes decide).
    #[serde(default)]
    pub trust: Option<TrustConfig>,
    /// The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, queue,
    /// trace and trust-list API). Absent: no admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// `[admin]`: the admin HTTP listener, on its own port.
///
/// `/healthz` and `/readyz` answer everyone (probes); every other route needs
/// `Authorization: Bearer <token>` when a token is configured. A listener on
/// a non-loopback address must have a token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to bind. Default `127.0.0.1:9025` (port 0 picks a free port: tests).
    pub address: SocketAddr,
    /// File holding the bearer token (surrounding whitespace ignored); read
    /// at start. Preferred over `token`: the config file stays shareable.
    pub token_file: Option<PathBuf>,
    /// The bearer token itself (instead of `token_file`).
    pub token: Option<String>,
}

/// The default admin address.
pub const DEFAULT_ADMIN_ADDRESS: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9025));

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADMIN_ADDRESS,
            token_file: None,
            token: None,
        }
    }
}

impl AdminConfig {
    /// The bearer token: `token`, or the content of `token_file` without
    /// surrounding whitespace; `None` when neither is set (no authentication).
    ///
    /// # Errors
    /// The file cannot be read, or holds no token.
    pub fn load_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(invalid("admin.token_file", format!("{} is empty", path.display())));
        }
        Ok(Some(token.to_owned()))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.token.is_some() && self.token_file.is_some() {
            return Err(invalid("admin.token", "set token or token_file, not both"));
        }
        if let Some(t) = &self.token {
            if t.trim().is_empty() || t.trim() != t {
                return Err(invalid("admin.token", "must be non-empty, without surrounding spaces"));
            }
        }
        if !self.address.ip().is_loopback() && self.token.is_none() && self.token_file.is_none() {
            return Err(invalid(
                "admin.address",
                format!(
                    "{} is not a loopback address: set admin.token_file (the API shows senders and recipients)",
                    self.address
                ),
            ));
        }
        Ok(())
    }
}

/// `[trust]`: the node is part of a trust space (MSSanté).
///
/// With it, a recipient is accepted when its domain is in the trust list (or,
/// with `outside = true`, when a route covers it), never both kinds in one
/// transaction; delivery to a listed domain needs TLS, a server certificate
/// chaining to `outbound.ca` and its DN listed for the domain (otherwise the
/// recipient is deferred with `4.7.5`); listeners with `operators = true`
/// take mail only from operators whose client certificate is listed for the
/// MAIL FROM domain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Where the list comes from and how it is kept fresh (`[trust.list]`).
    pub list: crate::trust::TrustListConfig,
    /// Accept recipients outside the trust space, where a route covers them
    /// (never in the same transaction as trust-space recipients). Default false.
    #[serde(default)]
    pub outside: bool,
}

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

/// Identity and storage of this node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// Node number in the cluster, part of every message id (0..=65535).
    #[serde(default)]
    pub node_id: u16,
    /// Directory of the RocksDB spool.
    pub spool: PathBuf,
    /// Longest time a session waits for the spool to confirm a message before
    /// answering `451 4.3.0` (seconds). Default 30.
    #[serde(default = "default_accept_timeout")]
    pub accept_timeout_secs: u64,
    /// AUTH accounts and client-certificate identities with the senders each
    /// may use (see `relay::inbound::identity`). Optional: without it no AUTH
    /// is offered and no sender restriction applies.
    #[serde(default)]
    pub identities: Option<PathBuf>,
}

fn default_accept_timeout() -> u64 {
    30
}

/// PEM files for TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Server certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. Required
    /// when a listener asks for client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for renewal (seconds);
    /// a changed pair is served without restart. Default 60.
    #[serde(default = "default_reload")]
    pub reload_secs: u64,
}

fn default_reload() -> u64 {
    60
}

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
}

fn default_max_sessions() -> usize {
    1000
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 25_000_000,
            max_recipients: 1000,
            max_line_length: 1000,
            max_command_line: 2048,
            max_errors: 10,
        }
    }
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
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file or the field at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        // Relative paths are relative to the config file, not to the cwd.
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.node.spool);
        if let Some(ids) = self.node.identities.as_mut() {
            fix(ids);
        }
        for p in [
            &mut self.outbound.ca,
            &mut self.outbound.client_cert,
            &mut self.outbound.client_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        if let Some(t) = self.trust.as_mut() {
            let list = &mut t.list;
            for loc in [Some(&mut list.source), list.checksum.as_mut()].into_iter().flatten() {
                if !loc.contains("://") && Path::new(loc.as_str()).is_relative() {
                    *loc = dir.join(loc.as_str()).display().to_string();
                }
            }
            if let Some(ca) = list.ca_file.as_mut() {
                fix(ca);
            }
        }
        if let Some(file) = self.admin.as_mut().and_then(|a| a.token_file.as_mut()) {
            fix(file);
        }
        if let Some(t) = self.tls.as_mut() {
            fix(&mut t.cert);
            fix(&mut t.key);
            if let Some(ca) = t.client_ca.as_mut() {
                fix(ca);
            }
        }
    }

    /// Checks what serde cannot: cross-field rules and sane ranges.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.hostname.is_empty() || !proto::address::is_domain(&self.node.hostname) {
            return Err(invalid("node.hostname", "must be a domain name"));
        }
        if self.listeners.is_empty() {
            return Err(invalid("listener", "at least one [[listener]] is needed"));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let field = |f: &str| format!("listener[{i}].{f}");
            if l.tls != TlsMode::None && self.tls.is_none() {
                return Err(invalid(field("tls"), "needs a [tls] section with cert and key"));
            }
            if l.tls == TlsMode::None && l.client_cert != ClientCertMode::None {
                return Err(invalid(field("client_cert"), "client certificates need TLS"));
            }
            if l.client_cert != ClientCertMode::None && self.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none() {
                return Err(invalid(
                    "tls.client_ca",
                    format!("listener {} asks for client certificates", l.name),
                ));
            }
            if (l.auth || l.require_auth) && self.node.identities.is_none() {
                return Err(invalid(field("auth"), "AUTH and require_auth need node.identities"));
            }
            if l.auth && l.tls == TlsMode::None {
                return Err(invalid(field("auth"), "AUTH is only offered over TLS"));
            }
            if l.max_sessions == 0 {
                return Err(invalid(field("max_sessions"), "must be at least 1"));
            }
            if l.operators {
                if self.trust.is_none() {
                    return Err(invalid(field("operators"), "needs a [trust] section"));
                }
                if l.tls == TlsMode::None || self.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none() {
                    return Err(invalid(
                        field("operators"),
                        "needs TLS and tls.client_ca (the trust anchors operators' certificates chain to)",
                    ));
                }
            }
            if l.command_timeout_secs == 0 || l.data_timeout_secs == 0 || l.handshake_timeout_secs == 0 {
                return Err(invalid(field("*_timeout_secs"), "timeouts must be at least 1 second"));
            }
        }
        if self.tls.as_ref().is_some_and(|t| t.reload_secs == 0) {
            return Err(invalid("tls.reload_secs", "must be at least 1"));
        }
        let lim = &self.limits;
        if lim.max_line_length < 80 {
            return Err(invalid(
                "limits.max_line_length",
                "must be at least 80 (RFC 5321 asks for 1000)",
            ));
        }
        if lim.max_command_line < 512 {
            return Err(invalid("limits.max_command_line", "must be at least 512 (RFC 5321)"));
        }
        if lim.max_recipients == 0 || lim.max_message_size == 0 || lim.max_errors == 0 {
            return Err(invalid(
                "limits",
                "max_recipients, max_message_size and max_errors must be positive",
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let d = r.domain.trim_start_matches('.');
            if r.domain != "*" && !proto::address::is_domain(d) {
                return Err(invalid(format!("route[{i}].domain"), "must be a domain, .domain or *"));
            }
            if let Some(h) = &r.host {
                if h.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                    return Err(invalid(format!("route[{i}].host"), "must be host:port"));
                }
                if r.tls != RouteTls::None && self.outbound.ca.is_none() {
                    return Err(invalid("outbound.ca", format!("route {} uses TLS", r.domain)));
                }
            }
        }
        if let Some(t) = &self.trust {
            t.list.validate()?;
            if self.outbound.ca.is_none() {
                return Err(invalid(
                    "outbound.ca",
                    "[trust] needs the trust anchors that other operators' server certificates chain to",
                ));
            }
        }
        let o = &self.outbound;
        if o.client_cert.is_some() != o.client_key.is_some() {
            return Err(invalid(
                "outbound.client_cert",
                "client_cert and client_key go together",
            ));
        }
        if o.max_connections == 0 || o.max_messages_per_connection == 0 || o.max_in_flight == 0 || o.max_ready == 0 {
            return Err(invalid(
                "outbound",
                "max_connections, max_messages_per_connection, max_in_flight and max_ready must be positive",
            ));
        }
        if matches!(&o.resolver, ResolverSetting::Servers(s) if s.is_empty()) {
            return Err(invalid(
                "outbound.resolver",
                "needs at least one \"ip:port\" (or \"system\")",
            ));
        }
        if o.resolver_timeout_secs == 0 || o.mx_port == 0 {
            return Err(invalid(
                "outbound.resolver_timeout_secs",
                "resolver_timeout_secs and mx_port must be positive",
            ));
        }
        if !(0.0..1.0).contains(&o.retry_jitter) || o.retry_first_secs == 0 || o.retry_cap_secs < o.retry_first_secs {
            return Err(invalid("outbound.retry_*", "need 0 <= jitter < 1 and 0 < first <= cap"));
        }
        if let Some(admin) = &self.admin {
            admin.validate()?;
        }
        Ok(())
    }

    /// How long a session waits for the spool.
    pub fn accept_timeout(&self) -> Duration {
        Duration::from_secs(self.node.accept_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PathBuf {
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("estafette.example.toml")
    }

    #[test]
    fn example_file_loads_and_validates() {
        let c = Config::load(&example()).unwrap();
        assert_eq!(c.node.hostname, "relay.example.org");
        assert!(c.listeners.iter().any(|l| l.tls == TlsMode::Implicit));
        assert!(c.node.spool.is_absolute(), "relative paths resolve next to the file");
        assert_eq!(c.outbound.resolver, ResolverSetting::default());
        assert_eq!(c.outbound.mx_port, 25);
        assert_eq!((c.outbound.handoff_grace_secs, c.outbound.max_ready), (300, 100_000));
        assert!(c.routes.iter().any(|r| r.host.is_none()), "an MX route is shown");
    }

    #[test]
    fn mssante_example_loads_and_validates() {
        let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("estafette.mssante.example.toml");
        let c = Config::load(&path).unwrap();
        let trust = c.trust.as_ref().expect("[trust]");
        assert!(!trust.outside);
        assert!(trust.list.source.starts_with("https://"));
        assert!(c.listeners.iter().any(|l| l.operators));
        assert!(c.routes.iter().all(|r| r.internal));
        let admin = c.admin.as_ref().expect("[admin]");
        assert!(!admin.address.ip().is_loopback() && admin.token_file.is_some());
        // An operator listener without [trust] is refused, naming the field.
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.split("[trust]").next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, cut).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("operators") && e.contains("[trust]"), "{e}");
    }

    #[test]
    fn admin_section() {
        let c = Config::load(&example()).unwrap();
        let admin = c.admin.as_ref().expect("the example shows [admin]");
        assert_eq!(admin.address, DEFAULT_ADMIN_ADDRESS);
        assert_eq!(
            admin.token_file.as_deref(),
            Some(Path::new("/etc/estafette/admin.token"))
        );
        let base = std::fs::read_to_string(example()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let load = |from: &str, to: &str| {
            assert!(base.contains(from), "example lacks {from}");
            let p = dir.path().join("c.toml");
            std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
            Config::load(&p)
        };
        // An empty section means the defaults; no section, no admin listener.
        let c = load("[admin]\naddress = \"127.0.0.1:9025\"", "[admin]").unwrap();
        assert_eq!(c.admin.as_ref().unwrap().address, DEFAULT_ADMIN_ADDRESS);
        let section = base.find("[admin]").map(|at| &base[at..]).unwrap();
        let section = &section[..section.find("\n\n").unwrap()];
        let p = dir.path().join("none.toml");
        std::fs::write(&p, base.replacen(section, "", 1)).unwrap();
        assert!(Config::load(&p).unwrap().admin.is_none());
        // A relative token file is next to the config file.
        let c = load("/etc/estafette/admin.token", "admin.token").unwrap();
        assert_eq!(c.admin.unwrap().token_file.unwrap(), dir.path().join("admin.token"));
        // Refused, naming the field.
        let e = load("127.0.0.1:9025", "0.0.0.0:9025");
        assert!(e.is_ok(), "a token file is set: any address");
        let e = load(
            "token_file = \"/etc/estafette/admin.token\"",
            "token_file = \"/etc/estafette/admin.token\"\ntoken = \"t\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("admin.token") && e.contains("not both"), "{e}");
        let e = load(
            "address = \"127.0.0.1:9025\"     # a non-loopback address needs a token\ntoken_file = \"/etc/estafette/admin.token\"",
            "address = \"0.0.0.0:9025\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("admin.address") && e.contains("token"), "{e}");
        let e = load("token_file = \"/etc/estafette/admin.token\"", "token = \"\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.token"), "{e}");
        // The token file: trimmed; empty or missing is an error naming it.
        let t = dir.path().join("admin.token");
        std::fs::write(&t, "s3cret\n").unwrap();
        let c = load("/etc/estafette/admin.token", "admin.token").unwrap();
        assert_eq!(
            c.admin.as_ref().unwrap().load_token().unwrap().as_deref(),
            Some("s3cret")
        );
        std::fs::write(&t, " \n").unwrap();
        let e = c.admin.as_ref().unwrap().load_token().unwrap_err().to_string();
        assert!(e.contains("admin.token_file") && e.contains("empty"), "{e}");
        std::fs::remove_file(&t).unwrap();
        let e = c.admin.as_ref().unwrap().load_token().unwrap_err().to_string();
        assert!(e.contains("admin.token"), "{e}");
    }

    #[test]
    fn resolver_is_system_or_a_server_list() {
        let base = std::fs::read_to_string(example()).unwrap();
        let load = |line: &str| {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.toml");
            std::fs::write(&p, base.replacen("resolver = \"system\"", line, 1)).unwrap();
            Config::load(&p)
        };
        let c = load("resolver = [\"127.0.0.1:5353\", \"[::1]:53\"]").unwrap();
        assert_eq!(
            c.outbound.resolver,
            ResolverSetting::Servers(vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()])
        );
        for bad in ["resolver = \"google\"", "resolver = [\"127.0.0.1\"]", "resolver = []"] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains("resolver") || e.contains("system"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let base = std::fs::read_to_string(example()).unwrap();
        let cases = [
            (
                "hostname = \"relay.example.org\"",
                "hostname = \"not a host\"",
                "node.hostname",
            ),
            (
                "max_line_length = 1000",
                "max_line_length = 10",
                "limits.max_line_length",
            ),
            ("max_sessions = 1000", "max_sessions = 0", "max_sessions"),
        ];
        for (from, to, field) in cases {
            assert!(base.contains(from), "example lacks {from}");
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.toml");
            std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, format!("{base}\nunknown_key = 1\n")).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown"), "{e}");
    }
}
