//! A cluster CA and one certificate per member, for dev, tests and small
//! deployments without cert-manager (`estafette pki cluster DIR NAME...`).
//! Separate from the SMTP and trust-space certificates: it only lets members
//! of this cluster talk to each other. ECDSA P-256 (TLS 1.3 only on QUIC).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use super::pki::PkiError;

fn issue_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Issue {
        what: what.to_owned(),
        source,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), PkiError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| PkiError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `ca.pem` and, per member name, `NAME.pem` (its certificate, DNS
/// name = the member name, server and client authentication) and `NAME.key`.
///
/// # Errors
/// Key generation, issuing or writing failed.
pub fn write_cluster(dir: &Path, names: &[&str]) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let ca_key = KeyPair::generate().map_err(issue_err("cluster CA key"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(issue_err("cluster CA"))?;
    ca.distinguished_name.push(DnType::CommonName, "Estafette cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(issue_err("cluster CA"))?;
    write(dir, "ca.pem", &ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    for name in names {
        let key = KeyPair::generate().map_err(issue_err(name))?;
        let mut p = CertificateParams::new(vec![(*name).to_owned()]).map_err(issue_err(name))?;
        p.distinguished_name.push(DnType::CommonName, *name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer).map_err(issue_err(name))?;
        write(dir, &format!("{name}.pem"), &cert.pem())?;
        write(dir, &format!("{name}.key"), &key.serialize_pem())?;
    }
    Ok(())
}
