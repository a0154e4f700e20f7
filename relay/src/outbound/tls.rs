//! The outbound TLS client configuration: trust anchors, optional client
//! certificate, TLS 1.2 minimum with ECDHE-RSA + AES-GCM suites only for TLS 1.2.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, RootCertStore, SupportedCipherSuite};

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the settings (bad key, key not matching the certificate…).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// TLS settings for outbound connections, cheap to clone.
///
/// Server certificates are verified against the configured roots only (never
/// the system store) and must be valid for the route's host name.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

/// The TLS 1.2 suites allowed: ECDHE-RSA with AES-GCM, as MSSanté requires
/// between operators (IGC-Santé certificates are RSA). TLS 1.3 suites are all
/// allowed (they are all AEAD with ephemeral key exchange, and TLS 1.3 also
/// accepts ECDSA certificates).
fn allowed(suite: &SupportedCipherSuite) -> bool {
    match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => matches!(
            suite.suite(),
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        ),
    }
}

/// The provider of every SMTP TLS session (inbound and outbound): aws-lc-rs,
/// restricted to [`allowed`] suites. aws-lc signs with RSA-2048 using AVX-512
/// IFMA where the CPU has it, about 20 % less CPU per full handshake than
/// ring on the project's machine; ring stays for the HTTPS trust-list
/// download and certificate generation, which are not on the hot path.
pub fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.retain(allowed);
    p
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
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots);
        let config = match client_auth {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
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
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).map_err(|e| pem_error(ca, e))?;
        }
        let auth = match client_auth {
            Some((chain, key)) => {
                let k = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
                Some((read_certs(chain)?, k))
            }
            None => None,
        };
        Self::new(roots, auth)
    }

    /// The rustls configuration (for tokio-rustls' connector).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls12_suites_are_ecdhe_rsa_aes_gcm_only() {
        let p = provider();
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert!(!tls12.is_empty());
        for s in &tls12 {
            assert!(s.contains("ECDHE_RSA") && s.contains("GCM"), "{s}");
        }
    }

    #[test]
    fn missing_ca_file_is_a_pem_error() {
        let e = ClientTls::from_pem_files(Path::new("/nonexistent/ca.pem"), None).unwrap_err();
        assert!(matches!(e, TlsConfigError::Pem { .. }), "{e}");
    }
}
