//! Spool configuration and the durability choice for writes after acceptance.

use std::path::PathBuf;
use std::time::Duration;

/// How to open a [`crate::Spool`]. Plain struct: set the fields you need and take the
/// rest from `Default`.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory of the RocksDB database; created if missing. One per node, on the node's
    /// own volume. Default `./data/spool`.
    pub path: PathBuf,
    /// This node's id, put in every [`crate::MessageId`] so that ids from different nodes
    /// never clash (shadow copies keep the origin's ids). Default 0.
    pub node_id: u16,
    /// Most synced writes (accepts) one group commit takes from the queue before writing
    /// and syncing. Bounds the latency one fsync adds to the last waiter of a batch.
    /// Default 1024.
    pub max_batch_messages: usize,
    /// Most payload bytes one group commit takes (a first request larger than this is
    /// still written, alone). Bounds the writer's memory and the time of one WAL write.
    /// Default 32 MiB.
    pub max_batch_bytes: usize,
    /// Bodies (and shadow copies) of at least this many bytes are moved out of the LSM
    /// tree into RocksDB blob files when flushed, so that compaction does not rewrite
    /// them. Bytes; default 4 KiB (a typical 10 KB message goes to blob files).
    pub blob_threshold: u64,
    /// Memtable size of the `msg`, `body` and `shadow` column families before a flush,
    /// bytes (the index column families use a quarter). A larger value batches more
    /// removals before they reach disk (queued messages are short-lived). It is also the
    /// free space RocksDB waits for before resuming writes after a disk-full error.
    /// Default 64 MiB.
    pub write_buffer_bytes: usize,
    /// A synced write still waiting in the group-commit queue after this long is answered
    /// with [`crate::Error::DeadlineExceeded`] instead of being written (the disk is
    /// stalled; the client gets 451 rather than a hung session). Default 30 s.
    pub write_deadline: Duration,
    /// Read-ahead for the recovery scan of the `msg` column family, bytes. Default 8 MiB.
    pub recovery_readahead_bytes: usize,
    /// Shared block cache for reads (envelopes, bodies, events), bytes. Default 64 MiB.
    pub block_cache_bytes: usize,
    /// Told about every group commit, on the writer thread (metrics). Default: none.
    pub observer: Option<CommitObserver>,
    /// A group commit unfinished after this long makes [`crate::Spool::health`] report
    /// [`crate::Error::Unhealthy`] until it finishes: a stalled disk (a frozen file
    /// system, a hung device) is seen at once, so that new mail is refused at MAIL FROM
    /// instead of each client waiting for its accept deadline. Zero: never. Default 5 s.
    pub stall_after: Duration,
    /// Most detached writes (trace events, monthly counters) waiting for the
    /// writer; beyond it they are dropped and counted
    /// ([`crate::Spool::detached_dropped`]). Default 100,000 (tens of MB).
    pub max_detached_writes: usize,
    /// Free bytes to keep on the spool's volume: below it [`crate::Spool::room`]
    /// refuses new mail, while deliveries, which free space but need small
    /// writes to record their outcome and delete the message, go on (Postfix's
    /// `queue_minfree`). Without it, mail can fill the disk to the last byte and
    /// the queue cannot even be emptied. 0: no floor.
    pub min_free_bytes: u64,
}

/// What one group commit was: how many writes it carried, whether it was fsynced, and
/// how long RocksDB's write (with its fsync) took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Writes in the batch (accepts, state changes, trace events).
    pub writes: usize,
    /// Payload bytes in the batch.
    pub bytes: usize,
    /// The WAL was fsynced for it.
    pub synced: bool,
    /// RocksDB's write call, fsync included.
    pub took: Duration,
}

/// A function called after each group commit with its [`Commit`]. It runs on the
/// writer thread between two commits: it must be quick (an atomic add, a histogram
/// observation) and never block.
#[derive(Clone)]
pub struct CommitObserver(pub std::sync::Arc<dyn Fn(Commit) + Send + Sync>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/spool"),
            node_id: 0,
            max_batch_messages: 1024,
            max_batch_bytes: 32 << 20,
            blob_threshold: 4 << 10,
            write_buffer_bytes: 64 << 20,
            write_deadline: Duration::from_secs(30),
            recovery_readahead_bytes: 8 << 20,
            block_cache_bytes: 64 << 20,
            observer: None,
            stall_after: Duration::from_secs(5),
            max_detached_writes: 100_000,
            min_free_bytes: 64 << 20,
        }
    }
}

impl SpoolConfig {
    /// The default configuration for a spool at `path` on node `node_id`.
    pub fn new(path: impl Into<PathBuf>, node_id: u16) -> Self {
        Self {
            path: path.into(),
            node_id,
            ..Self::default()
        }
    }
}

/// Whether a write after acceptance waits for stable storage.
///
/// Replaces a `force_sync: bool`: the caller says which contract it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write goes through the group-commit writer with `sync = true`: when the future
    /// resolves `Ok`, it is in the fsynced write-ahead log and survives a crash or power
    /// loss.
    Synced,
    /// The write is applied by the writer thread's next group commit, without asking
    /// for an fsync (it rides along when the group has a synced write): when the future
    /// resolves it is visible to reads and survives a process crash (it is in the OS
    /// page cache), but a power loss or kernel crash before the next synced write or WAL
    /// sync may lose it. The caller's thread never blocks on RocksDB's write queue. For state changes after acceptance this only causes a retry (a
    /// duplicate delivery at worst), never a lost message.
    Buffered,
}
