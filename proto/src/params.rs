//! ESMTP parameters of MAIL (SIZE RFC 1870, BODY RFC 6152, SMTPUTF8 RFC 6531,
//! RET/ENVID RFC 3461, AUTH RFC 4954) and RCPT (NOTIFY/ORCPT RFC 3461).
//!
//! Values are stored decoded (xtext `+HH` undone) and re-encoded by `Display`, so
//! that parse and encode round-trip.

use std::fmt;

use crate::error::CommandError;

/// Longest ENVID accepted (RFC 3461 §4.4: 100 characters).
pub const MAX_ENVID_LEN: usize = 100;
/// Longest ORCPT address accepted (RFC 3461 §4.2: 500 characters).
pub const MAX_ORCPT_LEN: usize = 500;

/// `BODY=` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME`.
    EightBitMime,
}

/// `RET=`: what a failure DSN returns of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `FULL`: the whole message.
    Full,
    /// `HDRS`: the headers only.
    Headers,
}

/// Parameters of `MAIL FROM`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=`: the client's estimate of the message size, in octets.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8`: addresses and headers may hold UTF-8.
    pub smtputf8: bool,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`, decoded from xtext.
    pub envid: Option<String>,
    /// `AUTH=`: the submitter identity, decoded from xtext (`<>` when unknown).
    pub auth: Option<String>,
}

/// `NOTIFY=`: when the sender wants a DSN for a recipient. All false is `NEVER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

impl Notify {
    /// `NEVER`.
    pub const NEVER: Self = Self {
        success: false,
        failure: false,
        delay: false,
    };
    /// What applies without `NOTIFY` (RFC 3461 §4.1): failure and delay.
    pub const DEFAULT: Self = Self {
        success: false,
        failure: true,
        delay: true,
    };
}

/// `ORCPT=addr-type;address` (RFC 3461 §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// Address type, usually `rfc822` (or `utf-8`).
    pub addr_type: String,
    /// The original recipient, decoded from xtext.
    pub address: String,
}

/// Parameters of `RCPT TO`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`; `None` when absent (then [`Notify::DEFAULT`] applies).
    pub notify: Option<Notify>,
    /// `ORCPT=`.
    pub orcpt: Option<Orcpt>,
}

/// Splits the text after the path into `KEY[=VALUE]` words.
fn words(s: &str) -> Result<impl Iterator<Item = (String, Option<&str>)>, CommandError> {
    if !s.is_empty() && !s.starts_with(' ') {
        return Err(CommandError::BadAddress);
    }
    Ok(s.split(' ').filter(|w| !w.is_empty()).map(|w| match w.split_once('=') {
        Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
        None => (w.to_ascii_uppercase(), None),
    }))
}

fn bad(name: &str) -> CommandError {
    CommandError::BadParameter {
        name: name.chars().take(16).collect(),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(CommandError::DuplicateParameter { name: name.to_owned() });
    }
    *slot = Some(value);
    Ok(())
}

impl MailParams {
    /// Parses the parameters after `MAIL FROM:<path>` (leading space included).
    ///
    /// # Errors
    /// Unknown keyword, bad value or duplicate: [`CommandError::BadParameter`] /
    /// [`CommandError::DuplicateParameter`].
    pub fn parse(s: &str) -> Result<Self, CommandError> {
        let mut p = Self::default();
        for (key, value) in words(s)? {
            match (key.as_str(), value) {
                ("SIZE", Some(v)) => {
                    let n = v
                        .parse::<u64>()
                        .ok()
                        .filter(|_| v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| bad(&key))?;
                    set_once(&mut p.size, n, &key)?;
                }
                ("BODY", Some(v)) => {
                    let b = if v.eq_ignore_ascii_case("7BIT") {
                        Body::SevenBit
                    } else if v.eq_ignore_ascii_case("8BITMIME") {
                        Body::EightBitMime
                    } else {
                        return Err(bad(&key));
                    };
                    set_once(&mut p.body, b, &key)?;
                }
                ("SMTPUTF8", None) => {
                    if p.smtputf8 {
                        return Err(CommandError::DuplicateParameter { name: key });
                    }
                    p.smtputf8 = true;
                }
                ("RET", Some(v)) => {
                    let r = if v.eq_ignore_ascii_case("FULL") {
                        Ret::Full
                    } else if v.eq_ignore_ascii_case("HDRS") {
                        Ret::Headers
                    } else {
                        return Err(bad(&key));
                    };
                    set_once(&mut p.ret, r, &key)?;
                }
                ("ENVID", Some(v)) => {
                    let id = xtext_decode(v).filter(|d| !d.is_empty() && d.len() <= MAX_ENVID_LEN);
                    set_once(&mut p.envid, id.ok_or_else(|| bad(&key))?, &key)?;
                }
                ("AUTH", Some(v)) => {
                    let who = xtext_decode(v).filter(|d| !d.is_empty());
                    set_once(&mut p.auth, who.ok_or_else(|| bad(&key))?, &key)?;
                }
                _ => return Err(bad(&key)),
            }
        }
        Ok(p)
    }
}

impl fmt::Display for MailParams {
    /// The wire form: each parameter preceded by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.size {
            write!(f, " SIZE={n}")?;
        }
        match self.body {
            Some(Body::SevenBit) => f.write_str(" BODY=7BIT")?,
            Some(Body::EightBitMime) => f.write_str(" BODY=8BITMIME")?,
            None => {}
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        match self.ret {
            Some(Ret::Full) => f.write_str(" RET=FULL")?,
            Some(Ret::Headers) => f.write_str(" RET=HDRS")?,
            None => {}
        }
        if let Some(id) = &self.envid {
            write!(f, " ENVID={}", xtext_encode(id))?;
        }
        if let Some(a) = &self.auth {
            write!(f, " AUTH={}", xtext_encode(a))?;
        }
        Ok(())
    }
}

impl RcptParams {
    /// Parses the parameters after `RCPT TO:<path>` (leading space included).
    ///
    /// # Errors
    /// Unknown keyword, bad value or duplicate.
    pub fn parse(s: &str) -> Result<Self, CommandError> {
        let mut p = Self::default();
        for (key, value) in words(s)? {
            match (key.as_str(), value) {
                ("NOTIFY", Some(v)) => {
                    let n = parse_notify(v).ok_or_else(|| bad(&key))?;
                    set_once(&mut p.notify, n, &key)?;
                }
                ("ORCPT", Some(v)) => {
                    let (t, a) = v.split_once(';').ok_or_else(|| bad(&key))?;
                    let valid_type = !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    let address = xtext_decode(a)
                        .filter(|a| valid_type && !a.is_empty() && a.len() <= MAX_ORCPT_LEN)
                        .ok_or_else(|| bad(&key))?;
                    let o = Orcpt {
                        addr_type: t.to_owned(),
                        address,
                    };
                    set_once(&mut p.orcpt, o, &key)?;
                }
                _ => return Err(bad(&key)),
            }
        }
        Ok(p)
    }
}

fn parse_notify(v: &str) -> Option<Notify> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Some(Notify::NEVER);
    }
    let mut n = Notify::NEVER;
    for word in v.split(',') {
        let flag = if word.eq_ignore_ascii_case("SUCCESS") {
            &mut n.success
        } else if word.eq_ignore_ascii_case("FAILURE") {
            &mut n.failure
        } else if word.eq_ignore_ascii_case("DELAY") {
            &mut n.delay
        } else {
            return None;
        };
        if std::mem::replace(flag, true) {
            return None;
        }
    }
    Some(n)
}

impl fmt::Display for RcptParams {
    /// The wire form: each parameter preceded by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.notify {
            let words: Vec<&str> = [(n.success, "SUCCESS"), (n.failure, "FAILURE"), (n.delay, "DELAY")]
                .into_iter()
                .filter_map(|(on, w)| on.then_some(w))
                .collect();
            if words.is_empty() {
                f.write_str(" NOTIFY=NEVER")?;
            } else {
                write!(f, " NOTIFY={}", words.join(","))?;
            }
        }
        if let Some(o) = &self.orcpt {
            write!(f, " ORCPT={};{}", o.addr_type, xtext_encode(&o.address))?;
        }
        Ok(())
    }
}

/// Decodes RFC 3461 xtext (`+HH` hex escapes). UTF-8 text outside escapes is
/// kept (RFC 6533 allows it under SMTPUTF8). `None` when malformed.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            c if c < 33 || c == 127 => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes text as RFC 3461 xtext: `+`, `=`, controls, space and non-ASCII as `+HH`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_params_rfc_examples() {
        let p = MailParams::parse(" SIZE=10240 BODY=8BITMIME RET=HDRS ENVID=QQ314159 SMTPUTF8").unwrap();
        assert_eq!(p.size, Some(10240));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert_eq!(p.ret, Some(Ret::Headers));
        assert_eq!(p.envid.as_deref(), Some("QQ314159"));
        assert!(p.smtputf8);
        // RFC 4954 §5: AUTH=<> and xtext.
        let p = MailParams::parse(" AUTH=e+3Dmc2@example.com").unwrap();
        assert_eq!(p.auth.as_deref(), Some("e=mc2@example.com"));
        assert_eq!(p.to_string(), " AUTH=e+3Dmc2@example.com");
        assert_eq!(MailParams::parse("").unwrap(), MailParams::default());
    }

    #[test]
    fn mail_params_errors() {
        for s in [
            " SIZE=abc",
            " SIZE=",
            " BODY=BINARYMIME",
            " RET=ALL",
            " ENVID=a+zz",
            " FOO=1",
            " SMTPUTF8=yes",
            " SIZE=99999999999999999999999",
        ] {
            assert!(
                matches!(MailParams::parse(s), Err(CommandError::BadParameter { .. })),
                "{s}"
            );
        }
        assert!(matches!(
            MailParams::parse(" SIZE=1 SIZE=2"),
            Err(CommandError::DuplicateParameter { .. })
        ));
        assert!(MailParams::parse("SIZE=1").is_err());
        let long = format!(" ENVID={}", "x".repeat(MAX_ENVID_LEN + 1));
        assert!(MailParams::parse(&long).is_err());
    }

    #[test]
    fn rcpt_params_rfc3461_examples() {
        let p = RcptParams::parse(" NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@Example.COM").unwrap();
        assert_eq!(
            p.notify,
            Some(Notify {
                success: true,
                failure: true,
                delay: false
            })
        );
        assert_eq!(p.orcpt.as_ref().map(|o| o.address.as_str()), Some("Bob@Example.COM"));
        let p = RcptParams::parse(" NOTIFY=never ORCPT=rfc822;a+2Bb@c.d").unwrap();
        assert_eq!(p.notify, Some(Notify::NEVER));
        assert_eq!(p.orcpt.unwrap().address, "a+b@c.d");
        for s in [
            " NOTIFY=NEVER,SUCCESS",
            " NOTIFY=SUCCESS,SUCCESS",
            " NOTIFY=",
            " ORCPT=rfc822",
            " ORCPT=;a@b",
        ] {
            assert!(RcptParams::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn xtext_round_trip() {
        for s in ["plain", "a+b=c", "sp ace", "é€", ""] {
            assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(xtext_decode("+2"), None);
        assert_eq!(xtext_decode("a=b"), None);
    }
}
