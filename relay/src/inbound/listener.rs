//! Accepts connections on one listener, bounded by a semaphore: over the
//! limit, a client gets `421 4.7.0` and is closed (memory stays bounded).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::session;
use super::ListenerCtx;
use crate::lifecycle::{Phase, PhaseWatch};

/// Accepts until the node drains ([`Phase::Draining`]); then closes the
/// socket and waits for the running sessions (which were told to finish).
pub(crate) async fn run(socket: TcpListener, current: Arc<ArcSwap<ListenerCtx>>, shutdown: PhaseWatch) {
    // A reload swaps `current`: each new session takes the context in force
    // when it is accepted, and keeps it to its end.
    let ctx = current.load_full();
    let limit = Arc::new(Semaphore::new(ctx.listener.max_sessions));
    let mut stop = shutdown.clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = socket.accept() => a,
            () = stop.reached(Phase::Draining) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                error!(listener = %ctx.listener.name, error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(listener = %ctx.listener.name, %peer, "session limit reached");
            let line = format!("421 4.7.0 {} too many sessions, try again later\r\n", ctx.hostname);
            tokio::spawn(async move {
                let mut tcp = tcp;
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(line.as_bytes())).await;
                let _ = tcp.shutdown().await;
            });
            continue;
        };
        let ctx = current.load_full();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _active = ctx.metrics.session_opened(&ctx.listener.name);
            session::serve(tcp, peer, ctx, shutdown).await;
            drop(permit);
        });
    }
    info!(listener = %ctx.listener.name, "stopped accepting; waiting for sessions");
    let _ = limit.acquire_many(ctx.listener.max_sessions as u32).await;
}
