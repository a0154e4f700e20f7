//! The delivery queue: which message is tried when.
//!
//! The queue index is the spool's `sched` column family (due time || id),
//! which RocksDB keeps ordered and durable: accepting a message writes its
//! entry in the same synced batch, every state change moves it, and a restart
//! needs no rebuild — the scheduler simply asks for what is due. (DESIGN §5
//! sketches in-memory ready queues rebuilt by a scan; the spool's index gives
//! the same order without a second copy, and `Spool::recover` remains for
//! reports.) One task owns a message while it is being tried; `in_flight`
//! keeps the scheduler from starting a second one.

mod attempt;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::MessageId;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::{error, warn};

use crate::ops::metrics::Metrics;
use crate::outbound::{Pool, RetryPolicy, Router};

/// Shared state of the delivery side of a node.
pub struct Queue {
    spool: storage::Spool,
    pool: Pool,
    router: Router,
    retry: RetryPolicy,
    hostname: String,
    in_flight: Mutex<HashSet<MessageId>>,
    wake: Notify,
    limit: Arc<Semaphore>,
    poll: Duration,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// A queue over `spool` delivering through `pool` to where `router` says.
    pub fn new(
        spool: storage::Spool,
        pool: Pool,
        router: Router,
        retry: RetryPolicy,
        hostname: String,
        max_in_flight: usize,
        poll: Duration,
    ) -> Self {
        Self {
            spool,
            pool,
            router,
            retry,
            hostname,
            in_flight: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            limit: Arc::new(Semaphore::new(max_in_flight)),
            poll,
            metrics: Arc::default(),
        }
    }

    /// Counts deliveries and DSNs in `metrics` (instead of a private set).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The node's counters (the listeners count accepted messages here too).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Tells the scheduler that something became due now (a new message).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many messages are being tried right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map_or(0, |s| s.len())
    }

    fn claim(&self, id: MessageId) -> bool {
        self.in_flight.lock().is_ok_and(|mut s| s.insert(id))
    }

    fn release(&self, id: MessageId) {
        if let Ok(mut s) = self.in_flight.lock() {
            s.remove(&id);
        }
    }

    /// Runs the scheduler until `shutdown` turns true; attempts in progress
    /// finish (their outcome is recorded) before it returns.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let total = self.limit.available_permits() as u32;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = storage::now_ms();
            let free = self.limit.available_permits();
            if free > 0 {
                // In-flight messages are still in the index: look past them.
                match self.spool.due(now, free + self.in_flight()) {
                    Ok(due) => {
                        for (_, id) in due {
                            if !self.claim(id) {
                                continue;
                            }
                            let Ok(permit) = self.limit.clone().acquire_owned().await else {
                                return;
                            };
                            let queue = self.clone();
                            tokio::spawn(async move {
                                queue.attempt(id).await;
                                queue.release(id);
                                drop(permit);
                                // Something may have become free or due.
                                queue.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => error!(error = %e, "reading the due index failed"),
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        if self.limit.acquire_many(total).await.is_err() {
            warn!("delivery tasks did not finish cleanly");
        }
    }
}
