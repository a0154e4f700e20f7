//! From the socket to the spool.
pub(crate) mod accept;
pub mod identity;
pub(crate) mod listener;
pub(crate) mod operator;
pub mod policy;
pub(crate) mod session;
pub mod tls;
