//! Domain names as lookup keys: lower-case A-labels.

use std::borrow::Cow;

/// Why a domain name is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?}: {reason}")]
pub struct DomainError {
    /// The name as given.
    pub name: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// The lookup key of a domain: trimmed, one trailing dot removed, lower-case,
/// U-labels converted to A-labels (`xn--…`, UTS #46 with STD3 rules; A-labels
/// given in ASCII are kept, not decoded); each label 1 to
/// 63 letters, digits or hyphens, not starting or ending with a hyphen, 253
/// octets at most. Borrows when the name is already a key (the common case on
/// the SMTP path: no allocation).
///
/// # Errors
/// [`DomainError`] saying what is wrong.
pub fn domain_key(name: &str) -> Result<Cow<'_, str>, DomainError> {
    let err = |reason| DomainError {
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    let key: Cow<'_, str> = if trimmed
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        Cow::Borrowed(trimmed)
    } else if trimmed.is_ascii() {
        // ASCII names, A-labels included, are compared as given (lower-cased):
        // the same name always gets the same key, whatever its case.
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::STD3)
            .map_err(|_| err("not a valid international domain name"))?
            .into_owned()
            .into()
    };
    if key.is_empty() {
        return Err(err("empty"));
    }
    if key.len() > 253 {
        return Err(err("longer than 253 octets"));
    }
    for label in key.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(err("a label is empty or longer than 63 octets"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("only letters, digits and hyphens are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(err("a label starts or ends with a hyphen"));
        }
    }
    Ok(key)
}
