//! [`Stream`]: the socket under an SMTP session, plain or TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proto::server::TlsInfo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CommonState, ProtocolVersion, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// One SMTP connection's socket: plain TCP, or TLS as the server (STARTTLS
/// answered, or port 465) or as the client (delivery).
///
/// The TLS variants are boxed: a `Stream` stays the size of a socket handle,
/// cheap to move (pooled delivery connections move at every check-out). That
/// is one allocation per TLS connection, none per command; reads and writes
/// go straight to the socket or to rustls.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (before STARTTLS, or a listener without TLS).
    Plain(TcpStream),
    /// TLS, this side the server.
    Server(Box<server::TlsStream<TcpStream>>),
    /// TLS, this side the client.
    Client(Box<client::TlsStream<TcpStream>>),
}

/// Applies one expression to whichever socket the stream holds.
macro_rules! each {
    ($stream:expr, $s:ident => $e:expr) => {
        match $stream {
            Stream::Plain($s) => $e,
            Stream::Server($s) => $e,
            Stream::Client($s) => $e,
        }
    };
}

/// rustls' own words for a handshake failure (e.g. `invalid peer certificate:
/// UnknownIssuer`), else the I/O error.
pub(crate) fn handshake_reason(e: &io::Error) -> String {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or_else(|| e.to_string(), ToString::to_string)
}

impl Stream {
    /// Runs the server side of a TLS handshake on `tcp`, bounded by `limit`.
    ///
    /// # Errors
    /// The handshake failed (the rustls error inside the I/O error) or took
    /// longer than `limit` (`TimedOut`, "TLS handshake timed out").
    pub async fn accept(acceptor: &TlsAcceptor, tcp: TcpStream, limit: Duration) -> io::Result<Self> {
        let tls = tokio::time::timeout(limit, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Self::Server(Box::new(tls)))
    }

    /// Runs the client side of a TLS handshake on `tcp` for `name` (SNI and
    /// the certificate check), bounded by `limit`; `Ok(None)` when it timed
    /// out.
    ///
    /// # Errors
    /// The handshake failed (see [`handshake_reason`] for rustls' words).
    pub(crate) async fn connect(
        connector: &TlsConnector,
        name: ServerName<'static>,
        tcp: TcpStream,
        limit: Duration,
    ) -> io::Result<Option<Self>> {
        match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
            Err(_) => Ok(None),
            Ok(tls) => Ok(Some(Self::Client(Box::new(tls?)))),
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Server(s) => s.get_ref().0,
            Self::Client(s) => s.get_ref().0,
        }
    }

    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }

    /// The rustls state of either side, when encrypted.
    fn common(&self) -> Option<&CommonState> {
        match self {
            Self::Plain(_) => None,
            Self::Server(s) => Some(s.get_ref().1),
            Self::Client(s) => Some(s.get_ref().1),
        }
    }

    /// The server side's rustls connection (SNI, the client's certificate),
    /// when this side accepted TLS.
    pub fn server_connection(&self) -> Option<&rustls::ServerConnection> {
        match self {
            Self::Server(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    /// The peer's certificate chain, end entity first, when encrypted and the
    /// peer sent one (on the server side: a client certificate the listener's
    /// verifier accepted).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.common()?.peer_certificates()
    }

    /// The negotiated TLS version, when encrypted.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.common()?.protocol_version()
    }

    /// The negotiated cipher suite, when encrypted.
    pub fn cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.common()?.negotiated_cipher_suite()
    }

    /// The TLS parameters as proto's server records them (`TLSv1.3`,
    /// `TLS13_AES_256_GCM_SHA384`), for the `Received` header; `None` when
    /// plain.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        let common = self.common()?;
        let version = common
            .protocol_version()
            .map_or_else(|| "TLS".to_string(), |v| format!("{v:?}").replace("TLSv1_", "TLSv1."));
        let cipher = common
            .negotiated_cipher_suite()
            .map_or_else(|| "unknown".to_string(), |s| format!("{:?}", s.suite()));
        Some(TlsInfo { version, cipher })
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
