//! Estafette's tokio adapter for proto's sans-io state machines, as `quinn` is
//! to `quinn-proto`: proto decides, this crate only moves bytes and sets
//! timers. The relay (inbound sessions, outbound delivery, the dev sink) and
//! the load tool (sender and smart sink) drive SMTP through it; the QUIC
//! cluster driver follows the same pattern.
//!
//! # Layout
//! - [`stream`]: [`Stream`], one socket type over plain TCP and tokio-rustls'
//!   server and client TLS streams, with the negotiated TLS parameters.
//! - [`server`]: the drive loop of [`proto::server::Server`]: read →
//!   `handle_input` → events answered by the caller's [`server::Handler`] →
//!   `poll_transmit` → one write; a `select!` on read, the protocol timer and a
//!   shutdown future; the STARTTLS hand-off.
//! - [`client`]: the drive loop of [`proto::client::Client`]: one delivery
//!   connection (plain, STARTTLS or implicit TLS), ready for message after
//!   message.
//! - [`tls`]: PEM loading and the benchmark-only "accept any certificate"
//!   verifier.
//!
//! # Clock
//! Every `now` handed to proto is [`now`]: tokio's clock, so that tests which
//! pause time (`tokio::time::pause`) see proto's timeouts fire.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod server;
pub mod stream;
pub mod tls;

pub use stream::Stream;

use std::time::Instant;

/// The time given to proto: tokio's clock (the system's, unless a test paused
/// it). No I/O, no allocation.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Resolves at `deadline`, never when there is none (proto's `poll_timeout`).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
