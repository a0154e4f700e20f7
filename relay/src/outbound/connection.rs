//! One outbound SMTP connection: a socket (plain, STARTTLS-upgraded or implicit
//! TLS) driven by proto's sans-io client through `net`'s client loop. This
//! file connects, logs and maps errors; `net` moves bytes and sets timers;
//! every protocol decision and every reply timeout is proto's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use net::client::{ConnError, TlsTarget};
use proto::client::{ClientConfig, ClientError, ClientEvent, MessageOutcome, Outgoing, TlsPolicy};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
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

/// One SMTP client connection, ready for messages between calls.
///
/// Not `Clone`; dropping it closes the socket without QUIT (call
/// [`Connection::quit`] for a polite end).
pub struct Connection {
    conn: net::client::Connection,
    peer: SocketAddr,
    host: String,
    sent: u32,
    /// Found dead while idle ([`Connection::is_stale`]).
    stale: bool,
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
        let implicit = target.security == Security::Implicit;
        let policy = match target.security {
            Security::StartTls(p) => p,
            Security::Implicit => TlsPolicy::Never,
        };
        // An invalid name leaves TLS unconfigured: reported if TLS is tried.
        let tls = match ServerName::try_from(target.host.clone()) {
            Ok(name) if implicit || policy != TlsPolicy::Never => Some(TlsTarget {
                config: settings.tls.rustls_config(),
                name,
            }),
            _ => None,
        };
        let client = settings.client(policy);
        let mut conn = Self {
            conn: net::client::Connection::new(tcp, client, implicit, tls, settings.connect_timeout),
            peer,
            host: target.host.clone(),
            sent: 0,
            stale: false,
        };
        let ready = conn.conn.ready(conn.log(id)).await;
        ready.map_err(|e| conn.error(e, id))?;
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
        let answered = self.conn.send(msg, self.log(id)).await;
        self.answered(answered, id)
    }

    /// [`Connection::send`] for a message whose body streams from `content`
    /// (`msg.streamed` set). A failure to read the content breaks the
    /// connection before the end of the content (`net` never sends the
    /// terminator then): nothing is delivered, every recipient is deferred.
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub async fn send_streamed(
        &mut self,
        msg: Outgoing,
        content: &mut impl net::client::ContentSource,
        id: &str,
    ) -> Result<MessageOutcome, DeliveryError> {
        let answered = self.conn.send_streamed(msg, content, self.log(id)).await;
        self.answered(answered, id)
    }

    fn answered(
        &mut self,
        answered: Result<net::client::Answered, ConnError>,
        id: &str,
    ) -> Result<MessageOutcome, DeliveryError> {
        let outcome = answered.map_err(|e| self.error(e, id))?.outcome;
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
    pub async fn quit(self) {
        self.conn.quit().await;
    }

    /// Whether another message may be sent (idle, not failed).
    pub fn is_usable(&self) -> bool {
        !self.stale && self.conn.is_usable()
    }

    /// Whether an idle connection is dead: closed by the server (EOF or
    /// reset), or the server spoke out of turn (a 421 at its idle timeout, a
    /// TLS alert). Peeks at the socket without waiting (one non-blocking
    /// `recv(MSG_PEEK)`); a stale connection is no longer usable.
    pub fn is_stale(&mut self) -> bool {
        if !self.is_usable() || self.conn.has_pending_input() {
            self.stale = true;
            return true;
        }
        let Some(stream) = self.conn.stream() else {
            self.stale = true;
            return true;
        };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        let stale = match socket2::SockRef::from(stream.tcp()).peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // EOF, pending bytes or an error.
            _ => true,
        };
        self.stale |= stale;
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
        let stream = self.conn.stream()?;
        let version = stream.protocol_version().map(|v| format!("{v:?}"))?;
        let cipher = stream.cipher_suite().map(|s| format!("{:?}", s.suite()))?;
        Some((version, cipher))
    }

    /// The server's certificate chain (end entity first), when encrypted: the
    /// caller checks the subject DN against the trust list.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.stream()?.peer_certificates()
    }

    /// Debug lines for proto's informational events.
    fn log<'a>(&self, id: &'a str) -> impl FnMut(&ClientEvent) + 'a {
        let peer = self.peer;
        move |event| match event {
            ClientEvent::Greeting(r) => debug!(msg_id = id, peer = %peer, code = r.code, "greeting"),
            ClientEvent::Ehlo(_) => debug!(msg_id = id, peer = %peer, "EHLO done"),
            ClientEvent::RcptResult { index, reply } => {
                debug!(msg_id = id, peer = %peer, rcpt = index, code = reply.code, "RCPT reply");
            }
            _ => {}
        }
    }

    /// The delivery error for a failure of `net`'s loop.
    fn error(&self, e: ConnError, id: &str) -> DeliveryError {
        let peer = self.peer;
        let lost = |reason: String| DeliveryError::ConnectionLost { peer, reason };
        let protocol = |detail: &str| DeliveryError::Protocol {
            peer,
            stage: proto::client::Stage::StartTls,
            detail: detail.into(),
        };
        match e {
            ConnError::Io(e) => lost(e.to_string()),
            ConnError::Eof
            | ConnError::SessionClosed
            | ConnError::NotIdle
            | ConnError::NoRecipient
            | ConnError::StreamedMismatch => lost(e.to_string()),
            // The spool could not give the body: cut off before its end,
            // nothing delivered; tried again later.
            ConnError::Content(e) => {
                warn!(msg_id = id, peer = %peer, error = %e, "message content not read from the spool; connection cut before its end");
                lost(format!("reading the message from the spool: {e}"))
            }
            ConnError::WriteTimeout | ConnError::HandshakeTimeout => DeliveryError::Timeout { peer, stage: None },
            ConnError::Handshake(reason) => {
                warn!(msg_id = id, peer = %peer, host = %self.host, reason = %reason, "TLS handshake failed");
                DeliveryError::Tls { peer, reason }
            }
            // Only an invalid host name leaves TLS unconfigured (see `open`).
            ConnError::NoTls => DeliveryError::Tls {
                peer,
                reason: match ServerName::try_from(self.host.as_str()) {
                    Err(e) => format!("bad server name {:?}: {e}", self.host),
                    Ok(_) => e.to_string(),
                },
            },
            ConnError::DataAfterStartTls => protocol("data after the STARTTLS reply"),
            ConnError::AlreadyTls => protocol("STARTTLS on an encrypted connection"),
            ConnError::Smtp(e) => match e {
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
                e @ ClientError::ContentSize { .. } => lost(e.to_string()),
            },
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
