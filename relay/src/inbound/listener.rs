//! Accepts connections on one listener, bounded by a semaphore: over the
//! limit, a client gets `421 4.7.0` and is closed (memory stays bounded).
//! Sessions are counted per client address too ([`ClientSessions`]), so that
//! one client's flood leaves room for the others.

use std::net::IpAddr;
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
    let clients = ClientSessions::default();
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
        let clients = clients.clone();
        tokio::spawn(async move {
            let _active = ctx.metrics.session_opened(&ctx.listener.name);
            session::serve(tcp, peer, ctx, shutdown, clients).await;
            drop(permit);
        });
    }
    info!(listener = %ctx.listener.name, "stopped accepting; waiting for sessions");
    let _ = limit.acquire_many(ctx.listener.max_sessions as u32).await;
}

/// Sessions open per client address on one listener (it outlives reloads:
/// the count is the socket's, the limit the configuration's).
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientSessions(Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>);

/// One session counted for its client; uncounted when dropped.
pub(crate) struct ClientSlot {
    clients: ClientSessions,
    ip: IpAddr,
}

impl ClientSessions {
    /// Counts a session from `ip`, unless `limit` (0: none) are open already.
    pub(crate) fn enter(&self, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut map = crate::sync::lock(&self.0);
        let n = map.entry(ip).or_insert(0);
        if limit != 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = crate::sync::lock(&self.clients.0);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_to_its_limit_and_others_are_not() {
        let clients = ClientSessions::default();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let first = clients.enter(a, 2).expect("first");
        let _second = clients.enter(a, 2).expect("second");
        assert!(clients.enter(a, 2).is_none(), "a third from the same address");
        assert!(clients.enter(b, 2).is_some(), "another address");
        drop(first);
        assert!(clients.enter(a, 2).is_some(), "a slot came free");
        assert!(clients.enter(a, 0).is_some(), "0: no limit");
    }
}
