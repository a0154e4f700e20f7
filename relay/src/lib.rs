//! The Estafette relay node: listeners, TLS, sessions, policy, the one
//! commit path, the queue, delivery, the trust space, operations.
//!
//! # Layout
//! Folders follow a message's way through the node, and depend on each other
//! one way only (an arrow points at what a module may use):
//!
//! ```text
//! ops ──> inbound ──> queue ──> cluster, outbound ──> trust ──> config, tls, dns, rate, sync, metrics, lifecycle
//!  (composition root)                                   (the bottom layer)
//! ```
//!
//! - [`config`], [`tls`], [`dns`], [`rate`], [`sync`], [`metrics`],
//!   [`lifecycle`]: typed configuration (one file per TOML section), TLS
//!   providers and PEM loading, the DNS resolver, rate limits by key, the
//!   one way to take a lock, the Prometheus counters, the node's phases.
//!   They use no other module.
//! - [`trust`]: the MSSanté trust list (loaded, refreshed, swapped), the
//!   canonical DN of a certificate, the monthly indicators.
//! - [`outbound`]: delivery to the next hop: routes, MX, connection, pool,
//!   circuit breaker, DSN building, envelope ↔ protocol parameters.
//! - [`cluster`]: replication before 250, takeover, drain: the QUIC
//!   transport and the driver of `proto::cluster::Node`.
//! - [`queue`]: the one commit path every accepted message takes
//!   ([`queue::Queue::commit`]), the scheduler, one attempt, the retry
//!   schedule.
//! - [`inbound`]: listeners, TLS, the session driver, policy, identities,
//!   the end of DATA (prepare, then commit).
//! - [`ops`]: starting and stopping a node ([`Node`]), the admin HTTP API,
//!   dev mode, the test PKI, the dev sink.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod dns;
pub mod inbound;
pub mod lifecycle;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod queue;
pub mod rate;
pub mod sync;
pub mod tls;
pub mod trust;

pub use ops::node::Node;
