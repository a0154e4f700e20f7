//! The cluster: every accepted message on `min_copies` nodes before `250`,
//! takeover of an unreachable node's queue by the nodes holding its copies
//! (DESIGN §3, §5).
//!
//! # Layout
//! - [`transport`]: QUIC (quinn) with mutual TLS from the cluster CA, one
//!   outgoing connection per peer, frames on one stream each.
//! - [`discover`]: members from a headless Service's SRV records.
//! - `driver`: the task running the sans-io protocol
//!   ([`proto::cluster::Node`]) and doing the I/O it asks for (sending
//!   copies, promoting shadows, dropping released ones).
//! - `replicate`: the data plane: copies streamed from the spool to a peer
//!   and written to the peer's spool as they arrive, never whole in memory.
//! - this module: [`Cluster`], the handle the commit path and the queue use.
//!
//! Depends on the spool and the bottom layer (config, tls); the queue depends
//! on it (the commit path asks it for copies; finished messages release them).
//!
//! # What is done, what is not (yet)
//! Done: replication before 250 with `min_copies` acks (451 4.3.0 otherwise,
//! and at MAIL FROM when too few peers are reachable), placement stored with
//! every message and copy, releases when a message is final, takeover of an
//! unreachable node's copies after `takeover_after` (promoted into this node's
//! queue and delivered), epochs and volume ids, reconcile and drain frames as
//! the protocol sends them; a restarted node delivers its recovered queue
//! only once the protocol says so (`Deliver` after the peers answered or
//! `restart_wait` expired), and never what a peer took over. An attempt that
//! already started when `Hold` arrives finishes (a counted duplicate at worst).
//! Members are the configured list plus, with `[cluster.discover]`, the pods
//! a headless Service's SRV records name. A message taken over (promoted
//! from a shadow) has one copy, the taker's: it is copied again before it is
//! delivered ([`Handover::TakenOver`], done by the queue's `rereplicate`).

pub mod discover;
mod driver;
mod replicate;
pub mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::cluster::{
    Boot, Config as ProtoConfig, Counters, MemberConfig as ProtoMember, MessageId, Node, NodeId, Placement,
    RecoveredCopy, Unavailable,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClusterConfig;
use driver::{placement_bytes, Cmd, Driver, Io};
pub use replicate::CopyBody;
pub use transport::TransportCounters;

/// Queued messages the protocol does not let this node deliver now.
#[derive(Clone, Debug, Default)]
pub(crate) struct Blocked(Arc<std::sync::Mutex<std::collections::HashSet<MessageId>>>);

impl Blocked {
    fn block(&self, ids: &[MessageId]) {
        crate::sync::lock(&self.0).extend(ids.iter().copied());
    }

    fn unblock(&self, ids: &[MessageId]) {
        let mut set = crate::sync::lock(&self.0);
        for id in ids {
            set.remove(id);
        }
    }

    fn contains(&self, id: &MessageId) -> bool {
        crate::sync::lock(&self.0).contains(id)
    }

    fn len(&self) -> usize {
        crate::sync::lock(&self.0).len()
    }
}

/// A message the cluster gives this node's queue (the receiver that
/// [`Cluster::start`] returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// Deliver it: the protocol's `Deliver` (recovered after a restart,
    /// promoted from a shadow, given back).
    Deliver(storage::MessageId),
    /// Just taken over from a shadow, after its `Deliver`: this node holds
    /// the message's only live copy (its origin is gone, or handed it over
    /// while draining). With `min_copies > 1` it stays out of delivery until
    /// the queue has committed it again under a new id with new copies, or
    /// given up ([`Cluster::copied_again`]).
    TakenOver(storage::MessageId),
}

/// What became of a [`Handover::TakenOver`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyAgain {
    /// Committed again under a new id with new copies; the old id is final.
    Copied,
    /// No new copies (too few peers, a spool or commit error): delivered
    /// with its one copy.
    Failed,
    /// Gone meanwhile, or held for another taker: nothing to copy.
    Moot,
}

/// When the driver last ran the protocol's timers. Deliveries do not start
/// while that is overdue: a node woken from a pause (SIGSTOP, a frozen VM or
/// container) must first let the protocol see the pause and hold what its
/// peers may have taken over meanwhile (proto's `cluster/pause.rs`); the
/// queue's scans, woken at the same instant, would otherwise win that race.
#[derive(Clone, Debug)]
pub(crate) struct Pulse {
    base: Instant,
    last_ms: Arc<AtomicU64>,
    /// Longer than this without a timer run is overdue.
    limit: Duration,
}

impl Pulse {
    fn new(heartbeat: Duration) -> Self {
        Self {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            limit: heartbeat * 3,
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The driver ran the timers and applied their actions.
    pub(crate) fn beat(&self) {
        self.last_ms.store(self.ms(), Ordering::Relaxed);
    }

    fn overdue(&self) -> bool {
        let limit = u64::try_from(self.limit.as_millis()).unwrap_or(u64::MAX);
        self.ms().saturating_sub(self.last_ms.load(Ordering::Relaxed)) > limit
    }
}

/// The node's cluster handle: cheap to share (`Arc`), used by the commit path.
#[derive(Debug)]
pub struct Cluster {
    tx: mpsc::Sender<Cmd>,
    min_copies: usize,
    accepting: Arc<AtomicBool>,
    counters: Arc<TransportCounters>,
    endpoint: quinn::Endpoint,
    blocked: Blocked,
    /// Taken-over messages waiting for their new copies ([`Handover::TakenOver`]).
    copying: Blocked,
    pulse: Pulse,
    /// `cluster.copy_rate_bytes`: the copies' wait grows by size / rate.
    copy_rate: u64,
    /// `cluster.accept_deadline_ms`.
    accept_deadline: Duration,
    /// Taken-over messages committed again with new copies, and those that
    /// could not be (delivered with the one copy).
    rereplicated: AtomicU64,
    rereplication_failed: AtomicU64,
    /// What replication added to accepts, in µs ([`Cluster::replication_added`]).
    added: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

/// A snapshot for `estafette cluster status`, `/api/cluster` and metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// This node's epoch.
    pub epoch: u64,
    /// Whether it can take mail now (enough peers reachable).
    pub accepting: bool,
    /// A drain finished: every queued message is handed to a peer.
    pub drained: bool,
    /// One line per peer.
    pub peers: Vec<PeerLine>,
    /// The protocol's counters (flattened into the JSON).
    #[serde(flatten)]
    pub counters: crate::metrics::ClusterCounters,
    /// This node's own messages queued for delivery here.
    pub queue_depth: u64,
    /// Its own messages held because another node took them over.
    pub held_for_takers: u64,
    /// Recovered messages still waiting for the peers' word (0 once a
    /// restarted node's check is complete).
    pub recovering: u64,
    /// Shadow copies held per origin (member name).
    pub shadows_by_origin: std::collections::BTreeMap<String, u64>,
    /// Replication latency since the start: from asking for the copies to the
    /// last shadow's durable ack, successful accepts only.
    pub replication: ReplicationLatency,
}

/// Percentiles of [`Status::replication`], in milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplicationLatency {
    /// Accepts measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// What replication added to the accepts' latency: from the local
    /// synced write to the last shadow's ack, zero when the acks came
    /// first (median, 99th percentile, largest; since the start).
    pub added_p50_ms: f64,
    /// See `added_p50_ms`.
    pub added_p99_ms: f64,
    /// See `added_p50_ms`.
    pub added_max_ms: f64,
}

/// One peer in [`Status`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerLine {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u16,
    /// The connection to it is up.
    pub link: bool,
    /// Heard from within `takeover_after`.
    pub live: bool,
    /// Seconds since last heard from.
    pub silent_secs: f64,
    /// The frame version its link negotiated; 0 while the link is down.
    pub wire: u8,
    /// The member that last said it heard this peer, while that keeps it
    /// live with no link of its own (a cut link), and how long ago.
    pub vouched_by: Option<String>,
    /// Seconds since that member heard it.
    pub vouched_secs: Option<f64>,
    /// Its epoch, once known.
    pub epoch: Option<u64>,
    /// Its queue depth (last heartbeat).
    pub queue_depth: u64,
    /// It is draining.
    pub draining: bool,
}

impl Status {
    fn of(node: &Node, now: Instant, latency: &hdrhistogram::Histogram<u64>) -> Self {
        let c: Counters = node.counters();
        let name_of = |id: NodeId| {
            node.peers()
                .find(|p| p.node == id)
                .map_or_else(|| id.to_string(), |p| p.name.clone())
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            epoch: node.epoch(),
            accepting: node.can_accept(now),
            drained: node.is_drained(),
            peers: node
                .peers()
                .map(|p| PeerLine {
                    name: p.name.clone(),
                    id: p.node.0,
                    link: p.link,
                    live: p.live,
                    silent_secs: now.saturating_duration_since(p.last_heard).as_secs_f64(),
                    wire: p.wire,
                    vouched_by: p
                        .vouched
                        .filter(|&(at, _)| at > p.last_heard)
                        .map(|(_, by)| name_of(by)),
                    vouched_secs: p
                        .vouched
                        .filter(|&(at, _)| at > p.last_heard)
                        .map(|(at, _)| now.saturating_duration_since(at).as_secs_f64()),
                    epoch: p.epoch,
                    queue_depth: p.queue_depth,
                    draining: p.draining,
                })
                .collect(),
            counters: (&c).into(),
            queue_depth: c.queue_depth,
            held_for_takers: c.held_for_takers,
            recovering: c.recovering,
            shadows_by_origin: node
                .shadows_by_origin()
                .into_iter()
                .map(|(origin, n)| (name_of(origin), n))
                .collect(),
            replication: ReplicationLatency {
                count: latency.len(),
                p50_ms: ms(latency.value_at_quantile(0.5)),
                p99_ms: ms(latency.value_at_quantile(0.99)),
                max_ms: ms(latency.max()),
                ..ReplicationLatency::default()
            },
        }
    }
}

/// An accept in progress: the placement to store with the message, and the
/// shadows' outcome to wait for.
#[derive(Debug)]
pub struct Replication {
    /// Encoded placement, stored beside the message in the same commit.
    pub placement: Vec<u8>,
    outcome: oneshot::Receiver<Result<(), Unavailable>>,
}

impl Replication {
    /// Resolves once every shadow acked (`Ok`) or the accept failed (`451`).
    pub async fn outcome(self) -> Result<(), Unavailable> {
        self.outcome.await.unwrap_or(Err(Unavailable::Timeout))
    }
}

fn decode_placement(bytes: &[u8]) -> Option<Placement> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<Placement, rkyv::rancor::Error>(&aligned).ok()
}

fn sid_of(id: MessageId) -> Option<storage::MessageId> {
    storage::MessageId::from_slice(id.as_bytes())
}

fn to_proto_id(id: storage::MessageId) -> MessageId {
    let mut b = [0u8; 16];
    b.copy_from_slice(id.as_bytes());
    MessageId(b)
}

impl Cluster {
    /// Starts the cluster side of a node: a new epoch (synced), the protocol
    /// with what the spool holds, the QUIC endpoint, a connection loop per
    /// peer. Messages the protocol hands to this node for delivery (taken
    /// over, given back) come out of the returned receiver: give them to the
    /// queue.
    ///
    /// # Errors
    /// The spool (epoch), the cluster certificates, the UDP bind.
    pub async fn start(
        config: &ClusterConfig,
        spool: storage::Spool,
        resolver: Option<hickory_resolver::TokioResolver>,
    ) -> anyhow::Result<(Arc<Self>, mpsc::UnboundedReceiver<Handover>)> {
        let floor = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs());
        let (epoch, volume) = spool.start_epoch(floor).await?;
        let my_id = config
            .my_id()
            .ok_or_else(|| anyhow::anyhow!("cluster.name is not a member"))?;
        let mut members: Vec<ProtoMember> = config
            .members
            .iter()
            .map(|m| ProtoMember {
                node: NodeId(m.id),
                name: m.name.clone(),
                zone: m.zone.clone(),
            })
            .collect();
        if config.me().is_none() {
            // Found by its pod name (`discover`), not listed.
            members.push(ProtoMember {
                node: NodeId(my_id),
                name: config.name.clone(),
                zone: None,
            });
        }
        let proto_config = ProtoConfig {
            node: NodeId(my_id),
            members,
            min_copies: config.min_copies,
            allow_degraded: config.allow_degraded,
            accept_deadline: Duration::from_millis(config.accept_deadline_ms),
            takeover_after: Duration::from_secs(config.takeover_after_secs),
            restart_wait: Duration::from_secs(config.restart_wait_secs),
            ..ProtoConfig::default()
        };
        let own: Vec<RecoveredCopy> = spool
            .placements()?
            .into_iter()
            .filter_map(|(id, p)| {
                Some(RecoveredCopy {
                    id: to_proto_id(id),
                    placement: decode_placement(&p)?,
                    promoted: false,
                })
            })
            .collect();
        let shadows = spool
            .shadow_placements()?
            .into_iter()
            .filter_map(|((_, id), p)| {
                Some(RecoveredCopy {
                    id: to_proto_id(id),
                    placement: decode_placement(&p)?,
                    promoted: false,
                })
            })
            .collect();
        // Recovered messages wait for the peers' word (taken over or not).
        let blocked = Blocked::default();
        blocked.block(&own.iter().map(|c: &RecoveredCopy| c.id).collect::<Vec<_>>());
        let boot = Boot {
            epoch,
            volume,
            own,
            shadows,
        };
        let pulse = Pulse::new(proto_config.heartbeat_interval);
        let copying = Blocked::default();
        let node = Node::new(Arc::new(proto_config), boot, Instant::now());
        let endpoint = transport::endpoint(config)?;
        let (tx, rx) = mpsc::channel(4096);
        let (deliver, delivered) = mpsc::unbounded_channel();
        let accepting = Arc::new(AtomicBool::new(config.min_copies <= 1));
        let counters = Arc::new(TransportCounters::default());
        let spool_for_copies = spool.clone();
        let io = Io {
            spool,
            deliver,
            me: tx.clone(),
            accepting: accepting.clone(),
            blocked: blocked.clone(),
            copying: (config.min_copies > 1).then(|| copying.clone()),
            pulse: pulse.clone(),
            copy_budget: Arc::new(tokio::sync::Semaphore::new(config.copy_queue_bytes as usize)),
            copy_budget_total: config.copy_queue_bytes,
        };
        tokio::spawn(Driver::new(node, io).run(rx));
        let shared = Arc::new(config.clone());
        tokio::spawn(transport::accept(
            endpoint.clone(),
            shared,
            tx.clone(),
            counters.clone(),
            spool_for_copies,
        ));
        let mut dialled = std::collections::HashMap::new();
        for m in config.members.iter().filter(|m| m.name != config.name) {
            let address = transport::spawn_dial(&endpoint, NodeId(m.id), m.name.clone(), m.address.clone(), &tx);
            dialled.insert(m.name.to_ascii_lowercase(), address);
        }
        match (&config.discover, resolver) {
            (Some(_), Some(resolver)) => {
                tokio::spawn(discover::run(
                    config.clone(),
                    resolver,
                    endpoint.clone(),
                    tx.clone(),
                    dialled,
                ));
            }
            (Some(_), None) => anyhow::bail!("cluster.discover needs a DNS resolver"),
            (None, _) => {}
        }
        tracing::info!(node = %config.name, epoch, volume, min_copies = config.min_copies, "cluster started");
        Ok((
            Arc::new(Self {
                tx,
                min_copies: config.min_copies,
                accepting,
                counters,
                endpoint,
                blocked,
                copying,
                pulse,
                copy_rate: config.copy_rate_bytes,
                accept_deadline: Duration::from_millis(config.accept_deadline_ms),
                rereplicated: AtomicU64::new(0),
                rereplication_failed: AtomicU64::new(0),
                added: std::sync::Mutex::new(driver::latency_histogram()),
            }),
            delivered,
        ))
    }

    /// Whether this node may start delivering `id` now: not while a restart
    /// waits for the peers' answer about it, nor once a peer took it over, nor
    /// while the protocol's timers are overdue (see [`Pulse`]); the queue's
    /// next scan asks again.
    pub fn may_deliver(&self, id: storage::MessageId) -> bool {
        let id = to_proto_id(id);
        !self.pulse.overdue() && !self.blocked.contains(&id) && !self.copying.contains(&id)
    }

    /// Whether the protocol holds `id` for another node (a taker that ranks
    /// first) or has dropped it: it is not this node's to copy again.
    pub fn held_elsewhere(&self, id: storage::MessageId) -> bool {
        self.blocked.contains(&to_proto_id(id))
    }

    /// The queue is done with a [`Handover::TakenOver`] message (counted
    /// unless [`CopyAgain::Moot`]); it may be delivered from now on.
    pub fn copied_again(&self, id: storage::MessageId, outcome: CopyAgain) {
        match outcome {
            CopyAgain::Copied => self.rereplicated.fetch_add(1, Ordering::Relaxed),
            CopyAgain::Failed => self.rereplication_failed.fetch_add(1, Ordering::Relaxed),
            CopyAgain::Moot => 0,
        };
        self.copying.unblock(&[to_proto_id(id)]);
    }

    /// How long committing a message again may take beyond its copies'
    /// size allowance: the spool's write and the shadows' acks, each within
    /// `cluster.accept_deadline_ms`.
    pub fn accept_deadline(&self) -> Duration {
        self.accept_deadline * 2
    }

    /// How many queued messages this node must not start now (held for a
    /// taker, or waiting for the peers' word): the queue reads that many
    /// more entries of its due index, so that they cannot hide the rest.
    pub fn held(&self) -> usize {
        self.blocked.len() + self.copying.len()
    }

    /// Whether accepted messages need copies on peers.
    pub fn replicates(&self) -> bool {
        self.min_copies > 1
    }

    /// Whether enough peers are reachable to accept mail now (`451` at MAIL
    /// FROM otherwise, and `/readyz` false).
    pub fn can_accept(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// How much longer than the node's accept timeout a message of `size`
    /// bytes may take to commit: the time its copies may take at
    /// `cluster.copy_rate_bytes`.
    pub fn copy_allowance(&self, size: u64) -> Duration {
        Duration::from_millis(size.saturating_mul(1000) / self.copy_rate.max(1))
    }

    /// Places the copies of a message about to be committed locally; they
    /// are streamed to the holders (see `replicate`) while the local commit
    /// runs.
    ///
    /// # Errors
    /// The accept is refused at once (too few peers): answer `451 4.3.0`.
    pub async fn place(
        &self,
        id: storage::MessageId,
        envelope: Vec<u8>,
        body: CopyBody,
        body_size: u64,
    ) -> Result<Replication, Unavailable> {
        let (ptx, prx) = oneshot::channel();
        let (otx, orx) = oneshot::channel();
        let cmd = Cmd::Accept {
            id: to_proto_id(id),
            envelope,
            body,
            body_size,
            placement: ptx,
            outcome: otx,
        };
        let unavailable = Unavailable::NotEnoughPeers {
            reachable: 0,
            needed: self.min_copies.saturating_sub(1),
        };
        if self.tx.send(cmd).await.is_err() {
            return Err(unavailable);
        }
        match prx.await {
            Ok(Some(p)) => Ok(Replication {
                placement: placement_bytes(&p),
                outcome: orx,
            }),
            // Refused at once: the outcome says why.
            _ => Err(orx.await.ok().and_then(Result::err).unwrap_or(unavailable)),
        }
    }

    /// `id` left this node's queue: its copies are released.
    pub fn finished(&self, id: storage::MessageId) {
        // Never dropped: a lost Final would keep the message "queued" in the
        // protocol for good, its shadows never released and a restarted
        // origin holding it for this taker forever. Full (a burst of
        // deliveries): sent from a task once the driver catches up.
        match self.tx.try_send(Cmd::Final(to_proto_id(id))) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let tx = self.tx.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = tx.send(cmd).await;
                    });
                }
            }
        }
    }

    /// A status snapshot (`None` if the driver is gone).
    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Status(tx)).await.ok()?;
        let mut status = rx.await.ok()?;
        status.counters.rereplicated = self.rereplicated.load(Ordering::Relaxed);
        status.counters.rereplication_failed = self.rereplication_failed.load(Ordering::Relaxed);
        if let Ok(h) = self.added.lock() {
            let ms = |us: u64| us as f64 / 1000.0;
            status.replication.added_p50_ms = ms(h.value_at_quantile(0.5));
            status.replication.added_p99_ms = ms(h.value_at_quantile(0.99));
            status.replication.added_max_ms = ms(h.max());
        }
        Some(status)
    }

    /// An accept's last shadow acked `added` after its local write was
    /// synced (zero when the acks came first): what replication added to
    /// its `250`, in [`ReplicationLatency`]'s `added_*` figures.
    pub fn replication_added(&self, added: Duration) {
        if let Ok(mut h) = self.added.lock() {
            let us = u64::try_from(added.as_micros()).unwrap_or(u64::MAX);
            let _ = h.record(us);
        }
    }

    /// The queued messages this node delivers whose other copies are gone
    /// (their origin or holders died, lost their volumes or drain; or a
    /// degraded accept; see `proto::cluster::Node::is_single_copy`): the
    /// queue copies them again. O(queued messages) in the driver.
    pub async fn single_copies(&self) -> Vec<storage::MessageId> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::SingleCopies(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default().into_iter().filter_map(sid_of).collect()
    }

    /// Whether `id` is one of [`Cluster::single_copies`].
    pub async fn is_single_copy(&self, id: storage::MessageId) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::IsSingleCopy(to_proto_id(id), tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Refused handshakes and malformed frames.
    pub fn transport_counters(&self) -> &TransportCounters {
        &self.counters
    }

    /// Starts a drain: the protocol hands every queued message to a peer.
    pub async fn drain(&self) {
        let _ = self.tx.send(Cmd::Drain).await;
    }

    /// Closes the QUIC endpoint (at shutdown).
    pub fn close(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    }
}
