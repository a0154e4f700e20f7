//! Members from DNS (`[cluster.discover]`): the SRV records of a Kubernetes
//! headless Service, looked up at start and every `interval_secs`.
//!
//! Kubernetes keeps the members alive; this only finds them (no home-made
//! consensus). A new pod of this node's StatefulSet becomes a member (the
//! protocol gives it copies once it is heard from); a pod that moved is
//! dialled at its new address; a pod that left DNS stays a member, dead until
//! it returns (its mail is taken over after `takeover_after`). What the rules
//! for names are: `crate::config::DiscoverConfig`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use proto::cluster::{MemberConfig as ProtoMember, NodeId};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::driver::Cmd;
use super::transport;
use crate::config::{ordinal, ClusterConfig};

/// One member found in DNS: its name, id and QUIC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The pod's name (the target's first label).
    pub name: String,
    /// Its ordinal.
    pub id: u16,
    /// Its address and the record's port.
    pub address: SocketAddr,
}

/// One lookup: the members the SRV records name, this node's StatefulSet only.
///
/// # Errors
/// The SRV lookup failed (the caller keeps what it knew).
pub async fn lookup(resolver: &TokioResolver, srv: &str, my_set: &str) -> anyhow::Result<Vec<Found>> {
    let records = resolver.srv_lookup(srv).await?;
    let mut found = Vec::new();
    for r in records.answers().iter().filter_map(|rec| match &rec.data {
        hickory_resolver::proto::rr::RData::SRV(srv) => Some(srv.clone()),
        _ => None,
    }) {
        let target = r.target.to_utf8();
        let target = target.trim_end_matches('.');
        let name = target.split('.').next().unwrap_or_default().to_ascii_lowercase();
        let Some((set, id)) = ordinal(&name) else {
            debug!(%target, "SRV target is not a StatefulSet pod name: ignored");
            continue;
        };
        if !set.eq_ignore_ascii_case(my_set) {
            continue;
        }
        let ip = match resolver.lookup_ip(format!("{target}.")).await {
            Ok(ips) => ips.iter().next(),
            Err(e) => {
                debug!(%target, error = %e, "member address not resolved yet");
                None
            }
        };
        if let Some(ip) = ip {
            found.push(Found {
                name: name.clone(),
                id,
                address: SocketAddr::new(ip, r.port),
            });
        }
    }
    Ok(found)
}

/// Looks members up every `interval` for the node's life: a new one is given to
/// the protocol (`driver`) and dialled; a moved one is dialled at its new address.
pub(super) async fn run(
    config: ClusterConfig,
    resolver: TokioResolver,
    endpoint: quinn::Endpoint,
    driver: mpsc::Sender<Cmd>,
    mut known: HashMap<String, watch::Sender<String>>,
) {
    let Some(discover) = config.discover.clone() else {
        return;
    };
    let Some((my_set, _)) = ordinal(&config.name) else {
        return;
    };
    let my_set = my_set.to_owned();
    let mut tick = tokio::time::interval(Duration::from_secs(discover.interval_secs));
    // Said once per distinct error, not at every lookup (a node outside
    // Kubernetes, with listed members only, has no records to find).
    let mut last_error = None;
    loop {
        tick.tick().await;
        let found = match lookup(&resolver, &discover.srv, &my_set).await {
            Ok(f) => {
                last_error = None;
                f
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    warn!(srv = %discover.srv, error = %text, "cluster member discovery failed; keeping the members known");
                    last_error = Some(text);
                }
                continue;
            }
        };
        for f in found {
            if f.name.eq_ignore_ascii_case(&config.name) {
                continue;
            }
            let address = f.address.to_string();
            match known.get(&f.name) {
                Some(tx) => {
                    if *tx.borrow() != address {
                        info!(member = %f.name, %address, "cluster member moved");
                        let _ = tx.send(address);
                    }
                }
                None => {
                    let member = ProtoMember {
                        node: NodeId(f.id),
                        name: f.name.clone(),
                        zone: None,
                    };
                    if driver.send(Cmd::AddMember(member)).await.is_err() {
                        return;
                    }
                    let tx = transport::spawn_dial(&endpoint, NodeId(f.id), f.name.clone(), address, &driver);
                    known.insert(f.name, tx);
                }
            }
        }
    }
}
