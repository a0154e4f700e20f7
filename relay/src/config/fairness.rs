//! `[fairness]`: one client's night batch must not starve the others.

use serde::Deserialize;

use super::{invalid, ConfigError};

/// `[fairness]`: rate limits per client and per destination. Everything
/// defaults to unlimited (0).
///
/// A client is the authenticated identity (the AUTH account, or the client
/// certificate's subject); an anonymous client is its IP address. Over its
/// rate a client gets `451 4.7.1` at MAIL FROM and retries later; nothing is
/// dropped. Over a destination's rate, deliveries wait (no attempt is
/// counted) until the rate allows them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairnessConfig {
    /// Messages per second per client (0: unlimited).
    pub messages_per_second: f64,
    /// Messages a client may send at once above its rate. Default 0 means
    /// one second's worth (at least 1).
    pub burst: u32,
    /// Concurrent sessions per client with a transaction open (0: unlimited).
    pub sessions_per_client: usize,
    /// Deliveries (SMTP transactions) per minute per destination (next hop;
    /// 0: unlimited), alongside `outbound.max_connections`.
    pub deliveries_per_minute: u32,
    /// Clients with their own limits.
    #[serde(rename = "client")]
    pub clients: Vec<ClientLimits>,
    /// Destinations with their own limit.
    #[serde(rename = "destination")]
    pub destinations: Vec<DestinationLimits>,
}

/// `[[fairness.client]]`: one client's own limits (0: unlimited).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// The AUTH account, the certificate subject as the trace writes it, or an IP address.
    pub identity: String,
    /// Messages per second.
    pub messages_per_second: f64,
    /// Burst above the rate (0: one second's worth).
    pub burst: u32,
    /// Concurrent sessions with a transaction open.
    pub sessions: usize,
}

/// `[[fairness.destination]]`: one next hop's own limit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationLimits {
    /// The next hop (recipient domain or route name).
    pub destination: String,
    /// Deliveries per minute (0: unlimited).
    pub deliveries_per_minute: u32,
}

impl FairnessConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let rate_ok = |r: f64| r.is_finite() && (0.0..=1_000_000.0).contains(&r);
        if !rate_ok(self.messages_per_second) {
            return Err(invalid("fairness.messages_per_second", "must be between 0 and 1000000"));
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.identity.trim().is_empty() {
                return Err(invalid(format!("fairness.client[{i}].identity"), "must not be empty"));
            }
            if !rate_ok(c.messages_per_second) {
                return Err(invalid(
                    format!("fairness.client[{i}].messages_per_second"),
                    "must be between 0 and 1000000",
                ));
            }
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if d.destination.trim().is_empty() {
                return Err(invalid(
                    format!("fairness.destination[{i}].destination"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}
