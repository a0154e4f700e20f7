//! Bodies stored in pieces: large messages written to the spool as they
//! arrive and read back piece by piece, so that neither acceptance nor
//! delivery holds a whole body in memory.
//!
//! # Layout
//! A body is stored one of two ways in the `body` column family:
//! - whole, under `id` (16 bytes): every small message, and every spool
//!   written before pieces existed;
//! - in pieces, under `id ‖ n` (20 bytes, `n` big-endian), with a record in
//!   the `chunks` column family, `id` → `[state, count (u32 BE)]`.
//!
//! Piece 0 is the head the relay prepends at the end of DATA (trace
//! headers), pieces `1..=k` are what arrived while the client was sending
//! ([`Spill::write`]), piece `k + 1` is the rest that was still in memory at
//! the end (omitted when empty).
//!
//! # What is durable when
//! - [`Spill::write`] is buffered (no fsync): the piece and a `partial`
//!   record naming how many pieces exist go in one atomic batch.
//! - [`Spool::accept_spilled`] writes the envelope, the head, the last piece
//!   and the `complete` record in one synced batch. RocksDB's write-ahead log
//!   is one sequential log, and a synced write fsyncs every log before it, so
//!   the fsync that acknowledges the message covers the pieces written before
//!   it: when it resolves `Ok`, all of the body is on stable storage (the same
//!   contract as [`Spool::accept_as`]).
//! - A transaction that ends without `250` ([`Spill::discard`], or the
//!   [`Spill`] dropped) deletes its pieces. Pieces whose `partial` record
//!   survives a crash are deleted when the spool opens next
//!   ([`sweep_partial`]): a crash leaves no orphan behind.
//! - [`Spool::remove`] deletes the pieces with the message.

use bytes::Bytes;
use rocksdb::IteratorMode;

use crate::error::Error;
use crate::id::MessageId;
use crate::keys::Cf;
use crate::record::Envelope;
use crate::spool::{Core, Spool};
use crate::writer::{Ops, WriteFuture};

const PARTIAL: u8 = 0;
const COMPLETE: u8 = 1;

/// The key of piece `n` of `id`'s body.
fn piece_key(id: MessageId, n: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(id.as_bytes());
    k[16..].copy_from_slice(&n.to_be_bytes());
    k
}

fn record(state: u8, count: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(5);
    v.push(state);
    v.extend_from_slice(&count.to_be_bytes());
    v
}

/// `(state, count)` of a `chunks` record; `None` when malformed.
fn parse_record(v: &[u8]) -> Option<(u8, u32)> {
    let (&state, count) = v.split_first()?;
    Some((state, u32::from_be_bytes(count.try_into().ok()?)))
}

/// How a stored body is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLayout {
    /// One value: read it with [`Spool::body`].
    Whole,
    /// `count` pieces: read them with [`Spool::body_reader`].
    Pieces {
        /// Number of pieces.
        count: u32,
    },
}

/// The body of one message being written in pieces while the client sends
/// it. Made by [`Spool::spill`]; ends in [`Spool::accept_spilled`] (the
/// message is stored) or [`Spill::discard`]. Dropping it unfinished discards
/// the pieces (on the dropping thread, without waiting for the writer).
#[derive(Debug)]
pub struct Spill {
    spool: Spool,
    id: MessageId,
    pieces: u32,
    bytes: u64,
    open: bool,
}

impl Spill {
    /// The message id the pieces are stored under.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.pieces == 0
    }

    /// Queues the next piece (buffered: no fsync; see the module doc). Await
    /// the future before sending the next one: that is the back-pressure
    /// that keeps a fast client from filling memory. An empty piece writes
    /// nothing.
    pub fn write(&mut self, piece: Bytes) -> WriteFuture<()> {
        if piece.is_empty() {
            return WriteFuture::ready(Ok(()));
        }
        let Some(n) = self.pieces.checked_add(1).filter(|n| *n < u32::MAX - 1) else {
            return WriteFuture::ready(Err(Error::InvalidArgument(format!(
                "message {}: too many body pieces",
                self.id
            ))));
        };
        self.pieces = n;
        self.bytes += piece.len() as u64;
        let mut ops = Ops::default();
        ops.put(Cf::Body, piece_key(self.id, n).to_vec(), piece);
        ops.put(Cf::Chunks, self.id.as_bytes().to_vec(), record(PARTIAL, n));
        self.spool.writer().submit(ops, false, ())
    }

    /// Pieces written so far (not counting the head and the tail that the
    /// commit adds).
    pub fn pieces(&self) -> u32 {
        self.pieces
    }

    /// A reader over the pieces written so far, in order (for the copy a
    /// cluster streams to a peer while the local commit runs). Reads are
    /// blocking RocksDB reads. A piece deleted meanwhile (the transaction
    /// was discarded) is reported as [`Error::Corrupt`] by the read.
    pub fn reader(&self) -> BodyReader {
        BodyReader {
            spool: self.spool.clone(),
            id: self.id,
            layout: BodyLayout::Pieces {
                count: self.pieces.saturating_add(1),
            },
            next: 1,
        }
    }

    /// Deletes the pieces written so far: the transaction ended without
    /// `250`. Queued behind the pieces' own writes, so it cannot be overtaken
    /// by one of them.
    pub fn discard(mut self) -> WriteFuture<()> {
        self.open = false;
        let mut ops = Ops::default();
        delete_pieces(&mut ops, self.id, PARTIAL, self.pieces);
        self.spool.writer().submit(ops, false, ())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if self.open && self.pieces > 0 {
            let mut ops = Ops::default();
            delete_pieces(&mut ops, self.id, PARTIAL, self.pieces);
            // A piece still queued in the writer may land after this: its
            // partial record brings it to the sweep at the next open.
            if let Err(e) = self.spool.core().write_buffered(ops) {
                tracing::warn!(id = %self.id, error = %e, "pieces of an abandoned message not deleted; swept at next start");
            }
        }
    }
}

/// Deletes the pieces a `chunks` record names, and the record. A partial
/// record with `count` pieces also covers slots 0 and `count + 1`, the head
/// and the last piece that a commit still queued may write.
fn delete_pieces(ops: &mut Ops, id: MessageId, state: u8, count: u32) {
    let range = if state == COMPLETE {
        0..count
    } else {
        0..count.saturating_add(2)
    };
    for n in range {
        ops.delete(Cf::Body, piece_key(id, n).to_vec());
    }
    ops.delete(Cf::Chunks, id.as_bytes().to_vec());
}

/// The `chunks` record of `id`. A spool opened read-only from before pieces
/// existed has no `chunks` family: no record then.
fn pieces_record(core: &Core, id: MessageId) -> Result<Option<Vec<u8>>, Error> {
    if core.db.cf_handle(Cf::Chunks.name()).is_none() {
        return Ok(None);
    }
    core.get(Cf::Chunks, id.as_bytes())
}

/// Adds the deletion of `id`'s pieces, if its body is stored in pieces, to
/// `ops` (a point read of its `chunks` record).
pub(crate) fn forget_pieces(core: &Core, ops: &mut Ops, id: MessageId) -> Result<(), Error> {
    if let Some(v) = pieces_record(core, id)? {
        if let Some((state, count)) = parse_record(&v) {
            delete_pieces(ops, id, state, count);
        } else {
            ops.delete(Cf::Chunks, id.as_bytes().to_vec());
        }
    }
    Ok(())
}

/// Deletes the pieces of every message whose body was still being received
/// when the spool was last closed (crash, kill): it was never acknowledged.
/// Runs when the spool opens, before anything else writes. Returns how many
/// messages' pieces were deleted.
pub(crate) fn sweep_partial(core: &Core) -> Result<usize, Error> {
    let cf = core.cf(Cf::Chunks)?;
    let mut ops = Ops::default();
    let mut swept = 0;
    for item in core.db.iterator_cf(cf, IteratorMode::Start) {
        let (k, v) = item.map_err(|e| Error::from_read(&core.config.path, Cf::Chunks.name(), b"", e))?;
        let Some(id) = MessageId::from_slice(&k) else {
            ops.delete(Cf::Chunks, k.to_vec());
            continue;
        };
        match parse_record(&v) {
            Some((COMPLETE, _)) => {}
            Some((state, count)) => {
                delete_pieces(&mut ops, id, state, count);
                swept += 1;
            }
            None => ops.delete(Cf::Chunks, k.to_vec()),
        }
    }
    if swept > 0 {
        tracing::info!(messages = swept, "pieces of unacknowledged messages deleted at start");
    }
    core.write_buffered(ops)?;
    Ok(swept)
}

/// The ops that complete a body written in pieces: `head` as piece 0,
/// `tail` after the pieces of `spill`, and the `complete` record; and the
/// body's size. From here the pieces belong to whatever the ops are written
/// with (a message, a shadow copy) or, if that write fails, to the sweep at
/// the next open.
pub(crate) fn finish_ops(head: Bytes, mut spill: Spill, tail: Bytes) -> (Ops, u64) {
    let id = spill.id;
    let size = head.len() as u64 + spill.bytes + tail.len() as u64;
    let mut count = spill.pieces + 1;
    let mut ops = Ops::default();
    ops.put(Cf::Body, piece_key(id, 0).to_vec(), head);
    if !tail.is_empty() {
        ops.put(Cf::Body, piece_key(id, count).to_vec(), tail);
        count += 1;
    }
    ops.put(Cf::Chunks, id.as_bytes().to_vec(), record(COMPLETE, count));
    spill.open = false;
    (ops, size)
}

/// Whether the body of `id` is stored in pieces (a complete `chunks` record).
pub(crate) fn in_pieces(core: &Core, id: MessageId) -> Result<bool, Error> {
    Ok(matches!(
        pieces_record(core, id)?.as_deref().and_then(parse_record),
        Some((COMPLETE, _))
    ))
}

impl Spool {
    /// Starts writing the body of `id` (from [`Spool::next_id`]) in pieces
    /// while it arrives; see [`Spill`].
    pub fn spill(&self, id: MessageId) -> Spill {
        Spill {
            spool: self.clone(),
            id,
            pieces: 0,
            bytes: 0,
            open: true,
        }
    }

    /// Stores a message whose body was written in pieces: `head` (the trace
    /// headers put before the client's content), the pieces of `spill`, then
    /// `tail` (the content received after the last piece). The envelope's
    /// `body_size` is set to the total. Same contract as
    /// [`Spool::accept_as`]: `Ok` means envelope and every piece are on
    /// stable storage; a crash before it leaves nothing that is acknowledged
    /// (the pieces are swept at the next open).
    pub fn accept_spilled(&self, envelope: Envelope, head: Bytes, spill: Spill, tail: Bytes) -> WriteFuture<MessageId> {
        self.accept_spilled_with(envelope, head, spill, tail, None)
    }

    pub(crate) fn accept_spilled_with(
        &self,
        mut envelope: Envelope,
        head: Bytes,
        spill: Spill,
        tail: Bytes,
        extra: Option<(Vec<u8>, Vec<u8>)>,
    ) -> WriteFuture<MessageId> {
        let id = spill.id;
        let (pieces, size) = finish_ops(head, spill, tail);
        envelope.body_size = size;
        self.accept_ops(id, envelope, pieces, extra)
    }

    /// How the body of `id` is stored: in pieces when it has a complete
    /// pieces record, else whole (whether or not it exists: reading says).
    /// One point read of a small record (a Bloom filter miss for a whole
    /// body).
    ///
    /// # Errors
    /// A RocksDB read error; [`Error::Corrupt`] for a malformed record.
    pub fn body_layout(&self, id: MessageId) -> Result<BodyLayout, Error> {
        match pieces_record(self.core(), id)? {
            None => Ok(BodyLayout::Whole),
            Some(v) => match parse_record(&v) {
                Some((COMPLETE, count)) => Ok(BodyLayout::Pieces { count }),
                Some(_) => Ok(BodyLayout::Whole),
                None => Err(Error::Corrupt {
                    cf: Cf::Chunks.name(),
                    key: id.to_string(),
                    error: "malformed pieces record".into(),
                }),
            },
        }
    }

    /// A reader over the body of `id`, piece by piece (a whole body is one
    /// piece). A body that is not there is reported by the first read.
    ///
    /// # Errors
    /// As [`Spool::body_layout`].
    pub fn body_reader(&self, id: MessageId) -> Result<BodyReader, Error> {
        Ok(BodyReader {
            spool: self.clone(),
            id,
            layout: self.body_layout(id)?,
            next: 0,
        })
    }

    /// The first `max` octets of the body of `id` (all of it when smaller),
    /// reading only the pieces needed: for a report that quotes the header
    /// section of a large message. `None` if there is no body.
    ///
    /// # Errors
    /// As [`Spool::body_layout`], and a missing piece.
    pub fn body_prefix(&self, id: MessageId, max: usize) -> Result<Option<Vec<u8>>, Error> {
        let mut reader = self.body_reader(id)?;
        if reader.layout == BodyLayout::Whole {
            return Ok(self.core().get(Cf::Body, id.as_bytes())?.map(|mut b| {
                b.truncate(max);
                b
            }));
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(piece) = reader.next_piece()? else { break };
            let take = piece.len().min(max - out.len());
            out.extend_from_slice(&piece[..take]);
        }
        Ok(Some(out))
    }
}

/// Reads one stored body piece by piece ([`Spool::body_reader`]). Reads are
/// blocking RocksDB reads: call it from a blocking thread. A clone reads
/// the same body again from where the original stood.
#[derive(Clone, Debug)]
pub struct BodyReader {
    spool: Spool,
    id: MessageId,
    layout: BodyLayout,
    next: u32,
}

impl BodyReader {
    /// How the body is stored.
    pub fn layout(&self) -> BodyLayout {
        self.layout
    }

    /// The next piece; `Ok(None)` after the last.
    ///
    /// # Errors
    /// A read error, or [`Error::Corrupt`] when a piece the record names is
    /// missing (never deliver a body with a hole in it).
    pub fn next_piece(&mut self) -> Result<Option<Bytes>, Error> {
        let (key, count) = match self.layout {
            BodyLayout::Whole => (self.id.as_bytes().to_vec(), 1),
            BodyLayout::Pieces { count } => (piece_key(self.id, self.next).to_vec(), count),
        };
        if self.next >= count {
            return Ok(None);
        }
        self.next += 1;
        match self.spool.core().get(Cf::Body, &key)? {
            Some(v) => Ok(Some(Bytes::from(v))),
            None => Err(Error::Corrupt {
                cf: Cf::Body.name(),
                key: format!("{} piece {}", self.id, self.next - 1),
                error: "body piece missing".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpoolConfig;

    fn open(dir: &std::path::Path) -> (Spool, crate::SpoolDropGuard) {
        Spool::open(SpoolConfig::new(dir, 1)).expect("open spool")
    }

    /// Keys of `id` in the `body` column family, and whether it has a `chunks` record.
    fn stored(spool: &Spool, id: MessageId) -> (usize, bool) {
        let core = spool.core();
        let cf = core.cf(Cf::Body).expect("cf");
        let keys = core
            .db
            .prefix_iterator_cf(cf, id.as_bytes())
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(id.as_bytes()))
            .count();
        let record = core.get(Cf::Chunks, id.as_bytes()).expect("read").is_some();
        (keys, record)
    }

    fn pieces(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| Bytes::from(format!("piece {i}\r\n").repeat(1000 + i)))
            .collect()
    }

    #[test]
    fn pieces_come_back_in_order_and_go_with_the_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _guard) = open(dir.path());
        let id = spool.next_id();
        let mut spill = spool.spill(id);
        let written = pieces(5);
        for p in &written {
            spill.write(p.clone()).wait().expect("piece");
        }
        let head = Bytes::from_static(b"Received: from test\r\n");
        let tail = Bytes::from_static(b"the end\r\n");
        let env = crate::record::tests::sample(1);
        spool
            .accept_spilled(env, head.clone(), spill, tail.clone())
            .wait()
            .expect("accept");
        let mut expected = head.to_vec();
        written.iter().for_each(|p| expected.extend_from_slice(p));
        expected.extend_from_slice(&tail);
        assert_eq!(spool.body_layout(id).expect("layout"), BodyLayout::Pieces { count: 7 });
        assert_eq!(spool.body(id).expect("body"), Some(expected.clone()));
        assert_eq!(
            spool.envelope(id).expect("env").map(|e| e.body_size),
            Some(expected.len() as u64)
        );
        let mut reader = spool.body_reader(id).expect("reader");
        assert_eq!(reader.next_piece().expect("head"), Some(head));
        for p in &written {
            assert_eq!(reader.next_piece().expect("piece").as_ref(), Some(p));
        }
        assert_eq!(reader.next_piece().expect("tail"), Some(tail));
        assert_eq!(reader.next_piece().expect("end"), None);
        let prefix = spool.body_prefix(id, 100).expect("prefix").expect("some");
        assert_eq!(prefix, expected[..100]);
        assert_eq!(stored(&spool, id), (7, true));
        assert!(spool.remove(id, crate::Durability::Synced).wait().expect("remove"));
        assert_eq!(stored(&spool, id), (0, false));
        assert_eq!(spool.body(id).expect("body"), None);
    }

    #[test]
    fn a_transaction_without_250_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _guard) = open(dir.path());
        // Discarded (RSET, refusal).
        let id = spool.next_id();
        let mut spill = spool.spill(id);
        for p in pieces(3) {
            spill.write(p).wait().expect("piece");
        }
        assert_eq!(stored(&spool, id), (3, true));
        spill.discard().wait().expect("discard");
        assert_eq!(stored(&spool, id), (0, false));
        // Dropped (the session's task ended).
        let id = spool.next_id();
        let mut spill = spool.spill(id);
        spill.write(pieces(1).remove(0)).wait().expect("piece");
        drop(spill);
        assert_eq!(stored(&spool, id), (0, false));
        // A whole body is one piece.
        let id = spool
            .accept(crate::record::tests::sample(1), b"small".to_vec())
            .wait()
            .expect("accept");
        assert_eq!(spool.body_layout(id).expect("layout"), BodyLayout::Whole);
        let mut reader = spool.body_reader(id).expect("reader");
        assert_eq!(reader.next_piece().expect("whole").as_deref(), Some(&b"small"[..]));
        assert_eq!(reader.next_piece().expect("end"), None);
    }

    #[test]
    fn pieces_of_a_crashed_transaction_are_swept_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let (spool, guard) = open(dir.path());
            let id = spool.next_id();
            let mut spill = spool.spill(id);
            for p in pieces(4) {
                spill.write(p).wait().expect("piece");
            }
            spool.sync().wait().expect("sync");
            assert_eq!(stored(&spool, id), (4, true));
            // The process dies: no discard (a drop would discard).
            spill.open = false;
            drop(spill);
            drop(spool);
            drop(guard);
            id
        };
        let (spool, _guard) = open(dir.path());
        assert_eq!(stored(&spool, id), (0, false));
        assert_eq!(spool.body_layout(id).expect("layout"), BodyLayout::Whole);
        assert_eq!(spool.body(id).expect("body"), None);
    }
}
