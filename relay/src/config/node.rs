//! `[node]` (identity, spool, postmaster) and `[tls]` (the server's PEM files).

use std::path::PathBuf;

use serde::Deserialize;

/// Identity and storage of this node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// Node number in the cluster, part of every message id (0..=65535).
    /// Default: this node's `[[cluster.member]]` id, else 0.
    #[serde(default)]
    pub node_id: u16,
    /// Directory of the RocksDB spool.
    pub spool: PathBuf,
    /// Longest time a session waits for the spool to confirm a message before
    /// answering `451 4.3.0` (seconds). Default 30.
    #[serde(default = "default_accept_timeout")]
    pub accept_timeout_secs: u64,
    /// AUTH accounts and client-certificate identities with the senders each
    /// may use (see `relay::inbound::identity`). Optional: without it no AUTH
    /// is offered and no sender restriction applies.
    #[serde(default)]
    pub identities: Option<PathBuf>,
    /// Where mail to the reserved mailbox `postmaster` goes: `RCPT
    /// TO:<postmaster>` (any case, no domain) and `postmaster@` this node's
    /// hostname are accepted and delivered to this address (RFC 5321 §4.5.1:
    /// a relaying server MUST accept them). Without it they are refused with
    /// `550 5.1.1`, and `estafette config check` warns.
    #[serde(default)]
    pub postmaster: Option<String>,
    /// Days the trace of a message (accepted, each attempt, DSNs, removal)
    /// is kept for audit, in the spool's event column family; older events
    /// are deleted hourly. Default 400 (an audit year and some).
    #[serde(default = "default_trace_retention_days")]
    pub trace_retention_days: u32,
    /// Seconds between two sweeps of expired trace events. Default 3600.
    #[serde(default = "default_trace_sweep_secs")]
    pub trace_sweep_secs: u64,
    /// Most AUTH password checks (argon2, slow on purpose) running at once;
    /// more wait their turn (never refused). Default: the number of cores.
    #[serde(default = "default_auth_checks")]
    pub max_auth_checks: usize,
    /// A spool write unfinished after this many seconds (a stalled disk)
    /// makes the node refuse new mail at MAIL FROM (`451 4.3.0`) and answer
    /// `/readyz` 503 until it finishes. 0: never. Default 5.
    #[serde(default = "default_spool_stall_secs")]
    pub spool_stall_secs: u64,
    /// Most trace events and monthly counter updates waiting for the spool's
    /// writer; beyond it they are dropped and counted
    /// (`estafette_spool_detached_dropped_total`). Default 100,000.
    #[serde(default = "default_spool_max_detached")]
    pub spool_max_detached_writes: usize,
    /// Free space (MB) kept on the spool's volume: below it new mail gets
    /// `452 4.3.1` at MAIL FROM (and `/readyz` 503) while deliveries go on
    /// and free it (Postfix's `queue_minfree`). 0: none. Default 64.
    #[serde(default = "default_spool_min_free_mb")]
    pub spool_min_free_mb: u64,
}

fn default_spool_min_free_mb() -> u64 {
    64
}

fn default_spool_max_detached() -> usize {
    100_000
}

fn default_spool_stall_secs() -> u64 {
    5
}

fn default_trace_retention_days() -> u32 {
    400
}

fn default_trace_sweep_secs() -> u64 {
    3600
}

fn default_auth_checks() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn default_accept_timeout() -> u64 {
    30
}

/// PEM files for TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Server certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. Required
    /// when a listener asks for client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for renewal (seconds);
    /// a changed pair is served without restart. Default 60.
    #[serde(default = "default_reload")]
    pub reload_secs: u64,
}

fn default_reload() -> u64 {
    60
}
