//! TLS settings for both sides, on rustls with the aws-lc-rs provider
//! ([`provider`]); PEM files are read by `net::tls`.
//!
//! Sender: verifies the target against a CA file (`--tls-ca`), or accepts any
//! certificate with `--insecure` (benchmarks against a self-signed relay; the
//! handshake signatures are still checked, the chain is not). Optionally
//! presents a client certificate. Sink: serves a certificate from PEM files,
//! or a self-signed one made at start with rcgen; optionally requires client
//! certificates signed by a CA file.

use std::path::PathBuf;
use std::sync::Arc;

use net::tls::{load_certs, load_key, load_roots, AcceptAnyServerCert, PemError};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds nothing usable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// rustls refused the settings.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// rcgen could not make the self-signed certificate.
    #[error(transparent)]
    Rcgen(#[from] rcgen::Error),
    /// A client certificate verifier could not be built.
    #[error("client CA: {0}")]
    Verifier(String),
    /// Neither a CA nor `insecure` was given for a TLS connection.
    #[error("TLS to the target needs --tls-ca FILE or --insecure")]
    NoTrust,
}

/// The aws-lc-rs provider, the one this crate uses for SMTP TLS: the tool
/// shares the machine with the relay it measures, and aws-lc's handshake
/// costs less CPU than ring's (AVX-512 code paths for RSA and X25519).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// How the sender trusts the target and identifies itself.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// PEM file of trust anchors for the target's certificate.
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (benchmarks only).
    pub insecure: bool,
    /// Resume TLS sessions across connections.
    pub resume: bool,
    /// Client certificate chain and key (PEM files).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Builds the sender's rustls configuration.
///
/// # Errors
/// Unreadable files, no trust configured, or rustls refusing the key.
pub fn client_config(opts: &ClientTlsOptions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match (&opts.ca, opts.insecure) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider()))),
        (Some(ca), false) => builder.with_root_certificates(load_roots(ca)?),
        (None, false) => return Err(TlsError::NoTrust),
    };
    let mut config = match &opts.client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(load_certs(chain)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    // Off unless asked: one-connection-per-message benchmarks measure the
    // full handshake. `--resume` keeps sessions as Postfix's cache does; the
    // run's connections share this config, so they share its cache.
    config.resumption = if opts.resume {
        rustls::client::Resumption::in_memory_sessions(1024)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// The sink's certificate and client-certificate policy.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsOptions {
    /// Certificate chain and key (PEM); `None`: self-signed for `localhost`
    /// and 127.0.0.1, made at start.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Require client certificates signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
}

/// A self-signed certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// Makes a self-signed ECDSA P-256 certificate for `names` (DNS names or IPs).
///
/// # Errors
/// rcgen refused a name.
pub fn self_signed(names: &[&str]) -> Result<SelfSigned, TlsError> {
    let names: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names)?;
    Ok(SelfSigned {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    })
}

/// Builds the sink's rustls configuration.
///
/// # Errors
/// Unreadable files, a bad key, or a bad client CA.
pub fn server_config(opts: &ServerTlsOptions) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = match &opts.cert {
        Some((c, k)) => (load_certs(c)?, load_key(k)?),
        None => {
            let ss = self_signed(&["localhost", "127.0.0.1"])?;
            let chain = vec![CertificateDer::from_pem_slice(ss.cert_pem.as_bytes())
                .map_err(|e| TlsError::Verifier(e.to_string()))?];
            let key =
                PrivateKeyDer::from_pem_slice(ss.key_pem.as_bytes()).map_err(|e| TlsError::Verifier(e.to_string()))?;
            (chain, key)
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &opts.client_ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}
