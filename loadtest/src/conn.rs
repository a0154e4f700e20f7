//! One sender connection: a socket (plain, STARTTLS-upgraded or implicit TLS)
//! driven by proto's sans-io [`Client`], as the relay's outbound connection
//! does. This file moves bytes and sets timers; protocol decisions and reply
//! timeouts are proto's. AUTH PLAIN, which proto's delivery client does not
//! do, is one exchange here while the client is idle, with proto's command
//! encoder and reply parser.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use proto::client::{Client, ClientConfig, ClientError, ClientEvent, MessageOutcome, Outgoing};
use proto::command::Command;
use proto::ehlo::Extension;
use proto::Reply;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How the sender secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP; STARTTLS is never used even when offered.
    None,
    /// STARTTLS, required: a target that does not offer it is an error.
    Starttls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

impl std::fmt::Display for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Starttls => "starttls",
            Self::Implicit => "implicit",
        })
    }
}

/// What a connection needs, shared by all sessions.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// Where to connect (resolved once at start).
    pub addr: SocketAddr,
    /// TLS mode.
    pub security: Security,
    /// rustls settings, required unless `security` is `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name for SNI and certificate checks.
    pub server_name: ServerName<'static>,
    /// proto client settings (EHLO name, PIPELINING/CHUNKING use, timeouts).
    pub client: Arc<ClientConfig>,
    /// TCP connect, TLS handshake and AUTH timeout.
    pub connect_timeout: Duration,
    /// AUTH PLAIN credentials.
    pub auth: Option<(String, String)>,
}

/// Why a connection failed or a message's fate is unknown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    /// TCP connect failed.
    #[error("connect {addr}: {reason}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// Connect, handshake or a reply took too long.
    #[error("timed out ({0})")]
    Timeout(&'static str),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(String),
    /// The SMTP session failed (refused greeting/EHLO, no STARTTLS, bad reply).
    #[error(transparent)]
    Smtp(#[from] ClientError),
    /// AUTH was refused or not offered.
    #[error("AUTH: {0}")]
    Auth(String),
    /// The socket broke or the peer closed it.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The client was not idle (a bug in the caller).
    #[error("connection not ready for a message")]
    NotReady,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl Stream {
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.reserve(16 * 1024);
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

fn now() -> Instant {
    Instant::now()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// What a drive loop waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    Ready,
    Message,
    Closed,
}

/// The result of one message on a connection.
#[derive(Debug)]
pub enum Sent {
    /// The server answered; `synthetic` is true when proto made the reply up
    /// because the connection failed (timeout, bad reply): the fate is unknown.
    Outcome {
        /// What happened per stage.
        outcome: MessageOutcome,
        /// The reply is proto's, not the server's.
        synthetic: bool,
    },
    /// The connection broke before any outcome: the fate is unknown.
    Unknown(ConnError),
}

/// One SMTP connection of the sender, ready for messages between calls.
pub struct Conn {
    client: Client,
    stream: Stream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    broken: bool,
    settings: Arc<ConnectSettings>,
}

impl Conn {
    /// Connects, runs greeting, EHLO, STARTTLS or implicit TLS, and AUTH when
    /// configured; returns once the server is ready for a message. Bounded by
    /// the connect timeout (connect, handshake, AUTH) and proto's reply timeouts.
    ///
    /// # Errors
    /// Any [`ConnError`].
    pub async fn open(settings: Arc<ConnectSettings>) -> Result<Self, ConnError> {
        let addr = settings.addr;
        let tcp = match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnError::Timeout("connect")),
            Ok(Err(e)) => {
                return Err(ConnError::Connect {
                    addr,
                    reason: e.to_string(),
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let implicit = settings.security == Security::Implicit;
        let mut conn = Self {
            client: Client::new(settings.client.clone(), implicit, now()),
            stream: Stream::Plain(tcp),
            inbuf: Vec::with_capacity(16 * 1024),
            outbuf: Vec::with_capacity(16 * 1024),
            broken: false,
            settings,
        };
        if implicit {
            conn.start_tls().await?;
        }
        conn.drive(Goal::Ready).await?;
        if conn.settings.auth.is_some() {
            let limit = conn.settings.connect_timeout;
            tokio::time::timeout(limit, conn.auth())
                .await
                .map_err(|_| ConnError::Timeout("AUTH"))??;
        }
        Ok(conn)
    }

    /// Sends one message and waits for its outcome.
    pub async fn send(&mut self, msg: Outgoing) -> Sent {
        if self.client.send_message(now(), msg).is_err() {
            return Sent::Unknown(ConnError::NotReady);
        }
        match self.drive(Goal::Message).await {
            Ok((Some(outcome), synthetic)) => Sent::Outcome { outcome, synthetic },
            Ok((None, _)) => Sent::Unknown(ConnError::Lost("no outcome".into())),
            Err(e) => Sent::Unknown(e),
        }
    }

    /// Says QUIT (bounded by the connect timeout) and closes the socket.
    pub async fn quit(mut self) {
        if self.is_usable() {
            self.client.quit(now());
            let limit = self.settings.connect_timeout;
            let _ = tokio::time::timeout(limit, self.drive(Goal::Closed)).await;
        }
        self.stream.shutdown().await;
    }

    /// Whether another message may be sent.
    pub fn is_usable(&self) -> bool {
        !self.broken && self.client.is_idle()
    }

    /// AUTH PLAIN with the configured credentials; the client is idle.
    async fn auth(&mut self) -> Result<(), ConnError> {
        let Some((user, pass)) = self.settings.auth.clone() else {
            return Ok(());
        };
        if !self.client.extensions().contains(Extension::Auth) {
            return Err(ConnError::Auth(
                "the target does not offer AUTH (it is offered only over TLS)".into(),
            ));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        let cmd = Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some(token),
        };
        self.outbuf.clear();
        cmd.encode(&mut self.outbuf);
        let out = std::mem::take(&mut self.outbuf);
        let written = self.stream.write_all(&out).await;
        self.outbuf = out;
        self.outbuf.clear();
        written.map_err(|e| self.lost(&e))?;
        loop {
            match Reply::parse(&self.inbuf) {
                Ok(Some((reply, used))) => {
                    self.inbuf.drain(..used);
                    return if reply.code == 235 {
                        Ok(())
                    } else {
                        self.broken = true;
                        Err(ConnError::Auth(format!("refused: {reply}")))
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(ConnError::Auth(format!("malformed reply: {e}")));
                }
            }
            match self.stream.read_buf(&mut self.inbuf).await {
                Ok(0) => return Err(self.lost(&io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) => return Err(self.lost(&e)),
            }
        }
    }

    fn lost(&mut self, e: &io::Error) -> ConnError {
        self.broken = true;
        ConnError::Lost(e.to_string())
    }

    async fn start_tls(&mut self) -> Result<(), ConnError> {
        if !self.inbuf.is_empty() {
            self.broken = true;
            return Err(ConnError::Tls("data after the STARTTLS reply".into()));
        }
        let Some(config) = self.settings.tls.clone() else {
            self.broken = true;
            return Err(ConnError::Tls("no TLS settings".into()));
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            self.broken = true;
            return Err(ConnError::Tls("TLS on an encrypted connection".into()));
        };
        let connector = TlsConnector::from(config);
        let name = self.settings.server_name.clone();
        match tokio::time::timeout(self.settings.connect_timeout, connector.connect(name, tcp)).await {
            Err(_) => {
                self.broken = true;
                Err(ConnError::Timeout("TLS handshake"))
            }
            Ok(Err(e)) => {
                self.broken = true;
                let reason = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .map_or_else(|| e.to_string(), ToString::to_string);
                Err(ConnError::Tls(reason))
            }
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if self.client.poll_transmit(&mut self.outbuf) == 0 && self.outbuf.is_empty() {
            return Ok(());
        }
        let deadline = self.client.poll_timeout();
        let out = std::mem::take(&mut self.outbuf);
        let result = tokio::select! {
            r = self.stream.write_all(&out) => r.map_err(|e| ConnError::Lost(e.to_string())),
            () = sleep_until(deadline) => Err(ConnError::Timeout("write")),
        };
        self.outbuf = out;
        self.outbuf.clear();
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Moves bytes and timers until `goal`; for [`Goal::Message`] returns the
    /// outcome and whether proto synthesised its reply.
    async fn drive(&mut self, goal: Goal) -> Result<(Option<MessageOutcome>, bool), ConnError> {
        let mut outcome = None;
        let mut failure: Option<ClientError> = None;
        loop {
            while let Some(event) = self.client.poll_event() {
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
                            return Ok((None, false));
                        }
                        Goal::Message if outcome.is_some() => return Ok((outcome, false)),
                        _ => {}
                    },
                    ClientEvent::MessageDone(o) => outcome = Some(o),
                    ClientEvent::Failed(e) => failure = Some(e),
                    ClientEvent::Closed => {
                        self.broken = true;
                        let _ = self.flush().await;
                        if outcome.is_some() {
                            // A refusal (421) is the server's word; a timeout or
                            // a malformed reply made proto invent the outcome.
                            let synthetic = !matches!(failure, None | Some(ClientError::Refused { .. }));
                            return Ok((outcome, synthetic));
                        }
                        return match failure.take() {
                            Some(e) => Err(ConnError::Smtp(e)),
                            None if goal == Goal::Closed => Ok((None, false)),
                            None => Err(ConnError::Lost("session closed".into())),
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
                            return Ok((None, false));
                        }
                        return Err(ConnError::Lost("closed by peer".into()));
                    }
                    Ok(_) => {
                        let used = self.client.handle_input(now(), &self.inbuf);
                        self.inbuf.drain(..used);
                    }
                    Err(e) => return Err(self.lost(&e)),
                },
                () = sleep_until(deadline) => self.client.handle_timeout(now()),
            }
        }
    }
}
