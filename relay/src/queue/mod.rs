//! The delivery queue: how a message becomes the node's responsibility, and
//! which message is tried when.
//!
//! # Layout
//! - `commit`: the one commit path ([`Queue::commit`]) every accepted message
//!   takes, client mail and DSNs alike ([`Prepared`], [`CommitError`]).
//! - this module: the scheduler ([`Queue::run`]), the in-memory hand-off of
//!   new messages ([`Queue::submit`]) and the due index.
//! - `attempt`: one delivery attempt of one message, recipient states, the
//!   DSN owed, removal.
//! - [`retry`]: the backoff schedule, a pure function ([`RetryPolicy`]).
//! - [`control`]: what operators do to queued messages (hold, release,
//!   retry, bounce, delete), chosen by a [`control::Filter`].
//! - `shape`: the queue's shape by destination and age ([`Shape`], like
//!   Postfix's qshape).
//! - `rereplicate`: a message taken over from a peer is committed again
//!   with new copies before it is delivered ([`Queue::taken_over`]).
//!
//! Depends on `outbound` (routes, pool, DSN building) and the layers below.
//!
//! The queue index is the spool's `sched` column family (due time || id),
//! which RocksDB keeps ordered and durable: accepting a message writes its
//! entry in the same synced batch, every state change moves it, and a restart
//! needs no rebuild — the scheduler simply asks for what is due. (DESIGN §4
//! has the deferred index rebuilt into memory on start; the spool's index
//! gives the same order without a second copy, and `Spool::recover` remains
//! for reports.) One task owns a message while it is being tried; `in_flight`
//! keeps the scheduler from starting a second one.
//!
//! A message just accepted does not go through that index: the listener hands
//! its id to [`Queue::submit`] and the scheduler starts it from memory. Its
//! index entry is dated [`Queue::first_due`] (`handoff_grace` ahead), so the
//! periodic scan neither returns it while that first attempt runs nor walks
//! the tombstone its removal leaves (RocksDB iterators step over every
//! deleted key below the bound: scanning from the start of the index on each
//! acceptance cost a third of the node's CPU under load). Anything that could
//! lose the in-memory id — a restart, a full ready list — makes the next scan
//! look `handoff_grace` ahead, so such a message waits for no timer.

mod attempt;
mod commit;
mod content;
pub mod control;
mod rereplicate;
pub mod retry;
mod shape;

pub use commit::{spool_reply, Body, CommitError, Prepared};
pub use retry::{Retry, RetryPolicy};
pub use shape::{Shape, ShapeRow, AGE_BUCKETS_MIN};

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::MessageId;
use tokio::sync::{Notify, Semaphore};
use tracing::{error, warn};

use crate::cluster::Cluster;
use crate::lifecycle::{Phase, PhaseWatch};
use crate::metrics::Metrics;
use crate::outbound::{Pool, Router};
use crate::sync::lock;

/// Shared state of the delivery side of a node.
pub struct Queue {
    spool: storage::Spool,
    pool: Pool,
    /// Swapped by a reload (routes); an attempt uses the one it started with.
    router: arc_swap::ArcSwap<Router>,
    /// Deliveries per minute per destination (`[fairness]`); swapped by a reload.
    throttle: arc_swap::ArcSwap<crate::rate::RateLimits>,
    retry: RetryPolicy,
    hostname: String,
    in_flight: Mutex<HashSet<MessageId>>,
    /// Messages whose commit has not finished (local write or copies
    /// pending): never tried before the client has its answer, so that a
    /// message refused after all (451) is not delivered as well.
    committing: Arc<Mutex<HashSet<MessageId>>>,
    wake: Notify,
    limit: Arc<Semaphore>,
    poll: Duration,
    metrics: Arc<Metrics>,
    /// Accepted ids waiting for a delivery slot, oldest first.
    ready: Mutex<VecDeque<MessageId>>,
    ready_cap: usize,
    /// Set when an id was not kept in `ready`: the next scan looks ahead.
    look_ahead: AtomicBool,
    handoff_grace: Duration,
    started: AtomicU64,
    cluster: Option<Arc<Cluster>>,
}

/// When and how much the scheduler starts.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Most messages being tried at once.
    pub max_in_flight: usize,
    /// How often the on-disk index is scanned for due messages.
    pub poll: Duration,
    /// How far ahead a new message's index entry is dated (see the module doc).
    pub handoff_grace: Duration,
    /// Most accepted ids kept in memory waiting for a delivery slot; beyond
    /// it they are found by the next scan instead (16 bytes each).
    pub max_ready: usize,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            poll: Duration::from_millis(500),
            handoff_grace: Duration::from_secs(300),
            max_ready: 100_000,
        }
    }
}

impl Queue {
    /// A queue over `spool` delivering through `pool` to where `router` says.
    pub fn new(
        spool: storage::Spool,
        pool: Pool,
        router: Router,
        retry: RetryPolicy,
        hostname: String,
        schedule: Schedule,
    ) -> Self {
        Self {
            spool,
            pool,
            router: arc_swap::ArcSwap::from_pointee(router),
            throttle: arc_swap::ArcSwap::from_pointee(crate::rate::RateLimits::new(None, [])),
            retry,
            hostname,
            in_flight: Mutex::new(HashSet::new()),
            committing: Arc::default(),
            wake: Notify::new(),
            limit: Arc::new(Semaphore::new(schedule.max_in_flight)),
            poll: schedule.poll,
            metrics: Arc::default(),
            ready: Mutex::new(VecDeque::new()),
            ready_cap: schedule.max_ready,
            // A fresh start: what the last run accepted is dated ahead.
            look_ahead: AtomicBool::new(true),
            handoff_grace: schedule.handoff_grace,
            started: AtomicU64::new(0),
            cluster: None,
        }
    }

    /// Counts deliveries and DSNs in `metrics` (instead of a private set).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Replicates every committed message through `cluster` (DESIGN §3).
    #[must_use]
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Routes new attempts with `router` (a reload); attempts in progress
    /// finish with the old one. Idle pooled connections are closed (QUIT):
    /// they may lead to a host the new routes no longer name.
    pub async fn set_router(&self, router: Router) {
        self.router.store(Arc::new(router));
        self.pool.close_idle(true).await;
    }

    /// Limits deliveries per destination (next hop) with `throttle`: a
    /// destination over its rate waits, without an attempt being counted.
    pub fn set_throttle(&self, throttle: crate::rate::RateLimits) {
        self.throttle.store(Arc::new(throttle));
    }

    /// The cluster, if the node is in one.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Tells the scheduler that something became due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The `next_attempt_ms` to store for the recipients of a message accepted
    /// at `now_ms` and then given to [`Queue::submit`]: the time at which the
    /// periodic scan would pick it up if the in-memory handoff were lost.
    pub fn first_due(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.handoff_grace.as_millis() as u64)
    }

    /// Hands a message the spool just made durable to delivery, without a
    /// scan of the due index. Its `Queued` recipients are tried at once.
    pub fn submit(&self, id: MessageId) {
        let kept = {
            let mut r = lock(&self.ready);
            let room = r.len() < self.ready_cap;
            if room {
                r.push_back(id);
            }
            room
        };
        if !kept {
            self.look_ahead.store(true, Ordering::Release);
        }
        self.wake.notify_one();
    }

    fn next_ready(&self) -> Option<MessageId> {
        lock(&self.ready).pop_front()
    }

    /// How many messages are being tried right now.
    pub fn in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }

    fn claim(&self, id: MessageId) -> bool {
        lock(&self.in_flight).insert(id)
    }

    fn release(&self, id: MessageId) {
        lock(&self.in_flight).remove(&id);
    }

    /// Runs the scheduler until the node is [`Phase::Stopping`] (it keeps
    /// delivering while the node drains); attempts in progress
    /// finish (their outcome is recorded) before it returns.
    ///
    /// Ids from [`Queue::submit`] start first; the due index is scanned every
    /// `poll`, and again as soon as a slot frees when the last scan filled
    /// every slot (more may be due).
    pub async fn run(self: Arc<Self>, mut shutdown: PhaseWatch) {
        let total = self.limit.available_permits() as u32;
        let mut next_scan = tokio::time::Instant::now();
        let mut backlog = false;
        loop {
            if shutdown.reached_now(Phase::Stopping) {
                break;
            }
            while let Some(id) = self.next_ready() {
                if self.start(id).await == Start::Closing {
                    return;
                }
            }
            let free = self.limit.available_permits();
            if free > 0 && (backlog || tokio::time::Instant::now() >= next_scan) {
                next_scan = tokio::time::Instant::now() + self.poll;
                let ahead = self.look_ahead.swap(false, Ordering::AcqRel);
                let now = storage::now_ms();
                let until = if ahead { self.first_due(now) } else { now };
                // In-flight messages may still be in the index, and messages
                // that may not start now (held for a cluster peer, commit
                // under way) stay there: look past them all. Held messages
                // keep their old due time, so without this they fill every
                // page ahead of the rest: seen in scripts/chaos, where each
                // side of a healed partition held hundreds for the other
                // and delivered nothing until a restart.
                match self.spool.due(until, free + self.in_flight() + self.skipped()) {
                    Ok(due) => {
                        let mut started = 0;
                        for (due_ms, id) in due {
                            if self.in_flight_has(id) {
                                continue;
                            }
                            // A look-ahead scan also meets deferred messages
                            // that are not due yet: only never-tried ones start.
                            if due_ms > now && !self.never_tried(id) {
                                continue;
                            }
                            match self.start(id).await {
                                Start::Closing => return,
                                Start::Started => started += 1,
                                Start::Skipped => {}
                            }
                        }
                        backlog = started >= free;
                        if ahead && backlog {
                            self.look_ahead.store(true, Ordering::Release);
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "reading the due index failed");
                        if ahead {
                            self.look_ahead.store(true, Ordering::Release);
                        }
                    }
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(next_scan) => {}
                () = shutdown.reached(Phase::Stopping) => {}
            }
        }
        if self.limit.acquire_many(total).await.is_err() {
            warn!("delivery tasks did not finish cleanly");
        }
        // Idle connections say QUIT rather than vanish with the process.
        self.pool.close_idle(true).await;
    }

    /// How many due-index entries a scan may have to step over: messages
    /// held by the cluster and commits under way.
    fn skipped(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.held()) + lock(&self.committing).len()
    }

    /// Starts one attempt of `id` unless it is already being tried or may
    /// not start now; waits for a delivery slot.
    async fn start(self: &Arc<Self>, id: MessageId) -> Start {
        let Ok(permit) = self.limit.clone().acquire_owned().await else {
            return Start::Closing;
        };
        if self.cluster.as_ref().is_some_and(|c| !c.may_deliver(id)) {
            return Start::Skipped; // the cluster says another node delivers it, or not yet
        }
        if lock(&self.committing).contains(&id) {
            return Start::Skipped; // found by a scan before its commit ended
        }
        // While the spool cannot write (full disk, stalled device) an attempt's
        // outcome cannot be recorded: the message would stay due and be delivered
        // again at every scan (seen with a full disk in scripts/chaos: one message
        // delivered hundreds of times). Deliveries resume with the writes.
        if self.spool.health().is_err() {
            return Start::Skipped;
        }
        if !self.claim(id) {
            return Start::Skipped;
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        let queue = self.clone();
        tokio::spawn(async move {
            queue.attempt(id).await;
            queue.release(id);
            drop(permit);
            // A slot is free: more may be waiting.
            queue.wake.notify_one();
        });
        Start::Started
    }

    /// Whether `id` has a recipient never tried (`Queued`): such a message
    /// is dated ahead only because of the in-memory hand-off.
    fn never_tried(&self, id: MessageId) -> bool {
        match self.spool.envelope(id) {
            Ok(Some(env)) => env
                .recipients
                .iter()
                .any(|r| r.status == storage::RecipientStatus::Queued),
            Ok(None) => false,
            // Let the attempt report (and reschedule) a damaged record.
            Err(_) => true,
        }
    }

    /// Delivery attempts started since the node started (one per message
    /// tried, whatever the number of recipients).
    pub fn attempts_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    fn in_flight_has(&self, id: MessageId) -> bool {
        lock(&self.in_flight).contains(&id)
    }
}

/// What [`Queue::start`] did with one id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// An attempt runs.
    Started,
    /// Not now (held, in flight, committing, spool unhealthy); a later scan
    /// asks again.
    Skipped,
    /// The queue is closing.
    Closing,
}
