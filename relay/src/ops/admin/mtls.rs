//! The admin listener over TLS with client certificates (`admin.client_ca`).
//!
//! The listener serves the node's own certificate (`[tls]`) and asks every
//! client for a certificate chaining to `admin.client_ca`; a client without
//! one still completes the handshake (so that the kubelet's HTTPS probes
//! work), and the routes then decide (see [`super::auth`]): the probes and the
//! dashboard page answer anyone, every other route needs a verified client
//! certificate unless the caller is on loopback (the `estafette` CLI inside
//! the pod: drain, queue control). Tokens apply on top.
//!
//! Handshakes run in their own tasks with a deadline, so that a slow or
//! silent client never holds up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Longest TLS handshake on the admin port.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Who is calling: its address and, over TLS, its verified certificate's subject.
#[derive(Clone, Debug)]
pub(super) struct AdminPeer {
    pub(super) addr: SocketAddr,
    pub(super) client: Option<String>,
}

impl Connected<IncomingStream<'_, TcpListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            client: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, conn) = stream.io().get_ref();
        Self {
            addr: *stream.remote_addr(),
            client: crate::inbound::tls::peer_subject(conn).map(|dn| dn.to_string()),
        }
    }
}

/// Accepted connections whose TLS handshake is done.
pub(super) struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and shakes hands with `acceptor` in the background,
    /// until this listener is dropped.
    pub(super) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(5);
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    a = tcp.accept() => a,
                };
                let (socket, peer) = match accepted {
                    Ok(a) => {
                        backoff = Duration::from_millis(5);
                        a
                    }
                    Err(e) => {
                        debug!(error = %e, "admin accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "admin TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The rustls config of the admin port: the node's certificate, client
/// certificates from `client_ca` asked for and verified, not required.
///
/// # Errors
/// The CA file cannot be read or holds no certificate.
pub(super) fn acceptor(
    cert: Arc<crate::inbound::tls::ReloadingCert>,
    client_ca: &std::path::Path,
) -> anyhow::Result<TlsAcceptor> {
    let roots = Arc::new(crate::tls::load_roots(client_ca)?);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, crate::inbound::tls::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| anyhow::anyhow!("admin.client_ca {}: {e}", client_ca.display()))?;
    let config = crate::inbound::tls::server_config_with_verifier(cert, verifier)?;
    Ok(TlsAcceptor::from(config))
}
