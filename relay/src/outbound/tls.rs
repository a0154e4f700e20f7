//! The outbound TLS client configuration: trust anchors, optional client
//! certificate, TLS 1.2 minimum with ECDHE-RSA + AES-GCM suites only for TLS
//! 1.2 (the provider and PEM loading are [`crate::tls`]'s).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Why a TLS client configuration could not be built (the node's one TLS error).
pub type TlsConfigError = crate::tls::TlsError;

/// TLS settings for outbound connections, cheap to clone.
///
/// Server certificates are verified against the configured roots only (never
/// the system store) and must be valid for the route's host name.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

/// The SMTP provider ([`crate::tls::smtp_provider`]).
pub fn provider() -> Arc<CryptoProvider> {
    crate::tls::smtp_provider()
}

impl ClientTls {
    /// Trusts `roots`; presents `client_auth` (chain, key) when the server asks.
    ///
    /// # Errors
    /// rustls refuses the key or the protocol versions.
    pub fn new(
        roots: RootCertStore,
        client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Self, TlsConfigError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots);
        let mut config = match client_auth {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        // One config for every delivery: its cache keeps a session per
        // destination host, and the next connection resumes it.
        config.resumption = rustls::client::Resumption::in_memory_sessions(4096);
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Reads the trust anchors from the PEM file `ca` and, if given, the
    /// client certificate chain and key from PEM files.
    ///
    /// # Errors
    /// A file is unreadable, holds no certificate/key, or rustls refuses it.
    pub fn from_pem_files(ca: &Path, client_auth: Option<(&Path, &Path)>) -> Result<Self, TlsConfigError> {
        let roots = crate::tls::load_roots(ca)?;
        let auth = match client_auth {
            Some((chain, key)) => Some((crate::tls::load_certs(chain)?, crate::tls::load_key(key)?)),
            None => None,
        };
        Self::new(roots, auth)
    }

    /// The rustls configuration (for tokio-rustls' connector).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_a_pem_error() {
        let e = ClientTls::from_pem_files(Path::new("/nonexistent/ca.pem"), None).unwrap_err();
        assert!(matches!(e, TlsConfigError::File { .. }), "{e}");
    }
}
