//! A test PKI shaped like IGC-Santé, for dev mode and tests
//! (`estafette pki dev DIR`).
//!
//! IGC-Santé, the health sector's PKI, issues operators' and establishments'
//! certificates from a root through an "organisations" intermediate; leaf
//! subjects carry `CN` (the server's host name or the application), `OU`
//! (`1` + FINESS or `3` + SIRET), `O` (the organisation), `ST` (department)
//! and `C=FR`. Keys are RSA 2048 with SHA-256, as MSSanté requires, so TLS 1.2
//! handshakes use ECDHE-RSA suites.
//!
//! Nothing here is fit for production: keys are written unencrypted, and the
//! hierarchy exists only to exercise the same checks (chain, DN in the trust
//! list) that real certificates go through.

use std::path::Path;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

/// Why the PKI could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key generation failed.
    #[error("generating an RSA key: {0}")]
    Key(String),
    /// rcgen refused the parameters.
    #[error("issuing {what}: {source}")]
    Issue {
        /// Which certificate.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// RSA key size of every certificate (IGC-Santé issues RSA 2048).
pub const RSA_BITS: usize = 2048;

/// An RSA 2048 key pair usable by rcgen (ring signs with it).
fn rsa_key() -> Result<KeyPair, PkiError> {
    // ring cannot generate RSA keys; the RustCrypto `rsa` crate does, and only
    // for that: signing goes through ring.
    let key =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS).map_err(|e| PkiError::Key(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| PkiError::Key(e.to_string()))?;
    KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).map_err(|e| PkiError::Key(e.to_string()))
}

/// The subject of a leaf certificate, in IGC-Santé's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// `CN`: the server's host name, or the application's name.
    pub common_name: String,
    /// `OU`: `1` + FINESS (9 digits) or `3` + SIRET (14 digits).
    pub unit: String,
    /// `O`: the organisation.
    pub organisation: String,
    /// `ST`: the department, e.g. `Paris (75)`.
    pub state: String,
}

impl Subject {
    fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "FR");
        dn.push(DnType::StateOrProvinceName, self.state.as_str());
        dn.push(DnType::OrganizationName, self.organisation.as_str());
        dn.push(DnType::OrganizationalUnitName, self.unit.as_str());
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }

    /// The subject as the ANS trust list writes it: RFC 4514 order (most
    /// specific first), `, ` between attributes.
    pub fn to_list_dn(&self) -> String {
        format!(
            "CN={}, OU={}, O={}, ST={}, C=FR",
            escape_dn(&self.common_name),
            escape_dn(&self.unit),
            escape_dn(&self.organisation),
            escape_dn(&self.state)
        )
    }
}

/// RFC 4514 escaping of an attribute value.
fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// An operator's MTA: server and client authentication (the same
    /// certificate answers inbound and presents itself outbound).
    Server,
    /// An establishment's application (ORG certificate of a DPI connector):
    /// client authentication only.
    Client,
}

/// A certificate with its key, PEM-encoded. `chain_pem` is the leaf followed
/// by the intermediate, ready for a TLS server or client.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Leaf then intermediate.
    pub chain_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
    /// Subject as the trust list writes it.
    pub list_dn: String,
}

/// The root and the "organisations" intermediate that signs the leaves.
pub struct TestPki {
    root: Certificate,
    intermediate: Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn ca_params(cn: &str, path_len: Option<u8>) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name.push(DnType::CountryName, "FR");
    p.distinguished_name
        .push(DnType::OrganizationName, "ESTAFETTE TEST (NOT IGC-SANTE)");
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "IGC-SANTE TEST");
    p.distinguished_name.push(DnType::CommonName, cn);
    Ok(p)
}

impl TestPki {
    /// A fresh root and intermediate (RSA 2048 each).
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn generate() -> Result<Self, PkiError> {
        let issue = |what: &str| {
            let what = what.to_owned();
            move |source| PkiError::Issue { what, source }
        };
        let root_key = rsa_key()?;
        let root_params = ca_params("TEST AC RACINE IGC-SANTE", Some(1)).map_err(issue("root"))?;
        let root = root_params.self_signed(&root_key).map_err(issue("root"))?;
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = rsa_key()?;
        let int_params =
            ca_params("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS", Some(0)).map_err(issue("intermediate"))?;
        let intermediate = int_params
            .signed_by(&int_key, &root_issuer)
            .map_err(issue("intermediate"))?;
        Ok(Self {
            root,
            intermediate,
            issuer: Issuer::new(int_params, int_key),
        })
    }

    /// The root certificate (the trust anchor to configure), PEM.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The "organisations" intermediate, PEM.
    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem()
    }

    /// Issues a leaf for `subject`; `hosts` become DNS (or IP) subject
    /// alternative names.
    ///
    /// # Errors
    /// Key generation or signing failed, or a host name is invalid.
    pub fn issue(&self, subject: &Subject, hosts: &[&str], usage: Usage) -> Result<Issued, PkiError> {
        let err = |source| PkiError::Issue {
            what: subject.common_name.clone(),
            source,
        };
        let key = rsa_key()?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        for h in hosts {
            let san = match h.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*h).try_into().map_err(err)?),
            };
            p.subject_alt_names.push(san);
        }
        p.distinguished_name = subject.distinguished_name();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let cert = p.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            list_dn: subject.to_list_dn(),
        })
    }
}

/// One entry of a generated trust list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The domain (`<Nom>`).
    pub domain: String,
    /// The operator's certificate subject (`<DNCertificatOperateur>`).
    pub dn: String,
    /// Free text (`<Description>`).
    pub description: String,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A trust list in ANS's format (with its closing root tag) holding `entries`.
pub fn trust_list_xml(entries: &[ListEntry], generated: &str) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\">\n\
         <DateDeGeneration>{}</DateDeGeneration>\n<ListeDomaines>\n",
        xml_escape(generated)
    );
    for e in entries {
        xml.push_str(&format!(
            "<Domaine><Nom>{}</Nom><Description>{}</Description><DNCertificatOperateur>{}</DNCertificatOperateur>\
             <ResponsableContact>responsable@{}</ResponsableContact><SupportContact>support@{}</SupportContact>\
             <DateMAJ>{}</DateMAJ></Domaine>\n",
            xml_escape(&e.domain),
            xml_escape(&e.description),
            xml_escape(&e.dn),
            xml_escape(&e.domain),
            xml_escape(&e.domain),
            xml_escape(generated),
        ));
    }
    xml.push_str("</ListeDomaines>\n</ListeBlancheMSSante>\n");
    xml
}

/// An operator of the generated trust space: its MTA host, the domains it
/// serves, and its certificate's subject.
#[derive(Clone, Debug)]
pub struct Operator {
    /// File name stem (`<name>.pem`, `<name>.key`).
    pub name: String,
    /// Its certificate's subject.
    pub subject: Subject,
    /// Host names and addresses the certificate is valid for.
    pub hosts: Vec<String>,
    /// Domains listed for it.
    pub domains: Vec<String>,
}

/// The dev trust space: two operators (the dev node and the sink), an
/// establishment's application certificate, and a listed domain each.
pub fn dev_operators() -> Vec<Operator> {
    vec![
        Operator {
            name: "server".into(),
            subject: Subject {
                common_name: "localhost".into(),
                unit: "1750000018".into(),
                organisation: "GCS ESTAFETTE DEV".into(),
                state: "Paris (75)".into(),
            },
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            domains: vec!["hopital-dev.test".into()],
        },
        Operator {
            name: "sink".into(),
            subject: Subject {
                common_name: "sink.localhost".into(),
                unit: "1690000026".into(),
                organisation: "CABINET DEV SANTE".into(),
                state: "Rhone (69)".into(),
            },
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            domains: vec!["cabinet-dev.test".into()],
        },
    ]
}

/// Writes a test PKI and its trust list into `dir`:
/// `ca.pem` (the root and the intermediate, as operators install IGC-Santé's
/// chain: clients that send only their leaf, like swaks, still verify),
/// `<operator>.pem`/`.key` per operator (leaf + intermediate),
/// `client.pem`/`.key` (an ORG certificate for an establishment's
/// application), and `trustlist.xml` listing each operator's domains with its
/// DN. Existing files are overwritten.
///
/// # Errors
/// Generation failed or a file could not be written.
pub fn write_dev(dir: &Path, operators: &[Operator]) -> Result<(), PkiError> {
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|source| PkiError::Write {
            path: p.display().to_string(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let pki = TestPki::generate()?;
    write("ca.pem", &format!("{}{}", pki.root_pem(), pki.intermediate_pem()))?;
    let mut entries = Vec::new();
    for op in operators {
        let hosts: Vec<&str> = op.hosts.iter().map(String::as_str).collect();
        let issued = pki.issue(&op.subject, &hosts, Usage::Server)?;
        write(&format!("{}.pem", op.name), &issued.chain_pem)?;
        write(&format!("{}.key", op.name), &issued.key_pem)?;
        entries.extend(op.domains.iter().map(|d| ListEntry {
            domain: d.clone(),
            dn: issued.list_dn.clone(),
            description: op.subject.organisation.clone(),
        }));
    }
    let app = Subject {
        common_name: "dpi.hopital-dev.test".into(),
        unit: "1750000018".into(),
        organisation: "HOPITAL DEV".into(),
        state: "Paris (75)".into(),
    };
    let client = pki.issue(&app, &[], Usage::Client)?;
    write("client.pem", &client.chain_pem)?;
    write("client.key", &client.key_pem)?;
    let generated = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    write("trustlist.xml", &trust_list_xml(&entries, &generated))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn leaf_chains_to_the_root_with_the_listed_subject() {
        let pki = TestPki::generate().unwrap();
        let subject = Subject {
            common_name: "mx.ch-test.fr".into(),
            unit: "1330000011".into(),
            organisation: "CH TEST, SITE NORD".into(),
            state: "Bouches-du-Rhone (13)".into(),
        };
        let issued = pki.issue(&subject, &["mx.ch-test.fr"], Usage::Server).unwrap();
        assert_eq!(
            issued.list_dn,
            "CN=mx.ch-test.fr, OU=1330000011, O=CH TEST\\, SITE NORD, ST=Bouches-du-Rhone (13), C=FR"
        );
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 2, "leaf + intermediate");
        let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        let (_, inter) = x509_parser::parse_x509_certificate(&certs[1]).unwrap();
        assert_eq!(leaf.issuer(), inter.subject());
        assert!(inter.subject().to_string().contains("ORGANISATIONS"));
        // RSA 2048: the modulus is 256 bytes (plus a leading zero in DER).
        let spki = leaf.public_key();
        assert_eq!(
            spki.algorithm.algorithm,
            x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
        );
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            panic!("not RSA")
        };
        assert_eq!(rsa.key_size(), 2048);
        // The chain verifies against the root with webpki, as the relay does.
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pki.root_pem().as_bytes()) {
                r.add(c.unwrap()).unwrap();
            }
            std::sync::Arc::new(r)
        };
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls::pki_types::ServerName::try_from("mx.ch-test.fr").unwrap();
        verifier
            .verify_server_cert(&certs[0], &certs[1..], &name, &[], rustls::pki_types::UnixTime::now())
            .unwrap();
    }

    #[test]
    fn dn_values_are_escaped_per_rfc4514() {
        assert_eq!(escape_dn("a,b"), "a\\,b");
        assert_eq!(escape_dn(" x "), "\\ x\\ ");
        assert_eq!(escape_dn("#1"), "\\#1");
        assert_eq!(escape_dn("C H U  DE  LIMOGES"), "C H U  DE  LIMOGES");
    }

    #[test]
    fn generated_list_has_ans_shape() {
        let xml = trust_list_xml(
            &[ListEntry {
                domain: "ch-a.test".into(),
                dn: "CN=a, O=A & B".into(),
                description: "A <x>".into(),
            }],
            "2026-01-01T00:00:00Z",
        );
        assert!(xml.contains("xmlns=\"https://listeblanche.mssante.fr/schema\""));
        assert!(xml.contains("<DNCertificatOperateur>CN=a, O=A &amp; B</DNCertificatOperateur>"));
        assert!(xml.contains("<Description>A &lt;x&gt;</Description>"));
    }
}
