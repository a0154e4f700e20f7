//! Server-side TLS: rustls with the ring provider, TLS 1.2 minimum, TLS 1.2
//! suites limited to ECDHE-RSA with AES-GCM (the MSSanté rule), client certificates
//! verified against the configured CA when a listener asks for them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::ops::config::{ClientCertMode, TlsFiles};

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

fn file_err(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The ring provider with TLS 1.2 suites cut down to ECDHE-RSA with AES-GCM
/// (the MSSanté rule; certificates are RSA 2048). TLS 1.3 suites are all
/// AEAD with ephemeral key exchange and stay.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(crate::outbound::tls::provider())
}

/// Reads a PEM certificate chain.
///
/// # Errors
/// The file is unreadable or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err("certificate", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err("certificate", path, e))?;
    if certs.is_empty() {
        return Err(file_err("certificate", path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Reads a PEM private key.
///
/// # Errors
/// The file is unreadable or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err("private key", path, e))
}

/// Reads CA certificates into a root store.
///
/// # Errors
/// The file is unreadable or holds no valid CA certificate.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_err("CA certificate", path, e))?;
    }
    Ok(roots)
}

/// The server certificate, re-read from its files when they change
/// ([`ReloadingCert::refresh`], called on a timer by the node): certificates
/// are renewed without a restart. A bad new pair (unreadable, key not matching)
/// is refused with an error and the previous one stays in use.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(cert).max(m(key))
}

impl ReloadingCert {
    /// Loads the pair once.
    ///
    /// # Errors
    /// Unreadable files or a key that does not match the certificate.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let pair = Self::read(&files.cert, &files.key, &provider)?;
        Ok(Arc::new(Self {
            current: RwLock::new((pair, modified(&files.cert, &files.key))),
            cert: files.cert.clone(),
            key: files.key.clone(),
            provider,
        }))
    }

    fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
        let pair = CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, provider)?;
        Ok(Arc::new(pair))
    }

    /// Re-reads the files if their modification time changed. Returns whether
    /// a new certificate is now served.
    ///
    /// # Errors
    /// The new files are bad; the previous certificate stays in use.
    pub fn refresh(&self) -> Result<bool, TlsError> {
        let now = modified(&self.cert, &self.key);
        let seen = self.current.read().map_or(None, |c| c.1);
        if now == seen {
            return Ok(false);
        }
        let pair = Self::read(&self.cert, &self.key, &self.provider)?;
        if let Ok(mut c) = self.current.write() {
            *c = (pair, now);
        }
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

/// Builds the rustls server config of a listener, serving `cert`.
///
/// # Errors
/// Unreadable CA file, or a client CA that is needed but missing.
pub fn server_config(
    files: &TlsFiles,
    cert: Arc<ReloadingCert>,
    client_cert: ClientCertMode,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = match (client_cert, &files.client_ca) {
        (ClientCertMode::None, _) => WebPkiClientVerifier::no_client_auth(),
        (mode, Some(ca)) => {
            let roots = Arc::new(load_roots(ca)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let v = if mode == ClientCertMode::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            v.build().map_err(|e| TlsError::Verifier(e.to_string()))?
        }
        (_, None) => return Err(TlsError::Verifier("client certificates need tls.client_ca".into())),
    };
    server_config_with_verifier(cert, verifier)
}

/// A server config serving `cert` that judges client certificates with
/// `verifier` (operator listeners defer the chain check to the session).
///
/// # Errors
/// rustls refuses the protocol versions (does not happen with ring).
pub fn server_config_with_verifier(
    cert: Arc<ReloadingCert>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    // SMTP has no ALPN; session resumption saves a handshake per connection.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// Version and cipher of an established connection, for Received headers and logs.
pub fn describe(conn: &rustls::ServerConnection) -> proto::server::TlsInfo {
    let version = conn
        .protocol_version()
        .map_or_else(|| "TLS".to_string(), |v| format!("{v:?}").replace("TLSv1_", "TLSv1."));
    let cipher = conn
        .negotiated_cipher_suite()
        .map_or_else(|| "unknown".to_string(), |s| format!("{:?}", s.suite()));
    proto::server::TlsInfo { version, cipher }
}

/// The subject DN of the verified client certificate, if one was presented.
pub fn peer_subject(conn: &rustls::ServerConnection) -> Option<proto::dn::Dn> {
    let cert = conn.peer_certificates()?.first()?;
    crate::trust::subject_dn(cert).ok()
}
