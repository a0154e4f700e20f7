//! Starting and stopping a node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::admin::{self, Admin};
use super::config::{Config, ResolverSetting, RouteTls, TlsMode};
use super::metrics::Metrics;
use crate::inbound::identity::Identities;
use crate::inbound::listener::{self, ListenerCtx};
use crate::inbound::operator::PeerCheck;
use crate::inbound::policy::{Policy, TrustPolicy};
use crate::inbound::tls;
use crate::outbound::{
    ClientTls, ConnectSettings, MxResolver, Nameservers, Pool, PoolConfig, RetryPolicy, Router, Security, StaticRoutes,
    Target,
};
use crate::queue::Queue;
use crate::trust::TrustStore;

/// A running node. Dropping it without [`Node::shutdown`] aborts its tasks.
pub struct Node {
    /// `(listener name, bound address)`, in config order (port 0 resolved).
    pub addrs: Vec<(String, SocketAddr)>,
    /// The spool (tests and admin commands read it).
    pub spool: storage::Spool,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    _spool_guard: storage::SpoolDropGuard,
}

impl Node {
    /// Opens the spool, binds every listener and starts accepting.
    ///
    /// # Errors
    /// Spool, TLS files or bind failures, with the file or address at fault.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let spool_config = storage::SpoolConfig {
            path: config.node.spool.clone(),
            node_id: config.node.node_id,
            ..storage::SpoolConfig::default()
        };
        let (spool, guard) = storage::Spool::open(spool_config)
            .with_context(|| format!("opening spool {}", config.node.spool.display()))?;
        let identities = match &config.node.identities {
            Some(path) => Identities::load(path)?,
            None => Identities::default(),
        };
        let offer_auth = identities.has_accounts();
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let metrics = Arc::new(Metrics::new(config.listeners.iter().map(|l| l.name.clone())));
        let trust = match &config.trust {
            Some(t) => {
                let store = Arc::new(TrustStore::load(t.list.clone()).await.context("trust list")?);
                let refresher = store.clone().spawn_refresher(rx.clone());
                tasks.spawn(async move {
                    let _ = refresher.await;
                });
                Some(TrustPolicy {
                    store,
                    outside: t.outside,
                })
            }
            None => None,
        };
        let trust_store = trust.as_ref().map(|t| (t.store.clone(), t.outside));
        let admin_trust = trust.as_ref().map(|t| t.store.clone());
        let policy = Arc::new(Policy::new(&config.routes, identities, trust));
        let queue = Arc::new(build_queue(&config, spool.clone(), trust_store)?.with_metrics(metrics.clone()));
        tasks.spawn(queue.clone().run(rx.clone()));
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
            let lim = &config.limits;
            let server_config = proto::server::ServerConfig {
                hostname: config.node.hostname.clone(),
                max_command_line: lim.max_command_line,
                data: proto::data::DataLimits {
                    max_line_len: lim.max_line_length,
                    max_message_size: lim.max_message_size,
                },
                max_recipients: lim.max_recipients,
                max_errors: lim.max_errors,
                starttls: l.tls == TlsMode::Starttls,
                require_tls: l.requires_tls(),
                require_auth: l.require_auth,
                auth_mechanisms: if l.auth && offer_auth {
                    vec!["PLAIN".into(), "LOGIN".into()]
                } else {
                    Vec::new()
                },
                command_timeout: Duration::from_secs(l.command_timeout_secs),
                data_timeout: Duration::from_secs(l.data_timeout_secs),
                ..proto::server::ServerConfig::default()
            };
            let socket = TcpListener::bind(l.address)
                .await
                .with_context(|| format!("listener {}: binding {}", l.name, l.address))?;
            let local = socket.local_addr()?;
            info!(listener = %l.name, address = %local, tls = ?l.tls, "listening");
            addrs.push((l.name.clone(), local));
            let ctx = Arc::new(ListenerCtx {
                listener: l.clone(),
                server_config: Arc::new(server_config),
                tls,
                handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
                accept_timeout: config.accept_timeout(),
                hostname: config.node.hostname.clone(),
                policy: policy.clone(),
                spool: spool.clone(),
                queue: queue.clone(),
                peer_check,
            });
            tasks.spawn(listener::run(socket, ctx, rx.clone()));
        }
        // Last, once every listener is bound: /readyz needs no "bound yet" state.
        let admin_addr = match &config.admin {
            Some(a) => {
                let sources = admin::Sources {
                    metrics: metrics.clone(),
                    queue: queue.clone(),
                    spool: spool.clone(),
                    trust: admin_trust,
                };
                let admin = Admin::bind(a, sources, rx.clone()).await?;
                let local = admin.local_addr()?;
                info!(address = %local, "admin HTTP listening");
                tasks.spawn(admin.serve(rx.clone()));
                Some(local)
            }
            None => None,
        };
        Ok(Self {
            addrs,
            queue,
            metrics,
            admin_addr,
            spool,
            shutdown,
            tasks,
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

    /// Stops accepting, tells every session to close (`421 4.3.2`), waits for
    /// them, then closes the spool. Messages already acknowledged are on disk.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Checks the certificate files every `every`; a renewed pair is served to
/// new handshakes at once, a bad one is logged and the old one kept.
async fn reload_certificate(cert: Arc<tls::ReloadingCert>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match cert.refresh() {
            Ok(true) => info!("server certificate reloaded"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "new server certificate refused; keeping the previous one"),
        }
    }
}

/// The delivery side from the config: routes, TLS, pool, retry policy.
fn build_queue(
    config: &Config,
    spool: storage::Spool,
    trust: Option<(Arc<TrustStore>, bool)>,
) -> anyhow::Result<Queue> {
    let o = &config.outbound;
    let mut routes = StaticRoutes::new();
    for r in &config.routes {
        let security = match r.tls {
            RouteTls::Required => Security::StartTls(proto::client::TlsPolicy::Required),
            RouteTls::Opportunistic => Security::StartTls(proto::client::TlsPolicy::Opportunistic),
            RouteTls::None => Security::StartTls(proto::client::TlsPolicy::Never),
            RouteTls::Implicit => Security::Implicit,
        };
        let Some(host) = &r.host else {
            if r.tls != RouteTls::None && o.ca.is_none() {
                warn!(route = %r.domain, "MX route uses TLS but outbound.ca is not set: no MX host will be trusted");
            }
            routes.insert_mx(&r.domain, security);
            if r.internal {
                routes.set_internal(&r.domain);
            }
            continue;
        };
        let (name, port) = host
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .with_context(|| format!("route {}: host must be host:port", r.domain))?;
        let mut target = Target::new(name, port);
        target.security = security;
        routes.insert(&r.domain, vec![target]);
        if r.internal {
            routes.set_internal(&r.domain);
        }
    }
    // A resolver only when some route asks for MX lookup, or in a trust
    // space (listed domains without a route are looked up).
    let mx = if routes.needs_mx() || trust.is_some() {
        let nameservers = match &o.resolver {
            ResolverSetting::System(_) => Nameservers::System,
            ResolverSetting::Servers(s) => Nameservers::Servers(s.clone()),
        };
        let timeout = Duration::from_secs(o.resolver_timeout_secs);
        Some(MxResolver::new(&nameservers, o.mx_port, timeout).context("outbound.resolver")?)
    } else {
        None
    };
    let tls = match &o.ca {
        Some(ca) => {
            let client = o.client_cert.as_deref().zip(o.client_key.as_deref());
            ClientTls::from_pem_files(ca, client).context("outbound TLS")?
        }
        None => ClientTls::new(rustls::RootCertStore::empty(), None).context("outbound TLS")?,
    };
    let client = proto::client::ClientConfig {
        hostname: config.node.hostname.clone(),
        ..proto::client::ClientConfig::default()
    };
    let pool_config = PoolConfig {
        max_connections: o.max_connections,
        max_messages_per_connection: o.max_messages_per_connection,
        circuit: crate::outbound::CircuitConfig {
            threshold: o.circuit_threshold,
            ..crate::outbound::CircuitConfig::default()
        },
        ..PoolConfig::default()
    };
    let pool = Pool::new(pool_config, ConnectSettings::new(client, tls));
    let retry = RetryPolicy {
        first: Duration::from_secs(o.retry_first_secs),
        cap: Duration::from_secs(o.retry_cap_secs),
        jitter: o.retry_jitter,
        max_age: Duration::from_secs(o.max_age_secs),
        warn_after: (o.delay_warning_secs > 0).then(|| Duration::from_secs(o.delay_warning_secs)),
        ..RetryPolicy::default()
    };
    let router = match trust {
        Some((store, outside)) => Router::new(routes, mx).with_trust(store, outside),
        None => Router::new(routes, mx),
    };
    Ok(Queue::new(
        spool,
        pool,
        router,
        retry,
        config.node.hostname.clone(),
        crate::queue::Schedule {
            max_in_flight: o.max_in_flight,
            poll: Duration::from_millis(o.poll_ms),
            handoff_grace: Duration::from_secs(o.handoff_grace_secs),
            max_ready: o.max_ready,
        },
    ))
}
