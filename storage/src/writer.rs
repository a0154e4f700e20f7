//! Group commit: one writer thread turns many write requests into one RocksDB write
//! (one WAL append, and one fsync when any of them asked for it), then wakes every
//! waiter.
//!
//! Every write of a running spool goes through this thread, buffered ones included.
//! A RocksDB write that arrives while another group is being fsynced waits for that
//! fsync in RocksDB's write queue; done on an async runtime's worker thread, that
//! wait stalls every session on the worker (it cost the relay a third of its
//! throughput). Here a buffered write is a request like any other: its caller
//! awaits the commit instead of blocking, or does not wait at all (detached).
//!
//! Requests carry an [`Ops`] list rather than a `rocksdb::WriteBatch`: the rocksdb crate
//! cannot append one `WriteBatch` to another without copying every record twice, while
//! moving owned key/value vectors through the channel costs nothing and the writer copies
//! each body exactly once, into the batch it writes.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use rocksdb::{WriteBatch, WriteOptions};

use crate::error::Error;
use crate::keys::Cf;
use crate::spool::Core;

/// One write operation on a column family.
#[derive(Debug)]
pub(crate) enum Op {
    /// The value is `Bytes` so that a body handed over by the relay is not copied
    /// before RocksDB copies it into the batch.
    Put(Cf, Vec<u8>, bytes::Bytes),
    Delete(Cf, Vec<u8>),
    Merge(Cf, Vec<u8>, Vec<u8>),
}

/// An atomic group of operations: all of them reach the database or none does.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    ops: Vec<Op>,
    bytes: usize,
}

impl Ops {
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(crate) fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<bytes::Bytes>) {
        let key = key.into();
        let value = value.into();
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Put(cf, key, value));
    }

    pub(crate) fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += key.len();
        self.ops.push(Op::Delete(cf, key));
    }

    /// Appends every operation of `other` (one batch written atomically).
    pub(crate) fn extend(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
    }

    pub(crate) fn merge(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        let key = key.into();
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Merge(cf, key, value));
    }

    /// Appends the operations to `batch`.
    pub(crate) fn apply(self, core: &Core, batch: &mut WriteBatch) -> Result<(), Error> {
        for op in self.ops {
            match op {
                Op::Put(cf, k, v) => batch.put_cf(core.cf(cf)?, k, v),
                Op::Delete(cf, k) => batch.delete_cf(core.cf(cf)?, k),
                Op::Merge(cf, k, v) => batch.merge_cf(core.cf(cf)?, k, v),
            }
        }
        Ok(())
    }
}

struct Request {
    ops: Ops,
    enqueued: Instant,
    /// `None`: detached, nobody waits; written whatever its age.
    reply: Option<oneshot::Sender<Result<(), Error>>>,
    /// The batch holding it must be fsynced before the reply.
    sync: bool,
}

enum Command {
    Write(Request),
    Stop,
}

/// The sending side of the writer's queue, held by every [`crate::Spool`] clone.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    tx: Sender<Command>,
    backlog: Arc<Backlog>,
}

/// Detached writes (trace events, monthly counters) waiting in the writer's
/// queue, bounded by [`crate::SpoolConfig::max_detached_writes`]: a stalled
/// disk or a flood of events must not grow the queue without end. Beyond
/// the bound they are dropped and counted (they are best effort: the trace
/// and the counters miss them; no message is affected). Synced writes are
/// not bounded here: each has a caller waiting for it, so their number is
/// bounded by the sessions and the delivery slots.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pending: std::sync::atomic::AtomicUsize,
    dropped: std::sync::atomic::AtomicU64,
    max: usize,
}

impl Backlog {
    /// Detached writes dropped since the spool opened.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn taken(&self) {
        self.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Write(r) => write!(f, "Write({} ops)", r.ops.ops.len()),
            Self::Stop => f.write_str("Stop"),
        }
    }
}

impl WriterHandle {
    /// Queues `ops` for the next group commit. The future resolves once the batch holding
    /// them was written — with `sync = true` when `sync` — or failed.
    pub(crate) fn submit<T: Unpin>(&self, ops: Ops, sync: bool, value: T) -> WriteFuture<T> {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            ops,
            enqueued: Instant::now(),
            reply: Some(reply),
            sync,
        };
        match self.tx.send(Command::Write(req)) {
            Ok(()) => WriteFuture {
                state: State::Waiting {
                    rx: rx.into_future(),
                    value: Some(value),
                },
            },
            Err(_) => WriteFuture::ready(Err(Error::Closed)),
        }
    }

    /// Queues `ops` for the next group commit without waiting for it (no fsync asked).
    /// Writes from one thread are applied in the order they were queued. A failure is
    /// logged by the writer and counts against the spool's health.
    ///
    /// # Errors
    /// [`Error::Closed`] when the writer has stopped.
    pub(crate) fn submit_detached(&self, ops: Ops) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        if self.backlog.pending.fetch_add(1, Ordering::AcqRel) >= self.backlog.max {
            self.backlog.taken();
            let n = self.backlog.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(10_000) {
                tracing::warn!(
                    dropped = n,
                    "spool writer queue full: detached writes (trace events, counters) dropped"
                );
            }
            return Ok(());
        }
        let req = Request {
            ops,
            enqueued: Instant::now(),
            reply: None,
            sync: false,
        };
        self.tx.send(Command::Write(req)).map_err(|_| {
            self.backlog.taken();
            Error::Closed
        })
    }

    /// The detached writes' bound and drop count.
    pub(crate) fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    pub(crate) fn stop(&self) {
        // If the thread is gone already there is nothing to stop.
        let _ = self.tx.send(Command::Stop);
    }
}

/// Starts the writer thread.
pub(crate) fn spawn(core: Arc<Core>) -> Result<(WriterHandle, JoinHandle<()>), Error> {
    let (tx, rx) = channel::unbounded();
    let backlog = Arc::new(Backlog {
        max: core.config.max_detached_writes.max(1),
        ..Backlog::default()
    });
    let taken = backlog.clone();
    let join = thread::Builder::new()
        .name("spool-writer".into())
        .spawn(move || run(&core, &rx, &taken))
        .map_err(|e| Error::Unhealthy {
            reason: format!("cannot start the spool writer thread: {e}"),
        })?;
    Ok((WriterHandle { tx, backlog }, join))
}

/// How often the writer probes the database while it is unhealthy.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How long the database may keep refusing writes while plain files in its
/// directory can be written before the spool is declared stuck.
const STUCK_AFTER: Duration = Duration::from_secs(30);

/// The plain-file write that shows the volume takes writes again: about what
/// a group commit and a memtable flush need to start.
const SPACE_CHECK_BYTES: usize = 8 << 20;

/// Whether the spool's volume takes a synced write of [`SPACE_CHECK_BYTES`]
/// now (the file is removed at once).
fn volume_writable(dir: &std::path::Path) -> bool {
    use std::io::Write as _;
    let path = dir.join(".estafette-space-check");
    let ok = std::fs::File::create(&path)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; SPACE_CHECK_BYTES])?;
            f.sync_all()
        })
        .is_ok();
    let _ = std::fs::remove_file(&path);
    ok
}

fn run(core: &Core, rx: &Receiver<Command>, backlog: &Backlog) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let buffered = WriteOptions::default();
    let max_msgs = core.config.max_batch_messages.max(1);
    let max_bytes = core.config.max_batch_bytes;
    let mut group: Vec<Request> = Vec::with_capacity(max_msgs);
    // RocksDB turns read-only after some write errors (a WAL append on a full
    // disk) and recovers by itself only once free space passes its own reserve;
    // on a small volume it may never. Refusing writes while the volume takes
    // them again for STUCK_AFTER is reported (`Spool::stuck`): reopening, that
    // is restarting the node, clears it.
    let mut stuck = StuckCheck::default();
    loop {
        let first = if core.health.is_ok() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(PROBE_INTERVAL)
        };
        let first = match first {
            Ok(Command::Write(r)) => {
                if r.reply.is_none() {
                    backlog.taken();
                }
                r
            }
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                core.probe(&sync);
                stuck.check(core);
                continue;
            }
        };
        let mut bytes = first.ops.bytes;
        group.push(first);
        let mut stop = false;
        while group.len() < max_msgs && bytes < max_bytes {
            match rx.try_recv() {
                Ok(Command::Write(r)) => {
                    if r.reply.is_none() {
                        backlog.taken();
                    }
                    bytes += r.ops.bytes;
                    group.push(r);
                }
                Ok(Command::Stop) => {
                    stop = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let synced = group.iter().any(|r| r.sync);
        let options = if synced { &sync } else { &buffered };
        commit(core, options, synced, &mut group, bytes);
        // Writes may keep coming (trace events) while the database refuses
        // them: the probe's timeout alone would never see the volume back.
        stuck.check(core);
        if stop {
            return;
        }
    }
}

/// Tells a database that refuses writes the volume would take (see `run`).
#[derive(Default)]
struct StuckCheck {
    since: Option<Instant>,
    last: Option<Instant>,
}

impl StuckCheck {
    /// At most every [`PROBE_INTERVAL`], and only while unhealthy.
    fn check(&mut self, core: &Core) {
        if core.health.is_ok() {
            self.since = None;
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < PROBE_INTERVAL) || core.health.stuck() {
            return;
        }
        self.last = Some(Instant::now());
        if !volume_writable(&core.config.path) {
            self.since = None;
            return;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= STUCK_AFTER {
            tracing::error!(
                path = %core.config.path.display(),
                "the spool's database refuses writes although its volume takes them again: \
                 it needs reopening (a restart of the node)"
            );
            core.health.set_stuck();
        }
    }
}

/// Writes one batch for the whole group and answers every request.
fn commit(core: &Core, options: &WriteOptions, synced: bool, group: &mut Vec<Request>, bytes: usize) {
    let deadline = core.config.write_deadline;
    // Room for every key and value plus RocksDB's per-record overhead: no reallocation
    // while copying the bodies in.
    let mut batch = WriteBatch::with_capacity_bytes(bytes + 32 * group.len() + 12);
    let mut waiters = Vec::with_capacity(group.len());
    let mut detached = 0usize;
    for req in group.drain(..) {
        if let Some(reply) = &req.reply {
            // The caller dropped its future: it was never told "stored", so skipping the
            // write is within the contract and avoids storing a message the client will
            // resend.
            if reply.is_closed() {
                continue;
            }
            let waited = req.enqueued.elapsed();
            if waited > deadline {
                if let Some(reply) = req.reply {
                    let _ = reply.send(Err(Error::DeadlineExceeded { waited }));
                }
                continue;
            }
        }
        let Request { ops, reply, .. } = req;
        match (ops.apply(core, &mut batch), reply) {
            (Ok(()), Some(reply)) => waiters.push(reply),
            (Ok(()), None) => detached += 1,
            (Err(e), Some(reply)) => {
                let _ = reply.send(Err(e));
            }
            (Err(e), None) => tracing::warn!(error = %e, "detached spool write dropped"),
        }
    }
    if waiters.is_empty() && detached == 0 {
        return;
    }
    let writes = waiters.len() + detached;
    let started = Instant::now();
    core.health.writing(true);
    let result = core
        .db
        .write_opt(batch, options)
        .map_err(|e| Error::from_db(&core.config.path, e));
    core.health.writing(false);
    if let Some(observer) = &core.config.observer {
        (observer.0)(crate::config::Commit {
            writes,
            bytes,
            synced,
            took: started.elapsed(),
        });
    }
    core.health.record(&result);
    if let Err(e) = &result {
        tracing::warn!(error = %e, batch = waiters.len(), detached, "spool group commit failed");
    }
    for w in waiters {
        // A waiter that went away meanwhile does not matter.
        let _ = w.send(result.clone());
    }
}

/// The spool's health as seen by the last synced write or probe, and by the
/// write in progress: one stuck longer than `stall_after` (a frozen or hung
/// device) counts as unhealthy until it finishes.
#[derive(Debug, Default)]
pub(crate) struct Health {
    last_error: Mutex<Option<Error>>,
    /// When the group commit in progress started, ms since the epoch; 0 when idle.
    writing_since_ms: std::sync::atomic::AtomicU64,
    /// 0: never reported as a stall.
    stall_after_ms: u64,
    /// The database refuses writes that its volume would take (see `run`).
    stuck: std::sync::atomic::AtomicBool,
}

impl Health {
    pub(crate) fn with_stall_after(stall_after: Duration) -> Self {
        Self {
            stall_after_ms: u64::try_from(stall_after.as_millis()).unwrap_or(u64::MAX),
            ..Self::default()
        }
    }

    /// A group commit starts (`true`) or ends.
    pub(crate) fn writing(&self, started: bool) {
        let v = if started { crate::id::now_ms().max(1) } else { 0 };
        self.writing_since_ms.store(v, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn record(&self, result: &Result<(), Error>) {
        let mut g = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if g.take().is_some() {
                    tracing::info!("spool writes succeed again");
                }
            }
            Err(e) => *g = Some(e.clone()),
        }
    }

    pub(crate) fn get(&self) -> Result<(), Error> {
        if let Some(e) = &*self.last_error.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(e.clone());
        }
        let since = self.writing_since_ms.load(std::sync::atomic::Ordering::Acquire);
        let stuck = crate::id::now_ms().saturating_sub(since);
        if since != 0 && self.stall_after_ms != 0 && stuck > self.stall_after_ms {
            return Err(Error::Unhealthy {
                reason: format!("a spool write has not finished for {} s (stalled disk?)", stuck / 1000),
            });
        }
        Ok(())
    }

    pub(crate) fn set_stuck(&self) {
        self.stuck.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Set once for good: only a new process clears RocksDB's read-only state.
    pub(crate) fn stuck(&self) -> bool {
        self.stuck.load(std::sync::atomic::Ordering::Acquire)
    }

    /// No write error on record (a write in progress, stuck or not, does not count).
    pub(crate) fn is_ok(&self) -> bool {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

/// A pending spool write. Resolves to `Ok(value)` once the write is on stable storage
/// (for synced writes) or applied (for buffered ones), or to the [`Error`].
///
/// Runtime-agnostic: it is woken by the writer thread through a oneshot channel and needs
/// no executor features. Outside async code, [`WriteFuture::wait`] blocks the thread.
///
/// Dropping it is safe: the write may still happen, or (if the writer sees the drop
/// before it starts the batch) not; either way it was never acknowledged.
#[must_use = "a spool write is only known to be stored once its future resolves Ok"]
#[derive(Debug)]
pub struct WriteFuture<T> {
    state: State<T>,
}

#[derive(Debug)]
enum State<T> {
    Ready(Option<Result<T, Error>>),
    Waiting {
        rx: oneshot::AsyncReceiver<Result<(), Error>>,
        value: Option<T>,
    },
}

impl<T: Unpin> WriteFuture<T> {
    pub(crate) fn ready(result: Result<T, Error>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    /// Blocks the current thread until the write completes. For threads outside an async
    /// runtime (CLI, tests, benches); inside one, `.await` instead.
    pub fn wait(self) -> Result<T, Error> {
        block_on(self)
    }
}

impl<T: Unpin> Future for WriteFuture<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            // Polling again after completion returns Closed rather than panicking.
            State::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(Error::Closed))),
            State::Waiting { rx, value } => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(res) => {
                    let out = match res {
                        Ok(Ok(())) => value.take().ok_or(Error::Closed),
                        Ok(Err(e)) => Err(e),
                        // The writer dropped the request: it stopped before writing it.
                        Err(_) => Err(Error::Closed),
                    };
                    this.state = State::Ready(None);
                    Poll::Ready(out)
                }
            },
        }
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_writes_beyond_the_bound_are_dropped_and_counted() {
        // No writer thread: nothing leaves the queue.
        let (tx, rx) = channel::unbounded();
        let handle = WriterHandle {
            tx,
            backlog: Arc::new(Backlog {
                max: 3,
                ..Backlog::default()
            }),
        };
        for _ in 0..5 {
            assert!(handle.submit_detached(Ops::default()).is_ok());
        }
        assert_eq!(rx.len(), 3, "the bound");
        assert_eq!(handle.backlog().dropped(), 2);
        // The writer taking one makes room for one more.
        let _ = rx.try_recv();
        handle.backlog().taken();
        assert!(handle.submit_detached(Ops::default()).is_ok());
        assert_eq!((rx.len(), handle.backlog().dropped()), (3, 2));
        assert!(handle.submit_detached(Ops::default()).is_ok());
        assert_eq!(handle.backlog().dropped(), 3);
    }
}
