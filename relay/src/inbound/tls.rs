//! Server-side TLS: rustls with the SMTP provider ([`crate::tls`]), TLS 1.2
//! minimum, TLS 1.2 suites limited to ECDHE-RSA with AES-GCM (the MSSanté
//! rule), client certificates verified against the configured CA when a
//! listener asks for them, the certificate reloaded when renewed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{ClientCertMode, TlsFiles};

pub use crate::tls::{load_certs, load_key, load_roots, TlsError};

/// The SMTP provider ([`crate::tls::smtp_provider`]).
pub fn provider() -> Arc<CryptoProvider> {
    crate::tls::smtp_provider()
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
/// rustls refuses the protocol versions (does not happen with aws-lc-rs).
pub fn server_config_with_verifier(
    cert: Arc<ReloadingCert>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    // SMTP has no ALPN; session resumption saves a handshake per connection
    // (what Postfix's smtpd TLS session cache does): ids in a cache of 4096
    // sessions, and tickets whose keys rotate every 6 hours (12-hour life).
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
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
