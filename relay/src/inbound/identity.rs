//! Client identities and the senders each may use.
//!
//! An identity is an AUTH account (password stored as an argon2 PHC hash) or a
//! client-certificate subject DN (an establishment's ORG certificate, e.g. its
//! DPI connector). Each owns mailboxes of the MSSanté kinds (PER personal, ORG
//! a service, APP an application, CAB a practice) and may list whole domains;
//! MAIL FROM must be one of them, anything else gets `550 5.7.1`. Loaded from
//! one TOML file:
//!
//! ```toml
//! [[account]]
//! name = "dpi-chu"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # estafette account hash
//! senders = ["@labo.ch-exemple.mssante.fr"]          # domains (or bare addresses)
//! mailboxes = [
//!   { address = "dpi@ch-exemple.mssante.fr", kind = "APP" },
//!   { address = "secretariat.cardio@ch-exemple.mssante.fr", kind = "ORG" },
//! ]
//!
//! [[certificate]]
//! subject = "CN=dpi.ch-exemple.fr, OU=1750000018, O=CH Exemple, C=FR"
//! mailboxes = [{ address = "dpi@ch-exemple.mssante.fr", kind = "APP" }]
//! ```
//!
//! Subjects are compared as canonical DNs ([`proto::dn::Dn`]): attribute
//! order, case and spacing do not matter.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use proto::dn::Dn;
use serde::Deserialize;

/// Who a client proved to be, in one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// An AUTH account.
    Account(String),
    /// A verified client certificate whose subject is listed in the identities.
    Certificate(Dn),
}

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
    #[serde(default)]
    senders: Vec<String>,
    #[serde(default)]
    mailboxes: Vec<MailboxEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    subject: String,
    #[serde(default)]
    senders: Vec<String>,
    #[serde(default)]
    mailboxes: Vec<MailboxEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailboxEntry {
    address: String,
    kind: MailboxKind,
}

/// The MSSanté kinds of mailbox.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum MailboxKind {
    /// Personal: a practitioner.
    #[serde(rename = "PER")]
    Personal,
    /// Organisational: a service or a secretariat.
    #[serde(rename = "ORG")]
    Organisation,
    /// Applicative: automatic sending from a DPI or another application.
    #[serde(rename = "APP")]
    Application,
    /// A practice (cabinet).
    #[serde(rename = "CAB")]
    Practice,
}

impl MailboxKind {
    /// The kind's code as MSSanté writes it.
    pub fn code(self) -> &'static str {
        match self {
            Self::Personal => "PER",
            Self::Organisation => "ORG",
            Self::Application => "APP",
            Self::Practice => "CAB",
        }
    }
}

/// Mailboxes and domains one identity may send from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Senders {
    addresses: HashMap<String, Option<MailboxKind>>,
    domains: Vec<String>,
}

impl Senders {
    fn new(list: &[String], mailboxes: &[MailboxEntry]) -> Self {
        let mut s = Self::default();
        for item in list {
            match item.strip_prefix('@') {
                Some(domain) => s.domains.push(domain.to_lowercase()),
                None => {
                    s.addresses.insert(item.to_lowercase(), None);
                }
            }
        }
        for m in mailboxes {
            s.addresses.insert(m.address.to_lowercase(), Some(m.kind));
        }
        s
    }

    /// Whether `address` (local@domain) is allowed. Comparison ignores case.
    pub fn allows(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.addresses.contains_key(&address) || self.domains.iter().any(|d| d == domain)
    }

    /// The kind of mailbox `address` is, when listed with one.
    pub fn kind(&self, address: &str) -> Option<MailboxKind> {
        self.addresses.get(&address.to_lowercase()).copied().flatten()
    }
}

/// Every known identity.
#[derive(Debug, Default)]
pub struct Identities {
    accounts: HashMap<String, (String, Senders)>,
    certificates: HashMap<Dn, Senders>,
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
                .insert(a.name.clone(), (a.password, Senders::new(&a.senders, &a.mailboxes)))
                .is_some()
            {
                return Err(invalid(&a.name, "account listed twice"));
            }
        }
        for c in file.certificate {
            let dn = Dn::parse(&c.subject).map_err(|e| invalid(&c.subject, &format!("subject is not a DN: {e}")))?;
            if ids
                .certificates
                .insert(dn, Senders::new(&c.senders, &c.mailboxes))
                .is_some()
            {
                return Err(invalid(&c.subject, "subject listed twice"));
            }
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
    pub fn certificate_senders(&self, subject: &Dn) -> Option<&Senders> {
        self.certificates.get(subject)
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

/// Runs a password `check` (argon2: slow on purpose) on the blocking pool,
/// with at most `limit`'s permits at once; callers beyond it wait for a
/// permit, they are not refused. `false` if the check could not run.
pub(crate) async fn bounded_check<F>(limit: &std::sync::Arc<tokio::sync::Semaphore>, check: F) -> bool
where
    F: FnOnce() -> bool + Send + 'static,
{
    let Ok(permit) = limit.clone().acquire_owned().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        check()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_beyond_the_limit_wait_their_turn() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let limit = Arc::new(tokio::sync::Semaphore::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (limit, running, peak) = (limit.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    bounded_check(&limit, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(40));
                        running.fetch_sub(1, Ordering::SeqCst);
                        true
                    })
                    .await
                })
            })
            .collect();
        for c in checks {
            assert!(c.await.expect("task"), "every check ran and none was refused");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than the limit at once");
    }

    #[test]
    fn accounts_certificates_and_senders() {
        let dir = tempfile::tempdir().unwrap();
        let hash = hash_password("s3cret").unwrap();
        let path = dir.path().join("ids.toml");
        std::fs::write(
            &path,
            format!(
                "[[account]]\nname = \"dpi\"\npassword = \"{hash}\"\nsenders = [\"app@ch.test\", \"@labo.test\"]\n\
                 mailboxes = [{{ address = \"Secretariat@ch.test\", kind = \"ORG\" }}]\n\n\
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
        assert!(s.allows("secretariat@CH.test"));
        assert_eq!(s.kind("secretariat@ch.test"), Some(MailboxKind::Organisation));
        assert_eq!(s.kind("app@ch.test"), None);
        let dn = |s: &str| Dn::parse(s).unwrap();
        let c = ids.certificate_senders(&dn("o=CH  Test,cn=DPI.ch.test")).unwrap();
        assert!(c.allows("x@ch.test"));
        assert!(ids.certificate_senders(&dn("CN=other")).is_none());
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
