//! One outbound SMTP connection: a socket (plain, STARTTLS-upgraded or implicit
//! TLS) driven by proto's sans-io [`Client`]. This file only moves bytes and
//! sets timers; every protocol decision and every reply timeout is proto's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::client::{Client, ClientConfig, ClientError, ClientEvent, MessageOutcome, Outgoing, TlsPolicy};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use super::error::DeliveryError;
use super::route::{Security, Target};
use super::tls::ClientTls;

/// What every outbound connection needs: the proto client settings (EHLO
/// name, reply timeouts, CHUNKING), the TLS settings and the connect timeout.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    /// The proto config for each [`TlsPolicy`] (index: [`policy_index`]).
    clients: [Arc<ClientConfig>; 3],
    tls: ClientTls,
    connect_timeout: Duration,
}

fn policy_index(p: TlsPolicy) -> usize {
    match p {
        TlsPolicy::Required => 0,
        TlsPolicy::Opportunistic => 1,
        TlsPolicy::Never => 2,
    }
}

impl ConnectSettings {
    /// `client.tls` is ignored: each [`Target`]'s [`Security`] decides. The
    /// connect timeout (TCP connect, and each TLS handshake) defaults to 30 s.
    pub fn new(client: ClientConfig, tls: ClientTls) -> Self {
        let with = |tls| Arc::new(ClientConfig { tls, ..client.clone() });
        Self {
            clients: [
                with(TlsPolicy::Required),
                with(TlsPolicy::Opportunistic),
                with(TlsPolicy::Never),
            ],
            tls,
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the TCP connect and TLS handshake timeout.
    pub fn connect_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.connect_timeout = timeout;
        self
    }

    fn client(&self, policy: TlsPolicy) -> Arc<ClientConfig> {
        self.clients[policy_index(policy)].clone()
    }
}

/// The socket under the SMTP session.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between taking the plain socket for STARTTLS and getting it back.
    Gone,
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.reserve(8192);
        match self {
            Self::Plain(s) => s.read_buf(buf).await,
            Self::Tls(s) => s.read_buf(buf).await,
            Self::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Self::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
            Self::Gone => Ok(()),
        };
    }
}

/// What a drive loop waits for.
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
///
/// Not `Clone`; dropping it closes the socket without QUIT (call
/// [`Connection::quit`] for a polite end).
pub struct Connection {
    client: Client,
    stream: Stream,
    peer: SocketAddr,
    host: String,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    sent: u32,
    broken: bool,
    tls: ClientTls,
    timeout: Duration,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// rustls' own words for a handshake failure (e.g. `invalid peer certificate:
/// UnknownIssuer`), else the I/O error.
fn tls_reason(e: &io::Error) -> String {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or_else(|| e.to_string(), ToString::to_string)
}

impl Connection {
    /// Connects to `target` (each of its addresses in turn until TCP connects),
    /// runs greeting, EHLO and STARTTLS or implicit TLS as the target's
    /// [`Security`] says, and returns once the server is ready for a message.
    ///
    /// TLS verifies the server certificate against the configured roots and
    /// the target's host name. With [`TlsPolicy::Required`] (the default), a
    /// server without STARTTLS or a failed handshake is an error: nothing is
    /// ever sent in plaintext. `id` is only used in log lines.
    ///
    /// # Errors
    /// Any [`DeliveryError`] but `Parked`; [`DeliveryError::is_transient`] says
    /// whether to try again later.
    pub async fn open(target: &Target, settings: &ConnectSettings, id: &str) -> Result<Self, DeliveryError> {
        let (tcp, peer) = connect_tcp(target, settings.connect_timeout).await?;
        let _ = tcp.set_nodelay(true);
        let implicit = target.security == Security::Implicit;
        let policy = match target.security {
            Security::StartTls(p) => p,
            Security::Implicit => TlsPolicy::Never,
        };
        let mut conn = Self {
            client: Client::new(settings.client(policy), implicit, now()),
            stream: Stream::Plain(tcp),
            peer,
            host: target.host.clone(),
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            sent: 0,
            broken: false,
            tls: settings.tls.clone(),
            timeout: settings.connect_timeout,
        };
        if implicit {
            conn.start_tls(id).await?;
        }
        conn.drive(Goal::Ready, id).await?;
        let (version, cipher) = conn.tls_info().unwrap_or(("none".into(), "none".into()));
        info!(msg_id = id, peer = %peer, host = %conn.host, tls = %version, cipher = %cipher, "connected");
        Ok(conn)
    }

    /// Sends one message on this connection and waits for its outcome.
    ///
    /// `Ok` means the server answered: [`MessageOutcome::recipient_reply`]
    /// decides each recipient (2yz delivered, 4yz defer, 5yz bounce). If the
    /// connection failed mid-message after proto reported the message, the
    /// outcome carries proto's synthetic `451 4.4.2` and the connection is no
    /// longer [`usable`](Self::is_usable).
    ///
    /// # Errors
    /// The connection broke before the message was reported: nothing is
    /// known, every recipient is deferred (the message may have been
    /// delivered: a retry can duplicate it). Also when the connection was not
    /// idle or the message has no recipient.
    pub async fn send(&mut self, msg: Outgoing, id: &str) -> Result<MessageOutcome, DeliveryError> {
        if let Err(msg) = self.client.send_message(now(), msg) {
            let reason = if msg.recipients.is_empty() {
                "message without recipient"
            } else {
                "connection not idle"
            };
            return Err(DeliveryError::ConnectionLost {
                peer: self.peer,
                reason: reason.into(),
            });
        }
        let outcome = self
            .drive(Goal::Message, id)
            .await?
            .ok_or_else(|| DeliveryError::ConnectionLost {
                peer: self.peer,
                reason: "no outcome".into(),
            })?;
        self.sent += 1;
        for (i, _) in outcome.rcpts.iter().enumerate() {
            let reply = outcome.recipient_reply(i);
            info!(msg_id = id, peer = %self.peer, rcpt = i, code = reply.code, reply = %reply.text(), "recipient");
        }
        if outcome.rcpts.is_empty() {
            info!(msg_id = id, peer = %self.peer, code = outcome.mail.code, reply = %outcome.mail.text(), "MAIL refused");
        }
        Ok(outcome)
    }

    /// Says QUIT (bounded by the connect timeout) and closes the socket.
    pub async fn quit(mut self) {
        if self.is_usable() {
            self.client.quit(now());
            let limit = self.timeout;
            let _ = tokio::time::timeout(limit, self.drive(Goal::Closed, "-")).await;
        }
        self.stream.shutdown().await;
    }

    /// Whether another message may be sent (idle, not failed).
    pub fn is_usable(&self) -> bool {
        !self.broken && self.client.is_idle()
    }

    /// Whether an idle connection is dead: closed by the server (EOF or
    /// reset), or the server spoke out of turn (a 421 at its idle timeout, a
    /// TLS alert). Peeks at the socket without waiting (one non-blocking
    /// `recv(MSG_PEEK)`); a stale connection is no longer usable.
    pub fn is_stale(&mut self) -> bool {
        if !self.is_usable() || !self.inbuf.is_empty() {
            self.broken = true;
            return true;
        }
        let tcp = match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
            Stream::Gone => {
                self.broken = true;
                return true;
            }
        };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        let stale = match socket2::SockRef::from(tcp).peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // EOF, pending bytes or an error.
            _ => true,
        };
        self.broken |= stale;
        stale
    }

    /// Messages sent on this connection (whatever their outcome).
    pub fn messages_sent(&self) -> u32 {
        self.sent
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// TLS version and cipher suite, when encrypted.
    pub fn tls_info(&self) -> Option<(String, String)> {
        let Stream::Tls(s) = &self.stream else { return None };
        let c = s.get_ref().1;
        let version = c.protocol_version().map(|v| format!("{v:?}"))?;
        let cipher = c.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()))?;
        Some((version, cipher))
    }

    /// The server's certificate chain (end entity first), when encrypted: the
    /// caller checks the subject DN against the trust list.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match &self.stream {
            Stream::Tls(s) => s.get_ref().1.peer_certificates(),
            _ => None,
        }
    }

    /// Replaces the plain socket by a TLS stream (STARTTLS or implicit TLS).
    async fn start_tls(&mut self, id: &str) -> Result<(), DeliveryError> {
        let peer = self.peer;
        if !self.inbuf.is_empty() {
            // Bytes after the 220 to STARTTLS would be read as if they came
            // over TLS (response injection): refuse the connection.
            self.broken = true;
            return Err(DeliveryError::Protocol {
                peer,
                stage: proto::client::Stage::StartTls,
                detail: "data after the STARTTLS reply".into(),
            });
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            self.broken = true;
            return Err(DeliveryError::Protocol {
                peer,
                stage: proto::client::Stage::StartTls,
                detail: "STARTTLS on an encrypted connection".into(),
            });
        };
        let name = ServerName::try_from(self.host.clone()).map_err(|e| DeliveryError::Tls {
            peer,
            reason: format!("bad server name {:?}: {e}", self.host),
        })?;
        let connector = TlsConnector::from(self.tls.rustls_config());
        match tokio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
            Err(_) => {
                self.broken = true;
                Err(DeliveryError::Timeout { peer, stage: None })
            }
            Ok(Err(e)) => {
                self.broken = true;
                let reason = tls_reason(&e);
                warn!(msg_id = id, peer = %peer, host = %self.host, reason = %reason, "TLS handshake failed");
                Err(DeliveryError::Tls { peer, reason })
            }
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
        }
    }

    /// Writes what proto queued.
    async fn flush(&mut self) -> Result<(), DeliveryError> {
        if self.client.poll_transmit(&mut self.outbuf) == 0 && self.outbuf.is_empty() {
            return Ok(());
        }
        let deadline = self.client.poll_timeout();
        let result = tokio::select! {
            r = self.stream.write_all(&self.outbuf) => r.map_err(|e| self.lost(&e)),
            () = sleep_until(deadline) => Err(DeliveryError::Timeout { peer: self.peer, stage: None }),
        };
        self.outbuf.clear();
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn lost(&self, e: &io::Error) -> DeliveryError {
        DeliveryError::ConnectionLost {
            peer: self.peer,
            reason: e.to_string(),
        }
    }

    fn client_error(&self, e: ClientError) -> DeliveryError {
        let peer = self.peer;
        match e {
            ClientError::Refused { stage, reply } => DeliveryError::Refused { peer, stage, reply },
            ClientError::TlsNotOffered => DeliveryError::TlsNotOffered { peer },
            ClientError::Protocol { stage, error } => DeliveryError::Protocol {
                peer,
                stage,
                detail: error.to_string(),
            },
            ClientError::Timeout { stage } => DeliveryError::Timeout {
                peer,
                stage: Some(stage),
            },
        }
    }

    /// Moves bytes and timers until `goal`. Returns the outcome of the message
    /// in flight for [`Goal::Message`].
    async fn drive(&mut self, goal: Goal, id: &str) -> Result<Option<MessageOutcome>, DeliveryError> {
        let mut outcome = None;
        let mut failure = None;
        loop {
            while let Some(event) = self.client.poll_event() {
                match event {
                    ClientEvent::Greeting(r) => debug!(msg_id = id, peer = %self.peer, code = r.code, "greeting"),
                    ClientEvent::Ehlo(_) => debug!(msg_id = id, peer = %self.peer, "EHLO done"),
                    ClientEvent::StartTls => {
                        self.flush().await?;
                        self.start_tls(id).await?;
                        self.client.tls_established(now());
                    }
                    ClientEvent::Ready => match goal {
                        Goal::Ready => {
                            self.flush().await?;
                            return Ok(None);
                        }
                        Goal::Message if outcome.is_some() => return Ok(outcome),
                        _ => {}
                    },
                    ClientEvent::RcptResult { index, reply } => {
                        debug!(msg_id = id, peer = %self.peer, rcpt = index, code = reply.code, "RCPT reply");
                    }
                    ClientEvent::MessageDone(o) => outcome = Some(o),
                    ClientEvent::Failed(e) => failure = Some(e),
                    ClientEvent::Closed => {
                        self.broken = true;
                        // Best effort: proto may have queued a QUIT.
                        let _ = self.flush().await;
                        if outcome.is_some() {
                            return Ok(outcome);
                        }
                        return match failure.take() {
                            Some(e) => Err(self.client_error(e)),
                            None if goal == Goal::Closed => Ok(None),
                            None => Err(DeliveryError::ConnectionLost {
                                peer: self.peer,
                                reason: "session closed".into(),
                            }),
                        };
                    }
                }
            }
            self.flush().await?;
            let deadline = self.client.poll_timeout();
            tokio::select! {
                r = self.stream.read_buf(&mut self.inbuf) => match r {
                    Ok(0) => {
                        self.broken = true;
                        if goal == Goal::Closed {
                            return Ok(None);
                        }
                        return Err(DeliveryError::ConnectionLost { peer: self.peer, reason: "closed by peer".into() });
                    }
                    Ok(_) => {
                        let used = self.client.handle_input(now(), &self.inbuf);
                        self.inbuf.drain(..used);
                    }
                    Err(e) => {
                        self.broken = true;
                        return Err(self.lost(&e));
                    }
                },
                () = sleep_until(deadline) => self.client.handle_timeout(now()),
            }
        }
    }
}

/// Resolves (unless pinned) and connects to the first address that answers.
async fn connect_tcp(target: &Target, timeout: Duration) -> Result<(TcpStream, SocketAddr), DeliveryError> {
    let addrs: Vec<SocketAddr> = if target.addrs.is_empty() {
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err(DeliveryError::Resolve {
                    host: target.host.clone(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(DeliveryError::Resolve {
                    host: target.host.clone(),
                    reason: "timed out".into(),
                })
            }
        }
    } else {
        target.addrs.clone()
    };
    let mut last = None;
    for peer in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(peer)).await {
            Ok(Ok(s)) => return Ok((s, peer)),
            Ok(Err(source)) => {
                debug!(peer = %peer, error = %source, "connect failed");
                last = Some(DeliveryError::Connect { peer, source });
            }
            Err(_) => last = Some(DeliveryError::Timeout { peer, stage: None }),
        }
    }
    Err(last.unwrap_or_else(|| DeliveryError::Resolve {
        host: target.host.clone(),
        reason: "no address".into(),
    }))
}
