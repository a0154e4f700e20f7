//! The SASL exchange of AUTH (RFC 4954) for PLAIN (RFC 4616) and LOGIN.
//!
//! The server decodes credentials and hands them to the driver as an
//! [`AuthRequest`]; it never judges them itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{code, Armed, AuthRequest, Phase, Server, ServerEvent};
use crate::reply::Reply;

/// Which SASL response line the server waits for.
#[derive(Debug)]
pub(super) enum AuthStep {
    /// PLAIN without initial response: the whole credential.
    Plain,
    /// LOGIN: the user name.
    LoginUser,
    /// LOGIN: the password for this user.
    LoginPassword { user: String },
}

/// Why a SASL exchange failed on the protocol level.
enum SaslError {
    Cancelled,
    BadBase64,
    Malformed,
}

impl SaslError {
    fn reply(&self) -> Reply {
        match self {
            Self::Cancelled => Reply::new(501, code(5, 0, 0), "authentication cancelled"),
            Self::BadBase64 => Reply::new(501, code(5, 5, 2), "invalid base64 in AUTH response"),
            Self::Malformed => Reply::new(501, code(5, 5, 4), "malformed credentials"),
        }
    }
}

fn decode(line: &[u8]) -> Result<String, SaslError> {
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" {
        return Ok(String::new());
    }
    let raw = STANDARD.decode(line).map_err(|_| SaslError::BadBase64)?;
    String::from_utf8(raw).map_err(|_| SaslError::Malformed)
}

/// PLAIN: `[authzid] NUL authcid NUL passwd`.
fn split_plain(s: &str) -> Result<(String, String, String), SaslError> {
    let mut parts = s.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(z), Some(c), Some(p), None) if !c.is_empty() => Ok((z.into(), c.into(), p.into())),
        _ => Err(SaslError::Malformed),
    }
}

impl Server {
    pub(super) fn on_auth(&mut self, mechanism: String, initial: Option<String>) {
        let refusal = if self.tls.is_none() {
            Some(Reply::new(538, code(5, 7, 11), "encryption required for AUTH"))
        } else if self.helo.is_none() {
            Some(Reply::new(503, code(5, 5, 1), "send EHLO before AUTH"))
        } else if self.authenticated.is_some() {
            Some(Reply::new(503, code(5, 5, 1), "already authenticated"))
        } else if self.tx.is_some() {
            Some(Reply::new(
                503,
                code(5, 5, 1),
                "AUTH not allowed during a mail transaction",
            ))
        } else if !self.config.auth_mechanisms.contains(&mechanism) {
            Some(Reply::new(504, code(5, 5, 4), "unrecognised authentication mechanism"))
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.refuse(r);
        }
        match (mechanism.as_str(), initial) {
            ("PLAIN", Some(init)) => self.finish_plain(init.as_bytes()),
            ("PLAIN", None) => {
                self.send(&Reply::plain(334, ""));
                self.phase = Phase::Auth(AuthStep::Plain);
            }
            ("LOGIN", Some(init)) => match decode(init.as_bytes()) {
                Ok(user) => self.ask_password(user),
                Err(e) => self.refuse(e.reply()),
            },
            ("LOGIN", None) => {
                self.send(&Reply::plain(334, STANDARD.encode("Username:")));
                self.phase = Phase::Auth(AuthStep::LoginUser);
            }
            _ => self.refuse(Reply::new(504, code(5, 5, 4), "unrecognised authentication mechanism")),
        }
    }

    fn ask_password(&mut self, user: String) {
        self.send(&Reply::plain(334, STANDARD.encode("Password:")));
        self.phase = Phase::Auth(AuthStep::LoginPassword { user });
    }

    fn finish_plain(&mut self, line: &[u8]) {
        match decode(line).and_then(|s| split_plain(&s)) {
            Ok((authzid, authcid, password)) => self.request_auth("PLAIN", authzid, authcid, password),
            Err(e) => self.refuse(e.reply()),
        }
    }

    fn request_auth(&mut self, mechanism: &str, authzid: String, authcid: String, password: String) {
        self.await_decision(ServerEvent::Auth(AuthRequest {
            mechanism: mechanism.into(),
            authzid,
            authcid,
            password,
            armed: Armed::new("AuthRequest"),
        }));
    }

    /// Reads one SASL response line (`None` when incomplete).
    pub(super) fn read_auth_line(&mut self, input: &[u8]) -> Option<usize> {
        let max = self.config.max_auth_line;
        let Some(nl) = memchr::memchr(b'\n', &input[..input.len().min(max)]) else {
            if input.len() >= max {
                self.phase = Phase::SkipLine;
                return Some(max);
            }
            return None;
        };
        let Phase::Auth(step) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return Some(0);
        };
        if nl == 0 || input[nl - 1] != b'\r' {
            self.refuse(crate::error::CommandError::BareLineEnding.reply());
            return Some(nl + 1);
        }
        let line = &input[..nl - 1];
        match step {
            AuthStep::Plain => self.finish_plain(line),
            AuthStep::LoginUser => match decode(line) {
                Ok(user) => self.ask_password(user),
                Err(e) => self.refuse(e.reply()),
            },
            AuthStep::LoginPassword { user } => match decode(line) {
                Ok(password) => self.request_auth("LOGIN", String::new(), user, password),
                Err(e) => self.refuse(e.reply()),
            },
        }
        Some(nl + 1)
    }
}
