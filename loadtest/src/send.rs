//! The load generator: `sessions` concurrent SMTP sessions, each opening
//! connections and sending up to `per_connection` messages on each.
//!
//! Pacing: without a rate every session sends as fast as the target answers
//! (closed loop). With a rate, message `n` is due at `start + n / rate` over
//! all sessions. Closed loop with a rate measures acceptance latency from the
//! moment the message actually left; open loop measures it from the moment it
//! was due (corrects coordinated omission, as wrk2 does), so a target that
//! falls behind shows its queueing delay. Concurrency is capped by `sessions`
//! either way.
//!
//! Every message carries `X-Estafette-Seq` and `X-Estafette-Sent` (see
//! [`crate::seqlog`]) and ends up as one line in the send log.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use proto::address::{ForwardPath, ReversePath};
use proto::client::Outgoing;
use proto::params::{MailParams, RcptParams};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::conn::{Conn, ConnError, ConnectSettings, Sent};
use crate::mix::SizeMix;
use crate::seqlog::{write_stamp, LogWriter, Seq};

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this many messages.
    Messages(u64),
    /// After this long (messages due later are not sent).
    Duration(Duration),
}

/// What to send, how, and where.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Connection settings (address, TLS, AUTH, proto client).
    pub connect: Arc<ConnectSettings>,
    /// Concurrent sessions (each one connection at a time).
    pub sessions: usize,
    /// When to stop.
    pub limit: Limit,
    /// Total messages per second over all sessions; `None`: as fast as possible.
    pub rate: Option<f64>,
    /// Measure latency from the due time (needs `rate`).
    pub open_loop: bool,
    /// Message sizes (whole message, headers included).
    pub sizes: SizeMix,
    /// Recipients per message (`rcpt<i>@to_domain`).
    pub recipients: u32,
    /// Messages per connection; 0 keeps each connection until the end.
    pub per_connection: u32,
    /// MAIL FROM.
    pub from: String,
    /// Recipient domain.
    pub to_domain: String,
    /// Run id for the sequence numbers.
    pub run_id: u64,
    /// Send log path.
    pub send_log: Option<PathBuf>,
    /// A session gives up after this many connection failures in a row.
    pub max_connect_failures: u32,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The target's address does not resolve.
    #[error("target {target}: {reason}")]
    Resolve {
        /// As given.
        target: String,
        /// Why.
        reason: String,
    },
    /// The first connection failed: the target is down or refuses us.
    #[error("target {target} unusable: {cause}")]
    Unreachable {
        /// As given.
        target: String,
        /// The connection error.
        cause: ConnError,
    },
    /// An address in the config is not a valid mailbox.
    #[error("bad address {0:?}")]
    Address(String),
    /// The send log cannot be created.
    #[error("send log {path}: {cause}")]
    Log {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("{0}")]
    Config(String),
}

/// Resolves `host:port` to its first address.
///
/// # Errors
/// [`SendError::Resolve`].
pub fn resolve(target: &str) -> Result<SocketAddr, SendError> {
    let err = |reason: String| SendError::Resolve {
        target: target.to_string(),
        reason,
    };
    target
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

/// Counters updated while the run goes (progress bars, drain detection).
#[derive(Debug, Default)]
pub struct Live {
    /// Messages handed to a connection.
    pub started: AtomicU64,
    /// Messages the target accepted (2yz, at least one recipient).
    pub accepted: AtomicU64,
    /// Recipients the target accepted, over accepted messages.
    pub accepted_rcpts: AtomicU64,
    /// Messages refused with 4yz.
    pub temp_failed: AtomicU64,
    /// Messages refused with 5yz.
    pub perm_failed: AtomicU64,
    /// Messages whose fate is unknown (connection broke before the reply).
    pub unknown: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU64,
    /// Connection attempts that failed.
    pub connect_errors: AtomicU64,
    /// Message octets accepted.
    pub bytes_accepted: AtomicU64,
}

impl Live {
    /// Messages finished one way or another.
    pub fn finished(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
            + self.temp_failed.load(Ordering::Relaxed)
            + self.perm_failed.load(Ordering::Relaxed)
            + self.unknown.load(Ordering::Relaxed)
    }
}

/// Latency histograms in microseconds, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds that hdrhistogram accepts")
}

/// Everything the sender measured.
#[derive(Debug)]
pub struct SendResult {
    /// When the first session started.
    pub started: Instant,
    /// Wall-clock start, Unix ns (to align with the sink's timeline).
    pub started_unix_ns: u64,
    /// When the last message finished.
    pub finished: Instant,
    /// Acceptance latency (message handed to the connection, or due time in
    /// open loop, to the final reply), µs, accepted messages only.
    pub accept_latency: Histogram<u64>,
    /// Connection setup (TCP, greeting, EHLO, TLS, AUTH), µs.
    pub connect_latency: Histogram<u64>,
    /// Messages accepted in each second since `started`.
    pub timeline: Vec<u64>,
    /// The first distinct errors (at most 20), with counts.
    pub errors: Vec<(String, u64)>,
}

/// Hands out message numbers and due times.
struct Dispenser {
    next: AtomicU64,
    limit: Limit,
    rate: Option<f64>,
    start: Instant,
}

struct Ticket {
    n: u64,
    due: Option<Instant>,
}

impl Dispenser {
    fn exhausted(&self) -> bool {
        match self.limit {
            Limit::Messages(m) => self.next.load(Ordering::Relaxed) >= m,
            Limit::Duration(d) => self.start.elapsed() >= d,
        }
    }

    async fn take(&self) -> Option<Ticket> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let due = self.rate.map(|r| self.start + Duration::from_secs_f64(n as f64 / r));
        match self.limit {
            Limit::Messages(m) if n >= m => return None,
            Limit::Duration(d) => {
                let end = self.start + d;
                if due.is_some_and(|t| t >= end) || Instant::now() >= end {
                    return None;
                }
            }
            Limit::Messages(_) => {}
        }
        if let Some(t) = due {
            tokio::time::sleep_until(t.into()).await;
        }
        Some(Ticket { n, due })
    }
}

/// Collects distinct error texts.
#[derive(Default)]
struct Errors(Mutex<Vec<(String, u64)>>);

impl Errors {
    fn note(&self, e: &dyn std::fmt::Display) {
        let text = e.to_string();
        let Ok(mut v) = self.0.lock() else { return };
        if let Some(entry) = v.iter_mut().find(|(t, _)| *t == text) {
            entry.1 += 1;
        } else if v.len() < 20 {
            v.push((text, 1));
        }
    }
}

struct Shared {
    config: SendConfig,
    dispenser: Dispenser,
    live: Arc<Live>,
    log: Option<Mutex<LogWriter>>,
    errors: Errors,
    from: ReversePath,
    rcpts: Vec<(ForwardPath, RcptParams)>,
}

struct SessionResult {
    accept: Histogram<u64>,
    connect: Histogram<u64>,
    timeline: Vec<u64>,
    last: Option<Instant>,
}

/// Connections tried before a target counts as unusable: a connect that
/// fails or times out, or a session that fails otherwise, this many times...
const PROBES: u32 = 3;

/// ...and a session the target closes this many times: a sink with
/// `tlsdrop:30` closes that share of its sessions at STARTTLS on purpose,
/// so three in a row (2.7 % of runs) is no sign of an unusable target;
/// twelve in a row is 0.3¹² ≈ 5·10⁻⁷. A target that closes every session
/// still fails at once, after twelve quick tries.
const DROPPED_PROBES: u32 = 12;

/// Sends the load and returns the measurements. Checks first that one
/// connection can be opened, so an unreachable target is one clear error.
///
/// # Errors
/// Bad addresses, an unusable target, or an uncreatable send log. Failures
/// during the run are counted, not returned.
pub async fn run(config: SendConfig, live: Arc<Live>) -> Result<SendResult, SendError> {
    if config.sessions == 0 || config.sessions > 100_000 {
        return Err(SendError::Config("sessions must be 1..=100000".into()));
    }
    if config.recipients == 0 || config.recipients > 1000 {
        return Err(SendError::Config("recipients must be 1..=1000".into()));
    }
    if config.open_loop && config.rate.is_none() {
        return Err(SendError::Config("open loop needs a rate".into()));
    }
    if config.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(SendError::Config("rate must be a positive number".into()));
    }
    let from =
        ReversePath::parse(&format!("<{}>", config.from)).map_err(|_| SendError::Address(config.from.clone()))?;
    let rcpts = (0..config.recipients)
        .map(|i| {
            let a = format!("rcpt{i}@{}", config.to_domain);
            ForwardPath::parse(&format!("<{a}>"))
                .map(|p| (p, RcptParams::default()))
                .map_err(|_| SendError::Address(a))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A probe connection: fail fast with the reason. Up to PROBES tries, so that
    // a target that drops a share of its sessions on purpose (a sink with
    // `tlsdrop`, a relay at its session limit) is not judged unusable by one;
    // DROPPED_PROBES when it is the target that closed the session.
    let mut tries = 0;
    let probe = loop {
        tries += 1;
        match Conn::open(config.connect.clone()).await {
            Ok(c) => break c,
            Err(cause) => {
                let limit = if matches!(cause, ConnError::Lost(_)) {
                    DROPPED_PROBES
                } else {
                    PROBES
                };
                if tries >= limit {
                    return Err(SendError::Unreachable {
                        target: config.connect.addr.to_string(),
                        cause,
                    });
                }
            }
        }
    };
    probe.quit().await;
    let log = match &config.send_log {
        Some(p) => Some(Mutex::new(LogWriter::create(p).map_err(|cause| SendError::Log {
            path: p.display().to_string(),
            cause,
        })?)),
        None => None,
    };
    let started = Instant::now();
    let started_unix_ns = unix_ns();
    let shared = Arc::new(Shared {
        dispenser: Dispenser {
            next: AtomicU64::new(0),
            limit: config.limit,
            rate: config.rate,
            start: started,
        },
        config,
        live,
        log,
        errors: Errors::default(),
        from,
        rcpts,
    });
    let mut tasks = Vec::with_capacity(shared.config.sessions);
    for i in 0..shared.config.sessions {
        tasks.push(tokio::spawn(session(shared.clone(), i as u64)));
    }
    let mut accept = new_histogram();
    let mut connect = new_histogram();
    let mut timeline: Vec<u64> = Vec::new();
    let mut finished = started;
    for t in tasks {
        let Ok(r) = t.await else { continue };
        let _ = accept.add(&r.accept);
        let _ = connect.add(&r.connect);
        if timeline.len() < r.timeline.len() {
            timeline.resize(r.timeline.len(), 0);
        }
        for (a, b) in timeline.iter_mut().zip(&r.timeline) {
            *a += b;
        }
        if let Some(l) = r.last {
            finished = finished.max(l);
        }
    }
    if let Some(log) = &shared.log {
        if let Ok(mut l) = log.lock() {
            let _ = l.flush();
        }
    }
    let errors = shared.errors.0.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(SendResult {
        started,
        started_unix_ns,
        finished,
        accept_latency: accept,
        connect_latency: connect,
        timeline,
        errors,
    })
}

/// Unix time in nanoseconds (0 if the clock is before 1970).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// 76 printable characters and CRLF: the filler line.
const FILLER: &[u8] = b"The quick brown fox jumps over the lazy dog 0123456789 estafette load filler\r\n";

/// Builds a message of about `size` octets (at least the headers) ending in CRLF.
pub fn build_body(seq: Seq, sent_ns: u64, size: usize, from: &str, to: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 2);
    b.extend_from_slice(b"From: <");
    b.extend_from_slice(from.as_bytes());
    b.extend_from_slice(b">\r\nTo: <");
    b.extend_from_slice(to.as_bytes());
    b.extend_from_slice(b">\r\nSubject: estafette-load ");
    b.extend_from_slice(seq.to_string().as_bytes());
    b.extend_from_slice(b"\r\nMessage-ID: <");
    b.extend_from_slice(seq.to_string().as_bytes());
    b.extend_from_slice(b"@estafette-load>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n");
    write_stamp(&mut b, seq, sent_ns);
    b.extend_from_slice(b"\r\n");
    while b.len() + FILLER.len() <= size {
        b.extend_from_slice(FILLER);
    }
    let rest = size.saturating_sub(b.len());
    if rest >= 3 {
        b.extend_from_slice(&FILLER[..rest - 2]);
        b.extend_from_slice(b"\r\n");
    }
    b
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn session(shared: Arc<Shared>, index: u64) -> SessionResult {
    let cfg = &shared.config;
    let live = &shared.live;
    let mut rng = SmallRng::seed_from_u64(cfg.run_id ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut res = SessionResult {
        accept: new_histogram(),
        connect: new_histogram(),
        timeline: Vec::new(),
        last: None,
    };
    let to0 = format!("rcpt0@{}", cfg.to_domain);
    let mut failures = 0;
    'connections: while !shared.dispenser.exhausted() {
        let t0 = Instant::now();
        let mut conn = match Conn::open(cfg.connect.clone()).await {
            Ok(c) => c,
            Err(e) => {
                live.connect_errors.fetch_add(1, Ordering::Relaxed);
                shared.errors.note(&e);
                failures += 1;
                if failures >= cfg.max_connect_failures {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        failures = 0;
        let _ = res.connect.record(micros(t0.elapsed()));
        live.connections.fetch_add(1, Ordering::Relaxed);
        let mut on_conn = 0u32;
        while cfg.per_connection == 0 || on_conn < cfg.per_connection {
            let Some(ticket) = shared.dispenser.take().await else {
                conn.quit().await;
                break 'connections;
            };
            on_conn += 1;
            let seq = Seq {
                run: cfg.run_id,
                n: ticket.n,
            };
            let size = cfg.sizes.sample(&mut rng);
            let body = build_body(seq, unix_ns(), size, &cfg.from, &to0);
            let len = body.len() as u64;
            let msg = Outgoing {
                from: shared.from.clone(),
                params: MailParams::default(),
                recipients: shared.rcpts.clone(),
                body,
                streamed: None,
            };
            live.started.fetch_add(1, Ordering::Relaxed);
            let t1 = if cfg.open_loop {
                ticket.due.unwrap_or_else(Instant::now)
            } else {
                Instant::now()
            };
            let sent = conn.send(msg).await;
            let done = Instant::now();
            res.last = Some(done);
            let (code, count) = classify(&sent);
            match code {
                200..=299 if count > 0 => {
                    live.accepted.fetch_add(1, Ordering::Relaxed);
                    live.accepted_rcpts.fetch_add(u64::from(count), Ordering::Relaxed);
                    live.bytes_accepted.fetch_add(len, Ordering::Relaxed);
                    let _ = res.accept.record(micros(done.saturating_duration_since(t1)));
                    let sec = done.saturating_duration_since(shared.dispenser.start).as_secs() as usize;
                    if res.timeline.len() <= sec {
                        res.timeline.resize(sec + 1, 0);
                    }
                    res.timeline[sec] += 1;
                }
                400..=499 => {
                    live.temp_failed.fetch_add(1, Ordering::Relaxed);
                }
                500..=599 => {
                    live.perm_failed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    live.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Sent::Unknown(e) = &sent {
                shared.errors.note(e);
            }
            if let Some(log) = &shared.log {
                if let Ok(mut l) = log.lock() {
                    let _ = l.record(seq, code, count);
                }
            }
            if !conn.is_usable() {
                continue 'connections;
            }
        }
        conn.quit().await;
    }
    res
}

/// The deciding reply code and the number of accepted recipients (0 unless
/// the message was accepted); code 0 when the fate is unknown.
fn classify(sent: &Sent) -> (u16, u32) {
    match sent {
        Sent::Unknown(_) | Sent::Outcome { synthetic: true, .. } => (0, 0),
        Sent::Outcome { outcome, .. } => match &outcome.data {
            Some(r) if r.is_success() => (r.code, outcome.rcpts.iter().filter(|r| r.is_success()).count() as u32),
            _ => (outcome.recipient_reply(0).code, 0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seqlog::find_stamp;

    #[test]
    fn body_has_size_stamp_and_crlf_lines() {
        let seq = Seq { run: 5, n: 9 };
        for size in [10, 500, 1024, 10_240, 100_000] {
            let b = build_body(seq, 42, size, "a@b.test", "c@d.test");
            assert!(b.len() >= size.min(b.len()));
            assert!(b.len() <= size.max(400) + 2, "{size} -> {}", b.len());
            assert!(b.ends_with(b"\r\n"));
            let st = find_stamp(&b);
            assert_eq!(st.seq, Some(seq));
            assert_eq!(st.sent_ns, Some(42));
            assert!(b.split(|&c| c == b'\n').all(|l| l.len() < 1000));
        }
    }
}
