//! The subject DN of an X.509 certificate, as a canonical [`Dn`] comparable
//! with the trust list's `<DNCertificatOperateur>`.

use proto::dn::{Dn, DnError};
use x509_parser::asn1_rs::Tag;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// Why a certificate's DN cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertDnError {
    /// Not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {0}")]
    Der(String),
    /// An attribute value is not a string, or not validly encoded.
    #[error("attribute {oid} of the name is not a readable string ({tag})")]
    Value {
        /// The attribute's OID, dotted.
        oid: String,
        /// Its ASN.1 type.
        tag: String,
    },
    /// The name is empty or too long.
    #[error("name: {0}")]
    Dn(#[from] DnError),
}

/// The canonical subject DN of a DER certificate (a rustls `CertificateDer`
/// derefs to these bytes). Only the name is read: this does not verify the
/// certificate, which rustls does against the trust anchors.
///
/// # Errors
/// [`CertDnError`]; never panics on any input.
pub fn subject_dn(der: &[u8]) -> Result<Dn, CertDnError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertDnError::Der(e.to_string()))?;
    name_dn(cert.subject())
}

/// The canonical form of any X.509 name (subject or issuer).
///
/// # Errors
/// [`CertDnError::Value`] for an attribute that is not a string,
/// [`CertDnError::Dn`] for an empty name.
pub fn name_dn(name: &X509Name<'_>) -> Result<Dn, CertDnError> {
    let mut attrs = Vec::new();
    for atv in name.iter_attributes() {
        let oid = atv.attr_type().to_id_string();
        let value = atv.attr_value();
        let Some(text) = string_value(value.tag(), value.as_bytes()) else {
            return Err(CertDnError::Value {
                oid,
                tag: format!("{}", value.tag()),
            });
        };
        attrs.push((oid, text));
    }
    Ok(Dn::from_attributes(attrs)?)
}

/// Decodes the directory string types (RFC 5280 `DirectoryString` and the
/// ASCII types of `countryName`, `emailAddress`, `serialNumber`).
fn string_value(tag: Tag, content: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String => String::from_utf8(content.to_vec()).ok(),
        Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => content
            .is_ascii()
            .then(|| String::from_utf8_lossy(content).into_owned()),
        // TeletexString: in practice Latin-1, or UTF-8 from careless CAs.
        Tag::T61String => Some(
            String::from_utf8(content.to_vec()).unwrap_or_else(|_| content.iter().map(|&b| char::from(b)).collect()),
        ),
        Tag::BmpString if content.len().is_multiple_of(2) => {
            let units = content.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        Tag::UniversalString if content.len().is_multiple_of(4) => content
            .chunks_exact(4)
            .map(|q| char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    fn cert(dn: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["mss.example.fr".into()]).unwrap();
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_of_an_operator_certificate() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, DnValue::PrintableString("FR".try_into().unwrap()));
        dn.push(DnType::StateOrProvinceName, "Haute-Vienne (87)");
        dn.push(DnType::OrganizationName, DnValue::Utf8String("C H U DE LIMOGES".into()));
        dn.push(DnType::OrganizationalUnitName, "1870000015");
        dn.push(DnType::CommonName, "mss.chu-limoges.fr");
        let got = subject_dn(&cert(dn)).unwrap();
        // the list's spelling: other order, quotes, double spaces
        let listed =
            Dn::parse("CN=mss.chu-limoges.fr,OU=1870000015,O=\"C H U  DE  LIMOGES\",ST=Haute-Vienne (87),C=FR")
                .unwrap();
        assert_eq!(got, listed);
        assert_ne!(
            got,
            Dn::parse("CN=mss.chu-limoges.fr,OU=1870000015,O=C H U DE LIMOGES,ST=Haute-Vienne(87),C=FR").unwrap()
        );
    }

    /// ANS lists `O=CRLCC "PAUL STRAUSS"` with bare quotes (the Strasbourg
    /// cancer centre): the list entry is read leniently and must match the
    /// certificate whose organisation carries those quotes.
    #[test]
    fn bare_quotes_in_the_list_match_the_certificate() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, DnValue::PrintableString("FR".try_into().unwrap()));
        dn.push(
            DnType::OrganizationName,
            DnValue::Utf8String("CRLCC \"PAUL STRAUSS\"".into()),
        );
        dn.push(DnType::OrganizationalUnitName, "1670000025");
        dn.push(DnType::CommonName, "mss.strasbourg.unicancer.fr");
        let got = subject_dn(&cert(dn)).unwrap();
        let (listed, leniencies) =
            Dn::parse_lenient("CN=mss.strasbourg.unicancer.fr,OU=1670000025,O=CRLCC \"PAUL STRAUSS\",C=FR").unwrap();
        assert!(!leniencies.is_empty(), "the bare quotes are reported");
        assert_eq!(got, listed);
        let index = crate::trust::TrustIndex::from_entries([("strasbourg.unicancer.mssante.fr", listed)]).unwrap();
        assert!(index.dn_allowed("strasbourg.unicancer.mssante.fr", &got));
    }

    #[test]
    fn string_types_and_unknown_oids() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, DnValue::BmpString("Hôpital".try_into().unwrap()));
        dn.push(
            DnType::OrganizationName,
            DnValue::TeletexString("ORG".try_into().unwrap()),
        );
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 97]), "NTRFR-123");
        dn.push(
            DnType::CustomDnType(vec![1, 2, 3, 4]),
            DnValue::Ia5String("x@y.fr".try_into().unwrap()),
        );
        let got = subject_dn(&cert(dn)).unwrap();
        assert_eq!(
            got.to_string(),
            "CN=hôpital,ORGANIZATIONIDENTIFIER=ntrfr-123,O=org,1.2.3.4=x@y.fr"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(subject_dn(b""), Err(CertDnError::Der(_))));
        assert!(matches!(
            subject_dn(&[0x30, 0x82, 0xff, 0xff, 1, 2]),
            Err(CertDnError::Der(_))
        ));
        let empty = cert(DistinguishedName::new());
        assert_eq!(subject_dn(&empty), Err(CertDnError::Dn(DnError::Empty)));
    }
}
