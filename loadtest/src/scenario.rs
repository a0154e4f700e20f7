//! `run SCENARIO.toml`: start the sink, drive the load at the target, wait
//! until the target's queue has drained into the sink (every accepted
//! recipient delivered or bounced, or the drain timeout), then verify the logs
//! and write the report. `send` on the command line is the same run without a
//! sink. See `loadtest/scenario.example.toml` for every field and default.
//!
//! Threads: the sink and the load generator run on separate tokio runtimes
//! whose threads are named `sink-*` and `send-*`, so the report can give
//! each one's CPU per message. Relative paths are relative to the current
//! directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::client::{ClientConfig, TlsPolicy};
use rustls::pki_types::ServerName;
use serde::Deserialize;

use crate::conn::{ConnectSettings, Security};
use crate::cpu;
use crate::mix::{parse_duration, MixError, ReplyMix, SizeMix};
use crate::progress::Progress;
use crate::report::{curve, timeline, Counts, Cpu, Delivery, Latency, Report, Setup};
use crate::send::{self, Limit, Live, SendConfig, SendError};
use crate::seqlog::{read_log, verify, LogError};
use crate::sink::{Sink, SinkConfig, SinkError};
use crate::tls::{self, ClientTlsOptions, ServerTlsOptions, TlsError};

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("{path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's explanation (line, column, field).
        message: String,
    },
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

fn default_sessions() -> usize {
    20
}
fn default_size() -> String {
    "1k".into()
}
fn default_one() -> u32 {
    1
}
fn default_per_connection() -> u32 {
    100
}
fn default_true() -> bool {
    true
}
fn default_from() -> String {
    "load@estafette-load.test".into()
}
fn default_to_domain() -> String {
    "sink.test".into()
}
fn default_ehlo() -> String {
    "estafette-load.test".into()
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_listen() -> String {
    "127.0.0.1:0".into()
}
fn default_drain() -> String {
    "120s".into()
}
fn default_security() -> Security {
    Security::None
}

/// The load: what the sender does. Field names match the `send` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Concurrent sessions. Default 20.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Messages to send (default 10 000 when `duration` is not set either).
    pub messages: Option<u64>,
    /// Or: how long to send (`"30s"`).
    pub duration: Option<String>,
    /// Messages per second over all sessions; unset: as fast as possible.
    pub rate: Option<f64>,
    /// Latency from the due time rather than the send time (needs `rate`).
    #[serde(default)]
    pub open_loop: bool,
    /// Size or size mix (`"10k"`, `"1k:50,10k:40,1m:10"`). Default `"1k"`.
    #[serde(default = "default_size")]
    pub size: String,
    /// Recipients per message. Default 1.
    #[serde(default = "default_one")]
    pub recipients: u32,
    /// Messages per connection, 0 = unlimited. Default 100.
    #[serde(default = "default_per_connection")]
    pub per_connection: u32,
    /// `none`, `starttls` or `implicit`. Default `none`.
    #[serde(default = "default_security")]
    pub tls: Security,
    /// Trust anchors for the target's certificate (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Accept any target certificate (benchmarks).
    #[serde(default)]
    pub insecure: bool,
    /// Name for SNI and certificate checks; default: the target's host.
    pub tls_name: Option<String>,
    /// Client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client certificate key (PEM).
    pub client_key: Option<PathBuf>,
    /// AUTH PLAIN as `user:password`.
    pub auth: Option<String>,
    /// Use PIPELINING when offered. Default true.
    #[serde(default = "default_true")]
    pub pipelining: bool,
    /// Use BDAT when CHUNKING is offered. Default true.
    #[serde(default = "default_true")]
    pub chunking: bool,
    /// MAIL FROM. Default `load@estafette-load.test`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Recipient domain (`rcpt<i>@<domain>`). Default `sink.test`.
    #[serde(default = "default_to_domain")]
    pub to_domain: String,
    /// EHLO name. Default `estafette-load.test`.
    #[serde(default = "default_ehlo")]
    pub ehlo: String,
    /// Connect/TLS/AUTH timeout. Default `"30s"`.
    #[serde(default = "default_timeout")]
    pub connect_timeout: String,
    /// Wait for each reply at most this long. Default `"30s"`.
    #[serde(default = "default_timeout")]
    pub reply_timeout: String,
    /// Load generator threads; default: one per core.
    pub threads: Option<usize>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        // An empty table gives every default.
        toml::from_str("").unwrap_or_else(|_| unreachable!("LoadSpec defaults"))
    }
}

/// The sink: where the target delivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Run a sink. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Listen address; the target must deliver there. Default `127.0.0.1:0`
    /// (any port: only useful when the sink is itself the target).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `none`, `starttls` or `implicit`. Default `none`.
    #[serde(default = "default_security")]
    pub tls: Security,
    /// Certificate chain (PEM); default: self-signed at start.
    pub cert: Option<PathBuf>,
    /// Its key (PEM).
    pub key: Option<PathBuf>,
    /// Require client certificates from this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// Reply mix (`"451:2,550:1,delay=100ms:5,disconnect:1"`). Default: all 250.
    #[serde(default)]
    pub reply_mix: String,
    /// Require AUTH `user:password`.
    pub auth: Option<String>,
    /// Sink threads; default: one per core.
    pub threads: Option<usize>,
}

impl Default for SinkSpec {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("SinkSpec defaults"))
    }
}

/// Where and how to report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Directory for `report.json`, `report.html`, `send.log`, `received.log`.
    pub dir: Option<PathBuf>,
    /// How long to wait after the load for the queue to drain. Default `"120s"`.
    #[serde(default = "default_drain")]
    pub drain_timeout: String,
    /// Send log path; default `<dir>/send.log` (none without `dir`).
    pub send_log: Option<PathBuf>,
    /// Received log path; default `<dir>/received.log` (none without `dir`).
    pub received_log: Option<PathBuf>,
}

impl Default for ReportSpec {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("ReportSpec defaults"))
    }
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name in the report. Default: the file name.
    pub name: Option<String>,
    /// The relay under test (`host:port`); unset: the sink itself (measures
    /// this tool).
    pub target: Option<String>,
    /// The target's pid, for its CPU per message (that process and all its
    /// descendants: a Postfix master pid covers smtpd, cleanup, qmgr, smtp).
    pub target_pid: Option<u32>,
    /// Or a file holding it.
    pub target_pidfile: Option<PathBuf>,
    /// The load.
    #[serde(default)]
    pub load: LoadSpec,
    /// The sink.
    #[serde(default)]
    pub sink: SinkSpec,
    /// The report.
    #[serde(default)]
    pub report: ReportSpec,
}

impl Scenario {
    /// Reads and checks a scenario file (syntax, unknown fields, value formats).
    ///
    /// # Errors
    /// Unreadable file, bad TOML, unknown field or bad value.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read {
            path: name.clone(),
            cause,
        })?;
        let mut s: Self = toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: name,
            message: e.to_string(),
        })?;
        if s.name.is_none() {
            s.name = path.file_stem().map(|n| n.to_string_lossy().into_owned());
        }
        s.check()?;
        Ok(s)
    }

    /// Checks the values that parse lazily (sizes, mixes, durations).
    ///
    /// # Errors
    /// The first bad value.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let mix = |field, r: Result<(), MixError>| r.map_err(|cause| ScenarioError::Mix { field, cause });
        mix("load.size", SizeMix::parse(&self.load.size).map(|_| ()))?;
        mix("sink.reply_mix", ReplyMix::parse(&self.sink.reply_mix).map(|_| ()))?;
        if let Some(d) = &self.load.duration {
            mix("load.duration", parse_duration(d).map(|_| ()))?;
        }
        mix(
            "load.connect_timeout",
            parse_duration(&self.load.connect_timeout).map(|_| ()),
        )?;
        mix(
            "load.reply_timeout",
            parse_duration(&self.load.reply_timeout).map(|_| ()),
        )?;
        mix(
            "report.drain_timeout",
            parse_duration(&self.report.drain_timeout).map(|_| ()),
        )?;
        if self.load.messages.is_some() && self.load.duration.is_some() {
            return Err(ScenarioError::Invalid(
                "load: give messages or duration, not both".into(),
            ));
        }
        if self.target.is_none() && !self.sink.enabled {
            return Err(ScenarioError::Invalid(
                "no target and no sink: nothing to send to".into(),
            ));
        }
        if self.load.client_cert.is_some() != self.load.client_key.is_some() {
            return Err(ScenarioError::Invalid(
                "load: client_cert and client_key go together".into(),
            ));
        }
        if self.sink.cert.is_some() != self.sink.key.is_some() {
            return Err(ScenarioError::Invalid("sink: cert and key go together".into()));
        }
        Ok(())
    }
}

fn credentials(field: &str, s: &Option<String>) -> Result<Option<(String, String)>, ScenarioError> {
    match s {
        None => Ok(None),
        Some(s) => s
            .split_once(':')
            .map(|(u, p)| Some((u.to_string(), p.to_string())))
            .ok_or_else(|| ScenarioError::Invalid(format!("{field}: expected user:password"))),
    }
}

fn runtime(name: &'static str, threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let n = threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2)
        .max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .thread_name(name)
        .enable_all()
        .build()
}

/// The sender settings for `target`.
///
/// # Errors
/// Bad values or unreadable TLS files.
pub fn send_config(
    load: &LoadSpec,
    target: &str,
    run_id: u64,
    send_log: Option<PathBuf>,
) -> Result<SendConfig, ScenarioError> {
    let addr = send::resolve(target)?;
    let mixerr = |field, cause| ScenarioError::Mix { field, cause };
    let sizes = SizeMix::parse(&load.size).map_err(|e| mixerr("load.size", e))?;
    let limit = match (&load.messages, &load.duration) {
        (_, Some(d)) => Limit::Duration(parse_duration(d).map_err(|e| mixerr("load.duration", e))?),
        (Some(n), None) => Limit::Messages(*n),
        (None, None) => Limit::Messages(10_000),
    };
    let connect_timeout = parse_duration(&load.connect_timeout).map_err(|e| mixerr("load.connect_timeout", e))?;
    let reply = parse_duration(&load.reply_timeout).map_err(|e| mixerr("load.reply_timeout", e))?;
    let tls = match load.tls {
        Security::None => None,
        _ => Some(tls::client_config(&ClientTlsOptions {
            ca: load.tls_ca.clone(),
            insecure: load.insecure,
            client_cert: load.client_cert.clone().zip(load.client_key.clone()),
        })?),
    };
    let host = load.tls_name.clone().unwrap_or_else(|| {
        target
            .rsplit_once(':')
            .map_or(target, |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string()
    });
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| ScenarioError::Invalid(format!("load.tls_name: bad server name {host:?}")))?;
    let mut client = ClientConfig {
        hostname: load.ehlo.clone(),
        tls: match load.tls {
            Security::Starttls => TlsPolicy::Required,
            Security::None | Security::Implicit => TlsPolicy::Never,
        },
        chunking: load.chunking,
        pipelining: load.pipelining,
        ..ClientConfig::default()
    };
    let t = &mut client.timeouts;
    (t.greeting, t.command, t.mail, t.rcpt, t.data_command, t.data_end) = (reply, reply, reply, reply, reply, reply);
    Ok(SendConfig {
        connect: Arc::new(ConnectSettings {
            addr,
            security: load.tls,
            tls,
            server_name,
            client: Arc::new(client),
            connect_timeout,
            auth: credentials("load.auth", &load.auth)?,
        }),
        sessions: load.sessions,
        limit,
        rate: load.rate,
        open_loop: load.open_loop,
        sizes,
        recipients: load.recipients,
        per_connection: load.per_connection,
        from: load.from.clone(),
        to_domain: load.to_domain.clone(),
        run_id,
        send_log,
        max_connect_failures: 50,
    })
}

/// The sink settings.
///
/// # Errors
/// Bad values or unreadable TLS files.
pub fn sink_config(spec: &SinkSpec, received_log: Option<PathBuf>, seed: u64) -> Result<SinkConfig, ScenarioError> {
    let listen: SocketAddr = spec
        .listen
        .parse()
        .map_err(|_| ScenarioError::Invalid(format!("sink.listen: not an address: {:?}", spec.listen)))?;
    let tls = match spec.tls {
        Security::None => None,
        _ => Some(tls::server_config(&ServerTlsOptions {
            cert: spec.cert.clone().zip(spec.key.clone()),
            client_ca: spec.client_ca.clone(),
        })?),
    };
    Ok(SinkConfig {
        listen,
        security: spec.tls,
        tls,
        reply_mix: ReplyMix::parse(&spec.reply_mix).map_err(|cause| ScenarioError::Mix {
            field: "sink.reply_mix",
            cause,
        })?,
        received_log,
        auth: credentials("sink.auth", &spec.auth)?,
        seed,
        ..SinkConfig::default()
    })
}

/// A run id: the clock's nanoseconds mixed with the pid (unique enough to
/// tell runs apart in one sink log).
pub fn new_run_id() -> u64 {
    let t = send::unix_ns();
    (t ^ (u64::from(std::process::id()) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn target_pid(s: &Scenario) -> Result<Option<u32>, ScenarioError> {
    if let Some(p) = s.target_pid {
        return Ok(Some(p));
    }
    match &s.target_pidfile {
        None => Ok(None),
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|cause| ScenarioError::Read {
                path: f.display().to_string(),
                cause,
            })?;
            text.trim()
                .parse()
                .map(Some)
                .map_err(|_| ScenarioError::Invalid(format!("{}: not a pid", f.display())))
        }
    }
}

/// Runs a scenario to its end and returns the report (also written to
/// `report.dir` when set). `quiet` hides the progress bars.
///
/// # Errors
/// Bad settings, a sink that cannot listen, a target that cannot be reached
/// at the start. Failures during the run are counted in the report.
pub fn run(s: &Scenario, quiet: bool) -> Result<Report, ScenarioError> {
    s.check()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let run_id = new_run_id();
    let dir = s.report.dir.clone();
    if let Some(d) = &dir {
        std::fs::create_dir_all(d)?;
    }
    let send_log = s
        .report
        .send_log
        .clone()
        .or_else(|| dir.as_ref().map(|d| d.join("send.log")));
    let received_log = s
        .report
        .received_log
        .clone()
        .or_else(|| dir.as_ref().map(|d| d.join("received.log")));
    let drain_timeout = parse_duration(&s.report.drain_timeout).map_err(|cause| ScenarioError::Mix {
        field: "report.drain_timeout",
        cause,
    })?;
    let pid = target_pid(s)?;

    let sink_rt = if s.sink.enabled {
        Some(runtime("sink-worker", s.sink.threads)?)
    } else {
        None
    };
    let sink = match &sink_rt {
        Some(rt) => Some(rt.block_on(Sink::start(sink_config(&s.sink, received_log.clone(), run_id)?))?),
        None => None,
    };
    let target = match (&s.target, &sink) {
        (Some(t), _) => t.clone(),
        (None, Some(k)) => k.local_addr().to_string(),
        (None, None) => return Err(ScenarioError::Invalid("no target".into())),
    };
    let config = send_config(&s.load, &target, run_id, send_log.clone())?;
    let send_rt = runtime("send-worker", s.load.threads)?;
    let live = Arc::new(Live::default());
    let total = match config.limit {
        Limit::Messages(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let progress = Progress::start(Some(live.clone()), sink.as_ref().map(Sink::live), total, quiet);

    let target_cpu0 = pid.map(cpu::tree_cpu).transpose()?;
    let machine0 = cpu::machine_cpu()?;
    let tool0 = cpu::self_cpu()?;
    let load0 = cpu::threads_cpu("send-")?;
    let sink0 = cpu::threads_cpu("sink-")?;

    let setup = Setup {
        target: target.clone(),
        tls: s.load.tls.to_string(),
        sessions: s.load.sessions,
        messages: match config.limit {
            Limit::Messages(n) => Some(n),
            Limit::Duration(_) => None,
        },
        duration_s: match config.limit {
            Limit::Duration(d) => Some(d.as_secs_f64()),
            Limit::Messages(_) => None,
        },
        sizes: s.load.size.clone(),
        recipients: s.load.recipients,
        per_connection: s.load.per_connection,
        rate: s.load.rate,
        open_loop: s.load.open_loop,
        pipelining: s.load.pipelining,
        reply_mix: sink.as_ref().map(|_| s.sink.reply_mix.clone()),
    };
    let result = send_rt.block_on(send::run(config, live.clone()));
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            return Err(e.into());
        }
    };
    let load1 = cpu::threads_cpu("send-")?;

    // Drain: every accepted recipient delivered or bounced at the sink.
    let mut drained = None;
    if let Some(k) = &sink {
        let want = live.accepted_rcpts.load(Ordering::Relaxed);
        let deadline = Instant::now() + drain_timeout;
        loop {
            if k.completed_rcpts(run_id) >= want {
                drained = Some(true);
                break;
            }
            if Instant::now() >= deadline {
                drained = Some(false);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let target_cpu1 = pid.map(cpu::tree_cpu).transpose()?;
    let machine1 = cpu::machine_cpu()?;
    let tool1 = cpu::self_cpu()?;
    let sink1 = cpu::threads_cpu("sink-")?;
    progress.finish();

    let sink_live = sink.as_ref().map(Sink::live);
    let snapshot = match (sink, &sink_rt) {
        (Some(k), Some(rt)) => Some(rt.block_on(k.stop())),
        _ => None,
    };
    drop(send_rt);
    drop(sink_rt);

    let accepted = live.accepted.load(Ordering::Relaxed);
    let counts = Counts {
        sent: live.started.load(Ordering::Relaxed),
        accepted,
        temp_failed: live.temp_failed.load(Ordering::Relaxed),
        perm_failed: live.perm_failed.load(Ordering::Relaxed),
        unknown: live.unknown.load(Ordering::Relaxed),
        connections: live.connections.load(Ordering::Relaxed),
        connect_errors: live.connect_errors.load(Ordering::Relaxed),
    };
    let inject_seconds = result.finished.duration_since(result.started).as_secs_f64().max(1e-6);
    let bytes = live.bytes_accepted.load(Ordering::Relaxed) as f64;
    let verdict = match (&send_log, &received_log, &snapshot) {
        (Some(sl), Some(rl), Some(_)) => Some(verify(&read_log(sl)?, &read_log(rl)?)),
        _ => None,
    };
    let (delivery, e2e_latency, e2e_curve, sink_timeline, offset, sink_cpu) = match (&snapshot, &sink_live) {
        (Some(snap), Some(kl)) => {
            let received = kl.received.load(Ordering::Relaxed);
            let delivered = verdict.as_ref().map_or(received, |v| v.delivered + v.bounced);
            let end = snap.last_delivery.unwrap_or(result.finished).max(result.finished);
            let seconds = end.duration_since(result.started).as_secs_f64().max(1e-6);
            let offset = result.started.saturating_duration_since(snap.started).as_secs();
            (
                Some(Delivery {
                    delivered,
                    seconds,
                    msg_per_s: delivered as f64 / seconds,
                    bytes_per_s: kl.bytes.load(Ordering::Relaxed) as f64 / seconds,
                }),
                Some(Latency::of(&snap.e2e_latency)),
                curve(&snap.e2e_latency),
                snap.timeline.clone(),
                offset,
                Some(Cpu::new(sink1.saturating_sub(sink0), received)),
            )
        }
        _ => (None, None, Vec::new(), Vec::new(), 0, None),
    };
    let report = Report {
        name: s.name.clone().unwrap_or_else(|| "estafette-load".into()),
        generated_unix: send::unix_ns() / 1_000_000_000,
        setup,
        counts,
        inject_seconds,
        inject_msg_per_s: accepted as f64 / inject_seconds,
        inject_bytes_per_s: bytes / inject_seconds,
        delivery,
        accept_latency: Latency::of(&result.accept_latency),
        connect_latency: Latency::of(&result.connect_latency),
        e2e_latency,
        accept_curve: curve(&result.accept_latency),
        e2e_curve,
        target_cpu: target_cpu0
            .zip(target_cpu1)
            .map(|(a, b)| Cpu::new(b.saturating_sub(a), accepted)),
        tool_cpu: Cpu::new(tool1.saturating_sub(tool0), accepted),
        machine_cpu: Cpu::new(machine1.saturating_sub(machine0), accepted),
        load_cpu: Some(Cpu::new(load1.saturating_sub(load0), accepted)),
        sink_cpu,
        timeline: timeline(&result.timeline, &sink_timeline, offset),
        verdict,
        drained,
        errors: result.errors,
    };
    if let Some(d) = &dir {
        report.write(d)?;
    }
    Ok(report)
}
