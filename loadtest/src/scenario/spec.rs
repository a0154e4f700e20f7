//! What a scenario file says: the `[load]`, `[sink]` and `[report]` tables
//! with their defaults, the checks made when a file is read, and the sender
//! and sink settings built from them. Nothing here opens a socket or starts a
//! thread. Relative paths are relative to the current directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::client::{ClientConfig, TlsPolicy};
use rustls::pki_types::ServerName;
use serde::Deserialize;

use super::ScenarioError;
use crate::conn::{ConnectSettings, Security};
use crate::mix::{parse_duration, MixError, ReplyMix, SizeMix};
use crate::send::{self, Limit, SendConfig};
use crate::sink::SinkConfig;
use crate::tls::{self, ClientTlsOptions, ServerTlsOptions};

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
    /// Resume TLS sessions across connections (tickets or ids), as Postfix
    /// does with its TLS session cache. Default false: every connection
    /// pays a full handshake.
    #[serde(default)]
    pub resume: bool,
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
        let text = crate::file::read(path)?;
        let mut s: Self = toml::from_str(&text).map_err(|e| crate::file::FileError::parse(path, e))?;
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
            resume: load.resume,
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
