//! Distinguished names (X.500 subject names) in a canonical form, so that the
//! DN that ANS publishes in the trust list and the DN read from a peer's
//! certificate compare equal when they name the same subject.
//!
//! # Canonical form
//! A [`Dn`] is the *multiset* of its `(type, value)` attributes:
//! - **type**: the upper-case short name for the usual attributes (`CN`, `OU`,
//!   `O`, `L`, `ST`, `C`, `EMAILADDRESS`, `SERIALNUMBER`, … — see [`ATTRIBUTES`]);
//!   their long names, aliases (`S` for `ST`, `E` for `EMAILADDRESS`) and OIDs
//!   (`2.5.4.3`, `OID.2.5.4.3`) map to the same name. Other OIDs stay dotted;
//!   other keywords are upper-cased (a keyword and its OID are then *not* unified:
//!   the name is unknown here).
//! - **value**: RFC 4514 escapes (`\,`, `\2C`) and the legacy RFC 2253 quotes
//!   around a whole value (`O="C H U  DE  LIMOGES"`) resolved; every run of white
//!   space (including U+00A0 NO-BREAK SPACE, tabs and newlines) collapsed to one
//!   space and trimmed at both ends; lower-cased. This is LDAP's
//!   `caseIgnoreMatch` (RFC 4518's insignificant-space handling and case folding)
//!   without Unicode normalisation.
//! - **order**: attributes sorted (most specific first: `CN`, …, `OU`, `O`, `L`,
//!   `ST`, `C`), so that `O=a,CN=b` equals `CN=b,O=a`. Multi-valued RDNs
//!   (`CN=a+OU=b`) are flattened into the same multiset: the trust list has none
//!   and the order of RDNs is ignored anyway.
//!
//! # What stays different, and why
//! - `ST=Paris(75)` and `ST=Paris (75)` are **different** DNs. Only *runs* of
//!   spaces are insignificant (RFC 4518); the absence of a space is a different
//!   string, and a certificate carries one spelling or the other. The list has both
//!   spellings for different operators, each matching its own certificate; making
//!   them equal would have to guess where spaces do not matter.
//! - `L=Paris (75)` and `ST=Paris (75)` are different: different attributes.
//!
//! # Bare quotes: [`Dn::parse`] refuses, [`Dn::parse_lenient`] reads
//! A bare `"` inside a value (`O=CRLCC "PAUL STRAUSS"`) is not RFC 4514 (it must
//! be escaped `\"`): [`Dn::parse`] refuses it with [`DnError::UnexpectedChar`].
//! ANS's list has such DNs, and a quote that does not *open* a value has one
//! reading only: the character itself, which is what the operator's certificate
//! carries (its `O` is the UTF8String `CRLCC "PAUL STRAUSS"`).
//! [`Dn::parse_lenient`] reads it so, and says so ([`Leniency::BareQuotes`]).
//! It still refuses what has two readings:
//! - a quote opening a value that is not the whole value (`O="CRLCC" PAUL`:
//!   RFC 2253 quoting followed by junk, or a literal quote?) —
//!   [`DnError::UnexpectedChar`]; one never closed — [`DnError::UnterminatedQuote`];
//! - bare quotes that do not pair up within their value while a later `"`
//!   follows (`O=x "y,OU=z"`: `O=x "y` and `OU=z"`, or one quoted stretch
//!   `"y,OU=z"` holding a comma?) — [`DnError::AmbiguousQuote`].
//!
//! Spaces around `=`, `,`, `;` and `+` are ignored (RFC 2253 legacy, and the list
//! writes `CN=smtp-1.example.fr ,OU=…` and `, ` separators); `;` separates RDNs
//! like `,` (RFC 2253). `#` hex values (BER-encoded strings) are decoded when they
//! hold a string type.

use std::borrow::Cow;
use std::fmt;

mod ber;
use ber::ber_string;

/// A canonical attribute type name: the known ones are not allocated.
type AttrType = Cow<'static, str>;

/// The longest DN text [`Dn::parse`] reads, in bytes. Certificate subjects are
/// far shorter; the cap bounds the work on hostile input.
pub const MAX_DN_LEN: usize = 4096;
/// The most attributes a [`Dn`] may have.
pub const MAX_ATTRIBUTES: usize = 64;

/// Known attribute types: canonical short name, OID, other names accepted
/// (compared case-insensitively). The order is the display order of a [`Dn`].
pub const ATTRIBUTES: &[(&str, &str, &[&str])] = &[
    ("CN", "2.5.4.3", &["COMMONNAME"]),
    ("UID", "0.9.2342.19200300.100.1.1", &["USERID"]),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1", &["E", "EMAIL"]),
    ("SERIALNUMBER", "2.5.4.5", &[]),
    ("GIVENNAME", "2.5.4.42", &["GN"]),
    ("SN", "2.5.4.4", &["SURNAME"]),
    ("INITIALS", "2.5.4.43", &[]),
    ("GENERATIONQUALIFIER", "2.5.4.44", &[]),
    ("PSEUDONYM", "2.5.4.65", &[]),
    ("TITLE", "2.5.4.12", &[]),
    ("DNQUALIFIER", "2.5.4.46", &[]),
    ("OU", "2.5.4.11", &["ORGANIZATIONALUNITNAME"]),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97", &[]),
    ("O", "2.5.4.10", &["ORGANIZATIONNAME"]),
    ("STREET", "2.5.4.9", &["STREETADDRESS"]),
    ("POSTALCODE", "2.5.4.17", &[]),
    ("L", "2.5.4.7", &["LOCALITYNAME"]),
    ("ST", "2.5.4.8", &["S", "STATEORPROVINCENAME"]),
    ("C", "2.5.4.6", &["COUNTRYNAME"]),
    ("DC", "0.9.2342.19200300.100.1.25", &["DOMAINCOMPONENT"]),
];

/// Why a DN cannot be read. Offsets are in bytes from the start of the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    /// No attribute at all. A trust-list entry or certificate without a subject
    /// names no one.
    #[error("empty DN")]
    Empty,
    /// Longer than [`MAX_DN_LEN`] (as given, or in canonical form) or more
    /// than [`MAX_ATTRIBUTES`] attributes.
    #[error("DN too long")]
    TooLong,
    /// An attribute without `=`, or an empty RDN (`CN=a,,O=b`, trailing `,`).
    #[error("attribute without '=' at offset {at}")]
    MissingEquals {
        /// Where the attribute starts.
        at: usize,
    },
    /// Not a keyword (`ALPHA *(ALPHA / DIGIT / "-")`) nor a dotted OID.
    #[error("invalid attribute type {found:?} at offset {at}")]
    BadType {
        /// Where the type starts.
        at: usize,
        /// The type as written.
        found: String,
    },
    /// A character RFC 4514 requires to be escaped (`"`, `<`, `>`, `\`, NUL)
    /// appears bare in a value, or text follows a closing quote.
    #[error("unexpected {found:?} at offset {at} (RFC 4514 requires it escaped)")]
    UnexpectedChar {
        /// Where.
        at: usize,
        /// The character.
        found: char,
    },
    /// `\` not followed by a special character or two hex digits.
    #[error("invalid escape at offset {at}")]
    BadEscape {
        /// Where the backslash is.
        at: usize,
    },
    /// A bare `"` inside a value that does not pair up with another in the
    /// value, while a later `"` in the DN could close a quoted stretch across a
    /// separator ([`Dn::parse_lenient`] only: [`Dn::parse`] refuses every bare quote).
    #[error("ambiguous bare '\"' at offset {at}: a later quote could close it across a separator")]
    AmbiguousQuote {
        /// Where the unpaired quote is.
        at: usize,
    },
    /// A quoted value without its closing quote.
    #[error("unterminated quoted value starting at offset {at}")]
    UnterminatedQuote {
        /// Where the opening quote is.
        at: usize,
    },
    /// Hex escapes that do not form UTF-8.
    #[error("escaped bytes are not UTF-8 in the value at offset {at}")]
    BadUtf8 {
        /// Where the value starts.
        at: usize,
    },
    /// A `#` value that is not hex, or not a BER string this parser reads.
    #[error("unsupported '#' hex value at offset {at}")]
    BadHexValue {
        /// Where the `#` is.
        at: usize,
    },
}

/// A liberty [`Dn::parse_lenient`] took with text that is not RFC 4514.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Leniency {
    /// An unquoted value holds bare `"` (RFC 4514 wants `\"`), read as literal
    /// characters. One per value.
    BareQuotes {
        /// Where the value's first bare quote is (bytes from the start).
        at: usize,
    },
}

impl fmt::Display for Leniency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BareQuotes { at } => write!(
                f,
                "bare '\"' at offset {at} read as a literal character (RFC 4514 wants it escaped)"
            ),
        }
    }
}

/// A distinguished name in canonical form (see the module doc): equal DNs are
/// equal whatever their attribute order, case, spacing or quoting.
///
/// `Display` prints the canonical form as an RFC 4514 string that
/// [`Dn::parse`] reads back to an equal `Dn`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dn {
    /// Sorted by (type rank, type, value); never empty.
    attrs: Vec<(AttrType, Box<str>)>,
}

impl Dn {
    /// Reads an RFC 4514 string (with the tolerances in the module doc).
    ///
    /// # Errors
    /// [`DnError`] with the offset of the fault; never panics.
    pub fn parse(text: &str) -> Result<Self, DnError> {
        Self::parse_with(text, None)
    }

    /// Like [`Dn::parse`], but reads a bare `"` inside an unquoted value as a
    /// literal character when that is the only reading (see the module doc),
    /// and returns the liberties taken, in text order (empty when the text is
    /// one [`Dn::parse`] accepts, giving the same `Dn`). For texts others wrote
    /// (the trust list), not for configuration.
    ///
    /// # Errors
    /// As [`Dn::parse`], plus [`DnError::AmbiguousQuote`]; never panics.
    pub fn parse_lenient(text: &str) -> Result<(Self, Vec<Leniency>), DnError> {
        let mut leniencies = Vec::new();
        let dn = Self::parse_with(text, Some(&mut leniencies))?;
        Ok((dn, leniencies))
    }

    /// The parser; `leniencies` is `Some` in lenient mode.
    fn parse_with(text: &str, leniencies: Option<&mut Vec<Leniency>>) -> Result<Self, DnError> {
        if text.len() > MAX_DN_LEN {
            return Err(DnError::TooLong);
        }
        let mut attrs = Vec::with_capacity(8);
        let mut p = Parser {
            s: text,
            pos: 0,
            leniencies,
        };
        p.skip_spaces();
        if p.at_end() {
            return Err(DnError::Empty);
        }
        loop {
            let kind = p.attribute_type()?;
            let value = p.value()?;
            if attrs.len() == MAX_ATTRIBUTES {
                return Err(DnError::TooLong);
            }
            attrs.push((kind, value));
            match p.next_char() {
                None => break,
                // `,` and `;` separate RDNs, `+` attributes of one RDN: the
                // canonical form is a flat multiset, so all three are alike here.
                Some(',' | ';' | '+') => p.skip_spaces(),
                Some(c) => {
                    return Err(DnError::UnexpectedChar {
                        at: p.pos - c.len_utf8(),
                        found: c,
                    })
                }
            }
        }
        Self::sorted(attrs)
    }

    /// Builds a DN from `(type, value)` pairs as a certificate holds them: `type`
    /// is a short or long name (`"CN"`, `"commonName"`) or a dotted OID
    /// (`"2.5.4.3"`), `value` the plain string (no RFC 4514 escapes). Spacing and
    /// case are normalised as in [`Dn::parse`].
    ///
    /// # Errors
    /// [`DnError::BadType`] for a type that is neither a keyword nor an OID,
    /// [`DnError::Empty`] without attributes, [`DnError::TooLong`] above
    /// [`MAX_ATTRIBUTES`].
    pub fn from_attributes<I, K, V>(attributes: I) -> Result<Self, DnError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut attrs = Vec::new();
        for (i, (k, v)) in attributes.into_iter().enumerate() {
            if i == MAX_ATTRIBUTES {
                return Err(DnError::TooLong);
            }
            let kind = canonical_type(k.as_ref().trim()).ok_or_else(|| DnError::BadType {
                at: 0,
                found: k.as_ref().to_owned(),
            })?;
            attrs.push((kind, normalise_value(v.as_ref())));
        }
        if attrs.is_empty() {
            return Err(DnError::Empty);
        }
        Self::sorted(attrs)
    }

    /// Sorts into canonical order, and refuses a DN whose canonical text would
    /// exceed [`MAX_DN_LEN`] (escapes can make it longer than the input), so
    /// that every `Dn` displays to a string that [`Dn::parse`] accepts.
    fn sorted(mut attrs: Vec<(AttrType, Box<str>)>) -> Result<Self, DnError> {
        attrs.sort_by(|a, b| (type_rank(&a.0), &a.0, &a.1).cmp(&(type_rank(&b.0), &b.0, &b.1)));
        let dn = Self { attrs };
        if dn.text_len() > MAX_DN_LEN {
            return Err(DnError::TooLong);
        }
        Ok(dn)
    }

    /// The length of the canonical text (`Display`), without writing it.
    fn text_len(&self) -> usize {
        let commas = self.attrs.len().saturating_sub(1);
        let parts: usize = self
            .attrs
            .iter()
            .map(|(k, v)| k.len() + 1 + v.char_indices().map(|(j, c)| escape_len(j, c)).sum::<usize>())
            .sum();
        commas + parts
    }

    /// The canonical `(type, value)` pairs, in canonical order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The first (canonical, lower-case) value of attribute `kind`, given by its
    /// canonical name (`"CN"`, `"OU"`).
    pub fn get(&self, kind: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| &**k == kind).map(|(_, v)| &**v)
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.attrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(k)?;
            f.write_str("=")?;
            // Plain runs are written whole; only the characters below are escaped.
            let mut plain = 0;
            for (j, c) in v.char_indices() {
                let escape = escape_len(j, c);
                if escape == c.len_utf8() {
                    continue;
                }
                f.write_str(&v[plain..j])?;
                plain = j + c.len_utf8();
                if escape == 2 {
                    write!(f, "\\{c}")?;
                } else {
                    // Values are trimmed, so a space is never first or last;
                    // other controls would not survive a reader's white-space
                    // handling: hex pairs.
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\{b:02X}")?;
                    }
                }
            }
            f.write_str(&v[plain..])?;
        }
        Ok(())
    }
}

/// Bytes that character `c` at byte `at` of a value takes in the canonical
/// text: its own length, 2 when escaped with a backslash, 3 per byte when
/// written as hex pairs. [`Dn::text_len`] and `Display` agree through it.
fn escape_len(at: usize, c: char) -> usize {
    match c {
        '"' | '+' | ',' | ';' | '<' | '>' | '\\' => 2,
        '#' if at == 0 => 2,
        c if c.is_control() => 3 * c.len_utf8(),
        c => c.len_utf8(),
    }
}

/// Display rank of a canonical type name: known types in [`ATTRIBUTES`] order,
/// the others after them.
fn type_rank(kind: &str) -> usize {
    ATTRIBUTES
        .iter()
        .position(|(name, _, _)| *name == kind)
        .unwrap_or(ATTRIBUTES.len())
}

/// The canonical name of an attribute type, or `None` if it is neither a
/// keyword nor a dotted OID.
fn canonical_type(raw: &str) -> Option<AttrType> {
    let oid = raw
        .strip_prefix("OID.")
        .or_else(|| raw.strip_prefix("oid."))
        .unwrap_or(raw);
    if is_numeric_oid(oid) {
        return Some(match ATTRIBUTES.iter().find(|(_, o, _)| *o == oid) {
            Some((name, _, _)) => Cow::Borrowed(*name),
            None => Cow::Owned(oid.to_owned()),
        });
    }
    let mut chars = raw.chars();
    let keyword =
        chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !keyword {
        return None;
    }
    for (name, _, aliases) in ATTRIBUTES {
        if name.eq_ignore_ascii_case(raw) || aliases.iter().any(|a| a.eq_ignore_ascii_case(raw)) {
            return Some(Cow::Borrowed(*name));
        }
    }
    Some(Cow::Owned(raw.to_ascii_uppercase()))
}

/// `number *("." number)`, numbers without leading zeros (RFC 4512).
fn is_numeric_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n.len() == 1 || !n.starts_with('0')))
}

/// Collapses white-space runs (U+00A0 included: `char::is_whitespace`), trims,
/// lower-cases.
fn normalise_value(raw: &str) -> Box<str> {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
    out.into_boxed_str()
}

/// A cursor over the DN text.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
    /// Lenient mode: bare quotes are read, and recorded here.
    leniencies: Option<&'a mut Vec<Leniency>>,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|r| r.chars().next())
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    /// `type` then `=`, spaces around both skipped.
    fn attribute_type(&mut self) -> Result<AttrType, DnError> {
        self.skip_spaces();
        let start = self.pos;
        let rest = self.s.get(start..).unwrap_or("");
        let Some(eq) = rest.find(['=', ',', ';', '+']).filter(|&i| rest[i..].starts_with('=')) else {
            return Err(DnError::MissingEquals { at: start });
        };
        let raw = rest[..eq].trim_end_matches(char::is_whitespace);
        self.pos = start + eq + 1;
        canonical_type(raw).ok_or_else(|| DnError::BadType {
            at: start,
            found: raw.to_owned(),
        })
    }

    /// A value up to (not including) its separator, spaces after it skipped.
    fn value(&mut self) -> Result<Box<str>, DnError> {
        self.skip_spaces();
        let start = self.pos;
        match self.peek() {
            Some('"') => {
                self.pos += 1;
                let v = self.escaped_until(start, true)?;
                self.skip_spaces();
                Ok(normalise_value(&v))
            }
            Some('#') => self.hex_value(start),
            _ => {
                let v = self.escaped_until(start, false)?;
                Ok(normalise_value(&v))
            }
        }
    }

    /// Reads a string with RFC 4514 escapes. Quoted: up to the closing quote
    /// (consumed), where `,;+<>` may appear bare. Unquoted: up to the next bare
    /// `,`, `;` or `+` (not consumed).
    fn escaped_until(&mut self, start: usize, quoted: bool) -> Result<String, DnError> {
        let mut bytes: Vec<u8> = Vec::with_capacity(32);
        // Lenient mode: the value's first and last bare quotes, and their count.
        let mut bare: Option<(usize, usize, usize)> = None;
        loop {
            let at = self.pos;
            let Some(c) = self.peek() else {
                if quoted {
                    return Err(DnError::UnterminatedQuote { at: start });
                }
                break;
            };
            match c {
                '"' if quoted => {
                    self.pos += 1;
                    break;
                }
                ',' | ';' | '+' if !quoted => break,
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ (' ' | '"' | '#' | '+' | ',' | ';' | '<' | '=' | '>' | '\\')) => {
                            self.pos += 1;
                            bytes.push(e as u8);
                        }
                        _ => bytes.push(self.hex_byte().ok_or(DnError::BadEscape { at })?),
                    }
                }
                '"' if !quoted && self.leniencies.is_some() => {
                    self.pos += 1;
                    bytes.push(b'"');
                    let (first, _, n) = bare.unwrap_or((at, at, 0));
                    bare = Some((first, at, n + 1));
                }
                '"' | '<' | '>' | '\0' if !quoted => return Err(DnError::UnexpectedChar { at, found: c }),
                _ => {
                    self.pos += c.len_utf8();
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if let (Some((first, last, n)), Some(leniencies)) = (bare, self.leniencies.as_mut()) {
            // Paired quotes cannot have swallowed a separator; an odd one could
            // have, if a later quote closes it.
            if n % 2 == 1 && self.s.get(self.pos..).is_some_and(|rest| rest.contains('"')) {
                return Err(DnError::AmbiguousQuote { at: last });
            }
            leniencies.push(Leniency::BareQuotes { at: first });
        }
        String::from_utf8(bytes).map_err(|_| DnError::BadUtf8 { at: start })
    }

    /// Two hex digits at the cursor, consumed.
    fn hex_byte(&mut self) -> Option<u8> {
        let digits = self.s.get(self.pos..self.pos + 2)?;
        let b = u8::from_str_radix(digits, 16).ok()?;
        // from_str_radix accepts a leading '+'; RFC 4514 wants two hex digits.
        if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 2;
        Some(b)
    }

    /// `#` followed by the hex of a BER string.
    fn hex_value(&mut self, start: usize) -> Result<Box<str>, DnError> {
        self.pos += 1;
        let mut der = Vec::new();
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            der.push(self.hex_byte().ok_or(DnError::BadHexValue { at: start })?);
        }
        self.skip_spaces();
        let text = ber_string(&der).ok_or(DnError::BadHexValue { at: start })?;
        Ok(normalise_value(&text))
    }
}

#[cfg(test)]
mod tests;
