//! The server drive loop: proto's [`Server`] over a socket (mini-redis'
//! `select!` between reading and shutdown, quinn's `ConnectionDriver`).
//!
//! One pass of [`drive`]:
//! 1. `handle_input` with the bytes read so far; each event goes to the
//!    caller's [`Handler`], which answers its decision token; again until the
//!    server consumes nothing and reports nothing;
//! 2. `poll_transmit`, then one write (and a flush): every reply to a
//!    pipelined batch leaves in one segment;
//! 3. a `select!` on the next read, proto's timer (`poll_timeout`) and the
//!    caller's shutdown future (which makes the server say `421` and close).
//!
//! [`serve`] runs a whole session: the implicit-TLS handshake or the plain
//! pass, the STARTTLS hand-off (handshake, `tls_established`, a second pass
//! over TLS), [`Handler::on_tls`] after each handshake.
//!
//! Per command the loop allocates nothing: the read buffer and the reply
//! buffer are made once per pass and reused, and received bytes are handed to
//! proto in place (no copy besides the message body proto keeps).

use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use proto::server::{PeerInfo, Server, ServerConfig, ServerEvent};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::stream::Stream;
use crate::{now, sleep_until};

/// Largest read per syscall.
const READ_CHUNK: usize = 64 * 1024;
/// First capacity of the reply buffer (a pipelined batch's replies fit).
const REPLY_CAPACITY: usize = 4096;

/// The caller's side of a session: answers proto's events.
pub trait Handler {
    /// Answers one event. Each decision token (`Mail`, `Rcpt`, `Auth`,
    /// `Message`) MUST be handed back to `server` (`answer_*`,
    /// `message_stored`) before the future resolves: until then the server
    /// consumes no input. `StartTls` needs no answer (the loop hands the
    /// socket over, see [`Next::StartTls`]); the others are informational.
    ///
    /// [`ControlFlow::Break`] drops the connection at once, without writing
    /// the replies still queued (the sink's "disconnect" outcome).
    fn on_event(&mut self, event: ServerEvent, server: &mut Server) -> impl Future<Output = ControlFlow<()>> + Send;

    /// Called by [`serve`] once TLS is up, after the server learnt it
    /// (implicit TLS: before the greeting is sent; STARTTLS: after
    /// `tls_established`): check the client certificate, set an identity
    /// with `Server::set_authenticated`. Default: nothing.
    fn on_tls(&mut self, stream: &Stream, server: &mut Server) {
        let _ = (stream, server);
    }
}

/// How one [`drive`] pass ended.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The session is over: the server closed (its last replies written and
    /// the socket shut down), the peer closed, or the handler said `Break`.
    Closed,
    /// The `220` to STARTTLS is written and flushed: run the server TLS
    /// handshake on the same socket, call `Server::tls_established`, then
    /// [`drive`] again over TLS with a fresh buffer (input pipelined behind
    /// STARTTLS was discarded by proto, CVE-2011-0411).
    StartTls,
}

/// Moves bytes between `io` and `server` until the session ends or switches
/// to TLS. Cancel-safe only between sessions: dropping the future drops
/// buffered input.
///
/// `shutdown` is polled while the loop waits for input; once it resolves the
/// server says `421 4.3.2` after its current reply and closes, and `shutdown`
/// is not polled again in this pass.
///
/// # Errors
/// A read or write failed. A peer closing the connection is `Ok(Closed)`.
pub async fn drive<S, H, F>(
    io: &mut S,
    server: &mut Server,
    handler: &mut H,
    mut shutdown: Pin<&mut F>,
) -> io::Result<Next>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
    F: Future<Output = ()> + ?Sized,
{
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(REPLY_CAPACITY);
    let mut shutting_down = false;
    loop {
        let mut starttls = false;
        loop {
            let used = server.handle_input(now(), &input);
            input.advance(used);
            let mut any = false;
            while let Some(event) = server.poll_event() {
                any = true;
                starttls |= matches!(event, ServerEvent::StartTls { .. });
                if handler.on_event(event, server).await.is_break() {
                    return Ok(Next::Closed);
                }
            }
            if used == 0 && !any {
                break;
            }
        }
        server.poll_transmit(&mut out);
        if !out.is_empty() {
            io.write_all(&out).await?;
            // A no-op on TCP; pushes rustls' records out on TLS.
            io.flush().await?;
            out.clear();
        }
        if starttls {
            return Ok(Next::StartTls);
        }
        if server.is_closed() {
            let _ = io.shutdown().await;
            return Ok(Next::Closed);
        }
        input.reserve(READ_CHUNK);
        tokio::select! {
            read = io.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(Next::Closed);
                }
            }
            () = sleep_until(server.poll_timeout()) => server.handle_timeout(now()),
            () = shutdown.as_mut(), if !shutting_down => {
                shutting_down = true;
                server.close();
            }
        }
    }
}

/// A listener's TLS, for [`serve`].
#[derive(Clone, Copy)]
pub struct ServerTls<'a> {
    /// The listener's acceptor; `None`: no TLS (a STARTTLS that proto's
    /// config offers anyway then ends the session with an error).
    pub acceptor: Option<&'a TlsAcceptor>,
    /// TLS from the first byte (port 465); otherwise plain, STARTTLS when
    /// the server config offers it.
    pub implicit: bool,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
}

impl ServerTls<'static> {
    /// A plain listener.
    pub const NONE: Self = Self {
        acceptor: None,
        implicit: false,
        handshake_timeout: Duration::ZERO,
    };
}

impl ServerTls<'_> {
    async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let Some(acceptor) = self.acceptor else {
            return Err(io::Error::other("TLS is not configured on this listener"));
        };
        Stream::accept(acceptor, tcp, self.handshake_timeout).await
    }
}

/// Serves one accepted connection to its end: sets `TCP_NODELAY`, runs the
/// implicit-TLS handshake when `tls.implicit`, creates the [`Server`] for
/// `remote` (text for `Received` headers and logs), and [`drive`]s it, with
/// the STARTTLS hand-off in between.
///
/// # Errors
/// A TLS handshake failed or timed out, or a read or write failed. The
/// caller logs it; nothing else is left to clean up.
pub async fn serve<H: Handler>(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    remote: String,
    tls: ServerTls<'_>,
    handler: &mut H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut shutdown = pin!(shutdown);
    if tls.implicit {
        let mut stream = tls.accept(tcp).await?;
        let peer = PeerInfo {
            remote,
            tls: stream.tls_info(),
        };
        let mut server = Server::new(config, peer, now());
        handler.on_tls(&stream, &mut server);
        let _ = drive(&mut stream, &mut server, handler, shutdown).await?;
        return Ok(());
    }
    let mut tcp = tcp;
    let mut server = Server::new(config, PeerInfo { remote, tls: None }, now());
    if drive(&mut tcp, &mut server, handler, shutdown.as_mut()).await? == Next::StartTls {
        let mut stream = tls.accept(tcp).await?;
        if let Some(info) = stream.tls_info() {
            server.tls_established(now(), info);
        }
        handler.on_tls(&stream, &mut server);
        let _ = drive(&mut stream, &mut server, handler, shutdown).await?;
    }
    Ok(())
}
