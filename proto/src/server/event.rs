//! What the server state machine asks of its driver, and the tokens that carry
//! the driver's answers back.
//!
//! Each decision token must be handed back to the matching `Server::answer_*` /
//! `Server::message_stored` method. While a decision is outstanding the server
//! consumes no input, so pipelined commands are answered in order; dropping a
//! token without answering is a driver bug (debug builds panic).

use crate::address::{ForwardPath, ReversePath};
use crate::params::{MailParams, RcptParams};
use crate::reply::Reply;

/// An output of [`Server::poll_event`](super::Server::poll_event).
#[derive(Debug)]
pub enum ServerEvent {
    /// HELO or EHLO accepted (informational).
    Hello {
        /// The name the client gave.
        name: String,
        /// EHLO (true) or HELO (false).
        extended: bool,
    },
    /// MAIL FROM passed syntax and sequence checks; policy decides.
    Mail(MailRequest),
    /// RCPT TO passed syntax, sequence and count checks; policy decides.
    Rcpt(RcptRequest),
    /// SASL credentials to check.
    Auth(AuthRequest),
    /// `220` to STARTTLS is queued: write it, then run the TLS handshake and call
    /// [`Server::tls_established`](super::Server::tls_established).
    StartTls {
        /// Octets that arrived after the STARTTLS line, before TLS: thrown away
        /// (command injection, CVE-2011-0411).
        discarded: usize,
    },
    /// A piece of the open transaction's message, dot-unstuffed: exactly the
    /// octets [`DataDone::body`] would otherwise have held, in order. Sent only
    /// when [`ServerConfig::content_chunk`](super::ServerConfig::content_chunk)
    /// is not 0, each time the content assembled reaches that many octets, for
    /// DATA and BDAT alike (a piece may span BDAT chunks). Not a decision: there
    /// is no token, the driver just consumes it (e.g. appends it to a spool file).
    ///
    /// Every piece holds at least `content_chunk` octets: `content_chunk`, or
    /// one more when a CRLF straddles the boundary (the server decodes no more
    /// input at a time than fills the piece, whatever the driver's read size).
    /// No piece is sent for content the server has already decided to refuse.
    ///
    /// Contract: once a piece of a transaction was sent, that transaction ends
    /// with exactly one of
    /// - [`ServerEvent::Message`]: the message is the pieces in order followed by
    ///   [`DataDone::body`], [`DataDone::size`] octets in all;
    /// - [`ServerEvent::Reset`]: the transaction was abandoned (RSET, EHLO/HELO,
    ///   STARTTLS, refused content such as a size or line limit, a refused BDAT
    ///   chunk, and bare CR/LF before the session closes);
    /// - [`ServerEvent::Closed`]: the session ended with the transaction open
    ///   (timeout, QUIT, too many errors, [`Server::close`](super::Server::close)).
    ///
    /// So a driver discards the pieces it holds on `Reset` or `Closed` (and when
    /// it ends the session itself, e.g. on an I/O error), and stores them with
    /// the rest on `Message`. A `Reset` may come without pieces before it, and a
    /// `Closed` may follow a `Reset`.
    Content(Vec<u8>),
    /// A whole message arrived (DATA or BDAT LAST): store it, then call
    /// [`Server::message_stored`](super::Server::message_stored).
    Message(DataDone),
    /// The open transaction was abandoned (RSET, EHLO/HELO, STARTTLS, refused
    /// content or BDAT chunk): discard any [`ServerEvent::Content`] pieces.
    Reset,
    /// The server refused something on its own (syntax, sequence, limits,
    /// content): for the trace log. The reply has already been queued.
    Refused(Reply),
    /// The session is over: send what `poll_transmit` still holds, then close.
    /// An open transaction ends with it: discard any [`ServerEvent::Content`]
    /// pieces not followed by a [`ServerEvent::Message`].
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client said QUIT.
    Quit,
    /// The client was idle longer than the configured timeout.
    Timeout,
    /// Too many protocol or authentication errors.
    TooManyErrors,
    /// Message framing that cannot be trusted (bare CR or LF in content).
    BadFraming,
    /// The driver asked ([`Server::close`](super::Server::close)).
    Shutdown,
}

/// The policy's answer to MAIL, RCPT or AUTH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accept: the server sends its standard positive reply.
    Accept,
    /// Refuse with this reply (4yz or 5yz).
    Reject(Reply),
}

/// Panics in debug builds when a decision token is dropped unanswered.
#[derive(Debug)]
pub(crate) struct Armed(&'static str);

impl Armed {
    pub(crate) fn new(what: &'static str) -> Self {
        Self(what)
    }

    pub(crate) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if cfg!(debug_assertions) && !std::thread::panicking() {
            panic!("{} dropped without an answer to the server", self.0);
        }
    }
}

/// MAIL FROM awaiting [`Server::answer_mail`](super::Server::answer_mail).
#[must_use]
#[derive(Debug)]
pub struct MailRequest {
    /// The reverse path.
    pub from: ReversePath,
    /// Its parameters.
    pub params: MailParams,
    pub(crate) armed: Armed,
}

/// RCPT TO awaiting [`Server::answer_rcpt`](super::Server::answer_rcpt).
#[must_use]
#[derive(Debug)]
pub struct RcptRequest {
    /// The forward path.
    pub to: ForwardPath,
    /// Its parameters.
    pub params: RcptParams,
    pub(crate) armed: Armed,
}

/// Credentials awaiting [`Server::answer_auth`](super::Server::answer_auth).
#[must_use]
#[derive(Debug)]
pub struct AuthRequest {
    /// The SASL mechanism used.
    pub mechanism: String,
    /// Authorization identity (PLAIN only; empty when not given).
    pub authzid: String,
    /// Authentication identity (the account name).
    pub authcid: String,
    /// The password, as sent.
    pub password: String,
    pub(crate) armed: Armed,
}

/// A recipient the policy accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedRcpt {
    /// The forward path.
    pub to: ForwardPath,
    /// Its parameters.
    pub params: RcptParams,
}

/// A complete message awaiting [`Server::message_stored`](super::Server::message_stored).
///
/// Take the body with `std::mem::take(&mut done.body)`; hand the token back.
#[must_use]
#[derive(Debug)]
pub struct DataDone {
    /// The reverse path.
    pub from: ReversePath,
    /// MAIL parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<AcceptedRcpt>,
    /// The message, dot-unstuffed, as the client sent it (no header added):
    /// the content after the last [`ServerEvent::Content`] piece, or all of it.
    /// With [`ServerConfig::content_chunk`](super::ServerConfig::content_chunk)
    /// not 0, it is shorter than a piece (possibly empty).
    pub body: Vec<u8>,
    /// Octets of content in the whole message: the [`ServerEvent::Content`]
    /// pieces plus `body`. A driver that streams can check what it stored.
    pub size: u64,
    /// Whether it came by BDAT.
    pub chunked: bool,
    pub(crate) armed: Armed,
}
