//! The operator's dashboard: `GET /dashboard` serves one HTML page (no
//! build step, no outside asset) whose script polls `GET /api/dashboard`
//! every 2 s: rates in and out, queue depth per destination, the oldest
//! message, recent refusals and delivery errors, the trust list's age, and
//! the cluster's peers and shadows.
//!
//! The page itself holds no data and needs no token; the JSON does (read
//! token). The page takes the token from its URL fragment
//! (`/dashboard#token=…`, never sent to the server) or asks for it, and
//! keeps it in the tab's session storage.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::auth::Reader;
use super::{json_error, trust_snapshot, AdminState};
use crate::metrics::{QueueCount, RecentEntry, Totals};
use crate::queue::ShapeRow;

/// The page.
const PAGE: &str = include_str!("dashboard.html");
/// Destinations the dashboard lists (busiest first).
const DESTINATIONS: usize = 20;
/// Records one dashboard refresh reads at most for the per-destination
/// table (it polls every 2 s; `queue summary` reads further).
const DASHBOARD_SCAN: usize = 100_000;

pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/api/dashboard", get(data))
}

async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            // Its own inline script and style, its own API, nothing else.
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

#[derive(Serialize)]
struct Dashboard {
    version: &'static str,
    now_ms: u64,
    totals: Totals,
    in_flight: usize,
    waiting: u64,
    due_now: u64,
    oldest_age_secs: u64,
    destinations: Vec<ShapeRow>,
    /// The per-destination scan stopped at its limit.
    truncated: bool,
    recent_refusals: Vec<RecentEntry>,
    recent_errors: Vec<RecentEntry>,
    trust: Option<TrustView>,
    cluster: Option<ClusterView>,
}

#[derive(Serialize)]
struct TrustView {
    entries: usize,
    domains: usize,
    age_secs: u64,
    refresh_failures: u64,
}

#[derive(Serialize)]
struct ClusterView {
    accepting: bool,
    shadows_held: u64,
    taken_over: u64,
    peers: Vec<PeerView>,
}

#[derive(Serialize)]
struct PeerView {
    name: String,
    link: bool,
    live: bool,
    queue_depth: u64,
    shadows_held: u64,
}

async fn data(_: Reader, State(state): State<Arc<AdminState>>) -> Response {
    let reader = state.clone();
    let read = tokio::task::spawn_blocking(move || {
        let s = &reader.sources;
        let count = QueueCount::read(&s.spool)?;
        let shape = s.queue.shape(DASHBOARD_SCAN.min(reader.scan_limit))?;
        Ok::<_, storage::Error>((count, shape))
    })
    .await;
    let (count, mut shape) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the queue: {e}")),
        Err(_) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the queue failed"),
    };
    let cluster = match state.sources.queue.cluster() {
        Some(c) => c.status().await.map(|s| ClusterView {
            accepting: s.accepting,
            shadows_held: s.counters.shadows_held,
            taken_over: s.counters.taken_over,
            peers: s
                .peers
                .iter()
                .map(|p| PeerView {
                    name: p.name.clone(),
                    link: p.link,
                    live: p.live,
                    queue_depth: p.queue_depth,
                    shadows_held: s.shadows_by_origin.get(&p.name).copied().unwrap_or(0),
                })
                .collect(),
        }),
        None => None,
    };
    let metrics = &state.sources.metrics;
    shape.rows.truncate(DESTINATIONS);
    Json(Dashboard {
        version: env!("CARGO_PKG_VERSION"),
        now_ms: storage::now_ms(),
        totals: metrics.totals(),
        in_flight: state.sources.queue.in_flight(),
        waiting: count.waiting,
        due_now: count.due,
        oldest_age_secs: shape.total.oldest_age_secs,
        destinations: shape.rows,
        truncated: shape.truncated,
        recent_refusals: metrics.recent_refusals(),
        recent_errors: metrics.recent_errors(),
        trust: state.sources.trust.as_deref().map(|t| {
            let snap = trust_snapshot(t);
            TrustView {
                entries: snap.entries,
                domains: snap.domains,
                age_secs: snap.age.as_secs(),
                refresh_failures: snap.failures,
            }
        }),
        cluster,
    })
    .into_response()
}
