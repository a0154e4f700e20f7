//! Estafette's SMTP wire formats, sans-io: parsers, encoders and the server and
//! client state machines. No sockets, no clocks (time is passed in), no async.
//!
//! # Layout
//! - [`reply`]: `Reply`, `EnhancedCode`, multi-line parse and encode.
//! - [`data`]: the DATA decoder (dot-unstuffing, CRLF.CRLF only, smuggling
//!   checks, limits while streaming) and the dot-stuffing encoder.
//! - [`error`]: errors a peer can cause, each with the reply it gets.
#![forbid(unsafe_code)]
#![cfg_attr(not(fuzzing), warn(missing_docs))]

pub mod data;
pub mod error;
pub mod reply;

pub use error::{CommandError, ReplyError};
pub use reply::{EnhancedCode, Reply, ReplyBuilder, Severity};
