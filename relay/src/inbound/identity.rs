//! Client identities and the senders each may use.
//!
//! An identity is an AUTH account (password stored as an argon2 PHC hash) or a
//! client-certificate subject DN. Each lists the sender addresses
//! (`app@ch-x.example`) or domains (`@ch-x.example`) it may put in MAIL FROM;
//! anything else gets `550 5.7.1`. Loaded from one TOML file:
//!
//! ```toml
//! [[account]]
//! name = "dpi-chu"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # estafette account hash
//! senders = ["app@ch-exemple.mssante.fr", "@ch-exemple.mssante.fr"]
//!
//! [[certificate]]
//! subject = "CN=dpi.ch-exemple.fr, O=CH Exemple"
//! senders = ["@ch-exemple.mssante.fr"]
//! ```

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;

/// Why the identities file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Unreadable file.
    #[error("cannot read identities file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("invalid identities file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        source: Box<toml::de::Error>,
    },
    /// A bad entry.
    #[error("identities file {path}: {entry}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Which entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    account: Vec<AccountEntry>,
    #[serde(default)]
    certificate: Vec<CertEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    name: String,
    password: String,
    senders: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    subject: String,
    senders: Vec<String>,
}

/// Addresses and domains one identity may send from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Senders {
    addresses: Vec<String>,
    domains: Vec<String>,
}

impl Senders {
    fn new(list: &[String]) -> Self {
        let mut s = Self::default();
        for item in list {
            match item.strip_prefix('@') {
                Some(domain) => s.domains.push(domain.to_lowercase()),
                None => s.addresses.push(item.to_lowercase()),
            }
        }
        s
    }

    /// Whether `address` (local@domain) is allowed. Comparison ignores case.
    pub fn allows(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.addresses.contains(&address) || self.domains.iter().any(|d| d == domain)
    }
}

/// Every known identity.
#[derive(Debug, Default)]
pub struct Identities {
    accounts: HashMap<String, (String, Senders)>,
    certificates: HashMap<String, Senders>,
}

/// Canonical form used to compare subject DNs here: whitespace around
/// separators removed, case folded. (Full RFC 4514 matching comes with the
/// trust-space work.)
fn canonical_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

impl Identities {
    /// Loads and checks the file (every hash must parse).
    ///
    /// # Errors
    /// Unreadable, malformed, duplicate names or bad hashes.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: p.clone(),
            source,
        })?;
        let file: File = toml::from_str(&text).map_err(|source| IdentityError::Parse {
            path: p.clone(),
            source: Box::new(source),
        })?;
        let invalid = |entry: &str, reason: &str| IdentityError::Invalid {
            path: p.clone(),
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let mut ids = Self::default();
        for a in file.account {
            PasswordHash::new(&a.password).map_err(|_| invalid(&a.name, "password is not an argon2 PHC hash"))?;
            if ids
                .accounts
                .insert(a.name.clone(), (a.password, Senders::new(&a.senders)))
                .is_some()
            {
                return Err(invalid(&a.name, "account listed twice"));
            }
        }
        for c in file.certificate {
            ids.certificates
                .insert(canonical_dn(&c.subject), Senders::new(&c.senders));
        }
        Ok(ids)
    }

    /// Checks a password (argon2: slow on purpose — call from a blocking thread).
    pub fn verify_password(&self, account: &str, password: &str) -> bool {
        let Some((hash, _)) = self.accounts.get(account) else {
            return false;
        };
        PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    }

    /// Senders of an AUTH account.
    pub fn account_senders(&self, account: &str) -> Option<&Senders> {
        self.accounts.get(account).map(|(_, s)| s)
    }

    /// Senders of a certificate subject, if that subject is listed.
    pub fn certificate_senders(&self, subject: &str) -> Option<&Senders> {
        self.certificates.get(&canonical_dn(subject))
    }

    /// Whether any account exists (AUTH is offered only then).
    pub fn has_accounts(&self) -> bool {
        !self.accounts.is_empty()
    }
}

/// Hashes a password for the identities file (argon2id, random salt).
///
/// # Errors
/// Only if the salt cannot be encoded (does not happen for 16 bytes).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_certificates_and_senders() {
        let dir = tempfile::tempdir().unwrap();
        let hash = hash_password("s3cret").unwrap();
        let path = dir.path().join("ids.toml");
        std::fs::write(
            &path,
            format!(
                "[[account]]\nname = \"dpi\"\npassword = \"{hash}\"\nsenders = [\"app@ch.test\", \"@labo.test\"]\n\n\
                 [[certificate]]\nsubject = \"CN=dpi.ch.test, O=CH Test\"\nsenders = [\"@ch.test\"]\n"
            ),
        )
        .unwrap();
        let ids = Identities::load(&path).unwrap();
        assert!(ids.verify_password("dpi", "s3cret"));
        assert!(!ids.verify_password("dpi", "wrong"));
        assert!(!ids.verify_password("nobody", "s3cret"));
        let s = ids.account_senders("dpi").unwrap();
        assert!(s.allows("APP@ch.test"));
        assert!(s.allows("anyone@LABO.test"));
        assert!(!s.allows("other@ch.test"));
        let c = ids.certificate_senders("cn=dpi.ch.test,o=CH Test").unwrap();
        assert!(c.allows("x@ch.test"));
        assert!(ids.certificate_senders("CN=other").is_none());
    }

    #[test]
    fn bad_hash_is_refused_with_the_entry_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.toml");
        std::fs::write(&path, "[[account]]\nname = \"x\"\npassword = \"plain\"\nsenders = []\n").unwrap();
        let e = Identities::load(&path).unwrap_err().to_string();
        assert!(e.contains("x: password is not an argon2 PHC hash"), "{e}");
    }
}
