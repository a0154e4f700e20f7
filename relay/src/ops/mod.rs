//! The composition root: what builds a node from its configuration and runs
//! it. Nothing else in the relay depends on `ops`.
//!
//! # Layout
//! - [`node`]: [`crate::Node`]: opens the spool, builds the queue, the
//!   listeners and the admin listener, runs the node's phases.
//! - [`admin`]: the admin HTTP listener (metrics, probes, queue, trace and
//!   trust-list API).
//! - `build`: the node's parts from its configuration (policy, listener
//!   settings, router, queue), at start and on reload; [`reload`]: SIGHUP
//!   and `POST /api/reload`.
//! - [`client`]: the CLI's client of that API; [`queue_cli`]: `estafette queue …`.
//! - [`dev`]: `estafette serve --dev` (generated PKI, config, demo trust list).
//! - [`pki`]: the IGC-Santé-shaped test PKI; [`cluster_pki`]: the cluster's own CA.
//! - [`trace_export`]: `estafette trace export` (audit, SIEM).
//! - [`sink`]: the dev mode's local sink (writes each message to a file).
pub mod admin;
mod build;
pub mod client;
pub mod cluster_pki;
pub mod dev;
pub mod logging;
pub mod node;
pub mod pki;
pub mod queue_cli;
pub mod reload;
pub mod sink;
pub mod trace_export;
