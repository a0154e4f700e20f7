//! What builds a node's parts from its configuration: the policy, each
//! listener's SMTP settings, the router and the delivery queue. Used at
//! start (`node`) and again by a reload (`reload`), so that both read the
//! configuration the same way.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::warn;

use crate::config::{Config, ListenerConfig, ResolverSetting, RouteTls, TlsMode};
use crate::inbound::identity::Identities;
use crate::inbound::policy::{Policy, Postmaster, TrustPolicy};
use crate::outbound::{
    ClientTls, ConnectSettings, MxResolver, Nameservers, Pool, PoolConfig, Router, Security, StaticRoutes, Target,
};
use crate::queue::{Queue, RetryPolicy};
use crate::trust::TrustStore;

/// The inbound policy: routes, identities (read from `node.identities`),
/// the trust list in force (`trust`) and the postmaster; and whether AUTH is
/// offered (some identity has a password).
///
/// # Errors
/// The identities file cannot be read or parsed; a bad postmaster address.
pub(super) fn build_policy(config: &Config, trust: Option<Arc<TrustStore>>) -> anyhow::Result<(Policy, bool)> {
    let identities = match &config.node.identities {
        Some(path) => Identities::load(path)?,
        None => Identities::default(),
    };
    let offer_auth = identities.has_accounts();
    let postmaster = match &config.node.postmaster {
        Some(address) => Some(Postmaster {
            hostname: config.node.hostname.clone(),
            address: proto::address::Mailbox::parse(address)
                .map_err(|e| anyhow::anyhow!("node.postmaster {address:?}: {e}"))?,
        }),
        None => None,
    };
    let trust = match (trust, &config.trust) {
        (Some(store), Some(t)) => Some(TrustPolicy {
            store,
            outside: t.outside,
        }),
        _ => None,
    };
    let policy = Policy::new(&config.routes, identities, trust).with_postmaster(postmaster);
    Ok((policy, offer_auth))
}

/// The SMTP settings of listener `l` under `config`'s limits.
pub(super) fn server_config(config: &Config, l: &ListenerConfig, offer_auth: bool) -> proto::server::ServerConfig {
    let lim = &config.limits;
    proto::server::ServerConfig {
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
        content_chunk: lim.body_piece_size,
        command_timeout: Duration::from_secs(l.command_timeout_secs),
        data_timeout: Duration::from_secs(l.data_timeout_secs),
        ..proto::server::ServerConfig::default()
    }
}

/// Where each destination goes: the static routes, MX lookup, and the trust
/// list's verdict (`trust`: the store and `trust.outside`).
pub(super) fn build_router(config: &Config, trust: Option<(Arc<TrustStore>, bool)>) -> anyhow::Result<Router> {
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
        let timeout = Duration::from_secs(o.resolver_timeout_secs);
        Some(MxResolver::new(&nameservers(o), o.mx_port, timeout).context("outbound.resolver")?)
    } else {
        None
    };
    Ok(match trust {
        Some((store, outside)) => Router::new(routes, mx).with_trust(store, outside),
        None => Router::new(routes, mx),
    })
}

/// The delivery side from the config: routes, TLS, pool, retry policy.
pub(super) fn build_queue(
    config: &Config,
    spool: storage::Spool,
    trust: Option<(Arc<TrustStore>, bool)>,
) -> anyhow::Result<Queue> {
    let o = &config.outbound;
    let router = build_router(config, trust)?;
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
        idle_timeout: Duration::from_secs(o.idle_timeout_secs),
        circuit: crate::outbound::CircuitConfig {
            threshold: o.circuit_threshold,
            ..crate::outbound::CircuitConfig::default()
        },
    };
    let pool = Pool::new(pool_config, ConnectSettings::new(client, tls));
    // Ends when the queue (the pool's last owner) is dropped.
    pool.spawn_reaper();
    let retry = RetryPolicy {
        first: Duration::from_secs(o.retry_first_secs),
        cap: Duration::from_secs(o.retry_cap_secs),
        jitter: o.retry_jitter,
        max_age: Duration::from_secs(o.max_age_secs),
        warn_after: (o.delay_warning_secs > 0).then(|| Duration::from_secs(o.delay_warning_secs)),
        ..RetryPolicy::default()
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

/// The servers `[outbound] resolver` names.
pub(super) fn nameservers(o: &crate::config::OutboundConfig) -> Nameservers {
    match &o.resolver {
        ResolverSetting::System(_) => Nameservers::System,
        ResolverSetting::Servers(s) => Nameservers::Servers(s.clone()),
    }
}

/// A resolver asking `[outbound] resolver` (the cluster's member discovery).
pub(super) fn dns_resolver(o: &crate::config::OutboundConfig) -> anyhow::Result<hickory_resolver::TokioResolver> {
    let timeout = Duration::from_secs(o.resolver_timeout_secs);
    Ok(crate::dns::resolver(&nameservers(o), timeout)?)
}

/// The deliveries-per-minute limits of `[fairness]`, per destination.
pub(super) fn build_throttle(config: &Config) -> crate::rate::RateLimits {
    let f = &config.fairness;
    crate::rate::RateLimits::new(
        crate::rate::per_minute(f.deliveries_per_minute),
        f.destinations.iter().map(|d| {
            (
                d.destination.to_ascii_lowercase(),
                crate::rate::per_minute(d.deliveries_per_minute),
            )
        }),
    )
}
