//! The queue routes of the admin API: the due index (`/api/queue`), traces,
//! and operator control (`/api/queue/messages`, `/api/queue/summary`,
//! `POST /api/queue/{action}`).
//!
//! # Queue control
//! - `GET /api/queue/messages` takes the [`Filter`] as query parameters
//!   (`destination`, `sender`, `recipient`, `state`, `older_than_secs`,
//!   `error`, `ids` comma-separated) and `limit` (default 100, at most
//!   `admin.queue_scan_limit`); it answers the matching messages in
//!   acceptance order and whether the scan stopped at its limit.
//! - `POST /api/queue/{hold,release,retry,bounce,delete}` takes
//!   `{"filter": {...}, "confirm": bool}`. When the filter matches more than
//!   one message and `confirm` is not `true`, nothing changes: the answer is
//!   `409` with the count it would touch (`would_touch`) and the first ids.
//!   Otherwise `200` with what changed ([`Report`]). An empty filter matches
//!   every message: it needs `confirm` like any other.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Reader, Writer};
use super::{json_error, timestamp, AdminState, Sources};
use crate::metrics::QueueCount;
use crate::queue::control::{Action, Filter, Report, State as RcptState};
use crate::queue::Shape;

/// `/api/queue` lists this many messages unless `limit` says otherwise.
const DEFAULT_QUEUE_LIMIT: usize = 100;
/// Largest `limit` of `/api/queue`.
const MAX_QUEUE_LIMIT: usize = 1000;
/// Ids a `409` answer shows of what a filter would touch.
const SHOWN_IDS: usize = 20;

pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/queue", get(queue))
        .route("/api/queue/messages", get(list))
        .route("/api/queue/messages/{id}", get(show))
        .route("/api/queue/summary", get(summary))
        .route("/api/queue/{action}", post(control))
        .route("/api/trace/{id}", get(trace))
}

#[derive(Deserialize)]
struct QueueQuery {
    limit: Option<usize>,
}

/// `/api/queue`.
#[derive(Serialize)]
struct QueueView {
    /// Messages in the due index (counted up to [`crate::metrics::QUEUE_COUNT_CAP`]).
    waiting: u64,
    /// Of which due now.
    due_now: u64,
    /// The counts stopped at the cap.
    saturated: bool,
    /// Messages being tried now.
    in_flight: usize,
    /// The first `limit` messages of the due index, earliest first.
    messages: Vec<QueuedView>,
}

#[derive(Serialize)]
struct QueuedView {
    id: String,
    due: String,
    due_ms: u64,
    sender: String,
    received: String,
    size: u64,
    recipients: Vec<RecipientView>,
}

#[derive(Serialize)]
struct RecipientView {
    address: String,
    next_hop: String,
    status: String,
    attempts: u32,
    next_attempt: String,
    last_reply: Option<String>,
}

async fn queue(_: Reader, State(state): State<Arc<AdminState>>, Query(q): Query<QueueQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_QUEUE_LIMIT).min(MAX_QUEUE_LIMIT);
    let reader = state.clone();
    let view = tokio::task::spawn_blocking(move || queue_view(&reader.sources, limit)).await;
    match view {
        Ok(Ok(view)) => Json(view).into_response(),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the queue: {e}")),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the queue failed"),
    }
}

fn queue_view(sources: &Sources, limit: usize) -> Result<QueueView, storage::Error> {
    let count = QueueCount::read(&sources.spool)?;
    let mut messages = Vec::new();
    for (due_ms, id) in sources.spool.due(u64::MAX, limit)? {
        // Removed since the index was read: not in the queue any more.
        let Some(env) = sources.spool.envelope(id)? else {
            continue;
        };
        messages.push(QueuedView {
            id: id.to_string(),
            due: timestamp(due_ms),
            due_ms,
            sender: env.sender,
            received: timestamp(env.received_at_ms),
            size: env.body_size,
            recipients: env.recipients.into_iter().map(RecipientView::from).collect(),
        });
    }
    Ok(QueueView {
        waiting: count.waiting,
        due_now: count.due,
        saturated: count.saturated,
        in_flight: sources.queue.in_flight(),
        messages,
    })
}

/// `/api/trace/{id}`.
#[derive(Serialize)]
struct TraceView {
    id: String,
    events: Vec<EventView>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventView {
    Event {
        at: String,
        at_ms: u64,
        kind: String,
        detail: String,
    },
    Damaged {
        damaged: String,
    },
}

async fn trace(_: Reader, State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let Ok(parsed) = id.parse::<storage::MessageId>() else {
        return json_error(StatusCode::BAD_REQUEST, &format!("{id:?} is not a queue id"));
    };
    let reader = state.clone();
    let events = tokio::task::spawn_blocking(move || reader.sources.spool.events(parsed)).await;
    let events = match events {
        Ok(Ok(events)) => events,
        Ok(Err(e)) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the trace: {e}")),
        Err(_) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the trace failed"),
    };
    if events.is_empty() {
        return json_error(StatusCode::NOT_FOUND, &format!("no trace for {parsed}"));
    }
    let events = events.into_iter().map(EventView::from).collect();
    Json(TraceView {
        id: parsed.to_string(),
        events,
    })
    .into_response()
}

impl From<storage::Recipient> for RecipientView {
    fn from(r: storage::Recipient) -> Self {
        Self {
            status: format!("{:?}", RcptState::of(r.status)).to_lowercase(),
            next_attempt: timestamp(r.next_attempt_ms),
            address: r.address,
            next_hop: r.next_hop,
            attempts: r.attempts,
            last_reply: r.last_reply.map(|l| l.to_string()),
        }
    }
}

impl From<Result<storage::Event, storage::Error>> for EventView {
    fn from(e: Result<storage::Event, storage::Error>) -> Self {
        match e {
            Ok(e) => Self::Event {
                at: timestamp(e.at_ms),
                at_ms: e.at_ms,
                kind: format!("{:?}", e.kind),
                detail: e.detail,
            },
            Err(e) => Self::Damaged { damaged: e.to_string() },
        }
    }
}

/// One message as `queue ls` and `queue show` see it.
#[derive(Serialize)]
struct MessageView {
    id: String,
    received: String,
    age_secs: u64,
    sender: String,
    size: u64,
    client_identity: Option<String>,
    peer: String,
    tls: Option<String>,
    recipients: Vec<RecipientView>,
    /// `queue show` only: the trace, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventView>>,
}

impl MessageView {
    fn new(id: storage::MessageId, env: storage::Envelope, now_ms: u64) -> Self {
        Self {
            id: id.to_string(),
            received: timestamp(env.received_at_ms),
            age_secs: now_ms.saturating_sub(env.received_at_ms) / 1000,
            sender: env.sender,
            size: env.body_size,
            client_identity: env.client_identity,
            peer: env.peer_addr,
            tls: env.tls,
            recipients: env.recipients.into_iter().map(RecipientView::from).collect(),
            events: None,
        }
    }
}

/// The filter as query parameters (`ids` comma-separated).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    ids: Option<String>,
    destination: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    state: Option<RcptState>,
    older_than_secs: Option<u64>,
    error: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct ListView {
    messages: Vec<MessageView>,
    /// The scan stopped at `admin.queue_scan_limit` records: there may be more.
    truncated: bool,
}

fn blocking_error(what: &str, e: &storage::Error) -> Response {
    match e {
        storage::Error::InvalidArgument(m) => json_error(StatusCode::BAD_REQUEST, m),
        e => json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{what}: {e}")),
    }
}

async fn list(_: Reader, State(state): State<Arc<AdminState>>, Query(q): Query<ListQuery>) -> Response {
    let filter = Filter {
        ids: q
            .ids
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        destination: q.destination,
        sender: q.sender,
        recipient: q.recipient,
        state: q.state,
        older_than_secs: q.older_than_secs,
        error: q.error,
    };
    if let Err(e) = filter.parsed_ids() {
        return json_error(StatusCode::BAD_REQUEST, &e);
    }
    let limit = q.limit.unwrap_or(DEFAULT_QUEUE_LIMIT).min(state.scan_limit);
    let reader = state.clone();
    let found =
        tokio::task::spawn_blocking(move || reader.sources.queue.select(&filter, limit, reader.scan_limit)).await;
    match found {
        Ok(Ok((messages, truncated))) => {
            let now = storage::now_ms();
            let messages = messages
                .into_iter()
                .map(|(id, env)| MessageView::new(id, env, now))
                .collect();
            Json(ListView { messages, truncated }).into_response()
        }
        Ok(Err(e)) => blocking_error("reading the queue", &e),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the queue failed"),
    }
}

async fn show(_: Reader, State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let Ok(parsed) = id.parse::<storage::MessageId>() else {
        return json_error(StatusCode::BAD_REQUEST, &format!("{id:?} is not a queue id"));
    };
    let reader = state.clone();
    let read = tokio::task::spawn_blocking(move || {
        let spool = &reader.sources.spool;
        Ok::<_, storage::Error>((spool.envelope(parsed)?, spool.events(parsed)?))
    })
    .await;
    match read {
        Ok(Ok((Some(env), events))) => {
            let mut view = MessageView::new(parsed, env, storage::now_ms());
            view.events = Some(events.into_iter().map(EventView::from).collect());
            Json(view).into_response()
        }
        Ok(Ok((None, events))) if !events.is_empty() => json_error(
            StatusCode::NOT_FOUND,
            &format!("{parsed} is not in the queue any more; its trace: estafette trace {parsed}"),
        ),
        Ok(Ok((None, _))) => json_error(StatusCode::NOT_FOUND, &format!("{parsed} is not in the queue")),
        Ok(Err(e)) => blocking_error("reading the message", &e),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the message failed"),
    }
}

async fn summary(_: Reader, State(state): State<Arc<AdminState>>) -> Response {
    let reader = state.clone();
    let shape = tokio::task::spawn_blocking(move || reader.sources.queue.shape(reader.scan_limit)).await;
    match shape {
        Ok(Ok(shape)) => Json::<Shape>(shape).into_response(),
        Ok(Err(e)) => blocking_error("reading the queue", &e),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the queue failed"),
    }
}

/// The body of `POST /api/queue/{action}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRequest {
    #[serde(default)]
    filter: Filter,
    #[serde(default)]
    confirm: bool,
}

#[derive(Serialize)]
struct ControlView {
    action: Action,
    matched: usize,
    #[serde(flatten)]
    report: Report,
}

async fn control(
    writer: Writer,
    State(state): State<Arc<AdminState>>,
    Path(action): Path<String>,
    Json(request): Json<ControlRequest>,
) -> Response {
    let action = match action.as_str() {
        "hold" => Action::Hold,
        "release" => Action::Release,
        "retry" => Action::Retry,
        "bounce" => Action::Bounce,
        "delete" => Action::Delete,
        other => {
            return json_error(
                StatusCode::NOT_FOUND,
                &format!("no queue action {other:?} (hold, release, retry, bounce, delete)"),
            )
        }
    };
    if let Err(e) = request.filter.parsed_ids() {
        return json_error(StatusCode::BAD_REQUEST, &e);
    }
    let reader = state.clone();
    let filter = request.filter.clone();
    let found = tokio::task::spawn_blocking(move || {
        reader
            .sources
            .queue
            .select(&filter, reader.scan_limit, reader.scan_limit)
    })
    .await;
    let (messages, truncated) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return blocking_error("reading the queue", &e),
        Err(_) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "reading the queue failed"),
    };
    let ids: Vec<storage::MessageId> = messages.into_iter().map(|(id, _)| id).collect();
    if ids.len() > 1 && !request.confirm {
        return (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("{} messages match: confirm to {} them all", ids.len(), action.name()),
                "would_touch": ids.len(),
                "truncated": truncated,
                "ids": ids.iter().take(SHOWN_IDS).map(ToString::to_string).collect::<Vec<_>>(),
            })),
        )
            .into_response();
    }
    match state
        .sources
        .queue
        .control(action, &ids, &request.filter, &writer.who)
        .await
    {
        Ok(report) => Json(ControlView {
            action,
            matched: ids.len(),
            report,
        })
        .into_response(),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{} stopped: {e}", action.name()),
        ),
    }
}
