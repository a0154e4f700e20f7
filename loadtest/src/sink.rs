//! The smart sink: an SMTP server on proto's [`Server`] state machine that
//! accepts everything up to the end of the content, then answers each
//! message from its [`ReplyMix`] (250, a chosen 4yz/5yz, a delay, or a
//! disconnect), records the message's sequence number in the received log,
//! and measures end-to-end latency from the `X-Estafette-Sent` stamp.
//!
//! Decisions are taken once the content is in, so the sink always knows
//! which message it refused: a 5yz there is a bounce the relay must report,
//! a 4yz a retry, a disconnect a message neither received nor acknowledged.
//! MAIL and RCPT are always accepted (AUTH, when configured, is checked).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use net::server::{Handler, ServerTls};
use proto::data::DataLimits;
use proto::server::{PeerInfo, Server, ServerConfig, ServerEvent, Verdict};
use proto::{EnhancedCode, Reply};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn::Security;
use crate::mix::{Outcome, ReplyMix};
use crate::send::{new_histogram, unix_ns};
use crate::seqlog::{find_stamp, LogWriter};

/// TLS handshake limit.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The sink's settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Where to listen (port 0: any free port, see [`Sink::local_addr`]).
    pub listen: SocketAddr,
    /// None, STARTTLS (offered, not required) or implicit TLS.
    pub security: Security,
    /// rustls settings, required unless `security` is `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How to answer each message.
    pub reply_mix: ReplyMix,
    /// Where to record every finished transaction.
    pub received_log: Option<PathBuf>,
    /// Require AUTH (PLAIN or LOGIN, over TLS) with these credentials.
    pub auth: Option<(String, String)>,
    /// Most concurrent sessions; more get `421` at once.
    pub max_sessions: usize,
    /// Largest message accepted, octets.
    pub max_message_size: usize,
    /// Random seed for the reply mix.
    pub seed: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            security: Security::None,
            tls: None,
            reply_mix: ReplyMix::accept_all(),
            received_log: None,
            auth: None,
            max_sessions: 10_000,
            max_message_size: 100_000_000,
            seed: 1,
        }
    }
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The listening socket could not be bound.
    #[error("listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The received log cannot be created.
    #[error("received log {path}: {cause}")]
    Log {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// TLS mode without TLS settings.
    #[error("TLS mode {0} needs a certificate")]
    NoTls(Security),
}

/// Counters updated while the sink runs.
#[derive(Debug, Default)]
pub struct SinkLive {
    /// Sessions accepted so far.
    pub sessions: AtomicU64,
    /// Transactions whose content arrived.
    pub messages: AtomicU64,
    /// Messages answered 250.
    pub received: AtomicU64,
    /// Messages answered 4yz.
    pub deferred: AtomicU64,
    /// Messages answered 5yz.
    pub bounced: AtomicU64,
    /// Messages dropped by disconnecting.
    pub dropped: AtomicU64,
    /// Messages without a sequence header (e.g. DSNs).
    pub unsequenced: AtomicU64,
    /// Connections closed at STARTTLS (`tlsdrop` in the reply mix).
    pub tls_dropped: AtomicU64,
    /// Octets of messages answered 250.
    pub bytes: AtomicU64,
}

#[derive(Debug)]
struct State {
    log: Option<LogWriter>,
    e2e: Histogram<u64>,
    /// 250s per second since the sink started.
    timeline: Vec<u64>,
    /// Recipients delivered (250) or bounced (5yz) per run id.
    completed: HashMap<u64, u64>,
    last_delivery: Option<Instant>,
}

struct Shared {
    config: SinkConfig,
    server: Arc<ServerConfig>,
    acceptor: Option<TlsAcceptor>,
    live: Arc<SinkLive>,
    state: Mutex<State>,
    started: Instant,
    sessions_seed: AtomicU64,
}

/// What the sink measured, for reports.
#[derive(Debug, Clone)]
pub struct SinkSnapshot {
    /// When the sink started.
    pub started: Instant,
    /// End-to-end latency (X-Estafette-Sent to content received), µs.
    pub e2e_latency: Histogram<u64>,
    /// 250s per second since `started`.
    pub timeline: Vec<u64>,
    /// When the last 250 was given.
    pub last_delivery: Option<Instant>,
}

/// A running sink. Dropping it without [`Sink::stop`] leaves the accept loop
/// running until the runtime ends.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// How often the received log reaches the file while the sink runs, so that
/// another process (a test waiting for delivery) can read it.
const LOG_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

async fn flush_log_periodically(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LOG_FLUSH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Ok(mut st) = shared.state.lock() {
            if let Some(log) = st.log.as_mut() {
                let _ = log.flush();
            }
        }
    }
}

impl Sink {
    /// Binds and starts accepting.
    ///
    /// # Errors
    /// Bind failure, uncreatable log, TLS mode without settings.
    pub async fn start(config: SinkConfig) -> Result<Self, SinkError> {
        let acceptor = match (config.security, &config.tls) {
            (Security::None, _) => None,
            (_, Some(tls)) => Some(TlsAcceptor::from(tls.clone())),
            (s, None) => return Err(SinkError::NoTls(s)),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|cause| SinkError::Bind {
                addr: config.listen,
                cause,
            })?;
        let addr = listener.local_addr().map_err(|cause| SinkError::Bind {
            addr: config.listen,
            cause,
        })?;
        let log = match &config.received_log {
            Some(p) => Some(LogWriter::create(p).map_err(|cause| SinkError::Log {
                path: p.display().to_string(),
                cause,
            })?),
            None => None,
        };
        let server = ServerConfig {
            hostname: "estafette-sink".into(),
            greeting: "ESMTP estafette-load sink".into(),
            data: DataLimits {
                max_message_size: config.max_message_size,
                ..DataLimits::default()
            },
            starttls: config.security == Security::Starttls,
            auth_mechanisms: if config.auth.is_some() {
                vec!["PLAIN".into(), "LOGIN".into()]
            } else {
                Vec::new()
            },
            require_auth: config.auth.is_some(),
            ..ServerConfig::default()
        };
        let shared = Arc::new(Shared {
            sessions_seed: AtomicU64::new(config.seed),
            config,
            server: Arc::new(server),
            acceptor,
            live: Arc::new(SinkLive::default()),
            state: Mutex::new(State {
                log,
                e2e: new_histogram(),
                timeline: Vec::new(),
                completed: HashMap::new(),
                last_delivery: None,
            }),
            started: Instant::now(),
        });
        let (tx, rx) = watch::channel(false);
        tokio::spawn(flush_log_periodically(shared.clone(), rx.clone()));
        let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(Self {
            addr,
            shared,
            shutdown: tx,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn live(&self) -> Arc<SinkLive> {
        self.shared.live.clone()
    }

    /// Recipients delivered (250) plus recipients bounced (5yz) for `run`:
    /// a drained queue reaches the sender's accepted recipients (duplicates
    /// count too; the verdict tells them apart).
    pub fn completed_rcpts(&self, run: u64) -> u64 {
        let Ok(st) = self.shared.state.lock() else { return 0 };
        st.completed.get(&run).copied().unwrap_or(0)
    }

    /// The measurements so far.
    pub fn snapshot(&self) -> SinkSnapshot {
        snapshot_of(&self.shared)
    }

    /// Stops accepting, closes open sessions (`421`), flushes the log.
    pub async fn stop(self) -> SinkSnapshot {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        if let Ok(mut st) = self.shared.state.lock() {
            if let Some(log) = st.log.as_mut() {
                let _ = log.flush();
            }
        }
        snapshot_of(&self.shared)
    }
}

fn snapshot_of(shared: &Shared) -> SinkSnapshot {
    let (e2e, timeline, last_delivery) = match shared.state.lock() {
        Ok(st) => (st.e2e.clone(), st.timeline.clone(), st.last_delivery),
        Err(_) => (new_histogram(), Vec::new(), None),
    };
    SinkSnapshot {
        started: shared.started,
        e2e_latency: e2e,
        timeline,
        last_delivery,
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let active = Arc::new(tokio::sync::Semaphore::new(shared.config.max_sessions));
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    shared.live.sessions.fetch_add(1, Ordering::Relaxed);
                    let permit = active.clone().try_acquire_owned().ok();
                    let s = shared.clone();
                    let rx = shutdown.clone();
                    sessions.spawn(async move {
                        serve(tcp, peer, s, rx, permit.is_some()).await;
                        drop(permit);
                    });
                }
                // Out of file descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            _ = shutdown.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.abort_all();
}

/// One session's answers to proto's events (net's drive loop calls them).
struct Session<'a> {
    rng: SmallRng,
    shared: &'a Shared,
}

async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    admitted: bool,
) {
    let remote = peer.to_string();
    if !admitted {
        let r = Reply::new(421, EnhancedCode::new(4, 7, 0), "too many sessions");
        let mut server = Server::new_refused(shared.server.clone(), PeerInfo { remote, tls: None }, &r);
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        let _ = tcp.write_all(&out).await;
        return;
    }
    let seed = shared.sessions_seed.fetch_add(1, Ordering::Relaxed);
    let mut session = Session {
        rng: SmallRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        shared: &shared,
    };
    let tls = ServerTls {
        acceptor: shared.acceptor.as_ref(),
        implicit: shared.config.security == Security::Implicit,
        handshake_timeout: HANDSHAKE_TIMEOUT,
    };
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    let _ = net::server::serve(tcp, shared.server.clone(), remote, tls, &mut session, stop).await;
}

impl Handler for Session<'_> {
    async fn on_event(&mut self, event: ServerEvent, server: &mut Server) -> ControlFlow<()> {
        let shared = self.shared;
        match event {
            ServerEvent::Hello { .. } | ServerEvent::Reset | ServerEvent::Refused(_) | ServerEvent::Closed(_) => {}
            ServerEvent::StartTls { .. } => {
                // Closed before the 220 goes out: the client's negotiation fails.
                if shared.config.reply_mix.drop_starttls(&mut self.rng) {
                    shared.live.tls_dropped.fetch_add(1, Ordering::Relaxed);
                    return ControlFlow::Break(());
                }
            }
            // The sink's ServerConfig leaves content_chunk at 0, so the whole
            // message comes in DataDone::body and no piece is ever sent.
            ServerEvent::Content(_) => {}
            ServerEvent::Mail(req) => server.answer_mail(req, Verdict::Accept),
            ServerEvent::Rcpt(req) => server.answer_rcpt(req, Verdict::Accept),
            ServerEvent::Auth(req) => {
                let ok = shared
                    .config
                    .auth
                    .as_ref()
                    .is_some_and(|(u, p)| *u == req.authcid && *p == req.password);
                let verdict = if ok {
                    Verdict::Accept
                } else {
                    Verdict::Reject(Reply::new(
                        535,
                        EnhancedCode::new(5, 7, 8),
                        "authentication credentials invalid",
                    ))
                };
                server.answer_auth(req, verdict);
            }
            ServerEvent::Message(mut done) => {
                let body = std::mem::take(&mut done.body);
                let rcpts = done.recipients.len() as u32;
                let outcome = shared.config.reply_mix.sample(&mut self.rng);
                let (code, reply) = match outcome {
                    Outcome::Accept => (250, None),
                    Outcome::Delay(d) => {
                        tokio::time::sleep(d).await;
                        (250, None)
                    }
                    Outcome::Reply(c) => {
                        let (class, text) = if c >= 500 {
                            (5, "rejected by the sink's reply mix")
                        } else {
                            (4, "deferred by the sink's reply mix")
                        };
                        (c, Some(Reply::new(c, EnhancedCode::new(class, 0, 0), text)))
                    }
                    Outcome::Disconnect => (0, Some(Reply::new(421, EnhancedCode::new(4, 4, 2), "dropped"))),
                };
                record(shared, &body, code, rcpts);
                match reply {
                    None => server.message_stored(done, Ok("sink")),
                    Some(r) => {
                        server.message_stored(done, Err(r));
                        if code == 0 {
                            // Drop the connection without the final reply.
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Counts one finished transaction and logs it.
fn record(shared: &Shared, body: &[u8], code: u16, rcpts: u32) {
    let live = &shared.live;
    live.messages.fetch_add(1, Ordering::Relaxed);
    match code {
        250 => {
            live.received.fetch_add(1, Ordering::Relaxed);
            live.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        400..=499 => {
            live.deferred.fetch_add(1, Ordering::Relaxed);
        }
        500..=599 => {
            live.bounced.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            live.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    let stamp = find_stamp(body);
    let Some(seq) = stamp.seq else {
        live.unsequenced.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let now = Instant::now();
    let now_ns = unix_ns();
    let Ok(mut st) = shared.state.lock() else { return };
    if let Some(log) = st.log.as_mut() {
        let _ = log.record(seq, code, rcpts);
    }
    if code == 250 || (500..600).contains(&code) {
        *st.completed.entry(seq.run).or_default() += u64::from(rcpts);
    }
    if code == 250 {
        if let Some(sent) = stamp.sent_ns {
            let _ = st.e2e.record((now_ns.saturating_sub(sent) / 1000).max(1));
        }
        let sec = now.saturating_duration_since(shared.started).as_secs() as usize;
        if st.timeline.len() <= sec {
            st.timeline.resize(sec + 1, 0);
        }
        st.timeline[sec] += 1;
        st.last_delivery = Some(now);
    }
}
