//! The start-up scan that rebuilds the relay's in-memory queues from the spool.

use std::collections::HashSet;
use std::sync::Arc;

use rkyv::util::AlignedVec;
use rocksdb::{DBRawIterator, ReadOptions};

use crate::error::{key_display, Error};
use crate::id::MessageId;
use crate::keys::Cf;
use crate::record::{access_envelope, RecipientStatus};
use crate::spool::Spool;

/// One message found by the recovery scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A stored message and what the queues need of it.
    Queued(QueuedMessage),
    /// A record that failed validation (or a key that is not a message id). The scan goes
    /// on; the record stays for an operator.
    Corrupt {
        /// Its id (all-zero if the key itself is malformed; `error` names the key).
        id: MessageId,
        /// [`Error::Corrupt`] naming the column family and key.
        error: Error,
    },
}

/// What the queues need to know of one stored message: compact (about 100 bytes for a
/// message with one pending recipient) so that a million queued messages fit in well
/// under 1 KB each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The message id.
    pub id: MessageId,
    /// Its recipients that are not final (`Queued`, `Deferred` or `Held`), in envelope
    /// order. Empty means every recipient is final and only the (buffered) removal was
    /// lost in a crash: the relay should finish the message (DSN if owed) and remove it.
    pub recipients: Vec<PendingRecipient>,
}

/// One non-final recipient, as recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecipient {
    /// Index of the recipient in [`crate::Envelope::recipients`].
    pub index: u32,
    /// Route key. Interned: every recipient of the scan with the same next hop shares one
    /// allocation.
    pub next_hop: Arc<str>,
    /// `Queued`, `Deferred` or `Held`.
    pub status: RecipientStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, ms since the Unix epoch.
    pub next_attempt_ms: u64,
}

impl QueuedMessage {
    /// Earliest `next_attempt_ms` of a `Queued`/`Deferred` recipient; `None` if all
    /// remaining recipients are held (or none remain).
    pub fn due_ms(&self) -> Option<u64> {
        self.recipients
            .iter()
            .filter(|r| r.status.is_pending())
            .map(|r| r.next_attempt_ms)
            .min()
    }
}

/// Iterator over every message in the spool in id (= acceptance time) order; see
/// [`Spool::recover`].
pub struct Recovery<'a> {
    it: DBRawIterator<'a>,
    started: bool,
    done: bool,
    scratch: AlignedVec,
    hops: HashSet<Arc<str>>,
    path: &'a std::path::Path,
}

impl std::fmt::Debug for Recovery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("done", &self.done)
            .field("next_hops", &self.hops.len())
            .finish()
    }
}

impl Spool {
    /// Scans the `msg` column family in id order and yields one [`Entry`] per message,
    /// for the relay to rebuild its ready queues (per next hop) and deferred index (per
    /// due time) at start.
    ///
    /// Reads envelopes in place (rkyv access after validation, no deserialisation into
    /// owned structs), never bodies, with a large read-ahead and without filling the block
    /// cache. A damaged record yields [`Entry::Corrupt`] and the scan goes on. A RocksDB
    /// read error ends the scan with one `Entry::Corrupt` carrying it (all-zero id).
    ///
    /// The iterator sees a consistent snapshot taken when it starts; messages accepted
    /// while it runs may or may not appear.
    pub fn recover(&self) -> Recovery<'_> {
        let core = self.core();
        let mut opts = ReadOptions::default();
        opts.set_readahead_size(core.config.recovery_readahead_bytes);
        opts.fill_cache(false);
        opts.set_verify_checksums(true);
        // `cf` cannot fail after a successful open; fall back to an already-finished scan.
        let (it, done) = match core.cf(Cf::Msg) {
            Ok(cf) => (core.db.raw_iterator_cf_opt(cf, opts), false),
            Err(_) => (core.db.raw_iterator_opt(ReadOptions::default()), true),
        };
        Recovery {
            it,
            started: false,
            done,
            scratch: AlignedVec::new(),
            hops: HashSet::new(),
            path: &core.config.path,
        }
    }
}

impl Recovery<'_> {
    /// Number of distinct next hops seen so far.
    pub fn next_hops(&self) -> usize {
        self.hops.len()
    }
}

fn intern(hops: &mut HashSet<Arc<str>>, hop: &str) -> Arc<str> {
    if let Some(h) = hops.get(hop) {
        return h.clone();
    }
    let h: Arc<str> = Arc::from(hop);
    hops.insert(h.clone());
    h
}

/// Turns one `msg` record into an [`Entry`], reading the envelope in place.
fn entry(scratch: &mut AlignedVec, hops: &mut HashSet<Arc<str>>, key: &[u8], value: &[u8]) -> Entry {
    let Some(id) = MessageId::from_slice(key) else {
        return Entry::Corrupt {
            id: MessageId::from_bytes([0; 16]),
            error: Error::Corrupt {
                cf: Cf::Msg.name(),
                key: key_display(key),
                error: format!("key of {} bytes is not a message id", key.len()),
            },
        };
    };
    let env = match access_envelope(value, scratch, Cf::Msg.name(), key) {
        Err(error) => return Entry::Corrupt { id, error },
        Ok(env) => env,
    };
    let mut recipients = Vec::new();
    env.for_each_recipient(|i, r| {
        if r.status.is_final() {
            return;
        }
        recipients.push(PendingRecipient {
            index: i as u32,
            next_hop: intern(hops, r.next_hop),
            status: r.status,
            attempts: r.attempts,
            next_attempt_ms: r.next_attempt_ms,
        });
    });
    recipients.shrink_to_fit();
    Entry::Queued(QueuedMessage { id, recipients })
}

impl Iterator for Recovery<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.done {
            return None;
        }
        if self.started {
            self.it.next();
        } else {
            self.it.seek_to_first();
            self.started = true;
        }
        if let Some((k, v)) = self.it.item() {
            return Some(entry(&mut self.scratch, &mut self.hops, k, v));
        }
        self.done = true;
        match self.it.status() {
            Ok(()) => None,
            Err(e) => Some(Entry::Corrupt {
                id: MessageId::from_bytes([0; 16]),
                error: Error::from_read(self.path, Cf::Msg.name(), b"", e),
            }),
        }
    }
}
