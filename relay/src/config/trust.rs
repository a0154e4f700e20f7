//! `[trust]` and `[trust.list]`: the MSSanté trust space and where its list
//! comes from. Loading and refreshing the list is `crate::trust`'s work.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

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
    pub list: TrustListConfig,
    /// Accept recipients outside the trust space, where a route covers them
    /// (never in the same transaction as trust-space recipients). Default false.
    #[serde(default)]
    pub outside: bool,
}

/// Where a list (or its checksum) comes from, read from a config string:
/// `https://…` is downloaded, anything else is a file path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local file.
    File(PathBuf),
    /// An `https://` URL.
    Https(String),
}

impl Location {
    /// `https://` → [`Location::Https`]; `http://` → `None` (refused: anyone on
    /// the path could change the list); anything else → [`Location::File`].
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.get(..8).map(str::to_ascii_lowercase);
        match lower.as_deref() {
            Some("https://") => Some(Self::Https(s.to_owned())),
            _ if s.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://")) => None,
            _ => Some(Self::File(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Https(u) => f.write_str(u),
        }
    }
}

/// `[trust]`: where the list comes from and how it is kept fresh.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrustListConfig {
    /// A file path, or an `https://` URL (ANS publishes the list over HTTPS).
    pub source: String,
    /// PEM CA certificate(s): the only roots trusted for `https://` sources
    /// and checksums (no system store). Required for HTTPS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// ANS's SHA-256 checksum file (path or `https://` URL): the hex digest,
    /// optionally followed by a file name. When set, a list whose digest
    /// differs is refused.
    #[serde(default)]
    pub checksum: Option<String>,
    /// Seconds between refreshes. Default 3600 (ANS publishes daily at most).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// A refreshed list with this many percent fewer domains or entries than the
    /// current one is refused. Default 10; 100 disables the check.
    #[serde(default = "default_max_shrink_percent")]
    pub max_shrink_percent: u8,
    /// Largest accepted list, in bytes. Default 64 MiB (the real list is 3.7 MB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Timeout of one HTTPS request, in seconds. Default 60.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_refresh_secs() -> u64 {
    3600
}
fn default_max_shrink_percent() -> u8 {
    10
}
fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_timeout_secs() -> u64 {
    60
}

impl TrustListConfig {
    /// A file or URL source with every other field at its default.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ca_file: None,
            checksum: None,
            refresh_secs: default_refresh_secs(),
            max_shrink_percent: default_max_shrink_percent(),
            max_bytes: default_max_bytes(),
            timeout_secs: default_timeout_secs(),
        }
    }

    /// Checks what can be checked without I/O. Fields are named `trust.…`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            field: format!("trust.{field}"),
            reason: reason.to_owned(),
        };
        let https_reason = "plain http:// is refused (the list decides who is trusted); use https:// or a file";
        for (field, value) in [("source", Some(&self.source)), ("checksum", self.checksum.as_ref())] {
            let Some(value) = value else { continue };
            match Location::parse(value) {
                None => return Err(invalid(field, https_reason)),
                Some(Location::Https(_)) if self.ca_file.is_none() => {
                    return Err(invalid("ca_file", "an https:// source or checksum needs a CA file"))
                }
                Some(Location::File(p)) if p.as_os_str().is_empty() => return Err(invalid(field, "empty")),
                Some(_) => {}
            }
        }
        if self.refresh_secs == 0 {
            return Err(invalid("refresh_secs", "must be at least 1"));
        }
        if self.max_shrink_percent > 100 {
            return Err(invalid("max_shrink_percent", "a percentage, 0 to 100"));
        }
        if self.max_bytes == 0 || self.timeout_secs == 0 {
            return Err(invalid("max_bytes/timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}
