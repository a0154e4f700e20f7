//! Trace events: what happened to a message, kept for the retention period.
//!
//! `event`: `id || at_ms || n` → rkyv [`Event`] (prefixed by the format version);
//! `event_by_time`: `at_ms || id || n` → empty, for the retention sweep. `n` is a
//! process-wide counter that makes keys unique when one message gets several events in
//! the same millisecond; events of a message read back in time order.

use std::sync::atomic::{AtomicU32, Ordering};

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rocksdb::ReadOptions;

use crate::error::Error;
use crate::id::MessageId;
use crate::keys::{event_key, event_time_key, parse_event_time_key, prefix_end, Cf};
use crate::spool::{Core, Spool};
use crate::writer::Ops;

/// First byte of every `event` value.
const EVENT_FORMAT: u8 = 1;

/// One entry of a message's trace.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Event {
    /// When it happened, ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// Free text for operators: recipient, remote host, reply line, peer node…
    pub detail: String,
}

/// The kinds of trace events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum EventKind {
    /// Accepted and stored (250 sent).
    Accepted,
    /// Copy stored on a peer (shadow acked).
    Replicated,
    /// A recipient was accepted downstream.
    Delivered,
    /// A delivery attempt failed temporarily; retry scheduled.
    Deferred,
    /// A recipient failed permanently.
    Failed,
    /// A delivery status notification was queued for the sender.
    DsnQueued,
    /// Held by an operator.
    Held,
    /// Released by an operator.
    Released,
    /// Taken over from a dead peer's shadow copy.
    TakenOver,
    /// Removed from the spool (all recipients final, or operator delete).
    Removed,
    /// Anything else worth keeping.
    Note,
}

static EVENT_SEQ: AtomicU32 = AtomicU32::new(0);

/// The trace of `id` in the spool at `path`, oldest first, read without
/// opening the spool for writing: safe while the node runs (`estafette trace`).
///
/// # Errors
/// [`Error::Open`] if the directory is not a spool; read errors. A damaged event
/// comes back as [`Error::Corrupt`] in place.
pub fn read_events(path: &std::path::Path, id: MessageId) -> Result<Vec<Result<Event, Error>>, Error> {
    trace(&Core::open_read_only(path)?, id)
}

fn trace(core: &Core, id: MessageId) -> Result<Vec<Result<Event, Error>>, Error> {
    let mut opts = ReadOptions::default();
    if let Some(end) = prefix_end(id.as_bytes()) {
        opts.set_iterate_upper_bound(end);
    }
    let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::Event)?, opts);
    it.seek(id.as_bytes());
    let mut out = Vec::new();
    let mut scratch = AlignedVec::<16>::new();
    while let Some((k, v)) = it.item() {
        out.push(decode_event(k, v, &mut scratch));
        it.next();
    }
    it.status()
        .map_err(|e| Error::from_read(&core.config.path, Cf::Event.name(), id.as_bytes(), e))?;
    Ok(out)
}

/// Every trace event with `since_ms <= at_ms < until_ms`, in time order, from the
/// spool at `path` opened read-only (safe while the node runs: `estafette trace
/// export`). `f` gets each event (a damaged one as [`Error::Corrupt`]) and returns
/// `false` to stop. Returns how many events it passed.
///
/// # Errors
/// [`Error::Open`] if the directory is not a spool; read errors.
pub fn export_events(
    path: &std::path::Path,
    since_ms: u64,
    until_ms: u64,
    mut f: impl FnMut(MessageId, Result<Event, Error>) -> bool,
) -> Result<u64, Error> {
    let core = Core::open_read_only(path)?;
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(until_ms.to_be_bytes().to_vec());
    opts.fill_cache(false);
    let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::EventByTime)?, opts);
    it.seek(since_ms.to_be_bytes());
    let mut scratch = AlignedVec::<16>::new();
    let mut n = 0;
    while let Some(k) = it.key() {
        let Some((id, at, seq)) = parse_event_time_key(k) else {
            it.next();
            continue;
        };
        let key = event_key(id, at, seq);
        let event = match core.get(Cf::Event, &key)? {
            Some(v) => decode_event(&key, &v, &mut scratch),
            // Swept between the two reads: not in the window any more.
            None => {
                it.next();
                continue;
            }
        };
        n += 1;
        if !f(id, event) {
            break;
        }
        it.next();
    }
    it.status()
        .map_err(|e| Error::from_read(&core.config.path, Cf::EventByTime.name(), b"", e))?;
    Ok(n)
}

impl Spool {
    /// Appends a trace event for `id`.
    ///
    /// Detached: queued for the writer's next group commit, without fsync, and not
    /// waited for (a read right after may miss it; [`Spool::sync`] waits for it). A crash
    /// may lose the last events (the trace then misses them; delivery is unaffected). Events are
    /// independent of the message: they stay after [`Spool::remove`] until swept.
    pub fn record_event(&self, id: MessageId, event: &Event) -> Result<(), Error> {
        let n = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
        let bytes = rkyv::to_bytes::<rancor::Error>(event)
            .map_err(|e| Error::InvalidArgument(format!("event does not serialise: {e}")))?;
        let mut value = Vec::with_capacity(bytes.len() + 1);
        value.push(EVENT_FORMAT);
        value.extend_from_slice(&bytes);
        let mut ops = Ops::default();
        ops.put(Cf::Event, event_key(id, event.at_ms, n).to_vec(), value);
        ops.put(Cf::EventByTime, event_time_key(id, event.at_ms, n).to_vec(), Vec::new());
        self.writer().submit_detached(ops)
    }

    /// The trace of `id`, oldest first. A damaged event is returned as
    /// [`Error::Corrupt`] in place (the others still come back).
    pub fn events(&self, id: MessageId) -> Result<Vec<Result<Event, Error>>, Error> {
        trace(self.core(), id)
    }

    /// Deletes every event older than `older_than_ms` (at_ms strictly below it) and
    /// returns how many. Buffered; deletes in batches of 10,000 so that a large backlog
    /// does not build one huge batch. Run it from a timer (e.g. hourly) with
    /// `now - retention`.
    pub fn sweep_events(&self, older_than_ms: u64) -> Result<u64, Error> {
        const BATCH: usize = 10_000;
        let core = self.core();
        let mut total = 0u64;
        loop {
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(older_than_ms.to_be_bytes().to_vec());
            let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::EventByTime)?, opts);
            it.seek_to_first();
            let mut ops = Ops::default();
            let mut n = 0;
            while let Some(k) = it.key() {
                if n == BATCH {
                    break;
                }
                if let Some((id, at, seq)) = parse_event_time_key(k) {
                    ops.delete(Cf::Event, event_key(id, at, seq).to_vec());
                }
                // A malformed index key is deleted too, or the sweep would loop on it.
                ops.delete(Cf::EventByTime, k.to_vec());
                n += 1;
                it.next();
            }
            it.status()
                .map_err(|e| Error::from_read(&core.config.path, Cf::EventByTime.name(), b"", e))?;
            drop(it);
            if n == 0 {
                return Ok(total);
            }
            core.write_buffered(ops)?;
            total += n as u64;
            if n < BATCH {
                return Ok(total);
            }
        }
    }
}

fn decode_event(key: &[u8], value: &[u8], scratch: &mut AlignedVec) -> Result<Event, Error> {
    let cf = Cf::Event.name();
    let Some((&version, body)) = value.split_first() else {
        return Err(Error::corrupt(cf, key, "empty event"));
    };
    if version != EVENT_FORMAT {
        return Err(Error::corrupt(cf, key, format!("unknown format version {version}")));
    }
    scratch.clear();
    scratch.extend_from_slice(body);
    rkyv::from_bytes::<Event, rancor::Error>(scratch)
        .map_err(|e| Error::corrupt(cf, key, format!("event fails validation: {e}")))
}
