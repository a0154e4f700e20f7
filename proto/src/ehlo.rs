//! EHLO extensions: what a server advertises and what a client learns.

use crate::reply::{Reply, ReplyBuilder};

/// One ESMTP extension keyword we understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Extension {
    /// RFC 2920.
    Pipelining = 1 << 0,
    /// RFC 1870 (the limit itself is [`Extensions::size`]).
    Size = 1 << 1,
    /// RFC 6152.
    EightBitMime = 1 << 2,
    /// RFC 6531.
    SmtpUtf8 = 1 << 3,
    /// RFC 2034.
    EnhancedStatusCodes = 1 << 4,
    /// RFC 3461.
    Dsn = 1 << 5,
    /// RFC 3207.
    StartTls = 1 << 6,
    /// RFC 3030.
    Chunking = 1 << 7,
    /// RFC 4954 (mechanisms in [`Extensions::auth`]).
    Auth = 1 << 8,
}

impl Extension {
    const ALL: [Self; 9] = [
        Self::Pipelining,
        Self::Size,
        Self::EightBitMime,
        Self::SmtpUtf8,
        Self::EnhancedStatusCodes,
        Self::Dsn,
        Self::StartTls,
        Self::Chunking,
        Self::Auth,
    ];

    /// The EHLO keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Pipelining => "PIPELINING",
            Self::Size => "SIZE",
            Self::EightBitMime => "8BITMIME",
            Self::SmtpUtf8 => "SMTPUTF8",
            Self::EnhancedStatusCodes => "ENHANCEDSTATUSCODES",
            Self::Dsn => "DSN",
            Self::StartTls => "STARTTLS",
            Self::Chunking => "CHUNKING",
            Self::Auth => "AUTH",
        }
    }
}

/// A set of extensions, with the values some of them carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    bits: u16,
    /// `SIZE n`: the largest message accepted, in octets (0 = no fixed limit).
    pub size: Option<u64>,
    /// `AUTH` mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Extensions {
    /// No extension.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `ext`.
    pub fn insert(&mut self, ext: Extension) {
        self.bits |= ext as u16;
    }

    /// Removes `ext`.
    pub fn remove(&mut self, ext: Extension) {
        self.bits &= !(ext as u16);
    }

    /// Whether `ext` is in the set.
    pub fn contains(&self, ext: Extension) -> bool {
        self.bits & ext as u16 != 0
    }

    /// The EHLO reply advertising this set: `250-domain greeting`, then one line
    /// per extension in a fixed order.
    pub fn to_reply(&self, domain: &str, greeting: &str) -> Reply {
        let mut b = ReplyBuilder::new(250, None).line(format!("{domain} {greeting}"));
        for ext in Extension::ALL {
            if !self.contains(ext) {
                continue;
            }
            b = match ext {
                Extension::Size => b.line(format!("SIZE {}", self.size.unwrap_or(0))),
                Extension::Auth if !self.auth.is_empty() => b.line(format!("AUTH {}", self.auth.join(" "))),
                Extension::Auth => b,
                _ => b.line(ext.keyword()),
            };
        }
        b.build()
    }

    /// What a server's EHLO reply advertises. Unknown keywords are ignored;
    /// malformed values leave the extension out rather than failing.
    pub fn from_reply(reply: &Reply) -> Self {
        let mut e = Self::new();
        // The first line is the server's name and greeting.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            let Some(ext) = Extension::ALL
                .into_iter()
                .find(|x| x.keyword().eq_ignore_ascii_case(keyword))
            else {
                continue;
            };
            match ext {
                Extension::Size => match words.next().map(str::parse::<u64>) {
                    Some(Ok(n)) => e.size = Some(n),
                    Some(Err(_)) => continue,
                    None => e.size = Some(0),
                },
                Extension::Auth => e.auth.extend(words.map(str::to_ascii_uppercase)),
                _ => {}
            }
            e.insert(ext);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_and_learn_round_trip() {
        let mut e = Extensions::new();
        for x in Extension::ALL {
            e.insert(x);
        }
        e.size = Some(26_214_400);
        e.auth = vec!["PLAIN".into(), "LOGIN".into()];
        let r = e.to_reply("mx.test", "ESMTP");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("250-mx.test ESMTP\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n"));
        assert!(text.ends_with("250 AUTH PLAIN LOGIN\r\n"));
        assert_eq!(Extensions::from_reply(&r), e);
    }

    #[test]
    fn learn_from_postfix_like_reply() {
        let raw = b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN login\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
        let (r, _) = Reply::parse(raw).unwrap().unwrap();
        let e = Extensions::from_reply(&r);
        assert!(e.contains(Extension::Pipelining));
        assert!(e.contains(Extension::Chunking));
        assert!(e.contains(Extension::StartTls));
        assert_eq!(e.size, Some(10_240_000));
        assert_eq!(e.auth, vec!["PLAIN", "LOGIN"]);
        let mut e2 = e.clone();
        e2.remove(Extension::Chunking);
        assert!(!e2.contains(Extension::Chunking));
        // SIZE with garbage is left out.
        let (r, _) = Reply::parse(b"250-x\r\n250 SIZE lots\r\n").unwrap().unwrap();
        assert!(!Extensions::from_reply(&r).contains(Extension::Size));
    }
}
