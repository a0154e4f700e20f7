//! The Estafette relay node: listeners, TLS, sessions, policy, spool.
//!
//! # Layout
//! Folders follow a message's way through the node:
//! - [`inbound`]: listener (session limit), tls, session driver over proto's
//!   `Server`, policy (MAIL/RCPT decisions), accept (trace headers, durable store).
//! - [`outbound`]: delivery: connection (proto `Client` over TCP/TLS), pool,
//!   circuit breaker, retry schedule, routes, DSN.
//! - [`queue`]: when each message is tried (the spool's due index), one
//!   delivery attempt, recipient states, DSNs owed.
//! - [`ops`]: config (typed TOML), dev mode, the node's start and stop.
//! - [`trust`]: the MSSanté trust list (loaded, refreshed, swapped) and the
//!   canonical DN of a certificate.
//!
//! Queues (`queue/`), the cluster (`cluster/`) and
//! the trust space (`trust/`) come with their issues; see README.
#![forbid(unsafe_code)]

pub mod inbound;
pub mod ops;
pub mod outbound;
pub mod queue;
pub mod trust;

pub use ops::node::Node;
