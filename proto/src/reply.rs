//! SMTP replies: basic code, optional enhanced status code (RFC 3463), text.
//!
//! The server builds replies with [`Reply::new`] / [`ReplyBuilder`] and writes them
//! with [`Reply::encode`]; the client reads them back incrementally with
//! [`Reply::parse`], which understands multi-line replies (`250-…` / `250 …`).

use std::fmt;

use crate::error::ReplyError;

/// Longest reply line we accept from a peer, CRLF included (RFC 5321 §4.5.3.1.5
/// says 512; real servers send longer EHLO lines, so we allow more).
pub const MAX_REPLY_LINE: usize = 2048;

/// Most lines in one multi-line reply that we accept from a peer: bounds memory.
pub const MAX_REPLY_LINES: usize = 256;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// Subject: 0 other, 1 addressing, 2 mailbox, 3 mail system, 4 network and
    /// routing, 5 mail delivery protocol, 6 message content, 7 security.
    pub subject: u16,
    /// Detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self { class, subject, detail }
    }

    /// Parses `x.y.z` at the start of `s`; returns the code and the rest of `s`
    /// after one separating space.
    fn parse_prefix(s: &str) -> Option<(Self, &str)> {
        let end = s.find(' ').unwrap_or(s.len());
        let mut parts = s[..end].split('.');
        let class: u8 = parse_digits(parts.next()?, 1)?;
        let subject: u16 = parse_digits(parts.next()?, 3)?;
        let detail: u16 = parse_digits(parts.next()?, 3)?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        let rest = s.get(end + 1..).unwrap_or("");
        Some((Self::new(class, subject, detail), rest))
    }
}

fn parse_digits<T: std::str::FromStr>(s: &str, max_len: usize) -> Option<T> {
    // No leading zeros: `4.3.009` is text, not a code, so that what we parse
    // re-encodes to the same bytes (found by the reply fuzzer).
    if s.is_empty()
        || s.len() > max_len
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The class of a reply, from its first digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// 2yz: the command succeeded.
    Success,
    /// 3yz: send more (354 after DATA, 334 during AUTH).
    Intermediate,
    /// 4yz: failed now, may work later: defer and retry.
    Transient,
    /// 5yz: failed for good: bounce.
    Permanent,
}

/// One SMTP reply, possibly multi-line.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code, 200..=599.
    pub code: u16,
    /// Enhanced status code, when the peer sent one (or we send one).
    pub enhanced: Option<EnhancedCode>,
    /// Text lines without code, enhanced code or CRLF. At least one (maybe empty).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: EnhancedCode, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without enhanced code (greeting, EHLO).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// Severity from the first digit; unknown first digits count as permanent.
    pub fn severity(&self) -> Severity {
        match self.code / 100 {
            2 => Severity::Success,
            3 => Severity::Intermediate,
            4 => Severity::Transient,
            _ => Severity::Permanent,
        }
    }

    /// Whether this is a 2yz reply.
    pub fn is_success(&self) -> bool {
        self.severity() == Severity::Success
    }

    /// All text lines joined by a space: for logs and DSN diagnostic codes.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (every line CRLF-terminated) to `out`.
    ///
    /// The enhanced code, when present, is repeated on every line (RFC 2034 §4).
    /// CR and LF inside a text line are replaced by spaces so that a reply can
    /// never inject another line.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        let code = self.code.clamp(200, 599);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            push_fmt(out, format_args!("{code}{sep}"));
            if let Some(e) = self.enhanced {
                push_fmt(out, format_args!("{e} "));
            }
            out.extend(line.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            push_fmt(out, format_args!("{code} \r\n"));
        }
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }

    /// Parses one complete reply from the start of `input`.
    ///
    /// Returns `Ok(None)` when `input` does not yet hold the last line of the reply
    /// (incomplete is not an error), `Ok(Some((reply, consumed)))` otherwise.
    /// Enhanced codes are recognised only when every line carries one whose class
    /// matches the reply's first digit (RFC 3463 §2), otherwise they stay in the text.
    ///
    /// # Errors
    /// A malformed line (no three-digit code, mixed codes across lines, a line
    /// over [`MAX_REPLY_LINE`], more than [`MAX_REPLY_LINES`] lines, a bare LF).
    pub fn parse(input: &[u8]) -> Result<Option<(Self, usize)>, ReplyError> {
        let mut pos = 0;
        let mut code: Option<u16> = None;
        let mut raw_lines: Vec<&str> = Vec::new();
        loop {
            let rest = &input[pos..];
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                if rest.len() > MAX_REPLY_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            if nl + 1 > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err(ReplyError::BareLf);
            }
            let line = &rest[..nl - 1];
            // A CR inside a line would be re-encoded as a space, changing what
            // the line means (found by the reply fuzzer): refuse it.
            if memchr::memchr(b'\r', line).is_some() {
                return Err(ReplyError::BareCr);
            }
            pos += nl + 1;
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
                return Err(ReplyError::Syntax);
            }
            let this_code =
                u16::from(line[0] - b'0') * 100 + u16::from(line[1] - b'0') * 10 + u16::from(line[2] - b'0');
            if !(200..=599).contains(&this_code) {
                return Err(ReplyError::Syntax);
            }
            if *code.get_or_insert(this_code) != this_code {
                return Err(ReplyError::MixedCodes);
            }
            let (last, text) = match line.get(3) {
                None => (true, &line[3..]),
                Some(b' ') => (true, &line[4..]),
                Some(b'-') => (false, &line[4..]),
                Some(_) => return Err(ReplyError::Syntax),
            };
            // Peers send Latin-1 or worse in reply text; keep what is valid.
            let text = std::str::from_utf8(text).unwrap_or("\u{fffd}");
            raw_lines.push(text);
            if raw_lines.len() > MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            if last {
                break;
            }
        }
        let code = code.ok_or(ReplyError::Syntax)?;
        let class = (code / 100) as u8;
        let enhanced = raw_lines
            .iter()
            .map(|l| EnhancedCode::parse_prefix(l).filter(|(e, _)| e.class == class))
            .collect::<Option<Vec<_>>>()
            .filter(|codes| codes.iter().all(|(e, _)| *e == codes[0].0));
        let reply = match enhanced {
            Some(codes) => Self {
                code,
                enhanced: Some(codes[0].0),
                lines: codes.into_iter().map(|(_, t)| t.to_owned()).collect(),
            },
            None => Self {
                code,
                enhanced: None,
                lines: raw_lines.into_iter().map(str::to_owned).collect(),
            },
        };
        Ok(Some((reply, pos)))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        write!(f, " {}", self.text())
    }
}

fn push_fmt(out: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = out.write_fmt(args);
}

/// Builds a multi-line reply (EHLO, HELP) one line at a time.
#[must_use]
#[derive(Debug)]
pub struct ReplyBuilder {
    reply: Reply,
}

impl ReplyBuilder {
    /// Starts a reply with `code` and optional enhanced code, no lines yet.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>) -> Self {
        Self {
            reply: Reply {
                code,
                enhanced,
                lines: Vec::new(),
            },
        }
    }

    /// Adds one text line.
    pub fn line(mut self, text: impl Into<String>) -> Self {
        self.reply.lines.push(text.into());
        self
    }

    /// The finished reply.
    pub fn build(self) -> Reply {
        self.reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_single_and_multi_line() {
        let r = Reply::new(250, EnhancedCode::new(2, 1, 0), "sender ok");
        assert_eq!(r.to_bytes(), b"250 2.1.0 sender ok\r\n");
        let r = ReplyBuilder::new(250, None)
            .line("mx.example")
            .line("PIPELINING")
            .line("SIZE 1000")
            .build();
        assert_eq!(
            r.to_bytes(),
            b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n".to_vec()
        );
    }

    #[test]
    fn encode_never_injects_lines() {
        let r = Reply::plain(550, "bad\r\n250 ok");
        assert_eq!(r.to_bytes(), b"550 bad  250 ok\r\n");
    }

    #[test]
    fn parse_round_trips() {
        for r in [
            Reply::new(451, EnhancedCode::new(4, 3, 0), "try later"),
            Reply::plain(220, "mx.example ESMTP"),
            ReplyBuilder::new(250, Some(EnhancedCode::new(2, 0, 0)))
                .line("a")
                .line("b")
                .build(),
        ] {
            let bytes = r.to_bytes();
            assert_eq!(Reply::parse(&bytes), Ok(Some((r, bytes.len()))));
        }
    }

    #[test]
    fn parse_incomplete_is_none() {
        assert_eq!(Reply::parse(b"250-a\r\n250-b\r\n"), Ok(None));
        assert_eq!(Reply::parse(b"250 ok"), Ok(None));
        assert_eq!(Reply::parse(b""), Ok(None));
    }

    #[test]
    fn parse_rfc5321_examples() {
        // RFC 5321 §4.2.1 example of a multi-line reply.
        let input =
            b"123-First line\r\n123-Second line\r\n123-234 text beginning with numbers\r\n123 The last line\r\n";
        let err = Reply::parse(input);
        // 123 is not a valid reply code for SMTP (first digit 2..5).
        assert_eq!(err, Err(ReplyError::Syntax));
        let input =
            b"250-First line\r\n250-Second line\r\n250-234 text beginning with numbers\r\n250 The last line\r\nrest";
        let (r, used) = Reply::parse(input).unwrap().unwrap();
        assert_eq!(used, input.len() - 4);
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines[2], "234 text beginning with numbers");
        assert_eq!(r.lines.len(), 4);
    }

    #[test]
    fn parse_enhanced_only_when_consistent() {
        let (r, _) = Reply::parse(b"550 5.1.1 no such user\r\n").unwrap().unwrap();
        assert_eq!(r.enhanced, Some(EnhancedCode::new(5, 1, 1)));
        assert_eq!(r.lines, vec!["no such user"]);
        // Class mismatch: keep the text as is.
        let (r, _) = Reply::parse(b"550 2.1.1 odd\r\n").unwrap().unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, vec!["2.1.1 odd"]);
        // Leading zeros: not an enhanced code (fuzzer finding: 4.3.009 re-encoded as 4.3.9).
        let (r, _) = Reply::parse(b"451 4.3.009 2-4.3:.0 \0b\r\n").unwrap().unwrap();
        assert_eq!(r.enhanced, None);
        let wire = r.to_bytes();
        let (again, _) = Reply::parse(&wire).unwrap().unwrap();
        assert_eq!(again.to_bytes(), wire);
        // A bare code line.
        let (r, _) = Reply::parse(b"250\r\n").unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec![""]);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Reply::parse(b"25O ok\r\n"), Err(ReplyError::Syntax));
        assert_eq!(Reply::parse(b"250 ok\n"), Err(ReplyError::BareLf));
        assert_eq!(
            Reply::parse(b"451-4.50.43\r\n451 4.50.43\rx\r\n"),
            Err(ReplyError::BareCr)
        );
        assert_eq!(Reply::parse(b"250-a\r\n251 b\r\n"), Err(ReplyError::MixedCodes));
        assert_eq!(Reply::parse(b"250xok\r\n"), Err(ReplyError::Syntax));
        assert_eq!(
            Reply::parse(&vec![b'2'; MAX_REPLY_LINE + 1]),
            Err(ReplyError::LineTooLong)
        );
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(Reply::parse(many.as_bytes()), Err(ReplyError::TooManyLines));
        assert_eq!(Reply::parse(b"999 no\r\n"), Err(ReplyError::Syntax));
    }

    #[test]
    fn severity() {
        assert_eq!(Reply::plain(354, "go").severity(), Severity::Intermediate);
        assert_eq!(Reply::plain(421, "bye").severity(), Severity::Transient);
        assert_eq!(Reply::plain(554, "no").severity(), Severity::Permanent);
        assert!(Reply::plain(250, "ok").is_success());
    }
}
