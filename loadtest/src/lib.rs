//! `estafette-load`: a load generator, a smart SMTP sink and a scenario
//! runner for SMTP relays, built on proto's sans-io client and server.
//!
//! # Layout
//! - [`mix`]: size mixes and reply mixes (`"1k:50,10k:40,1m:10"`).
//! - [`seqlog`]: sequence stamps, send/received logs, the loss verdict.
//! - [`tls`]: rustls settings for the sender and the sink (ring only).
//! - [`conn`]: one sender connection over proto's `Client`.
//! - [`send`]: the load generator (sessions, pacing, measurements).
//! - [`sink`]: the smart sink over proto's `Server`.
//! - [`cpu`]: CPU time of a process or of this tool's threads, from `/proc`.
//! - [`scenario`]: `run SCENARIO.toml`: sink, load, drain, report.
//! - [`report`]: the report (JSON) and its text summary.
//! - [`html`]: the self-contained HTML report with SVG charts.
//! - [`progress`]: progress bars while a run goes.
//! - [`plan`]: `plan`: the capacity model (measured costs, traffic profile,
//!   simulated cluster, nodes needed).
//! - [`file`]: the error an input file gives (which file, which field).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conn;
pub mod cpu;
pub mod file;
pub mod html;
pub mod mix;
pub mod plan;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod send;
pub mod seqlog;
pub mod sink;
pub mod tls;
