//! Delivery to the next hop (DESIGN §2 steps 6–7, §6).
//!
//! # Layout
//! - [`route`]: configured routes → [`Route`]: static [`Destination`] (hosts
//!   in order, TLS mode) or MX lookup.
//! - [`mx`]: MX lookup over hickory-resolver ([`MxResolver`]).
//! - [`router`]: static routes first, then MX ([`Router::route`]).
//! - [`tls`]: the outbound TLS client config ([`ClientTls`]).
//! - [`connection`]: one SMTP client connection, proto's [`proto::client::Client`]
//!   driven over a socket ([`Connection`]).
//! - [`pool`]: per-destination bounded pools with connection reuse ([`Pool`]).
//! - [`circuit`]: the per-destination circuit breaker, sans-io ([`Circuit`]).
//! - [`dsn`]: RFC 3464 delivery status notifications ([`dsn::build`]).
//! - [`envelope`]: the spool's envelope and the protocol's parameters, both
//!   ways (RFC 3461 parameters kept), and the DSN an envelope owes.
//! - [`error`]: [`DeliveryError`], connection-level failures with the peer.
//!
//! Per recipient, the caller reads [`proto::client::MessageOutcome::recipient_reply`]:
//! 2yz delivered, 4yz deferred (`crate::queue::RetryPolicy`), 5yz bounced with a DSN. A
//! [`DeliveryError`] applies to every recipient of the message (transient:
//! defer; permanent: bounce).

pub mod circuit;
pub mod connection;
pub mod dsn;
pub mod envelope;
pub mod error;
pub mod mx;
pub mod pool;
pub mod route;
pub mod router;
pub mod tls;

pub use circuit::{Admission, Circuit, CircuitConfig};
pub use connection::{ConnectSettings, Connection};
pub use error::{DeliveryError, Unroutable};
pub use mx::{MxResolver, Nameservers};
pub use pool::{Pool, PoolConfig};
pub use route::{Destination, PeerDns, Route, Security, StaticRoutes, Target};
pub use router::Router;
pub use tls::{ClientTls, TlsConfigError};
