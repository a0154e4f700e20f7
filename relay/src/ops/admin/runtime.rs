//! Changes to the running node that are not about the queue: reloading the
//! configuration (`POST /api/reload`, as SIGHUP does) and the log filter
//! (`GET`/`PUT /api/log`). Both need the write token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};

use super::auth::{Reader, Writer};
use super::{json_error, AdminState};
use crate::ops::logging;

pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/reload", post(reload))
        .route("/api/log", put(set_log).get(get_log))
}

/// Asks the node's owner to read the configuration file again and reload
/// it; answers what was reloaded and what needs a restart (`200`), or why
/// the file was refused (`422`, the running configuration stays).
async fn reload(writer: Writer, State(state): State<Arc<AdminState>>) -> Response {
    let Some(tx) = &state.sources.reload else {
        return json_error(StatusCode::NOT_IMPLEMENTED, "reload is not wired on this node");
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if tx.send(reply).await.is_err() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    }
    tracing::info!(who = %writer.who, "reload asked");
    match answer.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        Err(_) => json_error(StatusCode::SERVICE_UNAVAILABLE, "the reload was not answered"),
    }
}

async fn get_log(_: Reader) -> Response {
    match logging::filter() {
        Some(f) => Json(serde_json::json!({ "filter": f })).into_response(),
        None => json_error(StatusCode::NOT_IMPLEMENTED, "logging is not controlled by this process"),
    }
}

/// The body is the new filter (`debug`, `info,relay::outbound=debug`).
async fn set_log(writer: Writer, body: String) -> Response {
    let text = body.trim();
    match logging::set_filter(text) {
        Ok(()) => {
            tracing::info!(who = %writer.who, filter = text, "log filter set");
            Json(serde_json::json!({ "filter": text })).into_response()
        }
        Err(e) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    }
}
