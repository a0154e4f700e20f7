//! Per-destination connection pools: at most `max_connections` connections per
//! destination key, at most `max_messages_per_connection` messages on each,
//! idle connections kept `idle_timeout` for reuse, and the destination's
//! circuit breaker consulted before every new connection.
//!
//! A [`Pool`] is cheap to clone and is used concurrently from many tasks: each
//! [`Pool::send`] holds one of the destination's semaphore permits for the
//! whole send, so no more than `max_connections` connections are in use at
//! once; idle connections are only ever taken by a permit holder, so in-use
//! plus idle connections stay within the bound too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use net::client::ContentSource;
use proto::client::{MessageOutcome, Outgoing};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::circuit::{Admission, Circuit, CircuitConfig};
use super::connection::{ConnectSettings, Connection};
use super::error::DeliveryError;
use super::route::{Destination, PeerDns};
use crate::sync::lock;

/// Pool settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections per destination at once. Default 8.
    pub max_connections: usize,
    /// Messages sent on one connection before it is closed. Default 100.
    pub max_messages_per_connection: u32,
    /// How long an idle connection is kept for reuse. Default 5 s (servers
    /// commonly drop idle clients after a few tens of seconds).
    pub idle_timeout: Duration,
    /// The per-destination circuit breaker.
    pub circuit: CircuitConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 8,
            max_messages_per_connection: 100,
            idle_timeout: Duration::from_secs(5),
            circuit: CircuitConfig::default(),
        }
    }
}

struct Idle {
    conn: Connection,
    since: Instant,
}

/// One destination's state.
struct Dest {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    circuit: Mutex<Circuit>,
}

struct Inner {
    config: PoolConfig,
    settings: ConnectSettings,
    dests: Mutex<HashMap<String, Arc<Dest>>>,
    opened: AtomicU64,
}

/// Trust space: the server certificate's subject must be listed for the
/// recipient domain. TLS (and the chain to the anchors) is already
/// established when a connection exists; a plaintext one has no certificate
/// and fails here.
fn check_peer(conn: &Connection, expected: &PeerDns) -> Result<(), DeliveryError> {
    let leaf = conn.peer_certificates().and_then(<[_]>::first);
    let dn = match leaf.map(|c| crate::trust::subject_dn(c)) {
        Some(Ok(dn)) => dn,
        Some(Err(e)) => {
            return Err(DeliveryError::PeerNotListed {
                peer: conn.peer(),
                domain: expected.domain.clone(),
                dn: format!("(unreadable: {e})"),
            })
        }
        None => {
            return Err(DeliveryError::PeerNotListed {
                peer: conn.peer(),
                domain: expected.domain.clone(),
                dn: "(none: no TLS)".into(),
            })
        }
    };
    if expected.allowed.iter().any(|a| **a == dn) {
        Ok(())
    } else {
        Err(DeliveryError::PeerNotListed {
            peer: conn.peer(),
            domain: expected.domain.clone(),
            dn: dn.to_string(),
        })
    }
}

/// Outbound connection pools for every destination. Clones share the pools.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Pool {
    /// Empty pools with these settings.
    pub fn new(config: PoolConfig, settings: ConnectSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                settings,
                dests: Mutex::new(HashMap::new()),
                opened: AtomicU64::new(0),
            }),
        }
    }

    fn dest(&self, key: &str) -> Arc<Dest> {
        let mut dests = lock(&self.inner.dests);
        if let Some(d) = dests.get(key) {
            return d.clone();
        }
        let d = Arc::new(Dest {
            permits: Arc::new(Semaphore::new(self.inner.config.max_connections.max(1))),
            idle: Mutex::new(Vec::new()),
            circuit: Mutex::new(Circuit::new(self.inner.config.circuit)),
        });
        dests.insert(key.to_owned(), d.clone());
        d
    }

    /// Sends `msg` to `dest` on a pooled connection (reused when one is idle,
    /// opened otherwise, trying `dest.targets` in order), waiting for a free
    /// slot when `max_connections` are busy. `id` is only used in log lines.
    ///
    /// `Ok` has the same meaning as [`Connection::send`]: the server answered,
    /// and each recipient's fate is in the outcome.
    ///
    /// # Errors
    /// - [`DeliveryError::Parked`]: the circuit is open, nothing was tried;
    ///   defer the destination's whole queue until `until`.
    /// - a connection failure (every target failed; the circuit counts it);
    /// - a failure mid-message (see [`Connection::send`]).
    ///
    /// All mean the same for each recipient: defer if
    /// [`DeliveryError::is_transient`], bounce otherwise.
    pub async fn send(&self, dest: &Destination, msg: Outgoing, id: &str) -> Result<MessageOutcome, DeliveryError> {
        self.send_with(dest, msg, None::<&mut NoContent>, id).await
    }

    /// [`Pool::send`] for a message whose body `content` streams
    /// (`msg.streamed` set): a large message read from the spool piece by
    /// piece. A failure to read it breaks the connection before the end of
    /// the content, so the server never takes a truncated message; the
    /// recipients are deferred.
    ///
    /// # Errors
    /// As [`Pool::send`].
    pub async fn send_streamed(
        &self,
        dest: &Destination,
        msg: Outgoing,
        content: &mut impl ContentSource,
        id: &str,
    ) -> Result<MessageOutcome, DeliveryError> {
        self.send_with(dest, msg, Some(content), id).await
    }

    async fn send_with(
        &self,
        dest: &Destination,
        msg: Outgoing,
        content: Option<&mut impl ContentSource>,
        id: &str,
    ) -> Result<MessageOutcome, DeliveryError> {
        let d = self.dest(&dest.key);
        let _permit = d
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DeliveryError::Parked {
                destination: dest.key.clone(),
                until: now(),
            })?;
        let mut conn = match self.take_idle(&d) {
            Some(c) => c,
            None => self.open(dest, &d, id).await?,
        };
        if let Some(expected) = &dest.peer_dns {
            if let Err(e) = check_peer(&conn, expected) {
                warn!(msg_id = id, destination = %dest.key, error = %e, "server certificate not listed; nothing sent");
                tokio::spawn(conn.quit());
                return Err(e);
            }
        }
        let outcome = match content {
            Some(content) => conn.send_streamed(msg, content, id).await?,
            None => conn.send(msg, id).await?,
        };
        let max = self.inner.config.max_messages_per_connection;
        if conn.is_usable() && conn.messages_sent() < max {
            lock(&d.idle).push(Idle { conn, since: now() });
        } else {
            tokio::spawn(conn.quit());
        }
        Ok(outcome)
    }

    /// An idle connection still fresh and still open, if any; stale ones are
    /// closed on the way.
    fn take_idle(&self, d: &Dest) -> Option<Connection> {
        let limit = self.inner.config.idle_timeout;
        loop {
            let idle = lock(&d.idle).pop()?;
            let fresh = now().saturating_duration_since(idle.since) < limit;
            let mut conn = idle.conn;
            if fresh && !conn.is_stale() {
                return Some(conn);
            }
            debug!(peer = %conn.peer(), "dropping stale idle connection");
            tokio::spawn(conn.quit());
        }
    }

    async fn open(&self, dest: &Destination, d: &Dest, id: &str) -> Result<Connection, DeliveryError> {
        if let Admission::Parked { until } = lock(&d.circuit).admit(now()) {
            return Err(DeliveryError::Parked {
                destination: dest.key.clone(),
                until,
            });
        }
        let mut last = DeliveryError::Resolve {
            host: dest.key.clone(),
            reason: "no target host".into(),
        };
        for target in &dest.targets {
            match Connection::open(target, &self.inner.settings, id).await {
                Ok(conn) => {
                    lock(&d.circuit).on_success();
                    self.inner.opened.fetch_add(1, Ordering::Relaxed);
                    return Ok(conn);
                }
                Err(e) => {
                    warn!(msg_id = id, destination = %dest.key, host = %target.host, error = %e, "connection failed");
                    last = e;
                }
            }
        }
        lock(&d.circuit).on_failure(now());
        Err(last)
    }

    /// Whether new connections to `key` are refused by its circuit breaker.
    pub fn is_parked(&self, key: &str) -> bool {
        let dests = lock(&self.inner.dests);
        dests.get(key).is_some_and(|d| lock(&d.circuit).is_parked(now()))
    }

    /// Connections opened since the pool was created (all destinations).
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Idle connections held for `key`.
    pub fn idle_connections(&self, key: &str) -> usize {
        let dests = lock(&self.inner.dests);
        dests.get(key).map_or(0, |d| lock(&d.idle).len())
    }

    /// Closes (QUIT) idle connections older than the idle timeout, or all idle
    /// connections when `all` (shutdown, drain).
    pub async fn close_idle(&self, all: bool) {
        let limit = self.inner.config.idle_timeout;
        let t = now();
        let dests: Vec<Arc<Dest>> = lock(&self.inner.dests).values().cloned().collect();
        let mut expired = Vec::new();
        for d in dests {
            let mut idle = lock(&d.idle);
            let (old, keep) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| all || t.saturating_duration_since(i.since) >= limit);
            *idle = keep;
            expired.extend::<Vec<Idle>>(old);
        }
        for i in expired {
            i.conn.quit().await;
        }
    }

    /// Starts a task that closes expired idle connections every half idle
    /// timeout; it ends when the last clone of the pool is dropped.
    pub fn spawn_reaper(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (self.inner.config.idle_timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                Self { inner }.close_idle(false).await;
            }
        })
    }
}

/// The content source of a message whose body is in `Outgoing::body`: never
/// asked for a piece.
struct NoContent;

impl ContentSource for NoContent {
    async fn next_piece(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        Ok(None)
    }
}
