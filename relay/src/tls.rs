//! TLS building blocks shared by every TLS user of the node: the crypto
//! provider choice, PEM loading (`net::tls`'s, with the relay's one error
//! type) and that error type. The server side
//! (`inbound::tls`), the delivery client (`outbound::tls`) and the trust-list
//! download (`trust::fetch`) build their rustls configs from these.
//!
//! # Providers
//! SMTP sessions, both ways, use [`smtp_provider`]: aws-lc-rs, which signs
//! RSA-2048 with AVX-512 IFMA where the CPU has it (about 20 % less CPU per
//! full handshake than ring, measured on the project's machine), restricted
//! to the MSSanté suites. The HTTPS trust-list download uses [`https_provider`]
//! (ring, off the hot path). Every config names its provider explicitly:
//! both are linked, so rustls' process default would be ambiguous.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, RootCertStore, SupportedCipherSuite};

/// Why TLS could not be set up. Names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file it is (certificate, key, CA).
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the combination (key does not match certificate, …).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

impl From<net::tls::PemError> for TlsError {
    fn from(e: net::tls::PemError) -> Self {
        Self::File {
            what: e.what,
            path: e.path,
            reason: e.reason,
        }
    }
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
/// TLS 1.2 suites cut down to ECDHE-RSA with AES-GCM.
pub fn smtp_provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.retain(allowed);
    Arc::new(p)
}

/// The provider of the HTTPS trust-list download: ring, rustls' defaults.
pub fn https_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain ([`net::tls::load_certs`]).
///
/// # Errors
/// The file is unreadable or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    Ok(net::tls::load_certs(path)?)
}

/// Reads a PEM private key ([`net::tls::load_key`]).
///
/// # Errors
/// The file is unreadable or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    Ok(net::tls::load_key(path)?)
}

/// Reads CA certificates into a root store ([`net::tls::load_roots`]).
///
/// # Errors
/// The file is unreadable or holds no valid CA certificate.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    Ok(net::tls::load_roots(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls12_suites_are_ecdhe_rsa_aes_gcm_only() {
        let p = smtp_provider();
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
    fn missing_files_name_the_file() {
        let e = load_roots(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(matches!(e, TlsError::File { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = load_key(Path::new("/nonexistent/key.pem")).unwrap_err();
        assert!(e.to_string().starts_with("private key /nonexistent/key.pem"), "{e}");
    }
}
