//! A minimal SMTP sink for dev mode: accepts every message over plain SMTP on
//! loopback and writes it to `DIR/NNNNNN.eml`, so that `estafette serve --dev`
//! shows a message's whole way without another program. Not for production:
//! no TLS, no limits beyond proto's defaults.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use net::server::{Handler, ServerTls};
use proto::server::{Server, ServerConfig, ServerEvent, Verdict};
use tokio::net::TcpListener;

/// Binds `addr` and serves until the runtime ends; returns the bound address.
///
/// # Errors
/// Binding failed or `dir` cannot be created.
pub async fn spawn(addr: SocketAddr, dir: PathBuf) -> std::io::Result<SocketAddr> {
    std::fs::create_dir_all(&dir)?;
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let config = Arc::new(ServerConfig {
        hostname: "sink.localhost".into(),
        greeting: "ESMTP Estafette dev sink".into(),
        ..ServerConfig::default()
    });
    let counter = Arc::new(AtomicU64::new(0));
    let dir = Arc::new(dir);
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let (config, counter, dir) = (config.clone(), counter.clone(), dir.clone());
            tokio::spawn(async move {
                let mut sink = Sink {
                    counter: &counter,
                    dir: &dir,
                };
                let forever = std::future::pending();
                let _ = net::server::serve(tcp, config, peer.to_string(), ServerTls::NONE, &mut sink, forever).await;
            });
        }
    });
    Ok(local)
}

/// One session: accepts everything, writes each message to `DIR/NNNNNN.eml`.
struct Sink<'a> {
    counter: &'a AtomicU64,
    dir: &'a Path,
}

impl Handler for Sink<'_> {
    async fn on_event(&mut self, event: ServerEvent, server: &mut Server) -> ControlFlow<()> {
        match event {
            ServerEvent::Mail(r) => server.answer_mail(r, Verdict::Accept),
            ServerEvent::Rcpt(r) => server.answer_rcpt(r, Verdict::Accept),
            ServerEvent::Auth(r) => server.answer_auth(r, Verdict::Accept),
            ServerEvent::Message(done) => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
                let path = self.dir.join(format!("{n:06}.eml"));
                match tokio::fs::write(&path, &done.body).await {
                    Ok(()) => server.message_stored(done, Ok(&format!("sink-{n}"))),
                    Err(e) => server.message_stored(
                        done,
                        Err(proto::Reply::new(451, proto::EnhancedCode::new(4, 3, 0), e.to_string())),
                    ),
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
