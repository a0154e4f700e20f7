//! One sender connection: a socket (plain, STARTTLS-upgraded or implicit TLS)
//! driven by proto's sans-io [`Client`](proto::client::Client) through
//! `net`'s client loop, as the relay's outbound connection is. This file
//! connects and maps errors; protocol decisions and reply timeouts are
//! proto's. AUTH PLAIN, which proto's delivery client does not do, is one
//! exchange here while the client is idle, with proto's command encoder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use net::client::{Connection, TlsTarget};
use proto::client::{ClientConfig, ClientError, MessageOutcome, Outgoing};
use proto::command::Command;
use proto::ehlo::Extension;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

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

impl From<net::client::ConnError> for ConnError {
    fn from(e: net::client::ConnError) -> Self {
        use net::client::ConnError as Net;
        match e {
            Net::Io(e) => Self::Lost(e.to_string()),
            Net::Eof => Self::Lost("closed by peer".into()),
            Net::SessionClosed => Self::Lost("session closed".into()),
            Net::WriteTimeout => Self::Timeout("write"),
            Net::HandshakeTimeout => Self::Timeout("TLS handshake"),
            Net::Handshake(reason) => Self::Tls(reason),
            Net::NoTls => Self::Tls("no TLS settings".into()),
            Net::DataAfterStartTls => Self::Tls("data after the STARTTLS reply".into()),
            Net::AlreadyTls => Self::Tls("TLS on an encrypted connection".into()),
            Net::Smtp(e) => Self::Smtp(e),
            // The sender never streams a body.
            Net::NotIdle | Net::NoRecipient | Net::StreamedMismatch => Self::NotReady,
            Net::Content(e) => Self::Lost(format!("content source: {e}")),
        }
    }
}

/// One SMTP connection of the sender, ready for messages between calls.
pub struct Conn {
    conn: Connection,
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
        let implicit = settings.security == Security::Implicit;
        let tls = match (settings.security, &settings.tls) {
            (Security::None, _) | (_, None) => None,
            (_, Some(config)) => Some(TlsTarget {
                config: config.clone(),
                name: settings.server_name.clone(),
            }),
        };
        let conn = Connection::new(tcp, settings.client.clone(), implicit, tls, settings.connect_timeout);
        let mut conn = Self { conn, settings };
        conn.conn.ready(|_| {}).await?;
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
        match self.conn.send(msg, |_| {}).await {
            Ok(a) => Sent::Outcome {
                outcome: a.outcome,
                synthetic: a.synthetic,
            },
            Err(e) => Sent::Unknown(e.into()),
        }
    }

    /// Says QUIT (bounded by the connect timeout) and closes the socket.
    pub async fn quit(self) {
        self.conn.quit().await;
    }

    /// Whether another message may be sent.
    pub fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }

    /// AUTH PLAIN with the configured credentials; the client is idle.
    async fn auth(&mut self) -> Result<(), ConnError> {
        let Some((user, pass)) = &self.settings.auth else {
            return Ok(());
        };
        if !self.conn.client().extensions().contains(Extension::Auth) {
            return Err(ConnError::Auth(
                "the target does not offer AUTH (it is offered only over TLS)".into(),
            ));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        let cmd = Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some(token),
        };
        match self.conn.exchange(&cmd).await? {
            Ok(reply) if reply.code == 235 => Ok(()),
            Ok(reply) => Err(ConnError::Auth(format!("refused: {reply}"))),
            Err(e) => Err(ConnError::Auth(format!("malformed reply: {e}"))),
        }
    }
}
