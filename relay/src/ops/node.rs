//! Starting and stopping a node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::info;

use super::config::{Config, TlsMode};
use crate::inbound::identity::Identities;
use crate::inbound::listener::{self, ListenerCtx};
use crate::inbound::policy::Policy;
use crate::inbound::tls;

/// A running node. Dropping it without [`Node::shutdown`] aborts its tasks.
pub struct Node {
    /// `(listener name, bound address)`, in config order (port 0 resolved).
    pub addrs: Vec<(String, SocketAddr)>,
    /// The spool (tests and admin commands read it).
    pub spool: storage::Spool,
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
        let policy = Arc::new(Policy::new(&config.routes, identities));
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for l in &config.listeners {
            let tls = match (&config.tls, l.tls) {
                (Some(files), TlsMode::Starttls | TlsMode::Implicit) => Some(tokio_rustls::TlsAcceptor::from(
                    tls::server_config(files, l.client_cert).with_context(|| format!("listener {}", l.name))?,
                )),
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
            });
            tasks.spawn(listener::run(socket, ctx, rx.clone()));
        }
        Ok(Self {
            addrs,
            spool,
            shutdown,
            tasks,
            _spool_guard: guard,
        })
    }

    /// The bound address of listener `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Stops accepting, tells every session to close (`421 4.3.2`), waits for
    /// them, then closes the spool. Messages already acknowledged are on disk.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
