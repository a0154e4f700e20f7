//! What the server's EHLO reply offers, from its configuration and the
//! session's state.

use super::Server;
use crate::ehlo::{Extension, Extensions};

impl Server {
    /// What EHLO advertises now: STARTTLS only in clear, AUTH only once
    /// encrypted and not yet authenticated.
    pub(super) fn extensions(&self) -> Extensions {
        let mut e = Extensions::new();
        for x in [
            Extension::Pipelining,
            Extension::Size,
            Extension::EightBitMime,
            Extension::SmtpUtf8,
            Extension::EnhancedStatusCodes,
            Extension::Dsn,
        ] {
            e.insert(x);
        }
        e.size = Some(self.config.data.max_message_size as u64);
        if self.config.chunking {
            e.insert(Extension::Chunking);
        }
        if self.config.starttls && self.tls.is_none() {
            e.insert(Extension::StartTls);
        }
        if self.tls.is_some() && self.authenticated.is_none() && !self.config.auth_mechanisms.is_empty() {
            e.insert(Extension::Auth);
            e.auth = self.config.auth_mechanisms.clone();
        }
        e
    }
}
