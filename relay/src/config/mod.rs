//! The node's configuration: one TOML file, typed, with defaults, validated at
//! start. `relay/estafette.example.toml` documents every field and is loaded by
//! the tests, so it cannot drift from these structs.
//!
//! # Layout
//! One file per section of the TOML file; this module holds the whole
//! ([`Config`]), loading (paths relative to the file) and the cross-section
//! rules ([`Config::validate`]).
//! - [`node`]: `[node]` (identity, spool, postmaster) and `[tls]` (PEM files).
//! - [`listener`]: `[[listener]]` and `[limits]`.
//! - [`outbound`]: `[outbound]` (delivery, retry, resolver) and `[[route]]`.
//! - [`trust`]: `[trust]` and `[trust.list]` (the MSSanté list's source).
//! - [`admin`]: `[admin]` (the admin HTTP listener).
//! - [`cluster`]: `[cluster]` (peers, replication, takeover).
//! - `env`: `ESTAFETTE_SECTION__KEY` overrides of scalar settings.
//!
//! The lowest layer of the relay: it depends on no other module of it.

mod admin;
mod cluster;
mod env;
mod fairness;
mod listener;
mod node;
mod outbound;
mod trust;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use admin::{AdminConfig, DEFAULT_ADMIN_ADDRESS};
pub use cluster::{ordinal, ClusterConfig, DiscoverConfig, MemberConfig};
pub use fairness::{ClientLimits, DestinationLimits, FairnessConfig};
pub use listener::{ClientCertMode, Limits, ListenerConfig, TlsMode};
pub use node::{NodeConfig, TlsFiles};
pub use outbound::{OutboundConfig, ResolverSetting, RouteConfig, RouteTls, SystemResolver};
pub use trust::{Location, TrustConfig, TrustListConfig};

/// Prefix of the environment variables that override settings
/// (`ESTAFETTE_NODE__NODE_ID=2`); see the `env` module for the rules.
pub const PREFIX: &str = "ESTAFETTE_";

/// Why a configuration cannot be used. Each error names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    ///
    /// The I/O error is part of the message, not a separate cause, so that it
    /// is printed once.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema. The parser's
    /// message (line, column, key) is part of the message, printed once.
    #[error("invalid config file {path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        error: Box<toml::de::Error>,
    },
    /// An `ESTAFETTE_SECTION__KEY` variable that cannot be applied.
    #[error("invalid environment override {var}: {reason}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong (no such section, not a single value...).
        reason: String,
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

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
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
    /// `[fairness]`: rate limits per client and per destination.
    #[serde(default)]
    pub fairness: FairnessConfig,
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
    /// Peers and replication (`[cluster]`). Absent: a single node.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Dotted keys set from `ESTAFETTE_*` variables at load, for the log.
    #[serde(skip)]
    pub overrides: Vec<String>,
}

impl Config {
    /// Reads a config file, applies the process's `ESTAFETTE_*` overrides,
    /// and validates the result.
    ///
    /// Without `node.node_id` in the file (or the environment), a node with a
    /// `[cluster]` section takes its member's id, so that a StatefulSet needs
    /// only `ESTAFETTE_CLUSTER__NAME` per pod.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the variable or the field at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, std::env::vars())
    }

    /// [`load`](Self::load) with these variables instead of the process's.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse_with(path, &text, vars)
    }

    /// [`load_with`](Self::load_with) on `text`, the content of the file at
    /// `path` (which names it in errors and anchors its relative paths).
    ///
    /// # Errors
    /// As [`load`](Self::load), but for reading the file.
    pub fn parse_with(
        path: &Path,
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_error = |error| ConfigError::Parse {
            path: path.to_owned(),
            error: Box::new(error),
        };
        let mut root = toml::Value::Table(toml::from_str(text).map_err(parse_error)?);
        let overrides = env::apply(&mut root, vars)?;
        let explicit_id = root.get("node").and_then(|n| n.get("node_id")).is_some();
        // Straight from the text when nothing was overridden: the parser's
        // errors then carry the line and column.
        let mut config: Self = if overrides.is_empty() {
            toml::from_str(text)
        } else {
            root.try_into()
        }
        .map_err(parse_error)?;
        config.overrides = overrides;
        if !explicit_id {
            if let Some(id) = config.cluster.as_ref().and_then(ClusterConfig::my_id) {
                config.node.node_id = id;
            }
        }
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
        if let Some(c) = self.cluster.as_mut() {
            fix(&mut c.ca);
            fix(&mut c.cert);
            fix(&mut c.key);
        }
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
        if let Some(a) = self.admin.as_mut() {
            for file in [a.token_file.as_mut(), a.write_token_file.as_mut(), a.client_ca.as_mut()]
                .into_iter()
                .flatten()
            {
                fix(file);
            }
        }
        if let Some(t) = self.tls.as_mut() {
            fix(&mut t.cert);
            fix(&mut t.key);
            if let Some(ca) = t.client_ca.as_mut() {
                fix(ca);
            }
        }
    }

    /// What works but an operator should know: settings a standard expects
    /// that are missing. `estafette config check` prints them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.node.postmaster.is_none() {
            out.push(
                "node.postmaster is not set: RCPT TO:<postmaster> is refused (550 5.1.1), \
                 but RFC 5321 §4.5.1 requires a relay to accept it"
                    .to_string(),
            );
        }
        out
    }

    /// Checks what serde cannot: cross-field rules and sane ranges.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.hostname.is_empty() || !proto::address::is_domain(&self.node.hostname) {
            return Err(invalid("node.hostname", "must be a domain name"));
        }
        if self.node.trace_retention_days == 0 || self.node.trace_sweep_secs == 0 || self.node.max_auth_checks == 0 {
            return Err(invalid(
                "node.trace_retention_days",
                "trace_retention_days, trace_sweep_secs and max_auth_checks must be at least 1",
            ));
        }
        if let Some(p) = &self.node.postmaster {
            if proto::address::Mailbox::parse(p).is_err() {
                return Err(invalid(
                    "node.postmaster",
                    format!("{p:?} is not a mailbox (local@domain)"),
                ));
            }
        }
        if self.listeners.is_empty() {
            return Err(invalid("listener", "at least one [[listener]] is needed"));
        }
        self.fairness.validate()?;
        if self.admin.as_ref().is_some_and(|a| a.client_ca.is_some()) && self.tls.is_none() {
            return Err(invalid(
                "admin.client_ca",
                "the admin port then serves HTTPS with the node's certificate: add [tls]",
            ));
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
            if l.proxy_protocol && l.proxy_from.is_empty() {
                return Err(invalid(
                    field("proxy_from"),
                    "proxy_protocol needs the load balancers' networks (anyone could claim any address)",
                ));
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
        if lim.body_piece_size != 0 && lim.body_piece_size < 64 << 10 {
            return Err(invalid("limits.body_piece_size", "must be 0 or at least 65536"));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let d = r.domain.trim_start_matches('.');
            if r.domain != "*" && !proto::address::is_domain(d) {
                return Err(invalid(format!("route[{i}].domain"), "must be a domain, .domain or *"));
            }
            if r.max_message_size == Some(0) {
                return Err(invalid(format!("route[{i}].max_message_size"), "must be positive"));
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
        if let Some(c) = &self.cluster {
            c.validate(self.node.node_id)?;
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
mod tests;
