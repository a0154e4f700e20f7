//! Estafette's SMTP wire formats, sans-io: parsers, encoders and the server and
//! client state machines. No sockets, no clocks (time is passed in), no async.
//!
//! # Layout
//! - [`reply`]: `Reply`, `EnhancedCode`, multi-line parse and encode.
//! - [`data`]: the DATA decoder (dot-unstuffing, CRLF.CRLF only, smuggling
//!   checks, limits while streaming) and the dot-stuffing encoder.
//! - [`command`]: `Command` parse and encode (round-trip).
//! - [`address`]: `Mailbox`, `ReversePath`, `ForwardPath`.
//! - [`params`]: MAIL/RCPT ESMTP parameters, xtext.
//! - [`ehlo`]: `Extensions` advertised and learnt.
//! - [`server`]: the server state machine (`Server`, events, decision tokens).
//! - [`client`]: the delivery client state machine (`Client`).
//! - [`error`]: errors a peer can cause, each with the reply it gets.
//! - [`dn`]: distinguished names in canonical form (trust list vs certificates).
//! - [`trustlist`]: the MSSanté trust list ("liste blanche") parser.
//! - [`cluster`]: the replication protocol between nodes (frames, placement, the
//!   per-node state machine).
#![forbid(unsafe_code)]
#![cfg_attr(not(fuzzing), warn(missing_docs))]

pub mod address;
pub mod client;
pub mod cluster;
pub mod command;
pub mod data;
pub mod dn;
pub mod ehlo;
pub mod error;
pub mod params;
pub mod reply;
pub mod server;
pub mod trustlist;

#[cfg(test)]
mod tests;

pub use error::{CommandError, ReplyError};
pub use reply::{EnhancedCode, Reply, ReplyBuilder, Severity};
