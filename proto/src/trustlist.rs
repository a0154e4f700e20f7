//! The MSSanté trust list ("liste blanche") that ANS publishes: which domains
//! belong to the trust space, and the subject DN of each operator certificate
//! allowed to send and receive for them. Sans-io: bytes in, [`TrustList`] out.
//!
//! # Format
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
//!   <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>
//!   <ListeDomaines>
//!     <Domaine>
//!       <Nom>adsea29.mssante.fr</Nom> <Description>…</Description>
//!       <DNCertificatOperateur>CN=…,OU=…,O=…,ST=…,C=FR</DNCertificatOperateur>
//!       <ResponsableContact>…</ResponsableContact> <SupportContact>…</SupportContact>
//!       <DateMAJ>2025-03-13T14:54:10Z</DateMAJ>
//!     </Domaine> …
//!   </ListeDomaines>
//! ```
//! One `<Domaine>` per (domain, operator certificate): a domain appears once per
//! certificate (up to 5 times in the real list).
//!
//! # What is refused, what is skipped
//! The whole list is refused ([`ParseError`]) when it cannot be trusted as a
//! whole: not XML, not UTF-8, a `<!DOCTYPE>` (entity expansion, external
//! entities: the list never has one), another root or namespace, text or
//! elements out of place, or a file **cut short**. ANS's published file ends
//! right after `</ListeDomaines>` without `</ListeBlancheMSSante>`: exactly that
//! is accepted ([`TrustList::root_end_missing`]); a file ending anywhere else (between
//! two `<Domaine>`, inside one) is refused, since a truncated download would
//! otherwise silently drop domains.
//!
//! One bad entry (a DN that cannot be read, or has two readings; a missing or
//! invalid domain name) is skipped and reported in [`TrustList::problems`]: it
//! must not take the 6,000 others down. An entry read with one of the liberties
//! below that the format does not grant is kept and reported in
//! [`TrustList::warnings`]. Unknown elements are ignored (ANS may add fields).
//! Domains are lower-case A-labels ([`domain_key`]); DNs are canonical
//! ([`Dn`]).
//!
//! # Quirks of ANS's list, and how they are read
//! The published list (2025-03-13: 6,554 `<Domaine>`, 392 DN spellings) is not
//! always what its schema or RFC 4514 says. Each quirk below is read in the one
//! way it can be read, and a quirk that could be read two ways is refused: an
//! entry read wrong would let the wrong certificate speak for a domain, while a
//! skipped one only makes its domain unreachable (and `trustlist check` says so).
//! - **Missing root end tag**: the file ends after `</ListeDomaines>` without
//!   `</ListeBlancheMSSante>`. Accepted exactly there
//!   ([`TrustList::root_end_missing`]): a cut anywhere else is a truncated
//!   download and refuses the whole list.
//! - **Spacing**: `CN=smtp-1.example.fr ,OU=…`, `, ` separators, runs of spaces
//!   inside values (`O="C H U  DE  LIMOGES"`), leading and trailing spaces. Space
//!   around separators is RFC 2253 legacy; inside values runs are insignificant
//!   (RFC 4518, LDAP's `caseIgnoreMatch`): collapsed to one, so that the list's
//!   doubled spaces equal the certificate's single ones.
//! - **NO-BREAK SPACE** (U+00A0) inside values: white space like the others (a
//!   word processor's space, invisible to whoever copied the DN).
//! - **Case**: values compare case-insensitively (`caseIgnoreMatch`: the list's
//!   `O=GIP SESAN` equals a certificate's `Gip Sesan`); domain names are
//!   lower-cased, U-labels turned into A-labels, a trailing dot dropped.
//! - **Quotes around a whole value** (`O="C H U  DE  LIMOGES"`): RFC 2253
//!   quoting, removed.
//! - **`ST=Paris(75)` and `ST=Paris (75)`**: *not* folded. Both spellings are in
//!   the list, for different operators, each the exact text of its own
//!   certificate; a missing space is not an insignificant one, and folding them
//!   would mean guessing where spaces do not matter.
//! - **Bare quotes inside a value** (`O=CRLCC "PAUL STRAUSS"`,
//!   `O=CENTRE HOSPITALIER "FRANCK-JOLY"`): RFC 4514 wants `\"`, but a quote that
//!   does not open the value has one reading, the character itself, which is
//!   what the operator's certificate carries. Read so ([`Dn::parse_lenient`]),
//!   kept, and reported as a [`WarningKind::LenientDn`]. Refused as ambiguous,
//!   the entry skipped: a quote opening a value that is never closed or is
//!   followed by more text (`O="CRLCC" PAUL`: RFC 2253 quoting then junk, or a
//!   literal quote?), and bare quotes that do not pair up within their value
//!   while a later quote could close them across a separator (`O=x "y,OU=z"`:
//!   two values, or one holding a comma?). See [`crate::dn`].
//! - **A mailbox in `<Nom>`** (`sessad@ase.ditepbeziers.mssante.fr`): not a
//!   domain name, skipped ([`ProblemKind::BadDomain`]): which domain is meant
//!   is a guess.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::dn::Dn;

mod domain;
mod report;
pub use domain::{domain_key, DomainError};
pub use report::{ParseError, Problem, ProblemKind, Warning, WarningKind};

/// The XML namespace of every element of the list.
pub const NAMESPACE: &str = "https://listeblanche.mssante.fr/schema";
/// The root element.
pub const ROOT: &str = "ListeBlancheMSSante";

/// A parsed trust list: the usable entries and the entries that were skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct TrustList {
    /// `<DateDeGeneration>` as written (`YYYY-MM-DDTHH:MM:SSZ`), if present.
    pub generated: Option<String>,
    /// One per usable `<Domaine>`, in file order. A domain may appear several
    /// times (one entry per operator certificate), and so may an entry.
    pub entries: Vec<Entry>,
    /// The `<Domaine>` elements that were skipped, and why.
    pub problems: Vec<Problem>,
    /// The `<Domaine>` elements that were kept, but read with a liberty the
    /// format does not grant (see the module doc), in file order.
    pub warnings: Vec<Warning>,
    /// The file ended after `</ListeDomaines>` without `</ListeBlancheMSSante>`,
    /// as ANS publishes it.
    pub root_end_missing: bool,
}

/// One (domain, operator certificate) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `<Nom>` as a lower-case A-label domain (`xn--…` for IDN names).
    pub domain: String,
    /// `<DNCertificatOperateur>`, canonical.
    pub dn: Dn,
    /// `<DNCertificatOperateur>` as written, for messages to people.
    pub dn_text: String,
    /// `<Description>`, white space trimmed.
    pub description: String,
    /// `<DateMAJ>` as written, if present.
    pub updated: Option<String>,
}

/// Parses a trust list. Never panics; the time is linear in the input.
///
/// # Errors
/// [`ParseError`] when the list as a whole cannot be trusted (see the module
/// doc); bad entries are in [`TrustList::problems`] instead.
pub fn parse(input: &[u8]) -> Result<TrustList, ParseError> {
    Parser::new(input).run()
}

/// Where the parser is in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    Root,
    Generated,
    Domains,
    Domain,
    Field(Field),
    /// An element this parser does not know, and its descendants: ignored.
    Unknown,
}

/// The fields of a `<Domaine>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Name,
    Description,
    Dn,
    Responsible,
    Support,
    Updated,
}

impl Field {
    fn from_tag(tag: &[u8]) -> Option<Self> {
        Some(match tag {
            b"Nom" => Self::Name,
            b"Description" => Self::Description,
            b"DNCertificatOperateur" => Self::Dn,
            b"ResponsableContact" => Self::Responsible,
            b"SupportContact" => Self::Support,
            b"DateMAJ" => Self::Updated,
            _ => return None,
        })
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Name => "Nom",
            Self::Description => "Description",
            Self::Dn => "DNCertificatOperateur",
            Self::Responsible => "ResponsableContact",
            Self::Support => "SupportContact",
            Self::Updated => "DateMAJ",
        }
    }
}

impl Ctx {
    fn tag(self) -> &'static str {
        match self {
            Self::Root => ROOT,
            Self::Generated => "DateDeGeneration",
            Self::Domains => "ListeDomaines",
            Self::Domain => "Domaine",
            Self::Field(f) => f.tag(),
            Self::Unknown => "(unknown element)",
        }
    }
}

/// The fields of the `<Domaine>` being read. Contacts are read (a repeated one is
/// still a problem) but not kept: the relay has no use for them.
#[derive(Default)]
struct DomainFields {
    offset: u64,
    seen: [bool; 6],
    name: String,
    description: String,
    dn: String,
    updated: String,
    scratch: String,
}

impl DomainFields {
    fn text(&mut self, field: Field) -> &mut String {
        match field {
            Field::Name => &mut self.name,
            Field::Description => &mut self.description,
            Field::Dn => &mut self.dn,
            Field::Updated => &mut self.updated,
            Field::Responsible | Field::Support => &mut self.scratch,
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    reader: NsReader<&'a [u8]>,
    stack: Vec<Ctx>,
    list: TrustList,
    generated: String,
    domain: DomainFields,
    repeated: Option<Field>,
    root_seen: bool,
    domains_closed: bool,
    lines: Lines,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        let mut reader = NsReader::from_reader(input);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        Self {
            input,
            reader,
            stack: Vec::with_capacity(8),
            list: TrustList {
                generated: None,
                entries: Vec::with_capacity(input.len() / 600),
                problems: Vec::new(),
                warnings: Vec::new(),
                root_end_missing: false,
            },
            generated: String::new(),
            domain: DomainFields::default(),
            repeated: None,
            root_seen: false,
            domains_closed: false,
            lines: Lines::default(),
        }
    }

    fn line(&mut self, offset: u64) -> u32 {
        self.lines.at(self.input, offset)
    }

    fn xml_error(&mut self, message: String) -> ParseError {
        let offset = self.reader.error_position();
        ParseError::Xml {
            line: self.line(offset),
            offset,
            message,
        }
    }

    fn run(mut self) -> Result<TrustList, ParseError> {
        loop {
            let start = self.reader.buffer_position();
            let (ns, event) = match self.reader.read_resolved_event() {
                Ok((ns, event)) => (Ns::of(&ns), event),
                Err(e) => return Err(self.xml_error(e.to_string())),
            };
            match event {
                Event::Decl(decl) => {
                    if let Some(enc) = decl.encoding() {
                        let enc = enc.map_err(|e| self.xml_error(e.to_string()))?;
                        if !enc.eq_ignore_ascii_case(b"utf-8") {
                            return Err(ParseError::Encoding(String::from_utf8_lossy(&enc).into_owned()));
                        }
                    }
                }
                Event::DocType(_) => return Err(ParseError::Doctype { line: self.line(start) }),
                Event::Start(e) => {
                    let local = e.local_name();
                    self.start(local.as_ref(), ns, start)?;
                }
                Event::End(_) => self.end()?,
                Event::Text(t) => {
                    let text = t.decode().map_err(|e| self.xml_error(e.to_string()))?;
                    self.text(&text, start)?;
                }
                Event::CData(t) => {
                    let text = t.decode().map_err(|e| self.xml_error(e.to_string()))?;
                    self.text(&text, start)?;
                }
                Event::GeneralRef(r) => {
                    let name = r.decode().map_err(|e| self.xml_error(e.to_string()))?;
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => s.to_owned(),
                            None => {
                                return Err(ParseError::Entity {
                                    line: self.line(start),
                                    name: name.into_owned(),
                                })
                            }
                        },
                        Err(e) => return Err(self.xml_error(e.to_string())),
                    };
                    self.text(&resolved, start)?;
                }
                // Harmless, and absent from the real list.
                Event::Comment(_) | Event::PI(_) => {}
                Event::Empty(_) => {} // not produced: expand_empty_elements
                Event::Eof => return self.finish(),
            }
        }
    }

    fn start(&mut self, local: &[u8], ns: Ns, offset: u64) -> Result<(), ParseError> {
        let in_ns = ns == Ns::List;
        let Some(&parent) = self.stack.last() else {
            if self.root_seen || local != ROOT.as_bytes() || !in_ns {
                return Err(ParseError::Root {
                    line: self.line(offset),
                    found: String::from_utf8_lossy(local).into_owned(),
                    namespace: match ns {
                        Ns::List => Some(NAMESPACE.to_owned()),
                        Ns::Other(n) => Some(n),
                        Ns::None => None,
                    },
                });
            }
            self.root_seen = true;
            self.stack.push(Ctx::Root);
            return Ok(());
        };
        let ctx = match (parent, local) {
            (Ctx::Unknown | Ctx::Field(_), _) => Ctx::Unknown,
            (Ctx::Root, b"DateDeGeneration") if in_ns => {
                self.generated.clear();
                Ctx::Generated
            }
            (Ctx::Root, b"ListeDomaines") if in_ns && !self.domains_closed => Ctx::Domains,
            (Ctx::Domains, b"Domaine") if in_ns => {
                self.domain = DomainFields {
                    offset,
                    ..DomainFields::default()
                };
                self.repeated = None;
                Ctx::Domain
            }
            (Ctx::Domain, tag) if in_ns && Field::from_tag(tag).is_some() => {
                let f = Field::from_tag(tag).unwrap_or(Field::Description);
                let i = f as usize;
                if self.domain.seen[i] {
                    self.repeated.get_or_insert(f);
                }
                self.domain.seen[i] = true;
                self.domain.text(f).clear();
                Ctx::Field(f)
            }
            // A second <ListeDomaines>, or the list's own elements where they do not
            // belong: the structure is not the one this parser knows. Other
            // elements are ignored, so that ANS can add some.
            (_, tag)
                if in_ns
                    && (matches!(tag, b"DateDeGeneration" | b"ListeDomaines" | b"Domaine")
                        || Field::from_tag(tag).is_some()) =>
            {
                return Err(ParseError::Element {
                    line: self.line(offset),
                    found: String::from_utf8_lossy(local).into_owned(),
                    parent: parent.tag(),
                })
            }
            _ => Ctx::Unknown,
        };
        self.stack.push(ctx);
        Ok(())
    }

    fn text(&mut self, text: &str, offset: u64) -> Result<(), ParseError> {
        match self.stack.last() {
            Some(Ctx::Field(f)) => self.domain.text(*f).push_str(text),
            Some(Ctx::Generated) => self.generated.push_str(text),
            Some(Ctx::Unknown) => {}
            Some(&ctx) if !text.trim().is_empty() => {
                return Err(ParseError::Text {
                    line: self.line(offset),
                    parent: ctx.tag(),
                })
            }
            None if !text.trim().is_empty() => {
                return Err(ParseError::Text {
                    line: self.line(offset),
                    parent: "(document)",
                })
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), ParseError> {
        // quick-xml checks that end tags match their start tags.
        match self.stack.pop() {
            Some(Ctx::Domain) => self.finish_domain(),
            Some(Ctx::Domains) => self.domains_closed = true,
            Some(Ctx::Generated) => {
                self.list.generated = Some(self.generated.trim().to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_domain(&mut self) {
        let d = std::mem::take(&mut self.domain);
        let name = d.name.trim();
        let problem = |kind| Problem {
            line: 0,
            offset: d.offset,
            domain: (!name.is_empty()).then(|| name.to_owned()),
            kind,
        };
        let mut warning = None;
        let result = if let Some(f) = self.repeated.take() {
            Err(problem(ProblemKind::RepeatedField(f.tag())))
        } else if name.is_empty() {
            Err(problem(ProblemKind::MissingName))
        } else if d.dn.trim().is_empty() {
            Err(problem(ProblemKind::MissingDn))
        } else {
            match (domain_key(name), Dn::parse_lenient(&d.dn)) {
                (Err(e), _) => Err(problem(ProblemKind::BadDomain(e))),
                (_, Err(error)) => Err(problem(ProblemKind::BadDn {
                    text: d.dn.clone(),
                    error,
                })),
                (Ok(domain), Ok((dn, leniencies))) => {
                    if !leniencies.is_empty() {
                        warning = Some(WarningKind::LenientDn {
                            text: d.dn.trim().to_owned(),
                            leniencies,
                        });
                    }
                    Ok(Entry {
                        domain: domain.into_owned(),
                        dn,
                        dn_text: d.dn.trim().to_owned(),
                        description: d.description.trim().to_owned(),
                        updated: Some(d.updated.trim()).filter(|u| !u.is_empty()).map(str::to_owned),
                    })
                }
            }
        };
        if let Some(kind) = warning {
            let line = self.line(d.offset);
            self.list.warnings.push(Warning {
                line,
                offset: d.offset,
                domain: name.to_owned(),
                kind,
            });
        }
        match result {
            Ok(entry) => self.list.entries.push(entry),
            Err(mut p) => {
                p.line = self.line(p.offset);
                self.list.problems.push(p);
            }
        }
    }

    fn finish(mut self) -> Result<TrustList, ParseError> {
        match self.stack.as_slice() {
            [] if self.root_seen => {}
            [] => return Err(ParseError::NoRoot),
            // ANS's file: the root is never closed, but the domain list is.
            [Ctx::Root] if self.domains_closed => self.list.root_end_missing = true,
            [.., inner] => {
                let inside = inner.tag();
                return Err(ParseError::Truncated {
                    line: self.line(self.input.len() as u64),
                    inside,
                });
            }
        }
        Ok(self.list)
    }
}

/// The namespace of an element: the list's (no allocation: every element), or
/// another one (named in errors).
#[derive(Debug, PartialEq, Eq)]
enum Ns {
    List,
    Other(String),
    None,
}

impl Ns {
    fn of(ns: &ResolveResult<'_>) -> Self {
        match ns {
            ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes() => Self::List,
            ResolveResult::Bound(n) => Self::Other(String::from_utf8_lossy(n.as_ref()).into_owned()),
            _ => Self::None,
        }
    }
}

/// Line numbers from byte offsets, counted forward from the last question
/// (offsets asked are increasing), so that many problems cost one pass.
#[derive(Default)]
struct Lines {
    offset: usize,
    line: u32,
}

impl Lines {
    fn at(&mut self, input: &[u8], offset: u64) -> u32 {
        let end = usize::try_from(offset).unwrap_or(usize::MAX).min(input.len());
        if end < self.offset {
            *self = Self::default();
        }
        let more = memchr::memchr_iter(b'\n', &input[self.offset..end]).count();
        self.line = self.line.saturating_add(u32::try_from(more).unwrap_or(u32::MAX));
        self.offset = end;
        self.line.saturating_add(1)
    }
}

#[cfg(test)]
mod tests;
