//! The SMTP client state machine used for delivery. It mirrors [`crate::server`]:
//! feed received bytes to [`Client::handle_input`], write what
//! [`Client::poll_transmit`] gives, drain [`Client::poll_event`], and call
//! [`Client::handle_timeout`] once [`Client::poll_timeout`] passes. No I/O, no clock.
//!
//! One connection carries many messages: after [`ClientEvent::Ready`] the driver
//! calls [`Client::send_message`] or [`Client::quit`]. MAIL, RCPT and DATA are
//! pipelined when the server offers PIPELINING; BDAT is used when it offers
//! CHUNKING (and the config allows); bodies sent with DATA are dot-stuffed.
//!
//! A body may also be streamed ([`Outgoing::streamed`]): when the content is
//! due the client says [`ClientEvent::SendContent`], and the driver hands it
//! the body piece by piece ([`Client::send_content`], then
//! [`Client::end_content`]), so that a large message is never whole in memory.

mod config;
mod content;
mod expect;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use config::{ClientConfig, TlsPolicy};

use crate::address::{ForwardPath, ReversePath};
use crate::command::Command;
use crate::ehlo::{Extension, Extensions};
use crate::error::ReplyError;
use crate::params::{MailParams, RcptParams};
use crate::reply::{EnhancedCode, Reply, Severity};
use expect::Expect;

/// One message to send: the envelope and the body (RFC 5322 octets, CRLF lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// MAIL FROM.
    pub from: ReversePath,
    /// MAIL parameters (SIZE is filled in by the client when offered).
    pub params: MailParams,
    /// RCPT TO, in order; results come back with the same indexes.
    pub recipients: Vec<(ForwardPath, RcptParams)>,
    /// The message (ignored when `streamed` is set).
    pub body: Vec<u8>,
    /// `Some(size)`: the body is not in `body` (leave it empty) but streamed
    /// by the driver when the client asks ([`ClientEvent::SendContent`]):
    /// exactly `size` octets through [`Client::send_content`], then
    /// [`Client::end_content`]. `size` is also the `SIZE=` declared to a
    /// server that offers SIZE.
    pub streamed: Option<u64>,
}

/// What happened to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageOutcome {
    /// The reply to MAIL.
    pub mail: Reply,
    /// The reply to each RCPT, by index (empty when MAIL failed; shorter
    /// when the session broke before every reply came, and then `data` is
    /// the synthetic 4yz that [`MessageOutcome::recipient_reply`] gives the
    /// rest).
    pub rcpts: Vec<Reply>,
    /// The final reply after the content, when content was sent.
    pub data: Option<Reply>,
}

impl MessageOutcome {
    /// The reply that decides recipient `index`'s fate: MAIL's if it failed,
    /// then RCPT's if it failed, then the final reply (or the DATA/BDAT refusal).
    pub fn recipient_reply(&self, index: usize) -> &Reply {
        if !self.mail.is_success() {
            return &self.mail;
        }
        match self.rcpts.get(index) {
            Some(r) if !r.is_success() => r,
            _ => self.data.as_ref().unwrap_or(&self.mail),
        }
    }
}

/// Why a connection failed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered a connection-level step (greeting, EHLO, STARTTLS)
    /// with an error, or said 421.
    #[error("{stage}: server replied {reply}")]
    Refused {
        /// Where it happened.
        stage: Stage,
        /// What the server said.
        reply: Reply,
    },
    /// TLS is required by policy but the server does not offer STARTTLS.
    #[error("server does not offer STARTTLS and the policy requires TLS")]
    TlsNotOffered,
    /// The server sent something that is not a valid reply.
    #[error("{stage}: malformed reply: {error}")]
    Protocol {
        /// Where it happened.
        stage: Stage,
        /// What was wrong.
        error: ReplyError,
    },
    /// The server was silent longer than the stage's timeout (or, in
    /// [`Stage::Content`], the driver did not hand the next piece in time).
    #[error("{stage}: timed out")]
    Timeout {
        /// Where it happened.
        stage: Stage,
    },
    /// A streamed content was not the size declared in
    /// [`Outgoing::streamed`]. The session is failed before the content is
    /// ended (no terminator, no octet past the BDAT size): a message cut
    /// short or overlong must never be delivered as if complete.
    #[error("content size did not match: {declared} octets declared, {given} given")]
    ContentSize {
        /// The size declared in [`Outgoing::streamed`].
        declared: u64,
        /// The octets given (at the first piece past `declared`, or at
        /// [`Client::end_content`]).
        given: u64,
    },
}

impl ClientError {
    /// Whether retrying later may help (everything but a 5yz reply).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Refused { reply, .. } if reply.severity() == Severity::Permanent)
    }
}

/// Steps of a session, for timeouts and error reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Waiting for the 220 greeting.
    Greeting,
    /// EHLO or HELO.
    Ehlo,
    /// STARTTLS.
    StartTls,
    /// MAIL.
    Mail,
    /// RCPT.
    Rcpt,
    /// DATA command (waiting for 354).
    DataCommand,
    /// Sending a streamed content (between [`ClientEvent::SendContent`] and
    /// [`Client::end_content`]).
    Content,
    /// Waiting for the reply after the content.
    DataEnd,
    /// RSET.
    Rset,
    /// QUIT.
    Quit,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// An output of [`Client::poll_event`].
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server's greeting.
    Greeting(Reply),
    /// What the server offers (after every EHLO, so again after STARTTLS).
    Ehlo(Extensions),
    /// `220` to STARTTLS arrived: run the TLS handshake on the socket, then call
    /// [`Client::tls_established`]. Nothing is queued for writing meanwhile.
    StartTls,
    /// Idle: call [`Client::send_message`] or [`Client::quit`].
    Ready,
    /// A streamed message's content is due (after `354` to DATA, or with
    /// `BDAT <size> LAST` queued): give the body with [`Client::send_content`],
    /// piece by piece, exactly [`Outgoing::streamed`] octets in all, then call
    /// [`Client::end_content`]. Each piece must come within
    /// `data_block` of [`ClientConfig::timeouts`]. Never for a
    /// message whose body is in [`Outgoing::body`].
    SendContent,
    /// A recipient's RCPT reply, as soon as it is known.
    RcptResult {
        /// Index in [`Outgoing::recipients`].
        index: usize,
        /// The reply.
        reply: Reply,
    },
    /// The message is finished (accepted, refused or partly both).
    MessageDone(MessageOutcome),
    /// The connection failed; a message in progress is reported as
    /// [`ClientEvent::MessageDone`] first (with a synthetic 4yz reply when the
    /// server never answered). [`ClientEvent::Closed`] follows.
    Failed(ClientError),
    /// Nothing more will happen: close the socket once `poll_transmit` is empty.
    Closed,
}

/// The message being sent.
#[derive(Debug)]
struct InFlight {
    msg: Outgoing,
    mail: Option<Reply>,
    rcpts: Vec<Reply>,
    /// Whether DATA was pipelined behind the RCPTs.
    data_pipelined: bool,
    chunked: bool,
}

/// The client side of one SMTP connection.
#[derive(Debug)]
pub struct Client {
    config: Arc<ClientConfig>,
    /// Replies we wait for, in the order the commands were sent.
    expect: VecDeque<Expect>,
    extensions: Extensions,
    tls: bool,
    idle: bool,
    closed: bool,
    current: Option<InFlight>,
    /// A streamed content being given, between `SendContent` and `end_content`.
    content: Option<content::Streaming>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    deadline: Option<Instant>,
}

impl Client {
    /// A new session on a fresh connection: waits for the greeting. Pass
    /// `tls = true` for implicit TLS (port 465), where STARTTLS is never used.
    pub fn new(config: Arc<ClientConfig>, tls: bool, now: Instant) -> Self {
        let deadline = Some(now + config.timeouts.greeting);
        Self {
            config,
            expect: VecDeque::from([Expect::Greeting]),
            extensions: Extensions::new(),
            tls,
            idle: false,
            closed: false,
            current: None,
            content: None,
            out: Vec::new(),
            events: VecDeque::new(),
            deadline,
        }
    }

    /// Processes received bytes; returns how many were consumed (a partial
    /// reply stays unconsumed: pass it again with more bytes).
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut pos = 0;
        while !self.closed && !self.expect.is_empty() {
            match Reply::parse(&input[pos..]) {
                Ok(None) => break,
                Ok(Some((reply, used))) => {
                    pos += used;
                    self.on_reply(now, reply);
                }
                Err(error) => {
                    let stage = self.stage();
                    self.fail(ClientError::Protocol { stage, error });
                    return input.len();
                }
            }
        }
        pos
    }

    /// Fails the connection if the current stage's deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            let stage = self.stage();
            self.fail(ClientError::Timeout { stage });
        }
    }

    /// TLS is up after [`ClientEvent::StartTls`]: greets again with EHLO.
    pub fn tls_established(&mut self, now: Instant) {
        self.tls = true;
        self.extensions = Extensions::new();
        self.command(now, &Command::Ehlo(self.config.hostname.clone()), Expect::Ehlo);
    }

    /// Starts sending a message. Only valid after [`ClientEvent::Ready`] (or a
    /// [`ClientEvent::MessageDone`] that was followed by `Ready`); otherwise the
    /// message is handed back.
    ///
    /// # Errors
    /// The message itself, when the client is not idle or it has no recipient.
    pub fn send_message(&mut self, now: Instant, mut msg: Outgoing) -> Result<(), Box<Outgoing>> {
        if !self.idle || self.closed || msg.recipients.is_empty() {
            return Err(Box::new(msg));
        }
        self.idle = false;
        strip_unoffered(&self.extensions, &mut msg);
        let pipelining = self.config.pipelining && self.extensions.contains(Extension::Pipelining);
        let chunked = self.config.chunking && self.extensions.contains(Extension::Chunking);
        let mail = Command::Mail {
            from: msg.from.clone(),
            params: msg.params.clone(),
        };
        self.command(now, &mail, Expect::Mail);
        let mut data_pipelined = false;
        if pipelining {
            for (i, (to, params)) in msg.recipients.iter().enumerate() {
                let rcpt = Command::Rcpt {
                    to: to.clone(),
                    params: params.clone(),
                };
                self.command(now, &rcpt, Expect::Rcpt(i));
            }
            // DATA may end a pipelined group (RFC 2920); BDAT waits for the RCPT
            // replies so that no body is sent when every recipient was refused.
            if !chunked {
                self.command(now, &Command::Data, Expect::DataCommand);
                data_pipelined = true;
            }
        }
        self.current = Some(InFlight {
            msg,
            mail: None,
            rcpts: Vec::new(),
            data_pipelined,
            chunked,
        });
        Ok(())
    }

    /// Says QUIT (when idle) and closes after the reply.
    pub fn quit(&mut self, now: Instant) {
        if self.idle && !self.closed {
            self.idle = false;
            self.command(now, &Command::Quit, Expect::Quit);
        }
    }

    /// Appends queued output to `buf`; returns how many octets.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        buf.append(&mut self.out);
        n
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// What the server offered in its last EHLO reply.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the client waits for the driver (`send_message` or `quit`).
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Replaces what the server offered (tests simulate other servers with it).
    #[cfg(test)]
    pub(crate) fn set_extensions_for_test(&mut self, e: Extensions) {
        self.extensions = e;
    }

    /// Where the session stands, for error reports.
    fn stage(&self) -> Stage {
        match self.expect.front() {
            Some(expect) => expect.stage(),
            None if self.content.is_some() => Stage::Content,
            None => Stage::Quit,
        }
    }

    fn command(&mut self, now: Instant, cmd: &Command, expect: Expect) {
        cmd.encode(&mut self.out);
        self.arm(now, &expect);
        self.expect.push_back(expect);
    }

    fn arm(&mut self, now: Instant, expect: &Expect) {
        self.deadline = Some(now + expect.timeout(&self.config.timeouts));
    }

    fn fail(&mut self, error: ClientError) {
        if let Some(flight) = self.current.take() {
            let reply = match &error {
                ClientError::Refused { reply, .. } => reply.clone(),
                other => Reply::new(451, EnhancedCode::new(4, 4, 2), other.to_string()),
            };
            self.events
                .push_back(ClientEvent::MessageDone(finish(flight, Some(reply))));
        }
        self.events.push_back(ClientEvent::Failed(error));
        self.close();
    }

    fn close(&mut self) {
        self.closed = true;
        self.idle = false;
        self.content = None;
        self.deadline = None;
        self.expect.clear();
        self.events.push_back(ClientEvent::Closed);
    }

    fn become_idle(&mut self) {
        self.idle = true;
        self.deadline = None;
        self.events.push_back(ClientEvent::Ready);
    }
}

/// Parameters are sent only where the server offers their extension (RFC 1870,
/// 3461 §4, 4954 §5, 6152): SIZE is set to the body's size (the streamed
/// size for a streamed body); DSN parameters
/// (RET, ENVID, NOTIFY, ORCPT), BODY and AUTH= are dropped when not offered.
/// SMTPUTF8 is kept: a server without it must refuse the message (RFC 6531).
fn strip_unoffered(ext: &Extensions, msg: &mut Outgoing) {
    let size = msg.streamed.unwrap_or(msg.body.len() as u64);
    msg.params.size = ext.contains(Extension::Size).then_some(size);
    if !ext.contains(Extension::Dsn) {
        msg.params.ret = None;
        msg.params.envid = None;
        for (_, p) in &mut msg.recipients {
            *p = RcptParams::default();
        }
    }
    if !ext.contains(Extension::EightBitMime) {
        msg.params.body = None;
    }
    if !ext.contains(Extension::Auth) {
        msg.params.auth = None;
    }
}

fn finish(flight: InFlight, data: Option<Reply>) -> MessageOutcome {
    let mail = flight.mail.unwrap_or_else(|| {
        data.clone()
            .unwrap_or_else(|| Reply::new(451, EnhancedCode::new(4, 4, 2), "no reply to MAIL"))
    });
    MessageOutcome {
        mail,
        rcpts: flight.rcpts,
        data,
    }
}

#[cfg(test)]
mod tests;
