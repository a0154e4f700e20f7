//! Values read from their source at scrape time ([`Snapshot`]): the queue,
//! the trust list, the cluster, the spool's size. Plain values the admin
//! listener reads and hands over, so that they cannot drift from their source.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

use super::QUEUE_COUNT_CAP;

/// Values read from their source at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Messages being tried now.
    pub in_flight: usize,
    /// The due index, if it could be read.
    pub queue: Option<QueueCount>,
    /// The trust list, when the node has one.
    pub trust: Option<TrustSnapshot>,
    /// The cluster, when the node is in one.
    pub cluster: Option<ClusterSnapshot>,
    /// Bytes of the spool's files on disk (SST, blob, WAL, manifest), if read.
    pub spool_bytes: Option<u64>,
    /// Trace events and counters dropped because the spool's writer queue was full.
    pub detached_dropped: u64,
    /// Messages waiting per destination (the busiest ones), if read.
    pub destinations: Vec<Destination>,
}

/// One destination of the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    /// The next hop (domain or route name).
    pub name: String,
    /// Messages waiting for it (held included).
    pub messages: u64,
    /// Age of the oldest of them, seconds.
    pub oldest_secs: u64,
}

/// The cluster's state (read by the admin listener from the cluster driver).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// Peers configured.
    pub peers: u64,
    /// Peers whose connection is up.
    pub peers_up: u64,
    /// Whether the node can get the copies `min_copies` needs.
    pub accepting: bool,
    /// Cluster connections refused (certificate, handshake).
    pub refused: u64,
    /// The replication protocol's counters.
    pub counters: ClusterCounters,
}

/// The replication protocol's counters that the metrics and
/// `estafette cluster status` show (from `proto::cluster::Counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterCounters {
    /// Shadow copies held for peers.
    pub shadows_held: u64,
    /// Releases waiting to be sent.
    pub releases_pending: u64,
    /// Takeovers started by this node.
    pub takeovers: u64,
    /// Messages taken over by this node.
    pub taken_over: u64,
    /// Accepts confirmed with every copy.
    pub accepts_ok: u64,
    /// Accepts refused (451) at once for want of peers.
    pub accepts_refused: u64,
    /// Accepts with fewer copies (`allow_degraded`).
    pub accepts_degraded: u64,
    /// Deliveries that may have happened twice (partitions, restarts).
    pub duplicates_possible: u64,
    /// Times a peer silent for `takeover_after` was not taken over because
    /// another member still heard it (a cut link, not a death).
    pub kept_live_by_peers: u64,
    /// Copies dropped by a reconcile (final elsewhere; after a restart:
    /// what the peers delivered meanwhile).
    pub reconcile_dropped: u64,
    /// Recovered messages delivered when the restart wait expired.
    pub restart_wait_expired: u64,
    /// Times the node had not run for several heartbeats (stopped, frozen,
    /// starved); that time did not count as its peers' silence.
    pub pauses: u64,
    /// Messages this node handed to a peer while draining.
    pub handed: u64,
    /// Messages of this node that a draining taker handed back.
    pub handed_back: u64,
    /// Release ids sent again (unconfirmed within `peer_timeout`, or their
    /// link broke first).
    pub releases_resent: u64,
    /// Release ids never confirmed by their peer (left to the reconcile).
    pub releases_unconfirmed: u64,
    /// Taken-over messages committed again with new copies (the queue's
    /// `rereplicate`; not a protocol counter).
    pub rereplicated: u64,
    /// Taken-over messages that could not get new copies and are delivered
    /// with their one copy.
    pub rereplication_failed: u64,
}

impl From<&proto::cluster::Counters> for ClusterCounters {
    fn from(c: &proto::cluster::Counters) -> Self {
        Self {
            shadows_held: c.shadows_held,
            releases_pending: c.releases_pending,
            takeovers: c.takeovers,
            taken_over: c.taken_over,
            accepts_ok: c.accepts_ok,
            accepts_refused: c.accepts_refused,
            accepts_degraded: c.accepts_degraded,
            duplicates_possible: c.duplicates_possible,
            kept_live_by_peers: c.kept_live_by_peers,
            reconcile_dropped: c.reconcile_dropped,
            restart_wait_expired: c.restart_wait_expired,
            pauses: c.pauses,
            handed: c.handed,
            handed_back: c.handed_back,
            releases_resent: c.releases_resent,
            releases_unconfirmed: c.releases_unconfirmed,
            rereplicated: 0,
            rereplication_failed: 0,
        }
    }
}

/// Entries of the spool's due index (one per message with a pending,
/// not held, recipient), counted up to [`QUEUE_COUNT_CAP`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCount {
    /// Messages waiting (due now or later).
    pub waiting: u64,
    /// Of which due now (their next attempt time has passed).
    pub due: u64,
    /// More than [`QUEUE_COUNT_CAP`] entries: the counts stop there.
    pub saturated: bool,
}

impl QueueCount {
    /// Counts the due index of `spool` (a key scan of at most
    /// [`QUEUE_COUNT_CAP`] entries: run it off the async threads).
    ///
    /// # Errors
    /// The spool's read error.
    pub fn read(spool: &storage::Spool) -> Result<Self, storage::Error> {
        let now = storage::now_ms();
        let entries = spool.due(u64::MAX, QUEUE_COUNT_CAP + 1)?;
        let saturated = entries.len() > QUEUE_COUNT_CAP;
        let counted = &entries[..entries.len().min(QUEUE_COUNT_CAP)];
        Ok(Self {
            waiting: counted.len() as u64,
            due: counted.iter().filter(|(due, _)| *due <= now).count() as u64,
            saturated,
        })
    }
}

/// The trust list's state (read by the admin listener from the trust store).
#[derive(Debug, Clone, PartialEq)]
pub struct TrustSnapshot {
    /// Usable entries of the list in force.
    pub entries: usize,
    /// Distinct listed domains.
    pub domains: usize,
    /// Time since the list was last loaded or confirmed by a refresh.
    pub age: Duration,
    /// Failed refreshes since start.
    pub failures: u64,
    /// When the list was last loaded or confirmed (now − age).
    pub last_success: SystemTime,
}

impl Snapshot {
    pub(super) fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "estafette_queue_in_flight",
            "Messages being delivered now",
            ConstGauge::new(i64::try_from(self.in_flight).unwrap_or(i64::MAX)),
        );
        if let Some(q) = self.queue {
            r.register(
                "estafette_queue_messages",
                format!("Messages waiting in the spool's due index (pending recipients, not held), counted up to {QUEUE_COUNT_CAP}"),
                ConstGauge::new(i64::try_from(q.waiting).unwrap_or(i64::MAX)),
            );
            r.register(
                "estafette_queue_due_messages",
                "Of the waiting messages, those whose next attempt time has passed",
                ConstGauge::new(i64::try_from(q.due).unwrap_or(i64::MAX)),
            );
        }
        if let Some(c) = &self.cluster {
            let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            r.register("estafette_cluster_peers", "Peers configured", gauge(c.peers));
            r.register(
                "estafette_cluster_peers_up",
                "Peers whose replication link is up",
                gauge(c.peers_up),
            );
            r.register(
                "estafette_cluster_accepting",
                "1 when the node can get the copies min_copies needs (else 451 and /readyz 503)",
                gauge(u64::from(c.accepting)),
            );
            r.register(
                "estafette_cluster_shadows_held",
                "Shadow copies held for peers",
                gauge(c.counters.shadows_held),
            );
            r.register(
                "estafette_cluster_releases_pending",
                "Releases not yet sent",
                gauge(c.counters.releases_pending),
            );
            for (name, help, v) in [
                (
                    "estafette_cluster_takeovers",
                    "Takeovers started by this node",
                    c.counters.takeovers,
                ),
                (
                    "estafette_cluster_taken_over_messages",
                    "Messages taken over by this node",
                    c.counters.taken_over,
                ),
                (
                    "estafette_cluster_accepts_replicated",
                    "Accepts confirmed with every copy",
                    c.counters.accepts_ok,
                ),
                (
                    "estafette_cluster_accepts_refused",
                    "Accepts refused (451) for want of copies",
                    c.counters.accepts_refused,
                ),
                (
                    "estafette_cluster_accepts_degraded",
                    "Accepts with fewer copies (allow_degraded)",
                    c.counters.accepts_degraded,
                ),
                (
                    "estafette_cluster_duplicates_possible",
                    "Deliveries that may have happened twice",
                    c.counters.duplicates_possible,
                ),
                (
                    "estafette_cluster_kept_live_by_peers",
                    "Peers silent for takeover_after but heard by another member: not taken over (a cut link)",
                    c.counters.kept_live_by_peers,
                ),
                (
                    "estafette_cluster_connections_refused",
                    "Replication connections refused",
                    c.refused,
                ),
                (
                    "estafette_cluster_reconcile_dropped",
                    "Copies dropped because a reconcile showed them final elsewhere",
                    c.counters.reconcile_dropped,
                ),
                (
                    "estafette_cluster_restart_wait_expired",
                    "Recovered messages delivered because the peers did not answer within restart_wait",
                    c.counters.restart_wait_expired,
                ),
                (
                    "estafette_cluster_handed_messages",
                    "Messages handed to a peer while this node drained",
                    c.counters.handed,
                ),
                (
                    "estafette_cluster_handed_back_messages",
                    "Messages of this node handed back by a draining node that had taken them over",
                    c.counters.handed_back,
                ),
                (
                    "estafette_cluster_releases_resent",
                    "Release ids sent again (not confirmed within peer_timeout, or their link broke)",
                    c.counters.releases_resent,
                ),
                (
                    "estafette_cluster_releases_unconfirmed",
                    "Release ids never confirmed by their peer, left to the periodic reconcile",
                    c.counters.releases_unconfirmed,
                ),
                (
                    "estafette_cluster_rereplicated_messages",
                    "Taken-over messages committed again with new copies before delivery",
                    c.counters.rereplicated,
                ),
                (
                    "estafette_cluster_rereplication_failed",
                    "Taken-over messages that got no new copies (too few peers, or the commit failed) and are delivered with their one copy",
                    c.counters.rereplication_failed,
                ),
                (
                    "estafette_cluster_pauses",
                    "Times this node had not run for several heartbeat intervals (stopped, frozen, starved)",
                    c.counters.pauses,
                ),
            ] {
                r.register(name, help, ConstCounter::new(v));
            }
        }
        r.register(
            "estafette_spool_detached_dropped",
            "Trace events and monthly counters dropped because the spool writer's queue was full (a stalled disk or a flood)",
            ConstCounter::new(self.detached_dropped),
        );
        if let Some(bytes) = self.spool_bytes {
            r.register_with_unit(
                "estafette_spool_size",
                "Size of the spool's files on disk (SST, blob, WAL, manifest)",
                Unit::Bytes,
                ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX)),
            );
        }
        if !self.destinations.is_empty() {
            type Label = [(&'static str, String); 1];
            let messages = Family::<Label, Gauge>::default();
            let oldest = Family::<Label, Gauge>::default();
            for d in &self.destinations {
                let label = [("destination", d.name.clone())];
                messages
                    .get_or_create(&label)
                    .set(i64::try_from(d.messages).unwrap_or(i64::MAX));
                oldest
                    .get_or_create(&label)
                    .set(i64::try_from(d.oldest_secs).unwrap_or(i64::MAX));
            }
            r.register(
                "estafette_queue_destination_messages",
                "Messages waiting per destination (next hop), held ones included; the busiest destinations only",
                messages,
            );
            r.register_with_unit(
                "estafette_queue_destination_oldest",
                "Age of the oldest message waiting per destination",
                Unit::Seconds,
                oldest,
            );
        }
        if let Some(t) = &self.trust {
            r.register(
                "estafette_trustlist_entries",
                "Usable entries of the trust list in force",
                ConstGauge::new(i64::try_from(t.entries).unwrap_or(i64::MAX)),
            );
            r.register(
                "estafette_trustlist_domains",
                "Distinct domains of the trust list in force",
                ConstGauge::new(i64::try_from(t.domains).unwrap_or(i64::MAX)),
            );
            r.register_with_unit(
                "estafette_trustlist_age",
                "Time since the trust list was last loaded or confirmed by a refresh; grows while refreshes fail",
                Unit::Seconds,
                ConstGauge::new(t.age.as_secs_f64()),
            );
            r.register(
                "estafette_trustlist_refresh_failures",
                "Trust list refreshes that failed (download, checksum, parse, shrink); the previous list was kept",
                ConstCounter::new(t.failures),
            );
            let last = t.last_success.duration_since(UNIX_EPOCH).unwrap_or_default();
            r.register_with_unit(
                "estafette_trustlist_last_success_timestamp",
                "When the trust list was last loaded or confirmed by a refresh (Unix time)",
                Unit::Seconds,
                ConstGauge::new(last.as_secs_f64()),
            );
        }
        r
    }
}
