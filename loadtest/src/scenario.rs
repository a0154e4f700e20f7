//! Scenarios: `run SCENARIO.toml` starts the sink, drives the load at the
//! target, waits until the target's queue has drained into the sink (every
//! accepted recipient delivered or bounced, or the drain timeout), then
//! verifies the logs and writes the report. `send` on the command line is the
//! same run without a sink. See `loadtest/scenario.example.toml` for every
//! field and default.
//!
//! # Layout
//! - `spec`: what a scenario file says (the `[load]`, `[sink]` and `[report]`
//!   tables, their defaults and checks) and the sender and sink settings made
//!   from it.
//! - `run`: running one (runtimes, load, drain, CPU accounting, report).

mod run;
mod spec;

pub use run::{new_run_id, run};
pub use spec::{send_config, sink_config, LoadSpec, ReportSpec, Scenario, SinkSpec};

use crate::cpu;
use crate::mix::MixError;
use crate::send::SendError;
use crate::seqlog::LogError;
use crate::sink::SinkError;
use crate::tls::TlsError;

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read, or is not a valid scenario (TOML of the
    /// expected shape).
    #[error(transparent)]
    File(#[from] crate::file::FileError),
    /// A field has a bad value.
    #[error("{field}: {cause}")]
    Mix {
        /// The field.
        field: &'static str,
        /// Why.
        cause: MixError,
    },
    /// A field has a bad value.
    #[error("{0}")]
    Invalid(String),
    /// TLS settings.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The load.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The logs could not be verified.
    #[error(transparent)]
    Log(#[from] LogError),
    /// CPU accounting (a target pid that does not exist).
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    /// The runtime or the report.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
