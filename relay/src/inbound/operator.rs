//! Listeners for other operators of the trust space (`operators = true`):
//! TLS and a client certificate are required, the certificate must chain to
//! the trust anchors (`tls.client_ca`: IGC-Santé in production), and its
//! subject DN must be listed in the trust list for the MAIL FROM domain.
//!
//! The chain is checked after the handshake rather than during it, so that a
//! refused peer gets an SMTP reply that says which check failed (`550 5.7.1
//! client certificate does not chain to the trust anchors: …`) instead of a
//! bare TLS alert: operators debug their certificates from those lines. The
//! handshake still proves that the client holds the certificate's key
//! (rustls verifies its signature), and no mail is accepted before MAIL FROM
//! has passed every check.

use std::sync::Arc;

use proto::address::ReversePath;
use proto::dn::Dn;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::policy::Refusal;
use super::tls::TlsError;
use crate::trust::TrustIndex;

/// Asks every client for a certificate, verifies the handshake signature
/// (proof of possession), and leaves the chain to [`PeerCheck::verify`].
#[derive(Debug)]
pub(crate) struct DeferredVerifier {
    strict: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // A missing certificate is refused at MAIL FROM with a reason.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.strict.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}

/// The chain check of an operator listener: the trust anchors' verifier.
#[derive(Debug, Clone)]
pub(crate) struct PeerCheck {
    strict: Arc<dyn ClientCertVerifier>,
}

impl PeerCheck {
    /// A check against `roots`, and the handshake verifier that defers to it.
    ///
    /// # Errors
    /// The verifier cannot be built (no usable root).
    pub(crate) fn new(
        roots: rustls::RootCertStore,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<(Self, Arc<DeferredVerifier>), TlsError> {
        let strict = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        Ok((Self { strict: strict.clone() }, Arc::new(DeferredVerifier { strict })))
    }

    /// Checks the chain the client presented (leaf first).
    pub(crate) fn verify(&self, chain: Option<&[CertificateDer<'_>]>) -> PeerCert {
        let Some((leaf, intermediates)) = chain.and_then(<[_]>::split_first) else {
            return PeerCert::Missing;
        };
        if let Err(e) = self.strict.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            return PeerCert::Invalid(e.to_string());
        }
        match crate::trust::subject_dn(leaf) {
            Ok(dn) => PeerCert::Valid(dn),
            Err(e) => PeerCert::Invalid(format!("unreadable subject: {e}")),
        }
    }
}

/// What an operator presented, as judged after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerCert {
    /// Not in TLS yet, or no certificate sent.
    Missing,
    /// Sent, but it does not chain to the anchors (or is expired, or not for
    /// client authentication): rustls' words.
    Invalid(String),
    /// Chains to the anchors; its subject.
    Valid(Dn),
}

fn refuse(text: String) -> Result<(), Refusal> {
    Err(Refusal::Operator(text))
}

/// MAIL FROM on an operator listener. Checks in order, the first failure
/// answering `550 5.7.1` with its reason: TLS, a certificate, its chain, the
/// sender domain in the list, the certificate's DN listed for that domain.
/// The null sender (a DSN from another operator) needs a certificate whose DN
/// the list holds for some domain.
pub(crate) fn check_mail(tls: bool, peer: &PeerCert, from: &ReversePath, trust: &TrustIndex) -> Result<(), Refusal> {
    if !tls {
        return refuse("TLS is required from trust-space operators".into());
    }
    let dn = match peer {
        PeerCert::Missing => return refuse("no client certificate: operators must present their certificate".into()),
        PeerCert::Invalid(why) => {
            return refuse(format!("client certificate does not chain to the trust anchors: {why}"));
        }
        PeerCert::Valid(dn) => dn,
    };
    let Some(mailbox) = from.mailbox() else {
        return if trust.dn_listed(dn) {
            Ok(())
        } else {
            refuse(format!("client certificate DN {dn} is not in the trust list"))
        };
    };
    let domain = mailbox.domain.as_str();
    if !trust.is_listed(domain) {
        return refuse(format!("sender domain {domain} is not in the trust list"));
    }
    if !trust.dn_allowed(domain, dn) {
        return refuse(format!(
            "client certificate DN {dn} is not listed for sender domain {domain}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proto::EnhancedCode;

    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    fn reason(v: Result<(), Refusal>) -> String {
        match v.map_err(|r| r.reply()) {
            Err(r) => {
                assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 7, 1))));
                r.to_string()
            }
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn each_failed_check_is_named() {
        let a = dn("CN=mx.a.test, O=Operator A, C=FR");
        let b = dn("CN=mx.b.test, O=Operator B, C=FR");
        let trust = TrustIndex::from_entries([("a.test", a.clone()), ("b.test", b.clone())]).unwrap();
        let from = ReversePath::parse("<app@a.test>").unwrap();
        let valid = PeerCert::Valid(a.clone());
        assert!(reason(check_mail(false, &valid, &from, &trust)).contains("TLS is required"));
        assert!(reason(check_mail(true, &PeerCert::Missing, &from, &trust)).contains("no client certificate"));
        let bad = PeerCert::Invalid("invalid peer certificate: UnknownIssuer".into());
        assert!(reason(check_mail(true, &bad, &from, &trust)).contains("does not chain to the trust anchors"));
        let outside = ReversePath::parse("<x@c.test>").unwrap();
        assert!(reason(check_mail(true, &valid, &outside, &trust)).contains("sender domain c.test is not in"));
        let other = ReversePath::parse("<x@B.test>").unwrap();
        assert!(reason(check_mail(true, &valid, &other, &trust)).contains("not listed for sender domain B.test"));
        assert_eq!(check_mail(true, &valid, &from, &trust), Ok(()));
        // Attribute order, case and spacing do not matter.
        let same = PeerCert::Valid(dn("c=FR,o=operator a,cn=MX.A.TEST"));
        assert_eq!(check_mail(true, &same, &from, &trust), Ok(()));
        // Null sender: any listed operator.
        assert_eq!(check_mail(true, &valid, &ReversePath::Null, &trust), Ok(()));
        let stranger = PeerCert::Valid(dn("CN=mx.c.test, O=C"));
        assert!(reason(check_mail(true, &stranger, &ReversePath::Null, &trust)).contains("not in the trust list"));
    }
}
