//! SMTP commands: [`Command::parse`] one command line, [`Command::encode`] it back.
//!
//! `Command::parse(&c.encode()) == Ok(c)` for every command this module builds
//! (tested below and by property tests), so the client and the server agree on
//! the wire form by construction.
//!
//! # Known, not implemented
//! RFC 5321 §4.2.4 separates a verb the server does not know (`500 5.5.2`,
//! [`CommandError::UnknownCommand`]) from one it knows but does not implement
//! (`502 5.5.1`). The second kind parses to a command, so that the server can
//! say so: [`Command::Expn`] (a relay has no mailing lists to expand; the
//! server answers 502 rather than VRFY's 252, whose text promises delivery to a
//! user) and [`Command::NotImplemented`] for the obsolete or unoffered verbs of
//! [`Unimplemented`] (`TURN`, `ETRN`, `ATRN`, `SEND`, `SOML`, `SAML`).

use crate::address::{ForwardPath, ReversePath};
use crate::error::CommandError;
use crate::params::{MailParams, RcptParams};

/// One SMTP command, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-literal`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path.
        from: ReversePath,
        /// ESMTP parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH).
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward path.
        to: ForwardPath,
        /// ESMTP parameters (NOTIFY, ORCPT).
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030); the chunk's octets follow the line.
    Bdat {
        /// Octets in this chunk.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP` (an argument is allowed and ignored).
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`: answered 252 (we do not disclose mailboxes).
    Vrfy(String),
    /// `EXPN string` (RFC 5321 §3.5.2): known, not implemented; the server
    /// answers `502 5.5.1`. The string is kept as sent (trimmed), for logs.
    Expn(String),
    /// `HELP [topic]`.
    Help(Option<String>),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism name, upper case.
        mechanism: String,
        /// Base64 initial response, `=` for an empty one, as sent.
        initial: Option<String>,
    },
    /// A verb of [`Unimplemented`], with whatever follows it: known, not
    /// implemented; the server answers `502 5.5.1` whatever the arguments.
    NotImplemented {
        /// The verb.
        verb: Unimplemented,
        /// The rest of the line, trimmed (empty when there is none); no CR, LF
        /// or other control character but tab.
        args: String,
    },
}

/// Verbs that SMTP defines and that this crate knows but does not implement:
/// a server answers them `502 5.5.1` (RFC 5321 §4.2.4), not `500`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unimplemented {
    /// `TURN` (RFC 821): role reversal, deprecated by RFC 5321 Appendix F.1
    /// (anyone could divert mail without authentication).
    Turn,
    /// `ETRN` (RFC 1985): remote queue starting; not offered in EHLO.
    Etrn,
    /// `ATRN` (RFC 2645): authenticated TURN for on-demand relay; not offered.
    Atrn,
    /// `SEND` (RFC 821): deliver to a terminal; obsolete (RFC 5321 Appendix F.6).
    Send,
    /// `SOML` (RFC 821): send or mail; obsolete (RFC 5321 Appendix F.6).
    Soml,
    /// `SAML` (RFC 821): send and mail; obsolete (RFC 5321 Appendix F.6).
    Saml,
}

impl Unimplemented {
    /// Every verb, in declaration order.
    pub const ALL: [Self; 6] = [Self::Turn, Self::Etrn, Self::Atrn, Self::Send, Self::Soml, Self::Saml];

    /// The verb, upper case.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Turn => "TURN",
            Self::Etrn => "ETRN",
            Self::Atrn => "ATRN",
            Self::Send => "SEND",
            Self::Soml => "SOML",
            Self::Saml => "SAML",
        }
    }

    /// The verb named `verb`, compared case-insensitively.
    pub fn from_verb(verb: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.verb().eq_ignore_ascii_case(verb))
    }
}

impl Command {
    /// Parses one command line, without its CRLF.
    ///
    /// # Errors
    /// A [`CommandError`] whose [`reply`](CommandError::reply) tells the client.
    pub fn parse(line: &[u8]) -> Result<Self, CommandError> {
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(CommandError::BareLineEnding);
        }
        let line = std::str::from_utf8(line).map_err(|_| CommandError::BadCharacters)?;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(CommandError::BadCharacters);
        }
        let (verb, rest) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        // Verbs are ASCII; compare without allocating.
        let is = |v: &str| verb.eq_ignore_ascii_case(v);
        let no_args = |cmd: Self, name: &'static str| {
            if rest.trim().is_empty() {
                Ok(cmd)
            } else {
                Err(CommandError::Syntax { verb: name })
            }
        };
        if is("MAIL") {
            let arg = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax { verb: "MAIL" })?;
            let (path, params) = split_path(arg);
            Ok(Self::Mail {
                from: ReversePath::parse(path)?,
                params: MailParams::parse(params)?,
            })
        } else if is("RCPT") {
            let arg = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax { verb: "RCPT" })?;
            let (path, params) = split_path(arg);
            Ok(Self::Rcpt {
                to: ForwardPath::parse(path)?,
                params: RcptParams::parse(params)?,
            })
        } else if is("DATA") {
            no_args(Self::Data, "DATA")
        } else if is("BDAT") {
            parse_bdat(rest)
        } else if is("EHLO") || is("HELO") {
            let name = rest.trim();
            let verb = if is("EHLO") { "EHLO" } else { "HELO" };
            if name.is_empty() || name.contains(' ') || name.len() > 255 {
                return Err(CommandError::Syntax { verb });
            }
            Ok(if verb == "EHLO" {
                Self::Ehlo(name.to_owned())
            } else {
                Self::Helo(name.to_owned())
            })
        } else if is("RSET") {
            no_args(Self::Rset, "RSET")
        } else if is("NOOP") {
            Ok(Self::Noop)
        } else if is("QUIT") {
            no_args(Self::Quit, "QUIT")
        } else if is("VRFY") {
            let arg = rest.trim();
            if arg.is_empty() {
                return Err(CommandError::Syntax { verb: "VRFY" });
            }
            Ok(Self::Vrfy(arg.to_owned()))
        } else if is("EXPN") {
            let arg = rest.trim();
            if arg.is_empty() {
                return Err(CommandError::Syntax { verb: "EXPN" });
            }
            Ok(Self::Expn(arg.to_owned()))
        } else if is("HELP") {
            let arg = rest.trim();
            Ok(Self::Help((!arg.is_empty()).then(|| arg.to_owned())))
        } else if is("STARTTLS") {
            no_args(Self::StartTls, "STARTTLS")
        } else if is("AUTH") {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = words.next().ok_or(CommandError::Syntax { verb: "AUTH" })?;
            let initial = words.next();
            if words.next().is_some()
                || !mechanism
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(CommandError::Syntax { verb: "AUTH" });
            }
            Ok(Self::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial: initial.map(str::to_owned),
            })
        } else if let Some(verb) = Unimplemented::from_verb(verb) {
            Ok(Self::NotImplemented {
                verb,
                args: rest.trim().to_owned(),
            })
        } else {
            Err(CommandError::UnknownCommand)
        }
    }

    /// Appends the command line, CRLF included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let s = match self {
            Self::Ehlo(d) => format!("EHLO {d}"),
            Self::Helo(d) => format!("HELO {d}"),
            Self::Mail { from, params } => format!("MAIL FROM:{from}{params}"),
            Self::Rcpt { to, params } => format!("RCPT TO:{to}{params}"),
            Self::Data => "DATA".into(),
            Self::Bdat { size, last: true } => format!("BDAT {size} LAST"),
            Self::Bdat { size, last: false } => format!("BDAT {size}"),
            Self::Rset => "RSET".into(),
            Self::Noop => "NOOP".into(),
            Self::Quit => "QUIT".into(),
            Self::Vrfy(s) => format!("VRFY {s}"),
            Self::Expn(s) => format!("EXPN {s}"),
            Self::Help(None) => "HELP".into(),
            Self::Help(Some(t)) => format!("HELP {t}"),
            Self::StartTls => "STARTTLS".into(),
            Self::Auth {
                mechanism,
                initial: None,
            } => format!("AUTH {mechanism}"),
            Self::Auth {
                mechanism,
                initial: Some(i),
            } => format!("AUTH {mechanism} {i}"),
            Self::NotImplemented { verb, args } if args.is_empty() => verb.verb().into(),
            Self::NotImplemented { verb, args } => format!("{} {args}", verb.verb()),
        };
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The command line as a new vector, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }

    /// The verb, upper case, for logs and error replies.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Ehlo(_) => "EHLO",
            Self::Helo(_) => "HELO",
            Self::Mail { .. } => "MAIL",
            Self::Rcpt { .. } => "RCPT",
            Self::Data => "DATA",
            Self::Bdat { .. } => "BDAT",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Quit => "QUIT",
            Self::Vrfy(_) => "VRFY",
            Self::Expn(_) => "EXPN",
            Self::Help(_) => "HELP",
            Self::StartTls => "STARTTLS",
            Self::Auth { .. } => "AUTH",
            Self::NotImplemented { verb, .. } => verb.verb(),
        }
    }
}

/// Strips `FROM:`/`TO:` case-insensitively, tolerating one space after the colon
/// (common in the wild, e.g. `MAIL FROM: <a@b>`).
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| {
        rest[keyword.len()..]
            .strip_prefix(' ')
            .unwrap_or(&rest[keyword.len()..])
    })
}

/// Splits `<path> params` at the closing bracket of the path. Quoted local parts
/// may contain spaces and `>`; skip over them.
fn split_path(arg: &str) -> (&str, &str) {
    let bytes = arg.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'>' if !in_quotes => return (&arg[..=i], &arg[i + 1..]),
            _ => {}
        }
        i += 1;
    }
    (arg, "")
}

fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|s| s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(CommandError::Syntax { verb: "BDAT" })?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax { verb: "BDAT" }),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax { verb: "BDAT" });
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests;
