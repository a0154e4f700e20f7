//! Operating the node: configuration, dev mode, start and stop.
pub mod admin;
pub mod config;
pub mod dev;
pub mod indicators;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod sink;
