//! The client drive loop: one delivery connection driven by proto's
//! [`Client`]. It moves bytes and sets timers; every protocol decision and
//! every reply timeout is proto's (per-stage timeouts in `ClientConfig`).
//!
//! A [`Connection`] is made over a connected socket, brought to the ready
//! state once ([`Connection::ready`]: implicit TLS, greeting, EHLO, STARTTLS),
//! then carries message after message ([`Connection::send`]) until
//! [`Connection::quit`]. Dropping it closes the socket without QUIT.
//!
//! A message whose body stays in the spool goes with
//! [`Connection::send_streamed`]: when proto asks for the content the loop
//! pulls it from a [`ContentSource`] piece by piece, writing each piece before
//! pulling the next, so the body is never whole in memory.
//!
//! Per message the loop allocates nothing of its own: the read and write
//! buffers live as long as the connection and are reused.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use proto::client::{Client, ClientConfig, ClientError, ClientEvent, MessageOutcome, Outgoing};
use proto::command::Command;
use proto::{Reply, ReplyError};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::stream::{handshake_reason, Stream};
use crate::{now, sleep_until};

/// Space kept free in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// What the client side of TLS needs: the rustls settings and the name the
/// server's certificate must match (also sent as SNI).
#[derive(Clone, Debug)]
pub struct TlsTarget {
    /// rustls client settings (roots, client certificate, provider).
    pub config: Arc<rustls::ClientConfig>,
    /// The server's name.
    pub name: ServerName<'static>,
}

/// Where a streamed message's content comes from (the relay reads its spool).
pub trait ContentSource: Send {
    /// The next piece, `Ok(None)` after the last.
    fn next_piece(&mut self) -> impl std::future::Future<Output = io::Result<Option<bytes::Bytes>>> + Send;
}

/// The source of [`Connection::send`] and [`Connection::ready`]: none.
struct NoContent;

impl ContentSource for NoContent {
    async fn next_piece(&mut self) -> io::Result<Option<bytes::Bytes>> {
        Ok(None)
    }
}

/// Why a connection failed. After any of these the connection is not
/// [usable](Connection::is_usable).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// A read or write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection while a reply was awaited.
    #[error("closed by peer")]
    Eof,
    /// proto ended the session without a failure, before the goal.
    #[error("session closed")]
    SessionClosed,
    /// A write did not finish before proto's reply deadline.
    #[error("write timed out")]
    WriteTimeout,
    /// The TLS handshake took longer than the connection's timeout.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// The TLS handshake failed; rustls' words (e.g. `invalid peer
    /// certificate: UnknownIssuer`).
    #[error("TLS handshake: {0}")]
    Handshake(String),
    /// TLS is needed but the connection was made without a [`TlsTarget`].
    #[error("no TLS settings")]
    NoTls,
    /// Bytes arrived after the `220` to STARTTLS: they would be read as if
    /// they came over TLS (response injection), so the connection is refused.
    #[error("data after the STARTTLS reply")]
    DataAfterStartTls,
    /// STARTTLS on a connection that is already encrypted.
    #[error("TLS on an encrypted connection")]
    AlreadyTls,
    /// The SMTP session failed (refused greeting or EHLO, STARTTLS not
    /// offered, malformed reply, reply timeout).
    #[error(transparent)]
    Smtp(ClientError),
    /// [`Connection::send`] while a message or QUIT is in flight.
    #[error("connection not idle")]
    NotIdle,
    /// [`Connection::send`] of a message without recipients.
    #[error("message without recipient")]
    NoRecipient,
    /// [`Connection::send`] of a streamed message ([`Outgoing::streamed`]
    /// set), or [`Connection::send_streamed`] of one that is not. Nothing
    /// was sent; the connection stays usable.
    #[error("streamed message without a content source, or the reverse")]
    StreamedMismatch,
    /// The [`ContentSource`] failed mid-content, or gave no piece within
    /// proto's per-piece deadline (`TimedOut`). The content was cut off
    /// without its end (no DATA terminator, the socket shut down), so the
    /// server cannot take the message: deliver it again later.
    #[error("content source: {0}")]
    Content(io::Error),
}

/// A message's end, from [`Connection::send`].
#[must_use]
#[derive(Debug)]
pub struct Answered {
    /// Every stage's reply; [`MessageOutcome::recipient_reply`] decides each
    /// recipient.
    pub outcome: MessageOutcome,
    /// proto made the replies up (`451 4.4.2`) because the connection failed
    /// mid-message (timeout, malformed reply, lost socket): the message's
    /// fate is unknown. A `421` is the server's own word, not synthetic.
    pub synthetic: bool,
}

/// What a drive pass waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// The client is idle (after connect, STARTTLS, EHLO).
    Ready,
    /// The message in flight is finished.
    Message,
    /// The session is over (after QUIT).
    Closed,
}

/// One SMTP client connection, ready for messages between calls.
#[derive(Debug)]
pub struct Connection {
    client: Client,
    /// `None` only while the plain socket is in the TLS handshake.
    stream: Option<Stream>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    broken: bool,
    tls: Option<TlsTarget>,
    timeout: Duration,
}

impl Connection {
    /// Wraps a connected socket (and sets `TCP_NODELAY`). `implicit`: TLS
    /// from the first byte (port 465), run by [`Connection::ready`]. `tls` is
    /// needed for implicit TLS and for STARTTLS, which proto uses as
    /// `config.tls` says. `timeout` bounds each TLS handshake and the QUIT
    /// exchange; SMTP replies are bounded by `config`'s timeouts.
    pub fn new(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        implicit: bool,
        tls: Option<TlsTarget>,
        timeout: Duration,
    ) -> Self {
        let _ = tcp.set_nodelay(true);
        Self {
            client: Client::new(config, implicit, now()),
            stream: Some(Stream::Plain(tcp)),
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            broken: false,
            tls,
            timeout,
        }
    }

    /// Brings the connection to the ready state: the TLS handshake first for
    /// implicit TLS, then greeting, EHLO, and STARTTLS with a second EHLO
    /// when proto decides so. `observe` sees every client event before the
    /// loop acts on it (for logs).
    ///
    /// # Errors
    /// Any [`ConnError`] but `NotIdle` and `NoRecipient`.
    pub async fn ready(&mut self, observe: impl FnMut(&ClientEvent)) -> Result<(), ConnError> {
        if self.client.is_tls() && !self.stream.as_ref().is_some_and(Stream::is_tls) {
            self.start_tls().await?;
        }
        self.drive(Goal::Ready, None::<&mut NoContent>, observe).await.map(drop)
    }

    /// Sends one message and waits for its end.
    ///
    /// `Ok`: the server answered, or proto reported the message with
    /// synthetic replies when the connection failed mid-message
    /// ([`Answered::synthetic`]; the connection is then no longer usable).
    ///
    /// # Errors
    /// `NotIdle`, `NoRecipient`, or the connection broke before the message
    /// was reported: nothing is known (the server may have taken it).
    pub async fn send(&mut self, msg: Outgoing, observe: impl FnMut(&ClientEvent)) -> Result<Answered, ConnError> {
        if msg.streamed.is_some() {
            return Err(ConnError::StreamedMismatch);
        }
        self.start(msg)?;
        self.drive(Goal::Message, None::<&mut NoContent>, observe)
            .await?
            .ok_or(ConnError::SessionClosed)
    }

    /// Sends one message whose body comes from `content` ([`Outgoing::streamed`]
    /// holds its size; [`Outgoing::body`] is ignored) and waits for its end, as
    /// [`Connection::send`]. When proto asks for the content, each piece is
    /// written (bounded by proto's per-piece deadline) before the next is
    /// pulled; the content is ended after `Ok(None)`.
    ///
    /// `Ok` with [`Answered::synthetic`] also when the source gave more or
    /// fewer octets than declared: proto fails the session without ending the
    /// content, and the message is reported with a synthetic `451`.
    ///
    /// # Errors
    /// As [`Connection::send`]; `StreamedMismatch` when `msg.streamed` is
    /// `None`; `Content` when the source failed (or gave no piece within
    /// proto's per-piece deadline): the content is never ended
    /// then (a truncated message must not be delivered), the socket is shut
    /// down and the connection is no longer usable.
    pub async fn send_streamed(
        &mut self,
        msg: Outgoing,
        content: &mut impl ContentSource,
        observe: impl FnMut(&ClientEvent),
    ) -> Result<Answered, ConnError> {
        if msg.streamed.is_none() {
            return Err(ConnError::StreamedMismatch);
        }
        self.start(msg)?;
        self.drive(Goal::Message, Some(content), observe)
            .await?
            .ok_or(ConnError::SessionClosed)
    }

    /// Hands a message to proto.
    fn start(&mut self, msg: Outgoing) -> Result<(), ConnError> {
        match self.client.send_message(now(), msg) {
            Ok(()) => Ok(()),
            Err(msg) if msg.recipients.is_empty() => Err(ConnError::NoRecipient),
            Err(_) => Err(ConnError::NotIdle),
        }
    }

    /// Says QUIT when usable (bounded by the connection's timeout) and shuts
    /// the socket down.
    pub async fn quit(mut self) {
        if self.is_usable() {
            self.client.quit(now());
            let limit = self.timeout;
            let drive = self.drive(Goal::Closed, None::<&mut NoContent>, |_| {});
            let _ = tokio::time::timeout(limit, drive).await;
        }
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.shutdown().await;
        }
    }

    /// Sends one command that proto's client does not handle (AUTH) while
    /// the connection is idle, and reads its one reply. No timeout of its
    /// own: the caller bounds it.
    ///
    /// `Ok(Err(_))`: the server answered with something that is not a reply;
    /// the connection is no longer usable.
    ///
    /// # Errors
    /// `NotIdle`, or the socket failed or closed.
    pub async fn exchange(&mut self, command: &Command) -> Result<Result<Reply, ReplyError>, ConnError> {
        if !self.is_usable() {
            return Err(ConnError::NotIdle);
        }
        self.outbuf.clear();
        command.encode(&mut self.outbuf);
        self.write_out().await?;
        loop {
            match Reply::parse(&self.inbuf) {
                Ok(Some((reply, used))) => {
                    self.inbuf.drain(..used);
                    return Ok(Ok(reply));
                }
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Ok(Err(e));
                }
            }
            self.read().await?;
        }
    }

    /// Whether another message may be sent (idle, nothing failed).
    pub fn is_usable(&self) -> bool {
        !self.broken && self.client.is_idle()
    }

    /// Whether received bytes wait unread: on an idle connection, the server
    /// spoke out of turn.
    pub fn has_pending_input(&self) -> bool {
        !self.inbuf.is_empty()
    }

    /// proto's client (offered extensions, state).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The socket (TLS parameters, peer certificates); `None` only after a
    /// failed TLS handshake.
    pub fn stream(&self) -> Option<&Stream> {
        self.stream.as_ref()
    }

    /// Marks the connection broken when `r` is an error.
    fn check<T>(&mut self, r: Result<T, ConnError>) -> Result<T, ConnError> {
        self.broken |= r.is_err();
        r
    }

    /// Reads more; end of stream is [`ConnError::Eof`].
    async fn read(&mut self) -> Result<(), ConnError> {
        self.inbuf.reserve(READ_CHUNK);
        let r = match self.stream.as_mut() {
            Some(s) => match s.read_buf(&mut self.inbuf).await {
                Ok(0) => Err(ConnError::Eof),
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            },
            None => Err(not_connected()),
        };
        self.check(r)
    }

    /// Writes and flushes the output buffer, then clears it.
    async fn write_out(&mut self) -> Result<(), ConnError> {
        let r = match self.stream.as_mut() {
            Some(s) => write_flush(s, &self.outbuf).await,
            None => Err(not_connected()),
        };
        self.outbuf.clear();
        self.check(r)
    }

    /// Replaces the plain socket by a TLS stream (STARTTLS or implicit TLS).
    async fn start_tls(&mut self) -> Result<(), ConnError> {
        let r = self.handshake().await;
        self.check(r)
    }

    async fn handshake(&mut self) -> Result<(), ConnError> {
        if !self.inbuf.is_empty() {
            return Err(ConnError::DataAfterStartTls);
        }
        let Some(tls) = &self.tls else {
            return Err(ConnError::NoTls);
        };
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(ConnError::AlreadyTls);
        };
        let connector = TlsConnector::from(tls.config.clone());
        match Stream::connect(&connector, tls.name.clone(), tcp, self.timeout).await {
            Err(e) => Err(ConnError::Handshake(handshake_reason(&e))),
            Ok(None) => Err(ConnError::HandshakeTimeout),
            Ok(Some(stream)) => {
                self.stream = Some(stream);
                Ok(())
            }
        }
    }

    /// Writes what proto queued, bounded by proto's next deadline.
    async fn flush(&mut self) -> Result<(), ConnError> {
        if self.client.poll_transmit(&mut self.outbuf) == 0 && self.outbuf.is_empty() {
            return Ok(());
        }
        let deadline = self.client.poll_timeout();
        let r = match self.stream.as_mut() {
            Some(s) => tokio::select! {
                r = write_flush(s, &self.outbuf) => r,
                () = sleep_until(deadline) => Err(ConnError::WriteTimeout),
            },
            None => Err(not_connected()),
        };
        self.outbuf.clear();
        self.check(r)
    }

    /// Gives proto the content from `source` after [`ClientEvent::SendContent`]:
    /// each piece is written before the next is pulled, then the content is
    /// ended. On a source error (or no piece within proto's per-piece
    /// deadline) the content is NOT ended: the connection is
    /// marked broken and the socket shut down, so that the server sees the
    /// connection close mid-content and drops the message.
    async fn stream_content(&mut self, source: Option<&mut impl ContentSource>) -> Result<(), ConnError> {
        let Some(source) = source else {
            // proto asks for content only for a streamed message, which only
            // `send_streamed` (with a source) hands over: never end it.
            self.abort().await;
            return Err(ConnError::StreamedMismatch);
        };
        loop {
            // A source stuck longer than proto's per-piece deadline fails the
            // content like a source error: the server would time out anyway.
            let piece = tokio::select! {
                piece = source.next_piece() => piece,
                () = sleep_until(self.client.poll_timeout()) => {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "no content piece within the deadline"))
                }
            };
            match piece {
                Ok(Some(piece)) => {
                    self.client.send_content(now(), &piece);
                    if !self.client.is_sending_content() {
                        // Past the declared size: proto failed the session,
                        // its events say so.
                        return Ok(());
                    }
                    self.flush().await?;
                }
                Ok(None) => {
                    self.client.end_content(now());
                    return Ok(());
                }
                Err(e) => {
                    self.abort().await;
                    return Err(ConnError::Content(e));
                }
            }
        }
    }

    /// Breaks the connection mid-content: shuts the socket down (bounded by
    /// the connection's timeout) without writing anything proto queued.
    async fn abort(&mut self) {
        self.broken = true;
        if let Some(stream) = self.stream.as_mut() {
            let _ = tokio::time::timeout(self.timeout, stream.shutdown()).await;
        }
    }

    /// Moves bytes and timers until `goal`; for [`Goal::Message`] returns the
    /// message's end. `source` gives a streamed message's content.
    async fn drive<S: ContentSource>(
        &mut self,
        goal: Goal,
        mut source: Option<&mut S>,
        mut observe: impl FnMut(&ClientEvent),
    ) -> Result<Option<Answered>, ConnError> {
        let mut outcome = None;
        let mut failure = None;
        loop {
            while let Some(event) = self.client.poll_event() {
                observe(&event);
                match event {
                    ClientEvent::Greeting(_) | ClientEvent::Ehlo(_) | ClientEvent::RcptResult { .. } => {}
                    ClientEvent::StartTls => {
                        self.flush().await?;
                        self.start_tls().await?;
                        self.client.tls_established(now());
                    }
                    ClientEvent::Ready => match goal {
                        Goal::Ready => {
                            self.flush().await?;
                            return Ok(None);
                        }
                        Goal::Message if outcome.is_some() => {
                            return Ok(outcome.map(|outcome| Answered {
                                outcome,
                                synthetic: false,
                            }));
                        }
                        _ => {}
                    },
                    ClientEvent::SendContent => self.stream_content(source.as_deref_mut()).await?,
                    ClientEvent::MessageDone(o) => outcome = Some(o),
                    ClientEvent::Failed(e) => failure = Some(e),
                    ClientEvent::Closed => {
                        self.broken = true;
                        // Best effort: proto may have queued a QUIT.
                        let _ = self.flush().await;
                        if let Some(outcome) = outcome {
                            let synthetic = !matches!(failure, None | Some(ClientError::Refused { .. }));
                            return Ok(Some(Answered { outcome, synthetic }));
                        }
                        return match failure {
                            Some(e) => Err(ConnError::Smtp(e)),
                            None if goal == Goal::Closed => Ok(None),
                            None => Err(ConnError::SessionClosed),
                        };
                    }
                }
            }
            self.flush().await?;
            let deadline = self.client.poll_timeout();
            tokio::select! {
                r = self.read() => match r {
                    Ok(()) => {
                        let used = self.client.handle_input(now(), &self.inbuf);
                        self.inbuf.drain(..used);
                    }
                    Err(ConnError::Eof) if goal == Goal::Closed => return Ok(None),
                    Err(e) => return Err(e),
                },
                () = sleep_until(deadline) => self.client.handle_timeout(now()),
            }
        }
    }
}

/// One write of `bytes`, then a flush (a no-op on TCP; it pushes rustls'
/// records out on TLS).
async fn write_flush(stream: &mut Stream, bytes: &[u8]) -> Result<(), ConnError> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

/// The socket is gone (a failed TLS handshake consumed it).
fn not_connected() -> ConnError {
    ConnError::Io(io::ErrorKind::NotConnected.into())
}
