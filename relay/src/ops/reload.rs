//! Reloading the configuration without a restart (SIGHUP, `POST
//! /api/reload`).
//!
//! # What reloads and what needs a restart
//! - Reloaded: routes (the router and the inbound policy), identities (the
//!   `node.identities` file, read again), the postmaster, `[limits]`,
//!   `[fairness]` (with fresh counters), `trust.outside`; the server certificate and the trust list are read
//!   again at once (they also reload by themselves every `tls.reload_secs`
//!   and `trust.list.refresh_secs`).
//! - Needs a restart (reported, not applied): the other `[node]` settings,
//!   listeners, `[tls]` file paths, `[outbound]` (pool, retry, resolver),
//!   `[trust.list]`'s source, `[admin]` and `[cluster]`.
//!
//! # Contract
//! A new configuration is taken as a whole or not at all: everything is built
//! first (the identities file parsed, routes checked); only if all of it
//! builds is it swapped in. A bad file leaves the running configuration in
//! force and the error names the file, the key and the problem. Sessions
//! accepted before the swap finish with the settings they started with; new
//! sessions and new delivery attempts use the new ones.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::build::{build_policy, build_router, build_throttle, server_config};
use crate::config::Config;
use crate::inbound::fairness::Fairness;
use crate::inbound::tls::ReloadingCert;
use crate::inbound::ListenerCtx;
use crate::queue::Queue;
use crate::trust::TrustStore;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The parts now in force from the new file.
    pub reloaded: Vec<String>,
    /// The sections that changed but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

/// The swappable parts of a running node.
pub(crate) struct Reloader {
    pub(crate) listeners: Vec<Arc<ArcSwap<ListenerCtx>>>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) trust: Option<Arc<TrustStore>>,
    pub(crate) cert: Option<Arc<ReloadingCert>>,
    /// The configuration in force; one reload at a time.
    pub(crate) current: Mutex<Config>,
}

impl Reloader {
    /// Builds everything `new` describes, then swaps it in (see the module
    /// doc).
    ///
    /// # Errors
    /// A part does not build (identities file, route, postmaster): nothing changed.
    pub(crate) async fn apply(&self, new: Config) -> anyhow::Result<ReloadReport> {
        let mut current = self.current.lock().await;
        let needs_restart = restart_sections(&current, &new);
        let (policy, offer_auth) = build_policy(&new, self.trust.clone())?;
        let policy = Arc::new(policy);
        let trust = self.trust.clone().zip(new.trust.as_ref().map(|t| t.outside));
        let router = build_router(&new, trust)?;
        let fairness = Arc::new(Fairness::new(&new.fairness));
        // All built: swap.
        for slot in &self.listeners {
            let old = slot.load_full();
            let mut ctx = ListenerCtx::clone(&old);
            // A listener's own settings need a restart: the running ones stay.
            ctx.server_config = Arc::new(server_config(&new, &old.listener, offer_auth));
            ctx.policy = policy.clone();
            // New counters: sessions open now are not counted against the new limits.
            ctx.fairness = fairness.clone();
            slot.store(Arc::new(ctx));
        }
        self.queue.set_throttle(build_throttle(&new));
        self.queue.set_router(router).await;
        let mut reloaded: Vec<String> = ["routes", "identities", "postmaster", "limits", "fairness"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(cert) = &self.cert {
            match cert.refresh() {
                Ok(_) => reloaded.push("certificate".into()),
                Err(e) => warn!(error = %e, "reload: the certificate files are bad; the previous certificate stays"),
            }
        }
        if let Some(store) = &self.trust {
            reloaded.push("trust.outside".into());
            match store.refresh().await {
                Ok(_) => reloaded.push("trust list".into()),
                Err(e) => warn!(error = %e, "reload: the trust list refresh failed; the previous list stays"),
            }
        }
        info!(reloaded = ?reloaded, needs_restart = ?needs_restart, "configuration reloaded");
        *current = new;
        Ok(ReloadReport {
            reloaded,
            needs_restart,
        })
    }
}

/// The sections of `new` that differ from `old` and only apply at start.
/// Compared through their `Debug` form: every config type derives it, and
/// it shows every field.
fn restart_sections(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, a: String, b: String| {
        if a != b {
            changed.push(name.to_owned());
        }
    };
    let node = |c: &Config| {
        let mut n = c.node.clone();
        // Reloaded: not a reason to restart.
        n.identities = None;
        n.postmaster = None;
        format!("{n:?}")
    };
    check("node", node(old), node(new));
    check(
        "listener",
        format!("{:?}", old.listeners),
        format!("{:?}", new.listeners),
    );
    check("tls", format!("{:?}", old.tls), format!("{:?}", new.tls));
    check("outbound", format!("{:?}", old.outbound), format!("{:?}", new.outbound));
    let list = |c: &Config| format!("{:?}", c.trust.as_ref().map(|t| &t.list));
    check("trust.list", list(old), list(new));
    check("admin", format!("{:?}", old.admin), format!("{:?}", new.admin));
    check("cluster", format!("{:?}", old.cluster), format!("{:?}", new.cluster));
    changed
}
