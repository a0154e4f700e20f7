//! What the trust-list parser reports: entries skipped ([`Problem`]), entries
//! kept but read leniently ([`Warning`]), and why a whole list is refused
//! ([`ParseError`]).

use super::{DomainError, NAMESPACE, ROOT};
use crate::dn::{DnError, Leniency};

/// A `<Domaine>` that was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {}{kind}", domain.as_deref().map(|d| format!("{d}: ")).unwrap_or_default())]
pub struct Problem {
    /// 1-based line of the `<Domaine>` start tag.
    pub line: u32,
    /// Byte offset of the `<Domaine>` start tag.
    pub offset: u64,
    /// `<Nom>` as written, if there was one.
    pub domain: Option<String>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// Why a `<Domaine>` was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    /// No `<Nom>`, or an empty one.
    #[error("no domain name (<Nom>)")]
    MissingName,
    /// `<Nom>` is not a valid domain name.
    #[error("invalid domain name: {}", .0.reason)]
    BadDomain(DomainError),
    /// No `<DNCertificatOperateur>`, or an empty one.
    #[error("no certificate DN (<DNCertificatOperateur>)")]
    MissingDn,
    /// `<DNCertificatOperateur>` does not parse.
    #[error("invalid certificate DN {text:?}: {error}")]
    BadDn {
        /// The DN as written.
        text: String,
        /// Why it does not parse.
        error: DnError,
    },
    /// A field given twice in one `<Domaine>`: which one is meant is unknown.
    #[error("<{0}> given twice")]
    RepeatedField(&'static str),
}

/// A `<Domaine>` that was kept (it is in [`TrustList::entries`](super::TrustList::entries)), but read
/// leniently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the `<Domaine>` start tag.
    pub line: u32,
    /// Byte offset of the `<Domaine>` start tag.
    pub offset: u64,
    /// `<Nom>` as written (trimmed).
    pub domain: String,
    /// What was read leniently.
    pub kind: WarningKind,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.domain, self.kind)
    }
}

/// What a kept `<Domaine>` has that the format does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// `<DNCertificatOperateur>` is not RFC 4514, but has one reading
    /// ([`Dn::parse_lenient`](crate::dn::Dn::parse_lenient)); [`Entry::dn`](super::Entry::dn) is that reading.
    LenientDn {
        /// The DN as written.
        text: String,
        /// The liberties taken (never empty).
        leniencies: Vec<Leniency>,
    },
}

impl std::fmt::Display for WarningKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LenientDn { text, leniencies } => {
                write!(f, "certificate DN {text:?} read leniently")?;
                for (i, l) in leniencies.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{l}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why the whole list is refused. `line` is 1-based, `offset` in bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (or not UTF-8) at this point.
    #[error("line {line} (offset {offset}): malformed XML: {message}")]
    Xml {
        /// Line.
        line: u32,
        /// Offset.
        offset: u64,
        /// The XML parser's message.
        message: String,
    },
    /// A document type declaration: refused outright (entity bombs, external
    /// entities), the list has none.
    #[error("line {line}: a <!DOCTYPE> is not allowed in the trust list")]
    Doctype {
        /// Line.
        line: u32,
    },
    /// The XML declaration names another encoding than UTF-8.
    #[error("unsupported encoding {0:?} (the list is UTF-8)")]
    Encoding(String),
    /// An entity other than the five predefined ones and character references.
    #[error("line {line}: unknown entity &{name};")]
    Entity {
        /// Line.
        line: u32,
        /// The entity name.
        name: String,
    },
    /// The root element is not `ListeBlancheMSSante` in [`NAMESPACE`], or a second root.
    #[error("line {line}: expected <{ROOT} xmlns=\"{NAMESPACE}\">, found <{found}> in namespace {namespace:?}")]
    Root {
        /// Line.
        line: u32,
        /// The element found.
        found: String,
        /// Its namespace, if any.
        namespace: Option<String>,
    },
    /// An element of the list outside its place, or outside [`NAMESPACE`].
    #[error("line {line}: unexpected element <{found}> inside <{parent}>")]
    Element {
        /// Line.
        line: u32,
        /// The element found.
        found: String,
        /// Where it was found.
        parent: &'static str,
    },
    /// Text where only white space may be.
    #[error("line {line}: unexpected text inside <{parent}>")]
    Text {
        /// Line.
        line: u32,
        /// Where it was found.
        parent: &'static str,
    },
    /// The input ends inside an element (other than the root after
    /// `</ListeDomaines>`): the file is cut short.
    #[error("line {line}: the list is cut short inside <{inside}>")]
    Truncated {
        /// The last line.
        line: u32,
        /// The innermost open element.
        inside: &'static str,
    },
    /// No root element at all.
    #[error("no <{ROOT}> element (empty or not a trust list)")]
    NoRoot,
}
