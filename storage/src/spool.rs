//! The [`Spool`] handle: acceptance, state changes, reads.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, WriteOptions, DB};

use crate::config::{Durability, SpoolConfig};
use crate::error::Error;
use crate::id::{now_ms, IdGenerator, MessageId};
use crate::keys::{parse_sched_key, sched_key, Cf};
use crate::record::{access_envelope, decode_envelope, encode_envelope, Envelope, RecipientStatus};
use crate::writer::{self, Health, Ops, WriteFuture, WriterHandle};

/// What the writer thread and the handles share: the database and its health.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) db: DB,
    pub(crate) config: SpoolConfig,
    pub(crate) health: Health,
    pub(crate) room: crate::room::Room,
}

impl Core {
    /// The spool at `path` opened read-only (no lock: safe while the node that
    /// owns it runs), for admin commands that read counters or traces.
    pub(crate) fn open_read_only(path: &Path) -> Result<Self, Error> {
        if !path.join("CURRENT").exists() {
            return Err(Error::Open {
                path: path.to_path_buf(),
                reason: "no spool here (no CURRENT file)".into(),
            });
        }
        let config = SpoolConfig {
            path: path.to_path_buf(),
            block_cache_bytes: 8 << 20,
            ..SpoolConfig::default()
        };
        Ok(Self {
            db: crate::db::open_read_only(&config)?,
            config,
            health: Health::default(),
            room: crate::room::Room::default(),
        })
    }

    pub(crate) fn cf(&self, cf: Cf) -> Result<&ColumnFamily, Error> {
        self.db.cf_handle(cf.name()).ok_or_else(|| Error::Unhealthy {
            reason: format!("column family {} missing", cf.name()),
        })
    }

    /// Applies `ops` on the calling thread without syncing ([`Durability::Buffered`]).
    pub(crate) fn write_buffered(&self, ops: Ops) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        ops.apply(self, &mut batch)?;
        let result = self
            .db
            .write_opt(batch, &WriteOptions::default())
            .map_err(|e| Error::from_db(&self.config.path, e));
        if result.is_err() {
            self.health.record(&result);
        }
        result
    }

    /// A tiny synced write, used by the writer while unhealthy to notice that writes work
    /// again even when no mail is being accepted.
    pub(crate) fn probe(&self, sync: &WriteOptions) {
        let r = self
            .db
            .put_opt(b"estafette-probe", now_ms().to_be_bytes(), sync)
            .map_err(|e| Error::from_db(&self.config.path, e));
        self.health.record(&r);
    }

    /// Flushes every column family's memtable to SST files (a clean shutdown).
    /// A failure is logged: the WAL still holds what was not flushed.
    pub(crate) fn flush_all(&self) {
        for cf in Cf::ALL {
            let Ok(handle) = self.cf(cf) else { continue };
            if let Err(e) = self.db.flush_cf(handle) {
                tracing::warn!(cf = cf.name(), error = %e, "flush at shutdown failed; the WAL keeps the data");
            }
        }
    }

    /// Reads the raw value of `key` in `cf`.
    pub(crate) fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.db
            .get_cf(self.cf(cf)?, key)
            .map_err(|e| Error::from_read(&self.config.path, cf.name(), key, e))
    }

    pub(crate) fn submit<T: Unpin>(
        &self,
        writer: &WriterHandle,
        ops: Ops,
        durability: Durability,
        value: T,
    ) -> WriteFuture<T> {
        // Buffered writes go through the writer too (see writer.rs): they resolve once
        // applied, so a read after the await sees them, but they add no fsync.
        writer.submit(ops, durability == Durability::Synced, value)
    }
}

#[derive(Debug)]
struct Inner {
    core: Arc<Core>,
    writer: WriterHandle,
    ids: IdGenerator,
}

/// The durable spool of one node: a handle on its RocksDB database.
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`; every clone talks to the same database
/// and the same group-commit writer thread. Reads run on the caller's thread and never
/// wait for the writer.
///
/// # Durability
///
/// - [`Spool::accept`] and [`Spool::put_shadow`] are synced: they resolve `Ok` only after
///   the write-ahead log holding them was fsynced by a group commit.
/// - State changes after acceptance take a [`Durability`]; with `Buffered` a crash may
///   undo them, which only causes a retry (possibly a duplicate delivery), never a loss.
/// - Trace events and monthly counters are always buffered.
///
/// # Disk full and background errors
///
/// When a write or a background flush fails because the volume is full, RocksDB enters
/// its background-error state (writes stopped, reads working) and every synced write
/// returns [`Error::NoSpace`] (the relay answers 452 4.3.1); any other RocksDB write
/// failure returns [`Error::Unhealthy`]. Nothing already acknowledged is touched: it is in
/// synced WAL, SST and blob files, and reads keep working. [`Spool::health`] reports the
/// last write error until a write succeeds again; meanwhile the writer thread probes the
/// database every 500 ms with a tiny synced write.
///
/// Writes resume by themselves, without restart or operator action: RocksDB's
/// `SstFileManager` checks the free space every 5 s and resumes the database once it
/// exceeds the largest memtable ([`SpoolConfig::write_buffer_bytes`]), so writes work
/// again within about 5 s of that much space being freed. The database stays openable
/// while the disk is full (closing and reopening also clears the error state), which the
/// `disk_full` test checks on a small tmpfs.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

/// Stops the group-commit writer thread when dropped (after writing everything queued
/// before the drop); later synced writes fail with [`Error::Closed`]. Reads keep working
/// while any [`Spool`] clone lives; the database closes when the last clone is dropped.
#[derive(Debug)]
#[must_use = "dropping the guard stops the spool's writer thread"]
pub struct SpoolDropGuard {
    spool: Spool,
    join: Option<JoinHandle<()>>,
}

impl Drop for SpoolDropGuard {
    fn drop(&mut self) {
        self.spool.inner.writer.stop();
        if let Some(j) = self.join.take() {
            if j.join().is_err() {
                tracing::error!("spool writer thread panicked");
            }
        }
        // A clean stop leaves nothing to replay: the next start opens without a
        // WAL replay, and the memtables' content is in SST files (which is also
        // what RocksDB's RepairDB rebuilds from).
        self.spool.core().flush_all();
    }
}

impl Spool {
    /// Opens (or creates) the spool at `config.path` and starts its writer thread.
    ///
    /// # Errors
    /// [`Error::Open`] if RocksDB cannot open the directory: in use by another process,
    /// permissions, or corruption (missing or damaged SST/MANIFEST). The message names the
    /// repair path: stop the node and run `estafette spool repair PATH` ([`Spool::repair`]).
    pub fn open(config: SpoolConfig) -> Result<(Self, SpoolDropGuard), Error> {
        let db = crate::db::open(&config)?;
        let floor = newest_id_time(&db);
        let ids = IdGenerator::new(config.node_id, floor);
        let core = Arc::new(Core {
            health: Health::with_stall_after(config.stall_after),
            room: crate::room::Room::default(),
            db,
            config,
        });
        crate::chunks::sweep_partial(&core)?;
        let (writer, join) = writer::spawn(core.clone())?;
        let spool = Self {
            inner: Arc::new(Inner { core, writer, ids }),
        };
        let guard = SpoolDropGuard {
            spool: spool.clone(),
            join: Some(join),
        };
        Ok((spool, guard))
    }

    /// Runs RocksDB's RepairDB on a spool that fails to open: rebuilds the MANIFEST from
    /// the SST and WAL files, keeping every record it can read and setting aside damaged
    /// files in `lost/`. The spool must not be open. Afterwards run the recovery scan: it
    /// reports any record that is still damaged as [`crate::Entry::Corrupt`].
    pub fn repair(path: impl AsRef<Path>) -> Result<(), Error> {
        crate::db::repair(path.as_ref())
    }

    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    pub(crate) fn writer(&self) -> &WriterHandle {
        &self.inner.writer
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.inner.core.config
    }

    /// Detached writes (trace events, counters) dropped because the writer's
    /// queue held [`SpoolConfig::max_detached_writes`] of them already.
    pub fn detached_dropped(&self) -> u64 {
        self.writer().backlog().dropped()
    }

    /// `Ok` while writes succeed; else the error of the last failed write (for example
    /// [`Error::NoSpace`]) until a write succeeds again. The relay can refuse new mail at
    /// MAIL FROM (452 4.3.1 / 421) while this is `Err`.
    pub fn health(&self) -> Result<(), Error> {
        self.core().health.get()
    }

    /// `Err(`[`Error::NoSpace`]`)` while the spool's volume has less free
    /// space than [`SpoolConfig::min_free_bytes`]: refuse new mail then
    /// (`452 4.3.1`), keep delivering. Read from the file system at most once
    /// a second.
    pub fn room(&self) -> Result<(), Error> {
        let core = self.core();
        core.room.check(&core.config.path, core.config.min_free_bytes)
    }

    /// The database has refused writes for a while although its volume takes
    /// writes again (RocksDB stays read-only after some write errors, such as
    /// a full disk, until its free-space reserve is met; on a small volume it
    /// may never be). Only reopening the spool clears it: the relay exits so
    /// that its supervisor restarts it. Nothing acknowledged is lost: it is in
    /// the synced WAL, replayed at the next open.
    pub fn stuck(&self) -> bool {
        self.core().health.stuck()
    }

    /// Bytes of the spool's files on disk (SST, blob, WAL, manifest, options): what the
    /// volume holds for it. RocksDB keeps them in one flat directory.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn disk_bytes(&self) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.config().path)? {
            // A file deleted between the listing and the stat (compaction) counts 0.
            if let Ok(meta) = entry?.metadata() {
                if meta.is_file() {
                    total += meta.len();
                }
            }
        }
        Ok(total)
    }

    /// Stores a new message durably and assigns its id: [`Spool::next_id`] then
    /// [`Spool::accept_as`], whose contract applies.
    pub fn accept(&self, envelope: Envelope, body: impl Into<bytes::Bytes>) -> WriteFuture<MessageId> {
        self.accept_as(self.next_id(), envelope, body)
    }

    /// Stores a new message durably under `id`, an id this spool allocated with
    /// [`Spool::next_id`] (so that the caller knows it before the write: it goes into the
    /// `Received:` header, and a replica can be sent to a peer in parallel with this write).
    ///
    /// The envelope (with `body_size` set to `body.len()`), the body and the message's
    /// `sched` entry (at [`Envelope::due_ms`], if any recipient is pending) go into the
    /// next group commit as one atomic batch.
    ///
    /// # Contract
    /// - When the future resolves `Ok(id)`, all of it MUST be on stable storage: the batch
    ///   was written with `sync = true` and the WAL fsync returned. A crash or power loss
    ///   after that point MUST NOT lose it; the recovery scan returns it. Only then may the
    ///   relay answer `250 2.0.0 queued as <id>`.
    /// - A crash before the future resolves leaves either the whole message or nothing
    ///   (the batch is atomic); never a part of it.
    /// - `Err` means it MUST NOT be acknowledged. `DeadlineExceeded` and `InvalidArgument`
    ///   mean nothing was written. After a write error (`NoSpace`, `Unhealthy`) the batch
    ///   may still come back after a restart (e.g. written to the WAL but the fsync failed):
    ///   the client was told to retry, so at worst the message is delivered twice.
    /// - Dropping the future is safe: the message may or may not be stored, and it was
    ///   never acknowledged. If the writer sees the drop before the batch starts, it skips
    ///   the message.
    /// - Storing the same `id` twice replaces the first record: ids from
    ///   [`Spool::next_id`] are never handed out twice by one spool.
    ///
    /// Costs on the caller's thread: serialising the envelope (no I/O). The body is a
    /// reference-counted buffer handed to the writer thread, which copies it once into
    /// the batch.
    pub fn accept_as(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: impl Into<bytes::Bytes>,
    ) -> WriteFuture<MessageId> {
        self.accept_with(id, envelope, body, None)
    }

    /// [`Spool::accept_as`] with one more `cluster` record in the same batch.
    pub(crate) fn accept_with(
        &self,
        id: MessageId,
        mut envelope: Envelope,
        body: impl Into<bytes::Bytes>,
        extra: Option<(Vec<u8>, Vec<u8>)>,
    ) -> WriteFuture<MessageId> {
        let body = body.into();
        envelope.body_size = body.len() as u64;
        let mut ops = Ops::default();
        ops.put(Cf::Body, id.as_bytes().to_vec(), body);
        self.accept_ops(id, envelope, ops, extra)
    }

    /// The synced batch of a new message: `ops` (its body) plus the envelope
    /// (`body_size` already set), its `sched` entry and an optional `cluster`
    /// record.
    pub(crate) fn accept_ops(
        &self,
        id: MessageId,
        envelope: Envelope,
        mut ops: Ops,
        extra: Option<(Vec<u8>, Vec<u8>)>,
    ) -> WriteFuture<MessageId> {
        if envelope.recipients.is_empty() {
            return WriteFuture::ready(Err(Error::InvalidArgument(
                "a message needs at least one recipient".into(),
            )));
        }
        let value = match encode_envelope(&envelope) {
            Ok(v) => v,
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        ops.put(Cf::Msg, id.as_bytes().to_vec(), value);
        if let Some(due) = envelope.due_ms() {
            ops.put(Cf::Sched, sched_key(due, id).to_vec(), Vec::new());
        }
        if let Some((k, v)) = extra {
            ops.put(Cf::Cluster, k, v);
        }
        self.writer().submit(ops, true, id)
    }

    /// Replaces the stored envelope of `id` (recipient status, attempts, next due time,
    /// last reply) and moves its `sched` entry to the new [`Envelope::due_ms`], in one
    /// atomic batch. Resolves to `false` (writing nothing) if the message is not in the
    /// spool.
    ///
    /// Reads the stored envelope first to find the old `sched` entry; the relay MUST NOT
    /// run two state changes of one message concurrently (one owner task per message).
    ///
    /// With [`Durability::Buffered`] a crash may lose the change: the message then comes
    /// back in its previous state and is retried, which may deliver a recipient twice but
    /// never loses one.
    pub fn update(&self, id: MessageId, envelope: &Envelope, durability: Durability) -> WriteFuture<bool> {
        let old_due = match self.stored_due(id) {
            Ok(Some(d)) => d,
            Ok(None) => return WriteFuture::ready(Ok(false)),
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        let value = match encode_envelope(envelope) {
            Ok(v) => v,
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        let mut ops = Ops::default();
        ops.put(Cf::Msg, id.as_bytes().to_vec(), value);
        move_sched(&mut ops, id, old_due, envelope.due_ms());
        self.core().submit(self.writer(), ops, durability, true)
    }

    /// Moves the `sched` entry of `id` from `old_due` to `new_due` (`None` = no entry),
    /// without touching the envelope. A lower-level tool than [`Spool::update`], which
    /// keeps both in step; losing a buffered reschedule in a crash only changes when the
    /// message is retried.
    pub fn reschedule(
        &self,
        id: MessageId,
        old_due: Option<u64>,
        new_due: Option<u64>,
        durability: Durability,
    ) -> WriteFuture<()> {
        let mut ops = Ops::default();
        move_sched(&mut ops, id, old_due, new_due);
        self.core().submit(self.writer(), ops, durability, ())
    }

    /// Deletes the message: envelope, body and `sched` entry (trace events stay until
    /// [`Spool::sweep_events`]). Resolves to `false` if it was not in the spool.
    ///
    /// With [`Durability::Buffered`] a crash may bring the message back; recovery then
    /// reports it with its last stored state, and the relay retries or removes it again
    /// (a duplicate delivery at worst).
    pub fn remove(&self, id: MessageId, durability: Durability) -> WriteFuture<bool> {
        let due = match self.stored_due(id) {
            Ok(Some(d)) => d,
            Ok(None) => {
                // Pieces of a message whose accept failed go too.
                let mut ops = Ops::default();
                return match crate::chunks::forget_pieces(self.core(), &mut ops, id) {
                    Ok(()) if ops.is_empty() => WriteFuture::ready(Ok(false)),
                    Ok(()) => self.core().submit(self.writer(), ops, durability, false),
                    Err(e) => WriteFuture::ready(Err(e)),
                };
            }
            // A corrupt envelope can still be removed; only its sched entry is unknown.
            Err(Error::Corrupt { .. }) => None,
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        let mut ops = Ops::default();
        ops.delete(Cf::Msg, id.as_bytes().to_vec());
        ops.delete(Cf::Body, id.as_bytes().to_vec());
        if let Err(e) = crate::chunks::forget_pieces(self.core(), &mut ops, id) {
            return WriteFuture::ready(Err(e));
        }
        if let Some(d) = due {
            ops.delete(Cf::Sched, sched_key(d, id).to_vec());
        }
        Self::forget_placement(&mut ops, id);
        self.core().submit(self.writer(), ops, durability, true)
    }

    /// Puts every pending (`Queued`/`Deferred`) recipient of `id` on hold (operator
    /// `queue hold`): its `sched` entry goes away and recovery reports the recipients as
    /// `Held`. Resolves to `false` if the message is not in the spool. Same durability
    /// contract as [`Spool::update`].
    pub fn hold(&self, id: MessageId, durability: Durability) -> WriteFuture<bool> {
        self.modify(id, durability, |env| {
            for r in env.recipients.iter_mut().filter(|r| r.status.is_pending()) {
                r.status = RecipientStatus::Held;
            }
        })
    }

    /// Releases held recipients of `id`: they become `Queued`, due at `now_ms`. Resolves to
    /// `false` if the message is not in the spool.
    pub fn release(&self, id: MessageId, now_ms: u64, durability: Durability) -> WriteFuture<bool> {
        self.modify(id, durability, |env| {
            for r in env.recipients.iter_mut().filter(|r| r.status == RecipientStatus::Held) {
                r.status = RecipientStatus::Queued;
                r.next_attempt_ms = now_ms;
            }
        })
    }

    fn modify(&self, id: MessageId, durability: Durability, f: impl FnOnce(&mut Envelope)) -> WriteFuture<bool> {
        match self.envelope(id) {
            Ok(Some(mut env)) => {
                f(&mut env);
                self.update(id, &env, durability)
            }
            Ok(None) => WriteFuture::ready(Ok(false)),
            Err(e) => WriteFuture::ready(Err(e)),
        }
    }

    /// The stored envelope of `id`, `None` if it is not in the spool.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the key if the record fails validation.
    pub fn envelope(&self, id: MessageId) -> Result<Option<Envelope>, Error> {
        match self.core().get(Cf::Msg, id.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_envelope(&v, Cf::Msg.name(), id.as_bytes()).map(Some),
        }
    }

    /// The stored body of `id`, whole in memory: exactly the bytes given to
    /// [`Spool::accept`] (or to [`Spool::accept_spilled`], pieces joined); `None` if it
    /// is not in the spool. For a large message read it piece by piece with
    /// [`Spool::body_reader`] instead.
    pub fn body(&self, id: MessageId) -> Result<Option<Vec<u8>>, Error> {
        match self.body_layout(id)? {
            crate::BodyLayout::Whole => self.core().get(Cf::Body, id.as_bytes()),
            crate::BodyLayout::Pieces { .. } => self.body_prefix(id, usize::MAX),
        }
    }

    /// Up to `limit` stored messages with ids strictly after `after` (from the first when
    /// `None`), in id order, which is acceptance order: one page of the operator's
    /// `queue ls`. Held and in-flight messages are included (unlike [`Spool::due`]); a
    /// record that fails validation comes back as its [`Error::Corrupt`] in place, so
    /// that a listing shows it instead of stopping. Pass the last id of a page as the
    /// next `after`.
    ///
    /// # Errors
    /// A RocksDB read error.
    #[allow(clippy::type_complexity)]
    pub fn envelopes(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<(MessageId, Result<Envelope, Error>)>, Error> {
        let core = self.core();
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::Msg)?, opts);
        match after {
            Some(id) => {
                it.seek(id.as_bytes());
                if it.key() == Some(id.as_bytes().as_slice()) {
                    it.next();
                }
            }
            None => it.seek_to_first(),
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((k, v)) = it.item() else { break };
            match MessageId::from_slice(k) {
                Some(id) => out.push((id, decode_envelope(v, Cf::Msg.name(), k))),
                None => tracing::warn!(key = ?k, "malformed msg key skipped"),
            }
            it.next();
        }
        it.status()
            .map_err(|e| Error::from_read(&core.config.path, Cf::Msg.name(), b"", e))?;
        Ok(out)
    }

    /// Up to `limit` `sched` entries due at or before `until_ms`, earliest first, as
    /// `(due_ms, id)`. The deferred index on disk: a relay that keeps only part of the
    /// queue in memory pages through it. Entries are hints: check the envelope (a
    /// buffered reschedule may have been lost in a crash).
    pub fn due(&self, until_ms: u64, limit: usize) -> Result<Vec<(u64, MessageId)>, Error> {
        let core = self.core();
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(until_ms.saturating_add(1).to_be_bytes().to_vec());
        let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::Sched)?, opts);
        it.seek_to_first();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(k) = it.key() else { break };
            match parse_sched_key(k) {
                Some(e) => out.push(e),
                None => tracing::warn!(key = ?k, "malformed sched key skipped"),
            }
            it.next();
        }
        it.status()
            .map_err(|e| Error::from_read(&core.config.path, Cf::Sched.name(), b"", e))?;
        Ok(out)
    }

    /// Blocks until every write made before the call, buffered ones included, is on
    /// stable storage (an empty group commit: the WAL fsync covers everything before it).
    pub fn sync(&self) -> WriteFuture<()> {
        let mut ops = Ops::default();
        ops.delete(Cf::Sched, Vec::new());
        self.writer().submit(ops, true, ())
    }

    /// The `sched` time of the stored envelope: `Ok(None)` if absent, `Ok(Some(due))` else.
    fn stored_due(&self, id: MessageId) -> Result<Option<Option<u64>>, Error> {
        let core = self.core();
        let cf = core.cf(Cf::Msg)?;
        let pinned = core
            .db
            .get_pinned_cf(cf, id.as_bytes())
            .map_err(|e| Error::from_read(&core.config.path, Cf::Msg.name(), id.as_bytes(), e))?;
        let Some(v) = pinned else { return Ok(None) };
        let mut scratch = rkyv::util::AlignedVec::new();
        let env = access_envelope(&v, &mut scratch, Cf::Msg.name(), id.as_bytes())?;
        Ok(Some(env.due_ms()))
    }

    /// Allocates a new id, sortable by time (see [`MessageId`]), without storing anything:
    /// pass it to [`Spool::accept_as`].
    pub fn next_id(&self) -> MessageId {
        self.inner.ids.next(now_ms())
    }
}

fn move_sched(ops: &mut Ops, id: MessageId, old: Option<u64>, new: Option<u64>) {
    if old == new {
        return;
    }
    if let Some(o) = old {
        ops.delete(Cf::Sched, sched_key(o, id).to_vec());
    }
    if let Some(n) = new {
        ops.put(Cf::Sched, sched_key(n, id).to_vec(), Vec::new());
    }
}

/// The time part of the newest id in `msg`, so that new ids sort after stored ones even
/// if the clock stepped back across a restart.
fn newest_id_time(db: &DB) -> u64 {
    let Some(cf) = db.cf_handle(Cf::Msg.name()) else {
        return 0;
    };
    let mut it = db.raw_iterator_cf(cf);
    it.seek_to_last();
    it.key()
        .and_then(MessageId::from_slice)
        .map(|id| id.time_ms())
        .unwrap_or(0)
}
