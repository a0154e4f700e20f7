//! Envelope addresses (RFC 5321 §4.1.2, with RFC 6531 UTF-8 where allowed).
//!
//! Parsing is strict on structure (one `@`, valid domain labels, balanced quotes)
//! and keeps the text as the client wrote it: the relay never rewrites addresses.

use std::fmt;

use crate::error::CommandError;

/// Longest path accepted, angle brackets excluded (RFC 5321 §4.5.3.1.3: 256 with them).
pub const MAX_PATH_LEN: usize = 254;
/// Longest domain accepted (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;

/// A mailbox `local@domain`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part as written on the wire, quotes included when it was quoted.
    pub local: String,
    /// The domain or address literal (`[192.0.2.1]`), as written.
    pub domain: String,
}

impl Mailbox {
    /// Parses `local@domain` (no angle brackets).
    ///
    /// # Errors
    /// [`CommandError::BadAddress`] when it is not a valid RFC 5321 mailbox.
    pub fn parse(s: &str) -> Result<Self, CommandError> {
        if s.is_empty() || s.len() > MAX_PATH_LEN {
            return Err(CommandError::BadAddress);
        }
        let at = local_part_end(s).ok_or(CommandError::BadAddress)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if !is_domain(domain) && !is_address_literal(domain) {
            return Err(CommandError::BadAddress);
        }
        Ok(Self {
            local: local.to_owned(),
            domain: domain.to_owned(),
        })
    }

    /// The domain in lower case, for routing and policy lookups.
    pub fn domain_lowercase(&self) -> String {
        self.domain.to_lowercase()
    }

    /// Whether any part holds non-ASCII text (needs SMTPUTF8).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Finds the `@` that ends a valid local part (dot-string or quoted-string).
fn local_part_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() == Some(&b'"') {
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    // quoted-pairSMTP: backslash then any printable ASCII.
                    let next = *b.get(i + 1)?;
                    if !(32..=126).contains(&next) {
                        return None;
                    }
                    i += 2;
                }
                b'"' => {
                    return (b.get(i + 1) == Some(&b'@') && i > 1).then_some(i + 1);
                }
                c if c < 32 || c == 127 => return None,
                _ => i += 1,
            }
        }
        return None;
    }
    let at = s.rfind('@')?;
    let local = &s[..at];
    if local.is_empty()
        || local
            .split('.')
            .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return None;
    }
    Some(at)
}

/// RFC 5322 atext, plus any non-ASCII character (RFC 6531 UTF8-non-ascii).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// A domain name: labels of letters, digits and hyphens (non-ASCII allowed as
/// U-labels), not starting or ending with a hyphen.
pub fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DOMAIN_LEN
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric()))
        })
}

fn is_address_literal(d: &str) -> bool {
    let Some(inner) = d.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner.strip_prefix("IPv6:") {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `MAIL FROM:` argument: a mailbox or the null path `<>` (bounces, DSNs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: no bounce may be sent for this message.
    Null,
    /// A real sender.
    Path(Mailbox),
}

impl ReversePath {
    /// Parses `<>` or `<mailbox>` (a source route `<@a,@b:x@y>` is accepted and
    /// dropped, as RFC 5321 §4.1.1.3 asks).
    ///
    /// # Errors
    /// [`CommandError::BadAddress`].
    pub fn parse(s: &str) -> Result<Self, CommandError> {
        if s == "<>" {
            return Ok(Self::Null);
        }
        parse_path(s).map(Self::Path)
    }

    /// The mailbox, if not null.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            Self::Null => None,
            Self::Path(m) => Some(m),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("<>"),
            Self::Path(m) => write!(f, "<{m}>"),
        }
    }
}

/// `RCPT TO:` argument: a mailbox or the bare `<Postmaster>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without domain: this server's postmaster (RFC 5321 §4.5.1).
    Postmaster,
    /// A recipient mailbox.
    Path(Mailbox),
}

impl ForwardPath {
    /// Parses `<Postmaster>` (any case) or `<mailbox>`.
    ///
    /// # Errors
    /// [`CommandError::BadAddress`].
    pub fn parse(s: &str) -> Result<Self, CommandError> {
        if s.eq_ignore_ascii_case("<postmaster>") {
            return Ok(Self::Postmaster);
        }
        parse_path(s).map(Self::Path)
    }

    /// The mailbox, if not the bare postmaster.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            Self::Postmaster => None,
            Self::Path(m) => Some(m),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postmaster => f.write_str("<Postmaster>"),
            Self::Path(m) => write!(f, "<{m}>"),
        }
    }
}

fn parse_path(s: &str) -> Result<Mailbox, CommandError> {
    let inner = s
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .ok_or(CommandError::BadAddress)?;
    let mailbox = match inner.strip_prefix('@') {
        // A-d-l: "@one,@two:" — obsolete source route, ignored.
        Some(route) => {
            let colon = route.find(':').ok_or(CommandError::BadAddress)?;
            if !route[..colon].split(",@").all(is_domain) {
                return Err(CommandError::BadAddress);
            }
            &route[colon + 1..]
        }
        None => inner,
    };
    Mailbox::parse(mailbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_mailboxes() {
        for (s, local, domain) in [
            ("a@b.c", "a", "b.c"),
            ("first.last@hopital.mssante.fr", "first.last", "hopital.mssante.fr"),
            ("\"john doe\"@example.org", "\"john doe\"", "example.org"),
            ("\"a\\\"b\"@x.y", "\"a\\\"b\"", "x.y"),
            (
                "1234567890123@patient.mssante.fr",
                "1234567890123",
                "patient.mssante.fr",
            ),
            ("user@[192.0.2.1]", "user", "[192.0.2.1]"),
            ("user@[IPv6:2001:db8::1]", "user", "[IPv6:2001:db8::1]"),
            ("élodie@hôpital.fr", "élodie", "hôpital.fr"),
            ("x+tag@UC-CMP.mssante.fr", "x+tag", "UC-CMP.mssante.fr"),
        ] {
            let m = Mailbox::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((m.local.as_str(), m.domain.as_str()), (local, domain), "{s}");
            assert_eq!(m.to_string(), s);
        }
    }

    #[test]
    fn invalid_mailboxes() {
        for s in [
            "",
            "a",
            "@b.c",
            "a@",
            "a..b@c.d",
            ".a@c.d",
            "a.@c.d",
            "a b@c.d",
            "a@-b.c",
            "a@b-.c",
            "a@b..c",
            "a@[300.1.1.1]",
            "a@[IPv6:zz]",
            "\"unterminated@c.d",
            "\"\"@c.d",
            "a@b@c.d",
            "a\u{0}@c.d",
            "a@c_d.e",
        ] {
            assert_eq!(Mailbox::parse(s), Err(CommandError::BadAddress), "{s:?}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(Mailbox::parse(&long), Err(CommandError::BadAddress));
    }

    #[test]
    fn paths() {
        assert_eq!(ReversePath::parse("<>"), Ok(ReversePath::Null));
        assert_eq!(ForwardPath::parse("<POSTMASTER>"), Ok(ForwardPath::Postmaster));
        let p = ReversePath::parse("<@relay.a,@relay.b:user@x.y>").unwrap();
        assert_eq!(p.to_string(), "<user@x.y>");
        assert!(ReversePath::parse("user@x.y").is_err());
        assert!(ReversePath::parse("<user@x.y").is_err());
        assert!(ForwardPath::parse("<>").is_err());
        assert_eq!(
            ForwardPath::parse("<postmaster@x.y>").unwrap().to_string(),
            "<postmaster@x.y>"
        );
    }
}
