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
    /// File holding the write token: the only token that may change the
    /// queue (`estafette queue hold|release|retry|bounce|delete`). It also
    /// reads. Without it, a node with a read token refuses queue changes
    /// (403); a node with no token at all (loopback only) allows them.
    pub write_token_file: Option<PathBuf>,
    /// The write token itself (instead of `write_token_file`).
    pub write_token: Option<String>,
    /// Most spool records one queue listing, summary or change reads
    /// (default 1,000,000, about a second of reading): beyond it the answer
    /// says `truncated`.
    pub queue_scan_limit: usize,
    /// Serve HTTPS (the node's `[tls]` certificate) and ask clients for a
    /// certificate chaining to this CA (PEM): callers off loopback must show
    /// one on every route but the probes and the dashboard page; tokens still
    /// apply. The CLI inside the pod calls over loopback. Default: plain HTTP.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: callers on loopback (the CLI inside the pod, the
    /// preStop hook's drain) need no client certificate. Default true.
    pub loopback_without_certificate: bool,
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
            write_token_file: None,
            write_token: None,
            queue_scan_limit: 1_000_000,
            client_ca: None,
            loopback_without_certificate: true,
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
        load(self.token.as_ref(), self.token_file.as_ref(), "admin.token_file")
    }

    /// The write token: `write_token`, or the content of `write_token_file`;
    /// `None` when neither is set.
    ///
    /// # Errors
    /// The file cannot be read, or holds no token.
    pub fn load_write_token(&self) -> Result<Option<String>, ConfigError> {
        load(
            self.write_token.as_ref(),
            self.write_token_file.as_ref(),
            "admin.write_token_file",
        )
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, inline, file) in [
            ("admin.token", &self.token, self.token_file.is_some()),
            ("admin.write_token", &self.write_token, self.write_token_file.is_some()),
        ] {
            if inline.is_some() && file {
                return Err(invalid(key, format!("set {key} or {key}_file, not both")));
            }
            if let Some(t) = inline {
                if t.trim().is_empty() || t.trim() != t {
                    return Err(invalid(key, "must be non-empty, without surrounding spaces"));
                }
            }
        }
        if self.token.is_some() && self.token == self.write_token {
            return Err(invalid("admin.write_token", "must differ from admin.token"));
        }
        if self.queue_scan_limit == 0 {
            return Err(invalid("admin.queue_scan_limit", "must be at least 1"));
        }
        let any_token = self.token.is_some()
            || self.token_file.is_some()
            || self.write_token.is_some()
            || self.write_token_file.is_some();
        if !self.address.ip().is_loopback() && !any_token {
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

/// An inline token, or the trimmed content of its file.
fn load(inline: Option<&String>, file: Option<&PathBuf>, key: &str) -> Result<Option<String>, ConfigError> {
    let Some(path) = file else {
        return Ok(inline.cloned());
    };
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.clone(),
        error,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(Some(token.to_owned()))
}
