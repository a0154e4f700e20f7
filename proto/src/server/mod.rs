//! The SMTP server state machine (RFC 5321, with PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, ENHANCEDSTATUSCODES, DSN, STARTTLS, CHUNKING and AUTH).
//!
//! # Driving it
//! Like `quinn_proto::Connection`, a [`Server`] does no I/O and reads no clock:
//! - feed received bytes with [`Server::handle_input`]; it returns how many it
//!   consumed — keep the rest and pass it again with more bytes appended;
//! - call [`Server::handle_timeout`] when [`Server::poll_timeout`] passes;
//! - after any `handle_*` call, drain [`Server::poll_event`] and answer each
//!   decision token, then call `handle_input` again with the unconsumed bytes;
//! - then write what [`Server::poll_transmit`] gives. Doing that last sends every
//!   reply to a pipelined batch in one write.
//!
//! While a decision (MAIL, RCPT, AUTH, stored message) is outstanding, the server
//! consumes no input: replies can never leave out of order, and policy for a
//! command always sees the answers to the commands before it.

mod auth;
mod config;
mod content;
mod event;
mod extensions;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use config::{PeerInfo, ServerConfig, TlsInfo};
pub use event::{AcceptedRcpt, AuthRequest, CloseReason, DataDone, MailRequest, RcptRequest, ServerEvent, Verdict};

use crate::address::{ForwardPath, ReversePath};
use crate::command::Command;
use crate::data::DataDecoder;
use crate::error::CommandError;
use crate::params::MailParams;
use crate::reply::{EnhancedCode, Reply, ReplyBuilder};
use auth::AuthStep;
use event::Armed;

const fn code(class: u8, subject: u16, detail: u16) -> EnhancedCode {
    EnhancedCode::new(class, subject, detail)
}

/// The open mail transaction.
#[derive(Debug)]
struct Transaction {
    from: ReversePath,
    params: MailParams,
    rcpts: Vec<AcceptedRcpt>,
    /// Content not yet handed out as a [`ServerEvent::Content`] piece.
    body: Vec<u8>,
    /// Octets already handed out as pieces.
    streamed: u64,
    /// BDAT decoder, present once the first BDAT chunk started.
    bdat: Option<DataDecoder>,
}

/// What the server is waiting for.
#[derive(Debug)]
enum Phase {
    /// A command line.
    Command,
    /// The end of an over-long command line, to discard it.
    SkipLine,
    /// DATA content up to CRLF.CRLF.
    Data(DataDecoder),
    /// The rest of a BDAT chunk (the decoder lives in the transaction).
    Bdat { remaining: u64, last: bool },
    /// The rest of a refused BDAT chunk, then its reply.
    BdatDiscard { remaining: u64, reply: Reply },
    /// A SASL response line.
    Auth(AuthStep),
    /// The driver's answer to a token.
    Awaiting,
    /// The TLS handshake, after `220` to STARTTLS.
    TlsPending,
    /// Nothing: the session is over.
    Closed,
}

/// The server side of one SMTP session. See the [module docs](self) for the
/// calling protocol.
#[derive(Debug)]
pub struct Server {
    config: Arc<ServerConfig>,
    peer: PeerInfo,
    tls: Option<TlsInfo>,
    helo: Option<String>,
    authenticated: Option<String>,
    tx: Option<Transaction>,
    phase: Phase,
    out: Vec<u8>,
    events: VecDeque<ServerEvent>,
    deadline: Option<Instant>,
    errors: usize,
    auth_failures: usize,
}

impl Server {
    /// A new session; the 220 greeting is queued for `poll_transmit`.
    pub fn new(config: Arc<ServerConfig>, peer: PeerInfo, now: Instant) -> Self {
        let tls = peer.tls.clone();
        let mut s = Self {
            deadline: Some(now + config.command_timeout),
            config,
            peer,
            tls,
            helo: None,
            authenticated: None,
            tx: None,
            phase: Phase::Command,
            out: Vec::with_capacity(512),
            events: VecDeque::new(),
            errors: 0,
            auth_failures: 0,
        };
        let greeting = Reply::plain(220, format!("{} {}", s.config.hostname, s.config.greeting));
        s.send(&greeting);
        s
    }

    /// A new session that refuses service at once (`421 4.7.0`, e.g. over the
    /// listener's session limit) and closes.
    pub fn new_refused(config: Arc<ServerConfig>, peer: PeerInfo, reply: &Reply) -> Self {
        let mut s = Self {
            config,
            peer,
            tls: None,
            helo: None,
            authenticated: None,
            tx: None,
            phase: Phase::Closed,
            out: Vec::new(),
            events: VecDeque::new(),
            deadline: None,
            errors: 0,
            auth_failures: 0,
        };
        s.send(reply);
        s.events.push_back(ServerEvent::Closed(CloseReason::Shutdown));
        s
    }

    // ---- inputs -------------------------------------------------------------

    /// Processes received bytes; returns how many were consumed.
    ///
    /// Unconsumed bytes are an incomplete line, or input after a point where a
    /// decision is outstanding: pass them again later. After STARTTLS every
    /// byte is consumed and the excess discarded. No I/O, no allocation beyond
    /// the message body and queued replies.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut pos = 0;
        while let Some(used) = self.step(&input[pos..]) {
            pos += used;
        }
        if pos > 0 {
            self.deadline = match self.phase {
                Phase::Data(_) | Phase::Bdat { .. } | Phase::BdatDiscard { .. } => Some(now + self.config.data_timeout),
                Phase::Command | Phase::SkipLine | Phase::Auth(_) => Some(now + self.config.command_timeout),
                Phase::Awaiting | Phase::TlsPending | Phase::Closed => None,
            };
        }
        pos
    }

    /// Closes the session if its deadline has passed (`421 4.4.2`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            let r = Reply::new(
                421,
                code(4, 4, 2),
                format!("{} timeout waiting for input, closing connection", self.config.hostname),
            );
            self.close_with(&r, CloseReason::Timeout);
        }
    }

    /// Ends the session from the driver's side (shutdown, drain): queues
    /// `421 4.3.2` and closes. A message awaiting `message_stored` is abandoned.
    pub fn close(&mut self) {
        if !self.is_closed() {
            let r = Reply::new(
                421,
                code(4, 3, 2),
                format!("{} shutting down, try again later", self.config.hostname),
            );
            self.close_with(&r, CloseReason::Shutdown);
        }
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over
    /// (RFC 3207 §4.2: the client must send EHLO again; nothing from before is kept).
    pub fn tls_established(&mut self, now: Instant, info: TlsInfo) {
        if matches!(self.phase, Phase::TlsPending) {
            self.tls = Some(info);
            self.helo = None;
            self.tx = None;
            self.authenticated = None;
            self.phase = Phase::Command;
            self.deadline = Some(now + self.config.command_timeout);
        }
    }

    /// Records an identity established outside SASL (a verified client
    /// certificate): satisfies `require_auth` and stops AUTH from being offered.
    pub fn set_authenticated(&mut self, identity: String) {
        self.authenticated = Some(identity);
    }

    /// Answers a MAIL FROM request.
    pub fn answer_mail(&mut self, req: MailRequest, verdict: Verdict) {
        let MailRequest { from, params, armed } = req;
        armed.disarm();
        match verdict {
            Verdict::Accept => {
                let body = Vec::with_capacity(self.body_capacity(params.size));
                self.tx = Some(Transaction {
                    from,
                    params,
                    rcpts: Vec::new(),
                    body,
                    streamed: 0,
                    bdat: None,
                });
                self.send(&Reply::new(250, code(2, 1, 0), "sender OK"));
            }
            Verdict::Reject(r) => self.send(&r),
        }
        self.resume();
    }

    /// Answers a RCPT TO request.
    pub fn answer_rcpt(&mut self, req: RcptRequest, verdict: Verdict) {
        let RcptRequest { to, params, armed } = req;
        armed.disarm();
        match (verdict, self.tx.as_mut()) {
            (Verdict::Accept, Some(tx)) => {
                tx.rcpts.push(AcceptedRcpt { to, params });
                self.send(&Reply::new(250, code(2, 1, 5), "recipient OK"));
            }
            (Verdict::Accept, None) => self.send(&Reply::new(503, code(5, 5, 1), "need MAIL before RCPT")),
            (Verdict::Reject(r), _) => self.send(&r),
        }
        self.resume();
    }

    /// Answers an AUTH request: accept records `authcid` as the session's identity.
    pub fn answer_auth(&mut self, req: AuthRequest, verdict: Verdict) {
        let AuthRequest { authcid, armed, .. } = req;
        armed.disarm();
        match verdict {
            Verdict::Accept => {
                self.authenticated = Some(authcid);
                self.send(&Reply::new(235, code(2, 7, 0), "authentication successful"));
            }
            Verdict::Reject(r) => {
                self.send(&r);
                self.auth_failures += 1;
                if self.auth_failures >= self.config.max_auth_failures {
                    let r = Reply::new(
                        421,
                        code(4, 7, 0),
                        "too many authentication failures, closing connection",
                    );
                    self.close_with(&r, CloseReason::TooManyErrors);
                    return;
                }
            }
        }
        self.resume();
    }

    /// Reports the outcome of storing a message.
    ///
    /// `Ok(id)` sends `250 2.0.0 queued as <id>`: the driver MUST call it only
    /// once the message is durable (the durability contract). `Err(reply)` sends
    /// that 4yz/5yz reply. Either way the transaction ends.
    pub fn message_stored(&mut self, done: DataDone, outcome: Result<&str, Reply>) {
        done.armed.disarm();
        match outcome {
            Ok(id) => self.send(&Reply::new(250, code(2, 0, 0), format!("queued as {id}"))),
            Err(r) => self.send(&r),
        }
        self.resume();
    }

    // ---- outputs ------------------------------------------------------------

    /// Appends every queued reply to `buf`; returns how many octets.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        buf.append(&mut self.out);
        n
    }

    /// The next event, in the order things happened.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout`; `None` while the driver holds a decision,
    /// during a TLS handshake, or once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the session is over (after draining `poll_transmit`, close).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS parameters, once encrypted.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The name from HELO/EHLO.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The authenticated identity (SASL or set by the driver).
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The peer as given to `new`.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The open transaction's sender, if any.
    pub fn sender(&self) -> Option<&ReversePath> {
        self.tx.as_ref().map(|t| &t.from)
    }

    /// The open transaction's accepted recipients so far.
    pub fn recipients(&self) -> &[AcceptedRcpt] {
        self.tx.as_ref().map_or(&[], |t| &t.rcpts)
    }

    // ---- internals ----------------------------------------------------------

    fn send(&mut self, reply: &Reply) {
        reply.encode(&mut self.out);
    }

    /// Queues a refusal the server decided on its own; counts it as an error.
    fn refuse(&mut self, reply: Reply) {
        self.send(&reply);
        self.events.push_back(ServerEvent::Refused(reply));
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            let r = Reply::new(421, code(4, 7, 0), "too many errors, closing connection");
            self.close_with(&r, CloseReason::TooManyErrors);
        }
    }

    fn close_with(&mut self, reply: &Reply, reason: CloseReason) {
        self.send(reply);
        self.phase = Phase::Closed;
        self.deadline = None;
        self.events.push_back(ServerEvent::Closed(reason));
    }

    fn resume(&mut self) {
        if matches!(self.phase, Phase::Awaiting) {
            self.phase = Phase::Command;
        }
    }

    fn await_decision(&mut self, event: ServerEvent) {
        self.events.push_back(event);
        self.phase = Phase::Awaiting;
    }

    fn reset_transaction(&mut self) {
        if self.tx.take().is_some() {
            self.events.push_back(ServerEvent::Reset);
        }
    }

    /// One step of input processing: `None` when blocked (more input or a
    /// decision needed), `Some(consumed)` otherwise; a `Some(0)` step always
    /// changes the phase, so the loop in `handle_input` ends.
    fn step(&mut self, input: &[u8]) -> Option<usize> {
        match &mut self.phase {
            Phase::Awaiting | Phase::TlsPending | Phase::Closed => None,
            Phase::Command => self.read_command(input),
            Phase::SkipLine => {
                let Some(i) = memchr::memchr(b'\n', input) else {
                    return (!input.is_empty()).then_some(input.len());
                };
                self.phase = Phase::Command;
                self.refuse(CommandError::LineTooLong.reply());
                Some(i + 1)
            }
            Phase::Auth(_) => self.read_auth_line(input),
            Phase::Data(_) => self.read_data(input),
            Phase::Bdat { remaining, last } => {
                let (remaining, last) = (*remaining, *last);
                self.read_bdat(input, remaining, last)
            }
            Phase::BdatDiscard { .. } => self.discard_bdat(input),
        }
    }

    fn read_command(&mut self, input: &[u8]) -> Option<usize> {
        let max = self.config.max_command_line;
        let Some(nl) = memchr::memchr(b'\n', &input[..input.len().min(max)]) else {
            if input.len() >= max {
                // Drop what we scanned; SkipLine finds the end of the line.
                self.phase = Phase::SkipLine;
                return Some(max);
            }
            return None;
        };
        let used = nl + 1;
        if nl == 0 || input[nl - 1] != b'\r' {
            self.refuse(CommandError::BareLineEnding.reply());
            return Some(used);
        }
        match Command::parse(&input[..nl - 1]) {
            Ok(Command::StartTls) => {
                self.on_starttls();
                if matches!(self.phase, Phase::TlsPending) {
                    // Anything pipelined after STARTTLS was sent in clear and
                    // could be an injected command: drop it all.
                    self.events.push_back(ServerEvent::StartTls {
                        discarded: input.len() - used,
                    });
                    return Some(input.len());
                }
            }
            Ok(cmd) => self.on_command(cmd),
            Err(e) => self.refuse(e.reply()),
        }
        Some(used)
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Ehlo(name) => {
                self.reset_transaction();
                let reply = self.extensions().to_reply(&self.config.hostname, "greets you");
                self.send(&reply);
                self.helo = Some(name.clone());
                self.events.push_back(ServerEvent::Hello { name, extended: true });
            }
            Command::Helo(name) => {
                self.reset_transaction();
                self.send(&Reply::plain(250, self.config.hostname.clone()));
                self.helo = Some(name.clone());
                self.events.push_back(ServerEvent::Hello { name, extended: false });
            }
            Command::Mail { from, params } => self.on_mail(from, params),
            Command::Rcpt { to, params } => self.on_rcpt(to, params),
            Command::Data => self.on_data(),
            Command::Bdat { size, last } => self.on_bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                self.send(&Reply::new(250, code(2, 0, 0), "reset OK"));
            }
            Command::Noop => self.send(&Reply::new(250, code(2, 0, 0), "OK")),
            Command::Quit => {
                let r = Reply::new(
                    221,
                    code(2, 0, 0),
                    format!("{} closing connection", self.config.hostname),
                );
                self.close_with(&r, CloseReason::Quit);
            }
            Command::Vrfy(_) => self.send(&Reply::new(
                252,
                code(2, 5, 0),
                "cannot VRFY user, but will accept message and attempt delivery",
            )),
            // Known, not implemented (RFC 5321 §4.2.4); see `crate::command`.
            Command::Expn(_) | Command::NotImplemented { .. } => {
                let r = Reply::new(502, code(5, 5, 1), format!("{} not implemented", cmd.verb()));
                self.refuse(r);
            }
            Command::Help(_) => {
                let r = ReplyBuilder::new(214, Some(code(2, 0, 0)))
                    .line("Estafette SMTP relay; commands:")
                    .line("EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH")
                    .line("see RFC 5321")
                    .build();
                self.send(&r);
            }
            Command::StartTls => self.on_starttls(),
            Command::Auth { mechanism, initial } => self.on_auth(mechanism, initial),
        }
    }

    fn on_mail(&mut self, from: ReversePath, params: MailParams) {
        let refusal = if self.helo.is_none() {
            Some(Reply::new(503, code(5, 5, 1), "send EHLO or HELO first"))
        } else if self.tx.is_some() {
            Some(Reply::new(503, code(5, 5, 1), "nested MAIL command"))
        } else if self.config.require_tls && self.tls.is_none() {
            Some(Reply::new(530, code(5, 7, 0), "must issue a STARTTLS command first"))
        } else if self.config.require_auth && self.authenticated.is_none() {
            Some(Reply::new(530, code(5, 7, 0), "authentication required"))
        } else if params
            .size
            .is_some_and(|n| n > self.config.data.max_message_size as u64)
        {
            Some(Reply::new(
                552,
                code(5, 3, 4),
                format!(
                    "declared size exceeds the {}-octet limit",
                    self.config.data.max_message_size
                ),
            ))
        } else if !params.smtputf8 && from.mailbox().is_some_and(|m| m.is_utf8()) {
            Some(Reply::new(553, code(5, 6, 7), "non-ASCII address requires SMTPUTF8"))
        } else {
            None
        };
        match refusal {
            Some(r) => self.refuse(r),
            None => self.await_decision(ServerEvent::Mail(MailRequest {
                from,
                params,
                armed: Armed::new("MailRequest"),
            })),
        }
    }

    fn on_rcpt(&mut self, to: ForwardPath, params: crate::params::RcptParams) {
        let refusal = match &self.tx {
            None => Some(Reply::new(503, code(5, 5, 1), "need MAIL before RCPT")),
            Some(tx) if tx.bdat.is_some() => Some(Reply::new(503, code(5, 5, 1), "RCPT not allowed after BDAT")),
            Some(tx) if tx.rcpts.len() >= self.config.max_recipients => {
                Some(Reply::new(452, code(4, 5, 3), "too many recipients"))
            }
            Some(tx) if !tx.params.smtputf8 && to.mailbox().is_some_and(|m| m.is_utf8()) => {
                Some(Reply::new(553, code(5, 6, 7), "non-ASCII address requires SMTPUTF8"))
            }
            Some(_) => None,
        };
        match refusal {
            // Too many recipients is the client's business, not a protocol error.
            Some(r) if r.code == 452 => self.send(&r),
            Some(r) => self.refuse(r),
            None => self.await_decision(ServerEvent::Rcpt(RcptRequest {
                to,
                params,
                armed: Armed::new("RcptRequest"),
            })),
        }
    }

    fn on_starttls(&mut self) {
        if self.tls.is_some() {
            self.refuse(Reply::new(503, code(5, 5, 1), "TLS already active"));
        } else if !self.config.starttls {
            self.refuse(Reply::new(502, code(5, 5, 1), "STARTTLS not offered"));
        } else if self.helo.is_none() {
            self.refuse(Reply::new(503, code(5, 5, 1), "send EHLO before STARTTLS"));
        } else {
            self.reset_transaction();
            self.send(&Reply::new(220, code(2, 0, 0), "ready to start TLS"));
            self.phase = Phase::TlsPending;
            self.deadline = None;
        }
    }
}

#[cfg(test)]
mod tests;
