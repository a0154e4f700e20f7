//! The admin HTTP listener (DESIGN §8), on its own port (`[admin]`).
//!
//! | route | answer | token |
//! |---|---|---|
//! | `GET /healthz` | `200 ok` while the process serves HTTP | no |
//! | `GET /readyz` | `200 ready`, or `503 not ready: <reasons>` | no |
//! | `GET /metrics` | Prometheus exposition ([`crate::metrics`]); OpenMetrics when `Accept` asks for it | read |
//! | `GET /api/queue?limit=N` | JSON: counts, and the first N (default 100, at most 1000) messages of the due index, earliest first | read |
//! | `GET /api/queue/messages?…` | JSON: messages matching a filter (`queue ls`), see [`queue`] | read |
//! | `GET /api/queue/messages/{id}` | JSON: one message, its recipients and its trace (`queue show`) | read |
//! | `GET /api/queue/summary` | JSON: messages by destination and age (`queue summary`) | read |
//! | `POST /api/queue/{hold,release,retry,bounce,delete}` | JSON: what changed (`queue hold` …) | write |
//! | `GET /api/trace/{id}` | JSON: the message's trace events, oldest first (404 if none) | read |
//! | `GET /api/trustlist` | JSON: the trust list in force, its age, refresh failures, last error (404 without `[trust]`) | read |
//! | `GET /api/cluster` | JSON: the cluster as this node sees it | read |
//! | `GET /dashboard` | the operator's page (HTML, polls `/api/dashboard`), see [`dashboard`] | no (its data: read) |
//! | `GET /api/dashboard` | JSON: what the page shows | read |
//! | `POST /api/drain` | `202`: the node drains and exits (`estafette drain`, the preStop hook); with `?wait=true`, `200` and the outcome once the drain is over (`503` if the node stopped first) | read |
//! | `POST /api/reload` | JSON: what was reloaded, what needs a restart; `422` and the reason for a bad file (see [`crate::ops::reload`]) | write |
//! | `GET /api/log`, `PUT /api/log` | the log filter in force; a new one (body: `debug`, `info,relay::outbound=debug`) | read, write |
//!
//! Tokens: see [`auth`]. The probes never need one, so that a kubelet can
//! call them; drain takes the read token because the pod's preStop hook
//! runs with the node's own configuration, and a drain loses nothing.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::SecondsFormat;
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::AdminConfig;
use crate::lifecycle::{Phase, PhaseWatch};
use crate::metrics::{ClusterSnapshot, Destination, Format, Metrics, QueueCount, Snapshot, TrustSnapshot};
use crate::queue::Queue;
use crate::trust::TrustStore;
use auth::Reader;
pub use auth::OPERATOR_HEADER;

pub mod auth;
mod dashboard;
mod mtls;
pub mod queue;
mod runtime;

/// `/metrics` reads at most this many queued messages for the per-destination
/// series (a scan of envelopes; about 50 ms per 100,000).
const DESTINATION_SCAN: usize = 100_000;
/// `/metrics` exports the busiest destinations only (bounded cardinality).
const DESTINATION_SERIES: usize = 50;
/// After shutdown is signalled, requests in progress get this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the admin API reads: the node's parts, shared.
pub struct Sources {
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The delivery queue (in-flight count).
    pub queue: Arc<Queue>,
    /// The spool (due index, envelopes, trace events, health).
    pub spool: storage::Spool,
    /// The trust list, when the node has `[trust]`.
    pub trust: Option<Arc<TrustStore>>,
    /// Where `POST /api/drain` asks the node's owner to drain (see `estafette drain`).
    pub drain: Option<tokio::sync::mpsc::Sender<crate::ops::node::DrainReply>>,
    /// Where `POST /api/reload` asks the node's owner to reload its file.
    pub reload: Option<tokio::sync::mpsc::Sender<crate::ops::node::ReloadRequest>>,
}

/// A bound admin listener, not yet serving.
pub struct Admin {
    socket: Socket,
    router: Router,
}

/// Plain HTTP, or HTTPS with client certificates (`admin.client_ca`).
enum Socket {
    Plain(TcpListener),
    Tls(mtls::TlsListener),
}

impl Admin {
    /// Binds `config.address` and reads the token.
    ///
    /// # Errors
    /// The token file cannot be read or the address cannot be bound.
    /// With `admin.client_ca`, it serves HTTPS with `cert` (the node's
    /// `[tls]` certificate), see [`mtls`].
    pub async fn bind(
        config: &AdminConfig,
        sources: Sources,
        shutdown: PhaseWatch,
        cert: Option<Arc<crate::inbound::tls::ReloadingCert>>,
    ) -> anyhow::Result<Self> {
        let tokens = auth::Tokens {
            read: config.load_token()?.as_deref().map(auth::Token::new).transpose()?,
            write: config
                .load_write_token()?
                .as_deref()
                .map(auth::Token::new)
                .transpose()?,
        };
        let listener = TcpListener::bind(config.address)
            .await
            .with_context(|| format!("admin: binding {}", config.address))?;
        let socket = match &config.client_ca {
            Some(ca) => {
                let cert = cert.context("admin.client_ca: the admin port serves the node's [tls] certificate")?;
                Socket::Tls(mtls::TlsListener::new(listener, mtls::acceptor(cert, ca)?)?)
            }
            None => Socket::Plain(listener),
        };
        let drain = sources.drain.clone();
        let state = Arc::new(AdminState {
            sources,
            tokens,
            shutdown,
            drain,
            scan_limit: config.queue_scan_limit,
            mtls: config.client_ca.is_some(),
            loopback_exempt: config.loopback_without_certificate,
        });
        Ok(Self {
            socket,
            router: router(state),
        })
    }

    /// The bound address (port 0 resolved).
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.socket {
            Socket::Plain(l) => l.local_addr(),
            Socket::Tls(l) => axum::serve::Listener::local_addr(l),
        }
    }

    /// Serves until the node is [`Phase::Stopping`] (or its lifecycle is gone); then
    /// stops accepting, closes idle connections and waits up to 5 s for the
    /// requests in progress.
    pub async fn serve(self, shutdown: PhaseWatch) {
        let address = self.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
        // The caller's address (and certificate) goes into the trace of what it changes.
        let app = self.router.into_make_service_with_connect_info::<mtls::AdminPeer>();
        // Polled here rather than spawned: aborting this task (a node dropped
        // without shutdown) drops the listener with it.
        match self.socket {
            Socket::Plain(l) => {
                let server = axum::serve(l, app).with_graceful_shutdown(stopped(shutdown.clone()));
                run_until_stopped(server.into_future(), shutdown, &address).await;
            }
            Socket::Tls(l) => {
                let server = axum::serve(l, app).with_graceful_shutdown(stopped(shutdown.clone()));
                run_until_stopped(server.into_future(), shutdown, &address).await;
            }
        }
    }
}

/// Runs `server` until the node stops; then gives the requests in progress
/// [`SHUTDOWN_GRACE`].
async fn run_until_stopped(
    server: impl std::future::Future<Output = std::io::Result<()>>,
    shutdown: PhaseWatch,
    address: &str,
) {
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            // The server only returns by itself on an accept loop failure.
            if let Err(e) = result {
                warn!(%address, error = %e, "admin listener stopped");
            }
            return;
        }
        () = stopped(shutdown) => {}
    }
    // Dropping the server after the grace period stops waiting for the
    // requests still running; their connections close as they finish.
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
        warn!("admin requests still running at shutdown; not waiting for them");
    }
    info!(%address, "admin listener stopped");
}

async fn stopped(mut shutdown: PhaseWatch) {
    shutdown.reached(Phase::Stopping).await;
}

struct AdminState {
    sources: Sources,
    tokens: auth::Tokens,
    shutdown: PhaseWatch,
    drain: Option<tokio::sync::mpsc::Sender<crate::ops::node::DrainReply>>,
    /// Most records a queue listing, summary or change reads.
    scan_limit: usize,
    /// Client certificates are checked (`admin.client_ca`).
    mtls: bool,
    /// Loopback callers need none (`admin.loopback_without_certificate`).
    loopback_exempt: bool,
}

fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/trustlist", get(trustlist))
        .route("/api/cluster", get(cluster))
        .route("/api/drain", axum::routing::post(drain))
        .merge(queue::routes())
        .merge(dashboard::routes())
        .merge(runtime::routes())
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the node takes mail: it is not shutting down, the spool
/// accepts writes and the trust list (if any) has entries. The listeners are
/// bound before the admin listener starts, so they need no check here.
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let mut problems = Vec::new();
    if state.shutdown.reached_now(Phase::Draining) {
        problems.push("draining or shutting down".to_owned());
    }
    if let Err(e) = state.sources.spool.health().and_then(|()| state.sources.spool.room()) {
        problems.push(format!("spool: {e}"));
    }
    if let Some(c) = state.sources.queue.cluster() {
        if c.replicates() && !c.can_accept() {
            problems.push("cluster: too few peers reachable for min_copies".to_owned());
        }
    }
    if let Some(trust) = &state.sources.trust {
        if trust.current().entries() == 0 {
            problems.push("trust list: no entry loaded".to_owned());
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(_: Reader, State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let reader = state.clone();
    let cluster = match state.sources.queue.cluster() {
        Some(c) => c.status().await.map(|s| cluster_snapshot(&s, c)),
        None => None,
    };
    // The due-index count is a RocksDB scan: off the async threads.
    let snapshot = tokio::task::spawn_blocking(move || {
        let s = &reader.sources;
        collect_snapshot(&s.queue, &s.spool, s.trust.as_deref())
    })
    .await;
    let Ok(mut snapshot) = snapshot else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the metrics failed");
    };
    snapshot.cluster = cluster;
    match state.sources.metrics.encode(&snapshot, format) {
        Ok(body) => ([(CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed"),
    }
}

/// `/api/trustlist`.
#[derive(Serialize)]
struct TrustView {
    source: Option<String>,
    refresh_secs: Option<u64>,
    entries: usize,
    domains: usize,
    operator_dns: usize,
    skipped_entries: usize,
    generated: Option<String>,
    loaded_at: String,
    sha256: Option<String>,
    age_secs: f64,
    last_success: String,
    refresh_failures: u64,
    last_error: Option<String>,
}

async fn trustlist(_: Reader, State(state): State<Arc<AdminState>>) -> Response {
    let Some(store) = &state.sources.trust else {
        return json_error(StatusCode::NOT_FOUND, "this node has no [trust] section");
    };
    let index = store.current();
    let snapshot = trust_snapshot(store);
    Json(TrustView {
        source: store.config().map(|c| c.source.clone()),
        refresh_secs: store.config().map(|c| c.refresh_secs),
        entries: index.entries(),
        domains: index.domains(),
        operator_dns: index.distinct_dns(),
        skipped_entries: index.problems().len(),
        generated: index.generated().map(str::to_owned),
        loaded_at: system_time(index.loaded_at()),
        sha256: index.sha256().map(str::to_owned),
        age_secs: snapshot.age.as_secs_f64(),
        last_success: system_time(snapshot.last_success),
        refresh_failures: snapshot.failures,
        last_error: store.last_error(),
    })
    .into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// RFC 3339 UTC with milliseconds.
fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn system_time(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    timestamp(ms)
}
/// Reads the queue and the trust list for `/metrics`, as plain values.
/// Scans the due index: call it off the async threads. A due-index read
/// error is logged and leaves the queue counts out of the exposition.
fn collect_snapshot(queue: &Queue, spool: &storage::Spool, trust: Option<&TrustStore>) -> Snapshot {
    let count = match QueueCount::read(spool) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the due index failed");
            None
        }
    };
    let spool_bytes = match spool.disk_bytes() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: sizing the spool failed");
            None
        }
    };
    let destinations = match queue.shape(DESTINATION_SCAN) {
        Ok(shape) => shape
            .rows
            .into_iter()
            .take(DESTINATION_SERIES)
            .map(|r| Destination {
                name: r.destination,
                messages: r.messages,
                oldest_secs: r.oldest_age_secs,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the queue by destination failed");
            Vec::new()
        }
    };
    Snapshot {
        in_flight: queue.in_flight(),
        queue: count,
        trust: trust.map(trust_snapshot),
        cluster: None,
        spool_bytes,
        destinations,
        detached_dropped: spool.detached_dropped(),
    }
}

fn cluster_snapshot(s: &crate::cluster::Status, c: &crate::cluster::Cluster) -> ClusterSnapshot {
    ClusterSnapshot {
        peers: s.peers.len() as u64,
        peers_up: s.peers.iter().filter(|p| p.link).count() as u64,
        accepting: s.accepting,
        counters: s.counters,
        refused: c
            .transport_counters()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// `GET /api/cluster`: members, links, epochs, shadows, takeovers.
async fn cluster(_: Reader, State(state): State<Arc<AdminState>>) -> Response {
    match state.sources.queue.cluster() {
        Some(c) => match c.status().await {
            Some(s) => Json(s).into_response(),
            None => json_error(StatusCode::SERVICE_UNAVAILABLE, "cluster driver not running"),
        },
        None => json_error(StatusCode::NOT_FOUND, "this node is not in a cluster"),
    }
}

/// `POST /api/drain`: the node stops taking mail and hands its queue over,
/// then exits (see `estafette drain`). Answers at once (`202`), or with
/// `?wait=true` once the drain is over, with its outcome
/// ([`DrainOutcome`](crate::ops::node::DrainOutcome)), just before the node
/// stops; `/api/cluster` and `/readyz` follow the drain meanwhile. A second
/// request during a drain gets `503` once the node stops.
async fn drain(_: Reader, State(state): State<Arc<AdminState>>, Query(q): Query<DrainQuery>) -> Response {
    let Some(tx) = &state.drain else {
        return json_error(StatusCode::NOT_IMPLEMENTED, "drain is not wired on this node");
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if tx.try_send(reply).is_err() {
        // Asked already: the node is draining.
        return (StatusCode::ACCEPTED, Json(serde_json::json!({"draining": true}))).into_response();
    }
    if !q.wait {
        return (StatusCode::ACCEPTED, Json(serde_json::json!({"draining": true}))).into_response();
    }
    match outcome.await {
        Ok(o) => Json(o).into_response(),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node stopped before its drain's outcome was known",
        ),
    }
}

/// `POST /api/drain?wait=true`.
#[derive(serde::Deserialize)]
struct DrainQuery {
    #[serde(default)]
    wait: bool,
}

/// The trust list's state now.
fn trust_snapshot(store: &TrustStore) -> TrustSnapshot {
    let index = store.current();
    let age = store.age();
    TrustSnapshot {
        entries: index.entries(),
        domains: index.domains(),
        age,
        failures: store.failures(),
        last_success: std::time::SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::UNIX_EPOCH),
    }
}
