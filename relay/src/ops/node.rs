//! Starting and stopping a node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::admin::{self, Admin};
use super::build::{build_policy, build_queue, build_throttle, dns_resolver, server_config};
use super::reload::{ReloadReport, Reloader};
use crate::cluster::{Cluster, Handover};
use crate::config::{Config, TlsMode};
use crate::inbound::fairness::Fairness;
use crate::inbound::listener;
use crate::inbound::operator::PeerCheck;
use crate::inbound::tls;
use crate::inbound::ListenerCtx;
use crate::lifecycle::{Lifecycle, Phase, PhaseWatch};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::trust::TrustStore;

/// A reload asked on the admin API; the answer goes back to the caller.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<ReloadReport, String>>;

/// A drain asked on the admin API; its outcome goes back to the caller.
pub type DrainReply = tokio::sync::oneshot::Sender<DrainOutcome>;

/// What the admin API asks of the node's owner.
pub enum Request {
    /// Drain and exit (`estafette drain`); the outcome goes back to the
    /// caller when it waits for it.
    Drain(DrainReply),
    /// Read the configuration file again and reload it; answer the caller.
    Reload(ReloadRequest),
    /// The spool is stuck read-only ([`storage::Spool::stuck`]): shut down
    /// and exit non-zero, so that the supervisor (Kubernetes, systemd)
    /// starts the node again and the spool is reopened.
    Restart,
}

/// What a drain did: `POST /api/drain?wait=true` answers it, and
/// `estafette drain` prints it (exit status 3 when mail stays here).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DrainOutcome {
    /// The node is in a cluster: its queue was to be handed over.
    pub cluster: bool,
    /// Every message this node was to deliver is with a peer that delivers
    /// it now: nothing is left on this node's volume to wait for it.
    pub handed_over: bool,
    /// Messages no peer held a copy of, committed again with new copies
    /// before the hand-off.
    pub copied_again: usize,
    /// Messages still to be delivered by this node (on its volume until it
    /// starts again); `None` for a single node or when the cluster driver
    /// was not running.
    pub left: Option<u64>,
    /// How long the drain took, in seconds.
    pub secs: f64,
}

/// A running node. Dropping it without [`Node::shutdown`] aborts its tasks.
pub struct Node {
    /// `(listener name, bound address)`, in config order (port 0 resolved).
    pub addrs: Vec<(String, SocketAddr)>,
    /// The spool (tests and admin commands read it).
    pub spool: storage::Spool,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    admin_addr: Option<SocketAddr>,
    lifecycle: Lifecycle,
    /// `POST /api/drain` requests.
    drain_rx: tokio::sync::mpsc::Receiver<DrainReply>,
    /// `cluster.drain_deadline_secs` (read at start).
    drain_deadline: Duration,
    /// `POST /api/reload` requests, answered by the node's owner.
    reload_rx: tokio::sync::mpsc::Receiver<ReloadRequest>,
    reloader: Reloader,
    /// Listener tasks (each waits for its sessions): done once drained.
    listeners: JoinSet<()>,
    tasks: JoinSet<()>,
    _spool_guard: storage::SpoolDropGuard,
}

impl Node {
    /// Opens the spool, binds every listener and starts accepting.
    ///
    /// # Errors
    /// Spool, TLS files or bind failures, with the file or address at fault.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new(config.listeners.iter().map(|l| l.name.clone())));
        let spool_config = storage::SpoolConfig {
            path: config.node.spool.clone(),
            node_id: config.node.node_id,
            observer: Some(metrics.commit_observer()),
            stall_after: Duration::from_secs(config.node.spool_stall_secs),
            max_detached_writes: config.node.spool_max_detached_writes,
            min_free_bytes: config.node.spool_min_free_mb << 20,
            ..storage::SpoolConfig::default()
        };
        let (spool, guard) = storage::Spool::open(spool_config)
            .with_context(|| format!("opening spool {}", config.node.spool.display()))?;
        let lifecycle = Lifecycle::new();
        let (drain_tx, drain_rx) = tokio::sync::mpsc::channel(1);
        let drain_deadline = Duration::from_secs(config.cluster.as_ref().map_or(60, |c| c.drain_deadline_secs));
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        let mut slots = Vec::new();
        let rx = lifecycle.watch();
        let mut tasks = JoinSet::new();
        let mut listeners = JoinSet::new();
        let trust = match &config.trust {
            Some(t) => {
                let store = Arc::new(TrustStore::load(t.list.clone()).await.context("trust list")?);
                let refresher = store.clone().spawn_refresher(rx.clone());
                tasks.spawn(async move {
                    let _ = refresher.await;
                });
                Some(store)
            }
            None => None,
        };
        let trust_store = trust.clone().zip(config.trust.as_ref().map(|t| t.outside));
        let (policy, offer_auth) = build_policy(&config, trust.clone())?;
        let policy = Arc::new(policy);
        let (cluster, handed) = match &config.cluster {
            Some(c) => {
                let resolver = match &c.discover {
                    Some(_) => Some(dns_resolver(&config.outbound).context("cluster.discover")?),
                    None => None,
                };
                let (cluster, handed) = Cluster::start(c, spool.clone(), resolver).await.context("cluster")?;
                (Some(cluster), Some(handed))
            }
            None => (None, None),
        };
        let queue = Arc::new(
            build_queue(&config, spool.clone(), trust_store)?
                .with_metrics(metrics.clone())
                .with_cluster(cluster.clone()),
        );
        queue.set_throttle(build_throttle(&config));
        // Messages the cluster gives this node to deliver (taken over, given back).
        if let Some(mut handed) = handed {
            // Detached: it ends with the cluster's driver, after the node.
            let queue = Arc::downgrade(&queue);
            tokio::spawn(async move {
                while let Some(handover) = handed.recv().await {
                    let Some(queue) = queue.upgrade() else { return };
                    match handover {
                        Handover::Deliver(id) => queue.submit(id),
                        Handover::TakenOver(id) => queue.taken_over(id),
                    }
                }
            });
        }
        tasks.spawn(queue.clone().run(rx.clone()));
        let recopy_every = Duration::from_secs(config.cluster.as_ref().map_or(5, |c| c.recopy_interval_secs));
        tasks.spawn(queue.clone().retry_copies(rx.clone(), recopy_every));
        tasks.spawn(sweep_traces(
            spool.clone(),
            Duration::from_secs(u64::from(config.node.trace_retention_days) * 86_400),
            Duration::from_secs(config.node.trace_sweep_secs),
            rx.clone(),
        ));
        let auth_checks = Arc::new(tokio::sync::Semaphore::new(config.node.max_auth_checks));
        let fairness = Arc::new(Fairness::new(&config.fairness));
        let mut addrs = Vec::new();
        let cert = match &config.tls {
            Some(files) => {
                let cert = tls::ReloadingCert::load(files).context("server certificate")?;
                tasks.spawn(reload_certificate(
                    cert.clone(),
                    Duration::from_secs(files.reload_secs),
                    rx.clone(),
                ));
                Some(cert)
            }
            None => None,
        };
        for l in &config.listeners {
            let mut peer_check = None;
            let tls = match (&config.tls, &cert, l.tls) {
                (Some(files), Some(cert), TlsMode::Starttls | TlsMode::Implicit) => {
                    let server = match (&files.client_ca, l.operators) {
                        (Some(anchors), true) => {
                            let roots = tls::load_roots(anchors).with_context(|| format!("listener {}", l.name))?;
                            let (check, verifier) = PeerCheck::new(roots, tls::provider())?;
                            peer_check = Some(check);
                            tls::server_config_with_verifier(cert.clone(), verifier)
                        }
                        _ => tls::server_config(files, cert.clone(), l.client_cert),
                    };
                    Some(tokio_rustls::TlsAcceptor::from(
                        server.with_context(|| format!("listener {}", l.name))?,
                    ))
                }
                _ => None,
            };
            let server_config = server_config(&config, l, offer_auth);
            let socket = TcpListener::bind(l.address)
                .await
                .with_context(|| format!("listener {}: binding {}", l.name, l.address))?;
            let local = socket.local_addr()?;
            info!(listener = %l.name, address = %local, tls = ?l.tls, "listening");
            addrs.push((l.name.clone(), local));
            let ctx = Arc::new(ArcSwap::from_pointee(ListenerCtx {
                listener: l.clone(),
                server_config: Arc::new(server_config),
                tls,
                handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
                accept_timeout: config.accept_timeout(),
                hostname: config.node.hostname.clone(),
                policy: policy.clone(),
                fairness: fairness.clone(),
                queue: queue.clone(),
                metrics: metrics.clone(),
                auth_checks: auth_checks.clone(),
                peer_check,
            }));
            slots.push(ctx.clone());
            listeners.spawn(listener::run(socket, ctx, rx.clone()));
        }
        // Last, once every listener is bound: /readyz needs no "bound yet" state.
        let admin_addr = match &config.admin {
            Some(a) => {
                let sources = admin::Sources {
                    metrics: metrics.clone(),
                    queue: queue.clone(),
                    spool: spool.clone(),
                    trust: trust.clone(),
                    drain: Some(drain_tx.clone()),
                    reload: Some(reload_tx.clone()),
                };
                let admin = Admin::bind(a, sources, rx.clone(), cert.clone()).await?;
                let local = admin.local_addr()?;
                let scheme = if a.client_ca.is_some() {
                    "HTTPS (client certificates)"
                } else {
                    "HTTP"
                };
                info!(address = %local, "admin {scheme} listening");
                tasks.spawn(admin.serve(rx.clone()));
                Some(local)
            }
            None => None,
        };
        let reloader = Reloader {
            listeners: slots,
            queue: queue.clone(),
            trust,
            cert,
            current: tokio::sync::Mutex::new(config.clone()),
        };
        Ok(Self {
            addrs,
            queue,
            metrics,
            admin_addr,
            spool,
            lifecycle,
            listeners,
            tasks,
            drain_rx,
            drain_deadline,
            reload_rx,
            reloader,
            _spool_guard: guard,
        })
    }

    /// The delivery queue.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// The bound address of listener `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// The bound address of the admin HTTP listener (`None` without `[admin]`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The node's counters (what `/metrics` exports).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The node's phase.
    pub fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    /// [`Phase::Draining`]: stops accepting connections, tells every session
    /// to finish (`421 4.3.2` after its current command) and waits for them;
    /// `/readyz` answers 503. The queue keeps delivering.
    pub async fn drain_listeners(&mut self) {
        self.lifecycle.advance(Phase::Draining);
        while self.listeners.join_next().await.is_some() {}
    }

    /// The next request from the admin API: a drain (`estafette drain`) or
    /// a reload (`POST /api/reload`, whose caller waits for the answer); or
    /// from the spool: a restart when it is stuck (checked every second).
    pub async fn requested(&mut self) -> Request {
        let spool = self.spool.clone();
        let stuck = async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if spool.stuck() {
                    return;
                }
            }
        };
        tokio::select! {
            Some(reply) = self.drain_rx.recv() => Request::Drain(reply),
            Some(reply) = self.reload_rx.recv() => Request::Reload(reply),
            () = stuck => Request::Restart,
        }
    }

    /// Takes `config` in place of the running configuration where that can
    /// be done without a restart; see [`super::reload`] for what reloads and
    /// the all-or-nothing contract.
    ///
    /// # Errors
    /// A part of `config` does not build: the running configuration stays.
    pub async fn reload(&self, config: Config) -> anyhow::Result<ReloadReport> {
        self.reloader.apply(config).await
    }

    /// Drain (DESIGN §5; the Kubernetes preStop hook runs it): listeners stop
    /// (new connections refused, sessions finish with `421`), then, in a
    /// cluster, every queued message is handed to a peer holding its copy,
    /// which delivers it at once; one that no peer holds a copy of (taken
    /// over, or its holders gone) is first committed again with new copies,
    /// for half of `cluster.drain_deadline_secs` at most. What is not
    /// handed over within that deadline stays on this node's volume and is
    /// delivered when the node starts again; the outcome says how much (a
    /// single node has nothing to hand over: its queue waits on its volume
    /// for its return).
    pub async fn drain(&mut self) -> DrainOutcome {
        let started = tokio::time::Instant::now();
        let until = started + self.drain_deadline;
        self.drain_listeners().await;
        let Some(cluster) = self.queue.cluster().cloned() else {
            return DrainOutcome {
                cluster: false,
                handed_over: false,
                copied_again: 0,
                left: None,
                secs: started.elapsed().as_secs_f64(),
            };
        };
        // Attempts already running finish first (their Final is reported).
        while self.queue.in_flight() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Half the time left at most: the hand-off of everything else
        // needs the rest.
        let now = tokio::time::Instant::now();
        let copy_until = now + until.saturating_duration_since(now) / 2;
        let copied_again = self.queue.copy_before_handoff(copy_until).await;
        if copied_again > 0 {
            info!(
                copied = copied_again,
                "messages no peer held a copy of committed again before the hand-off"
            );
        }
        cluster.drain().await;
        let mut status = cluster.status().await;
        while !status.as_ref().is_some_and(|s| s.drained) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = cluster.status().await;
        }
        let handed_over = status.as_ref().is_some_and(|s| s.drained);
        let left = status.map(|s| s.queue_depth + s.recovering);
        if handed_over {
            info!("drained: every queued message is with a peer");
        } else {
            warn!(
                left,
                "drain deadline passed before every message was handed over: what is left stays on this \
                 node's volume and is delivered when it starts again"
            );
        }
        DrainOutcome {
            cluster: true,
            handed_over,
            copied_again,
            left,
            secs: started.elapsed().as_secs_f64(),
        }
    }

    /// Drains the listeners, then [`Phase::Stopping`]: the attempts in
    /// progress finish, idle outbound connections say QUIT, background tasks
    /// end and the spool closes. Messages already acknowledged are on disk.
    pub async fn shutdown(mut self) {
        // A drain asked for while another ran gets no outcome: its caller
        // is answered `503` now rather than when the admin API's grace ends.
        self.drain_rx.close();
        while self.drain_rx.try_recv().is_ok() {}
        self.drain_listeners().await;
        self.lifecycle.advance(Phase::Stopping);
        if let Some(c) = self.queue.cluster() {
            c.close();
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Deletes trace events older than `retention`, at start and then every
/// `every` (DESIGN §4: `event_by_time` exists for this). The sweep reads and
/// writes RocksDB: it runs on the blocking pool.
async fn sweep_traces(spool: storage::Spool, retention: Duration, every: Duration, mut shutdown: PhaseWatch) {
    loop {
        let cutoff = storage::now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let s = spool.clone();
        match tokio::task::spawn_blocking(move || s.sweep_events(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(deleted = n, "expired trace events swept"),
            Ok(Err(e)) => warn!(error = %e, "sweeping expired trace events failed"),
            Err(e) => warn!(error = %e, "trace sweep task failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.reached(Phase::Stopping) => return,
        }
    }
}

/// Checks the certificate files every `every`; a renewed pair is served to
/// new handshakes at once, a bad one is logged and the old one kept.
async fn reload_certificate(cert: Arc<tls::ReloadingCert>, every: Duration, mut shutdown: PhaseWatch) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.reached(Phase::Stopping) => return,
        }
        match cert.refresh() {
            Ok(true) => info!("server certificate reloaded"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "new server certificate refused; keeping the previous one"),
        }
    }
}
