//! `[admin]`: the admin HTTP listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};

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
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(invalid("admin.token_file", format!("{} is empty", path.display())));
        }
        Ok(Some(token.to_owned()))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
