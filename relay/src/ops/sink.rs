//! A minimal SMTP sink for dev mode: accepts every message over plain SMTP on
//! loopback and writes it to `DIR/NNNNNN.eml`, so that `estafette serve --dev`
//! shows a message's whole way without another program. Not for production:
//! no TLS, no limits beyond proto's defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use proto::server::{PeerInfo, Server, ServerConfig, ServerEvent, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
                let _ = serve(tcp, peer, config, &counter, &dir).await;
            });
        }
    });
    Ok(local)
}

async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    counter: &AtomicU64,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    let info = PeerInfo {
        remote: peer.to_string(),
        tls: None,
    };
    let mut server = Server::new(config, info, Instant::now());
    let mut input = Vec::with_capacity(64 * 1024);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            let used = server.handle_input(Instant::now(), &input);
            input.drain(..used);
            let mut any = false;
            while let Some(event) = server.poll_event() {
                any = true;
                match event {
                    ServerEvent::Mail(r) => server.answer_mail(r, Verdict::Accept),
                    ServerEvent::Rcpt(r) => server.answer_rcpt(r, Verdict::Accept),
                    ServerEvent::Auth(r) => server.answer_auth(r, Verdict::Accept),
                    ServerEvent::Message(done) => {
                        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                        let path = dir.join(format!("{n:06}.eml"));
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
            }
            if used == 0 && !any {
                break;
            }
        }
        server.poll_transmit(&mut out);
        tcp.write_all(&out).await?;
        out.clear();
        if server.is_closed() {
            return Ok(());
        }
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&buf[..n]);
    }
}
