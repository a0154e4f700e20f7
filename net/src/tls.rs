//! TLS helpers every SMTP user of rustls needs: PEM loading with errors that
//! name the file, and the benchmark-only verifier that accepts any server
//! certificate. The crypto provider is the caller's choice: nothing here
//! installs or assumes a process default.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A PEM file that could not be read or holds nothing usable. Names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {path}: {reason}")]
pub struct PemError {
    /// Which file it is: `certificate`, `private key` or `CA certificate`.
    pub what: &'static str,
    /// Its path.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

fn pem_error(what: &'static str, path: &Path, reason: impl ToString) -> PemError {
    PemError {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file, in order (a chain: end entity
/// first).
///
/// # Errors
/// The file is unreadable, malformed, or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error("certificate", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", path, e))?;
    if certs.is_empty() {
        return Err(pem_error("certificate", path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// The file is unreadable or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("private key", path, e))
}

/// Reads CA certificates into a root store.
///
/// # Errors
/// The file is unreadable or holds no valid CA certificate.
pub fn load_roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| pem_error("CA certificate", path, e))?;
    }
    Ok(roots)
}

/// Accepts any server certificate, for benchmarks against a self-signed relay
/// only: the chain and the name are not checked, the handshake signatures
/// still are (with `provider`'s algorithms).
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyServerCert {
    /// A verifier checking signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { provider }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let e = load_roots(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(e.what, "certificate");
        assert!(e.to_string().starts_with("certificate /nonexistent/ca.pem: "), "{e}");
        let e = load_key(Path::new("/nonexistent/key.pem")).unwrap_err();
        assert!(e.to_string().starts_with("private key /nonexistent/key.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "nothing here\n").unwrap();
        let e = load_certs(&path).unwrap_err();
        assert_eq!(e.reason, "no CERTIFICATE block");
    }

    #[test]
    fn self_signed_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        assert_eq!(load_certs(&cert).unwrap().len(), 1);
        assert!(load_key(&key).is_ok());
        assert_eq!(load_roots(&cert).unwrap().len(), 1);
    }
}
