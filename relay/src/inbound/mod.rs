//! From the socket to the spool.
//!
//! # Layout
//! - `listener`: accepts connections, bounded by the listener's session limit.
//! - [`proxy`]: the PROXY protocol v2 header of a listener behind a load
//!   balancer (the client's address).
//! - [`tls`]: the listener's TLS (certificate reloading, client certificates).
//! - `session`: the driver of proto's `Server` over one connection: reads,
//!   answers its events, writes.
//! - [`policy`]: MAIL and RCPT decisions (routes, trust space, identities).
//! - `operator`: the checks on another operator's certificate.
//! - [`identity`]: who a client is (AUTH account, certificate subject) and
//!   which senders it may use.
//! - `fairness`: each client's share (messages per second, sessions),
//!   checked at MAIL FROM.
//! - `accept`: the end of DATA: trace headers and envelope (`prepare`), then
//!   the node's one commit path ([`crate::queue::Queue::commit`]).
//!
//! Depends on `queue` (commit, delivery hand-off) and the layers below it;
//! nothing below depends on `inbound`.
pub(crate) mod accept;
pub(crate) mod fairness;
pub mod identity;
pub(crate) mod listener;
pub(crate) mod operator;
pub mod policy;
pub mod proxy;
pub(crate) mod session;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use crate::config::ListenerConfig;
use crate::metrics::Metrics;

/// Everything the sessions of one listener share (cloned with new parts
/// by a reload).
#[derive(Clone)]
pub(crate) struct ListenerCtx {
    pub(crate) listener: ListenerConfig,
    pub(crate) server_config: Arc<proto::server::ServerConfig>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) accept_timeout: Duration,
    pub(crate) hostname: String,
    pub(crate) policy: Arc<policy::Policy>,
    /// Node-wide: every listener shares the clients' counters.
    pub(crate) fairness: Arc<fairness::Fairness>,
    pub(crate) queue: Arc<crate::queue::Queue>,
    pub(crate) metrics: Arc<Metrics>,
    /// Node-wide bound on concurrent AUTH password checks.
    pub(crate) auth_checks: Arc<tokio::sync::Semaphore>,
    /// Operator listeners: the chain check done after the handshake.
    pub(crate) peer_check: Option<operator::PeerCheck>,
}
