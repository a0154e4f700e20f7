//! Who may call the admin API: the read token and the write token.
//!
//! - No token configured (a loopback-only listener, which `[admin]`'s
//!   validation enforces): every route is open, writes included.
//! - [`Reader`] routes take either token; [`Writer`] routes (queue changes)
//!   take the write token only: the read token gets `403`, and so does every
//!   token when only a read token is configured (queue changes are then
//!   disabled). A missing or wrong token gets `401`.
//!
//! With `admin.client_ca`, a caller off loopback must also have shown a
//! verified client certificate (`401` otherwise), on every route but the
//! probes and the dashboard page; its subject is named in what it changes.
//!
//! Tokens are kept as HMAC tags under a random key: [`hmac::verify`]
//! compares in constant time and, since both sides are hashed first, leaks
//! neither the content nor the length of a token.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ring::hmac;

use super::mtls::AdminPeer;
use super::AdminState;

/// Header naming the person behind a write (`estafette queue … --as NAME`,
/// `$USER` by default); it goes into the trace events the change writes.
pub const OPERATOR_HEADER: &str = "x-estafette-operator";

/// One configured token.
pub(super) struct Token {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl Token {
    pub(super) fn new(token: &str) -> anyhow::Result<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("admin token: no random key available"))?;
        let tag = hmac::sign(&key, token.as_bytes());
        Ok(Self { key, tag })
    }

    fn matches(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }
}

/// The node's tokens.
#[derive(Default)]
pub(super) struct Tokens {
    pub(super) read: Option<Token>,
    pub(super) write: Option<Token>,
}

#[derive(Debug, PartialEq, Eq)]
enum Right {
    Read,
    Write,
}

impl Tokens {
    /// The right the request's bearer token gives; `None` for no or a wrong token.
    fn right(&self, parts: &Parts) -> Option<Right> {
        if self.read.is_none() && self.write.is_none() {
            return Some(Right::Write);
        }
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes())?;
        if self.write.as_ref().is_some_and(|t| t.matches(presented)) {
            Some(Right::Write)
        } else if self.read.as_ref().is_some_and(|t| t.matches(presented)) {
            Some(Right::Read)
        } else {
            None
        }
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Bearer realm=\"estafette\"")],
        "a valid admin token is required (Authorization: Bearer ...)\n",
    )
        .into_response()
}

/// Proof that the request may read (either token, or none configured).
pub(super) struct Reader;

/// With `admin.client_ca`: a caller off loopback must have shown a
/// verified client certificate (see [`super::mtls`]).
fn certificate_missing(parts: &Parts, state: &AdminState) -> bool {
    if !state.mtls {
        return false;
    }
    !matches!(
        parts.extensions.get::<ConnectInfo<AdminPeer>>(),
        Some(ConnectInfo(peer)) if peer.client.is_some() || (state.loopback_exempt && peer.addr.ip().is_loopback())
    )
}

fn certificate_required() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "a client certificate from admin.client_ca is required\n",
    )
        .into_response()
}

impl FromRequestParts<Arc<AdminState>> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AdminState>) -> Result<Self, Self::Rejection> {
        if certificate_missing(parts, state) {
            return Err(certificate_required());
        }
        match state.tokens.right(parts) {
            Some(_) => Ok(Self),
            None => Err(unauthorized()),
        }
    }
}

/// Proof that the request may change the queue, and who asked: the
/// operator's name from [`OPERATOR_HEADER`] and the caller's address.
pub(super) struct Writer {
    pub(super) who: String,
}

impl FromRequestParts<Arc<AdminState>> for Writer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AdminState>) -> Result<Self, Self::Rejection> {
        if certificate_missing(parts, state) {
            return Err(certificate_required());
        }
        match state.tokens.right(parts) {
            Some(Right::Write) => Ok(Self { who: who(parts) }),
            Some(Right::Read) if state.tokens.write.is_none() => Err((
                StatusCode::FORBIDDEN,
                "queue changes are disabled: this node has no admin.write_token_file\n",
            )
                .into_response()),
            Some(Right::Read) => Err((
                StatusCode::FORBIDDEN,
                "this token is read-only: queue changes need the write token\n",
            )
                .into_response()),
            None => Err(unauthorized()),
        }
    }
}

/// `"alice (admin API from 10.0.0.7)"`: printable ASCII only, at most 64
/// characters of the name, so that a header cannot forge trace lines.
fn who(parts: &Parts) -> String {
    let name: String = parts
        .headers
        .get(OPERATOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect();
    let name = match name.trim() {
        "" => "unnamed operator",
        n => n,
    };
    match parts.extensions.get::<ConnectInfo<AdminPeer>>() {
        Some(ConnectInfo(AdminPeer { addr, client: Some(dn) })) => {
            format!("{name} ({dn}; admin API from {})", addr.ip())
        }
        Some(ConnectInfo(peer)) => format!("{name} (admin API from {})", peer.addr.ip()),
        None => format!("{name} (admin API)"),
    }
}
