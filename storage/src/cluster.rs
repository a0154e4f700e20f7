//! The cluster's records in the spool: this node's epoch and volume id, and the
//! placement stored beside each message (own or shadow). The spool keeps them as
//! opaque bytes (it knows nothing of the replication protocol) and writes them in
//! the same atomic batch as the message they describe.
//!
//! Keys of the `cluster` column family: `b"epoch"`, `b"volume"` (u64 big-endian),
//! `b"o" || id` (own message), `b"s" || origin (u16 BE) || id` (shadow copy).

use rocksdb::ReadOptions;

use crate::config::Durability;
use crate::error::Error;
use crate::id::MessageId;
use crate::keys::{shadow_key, Cf};
use crate::record::Envelope;
use crate::spool::Spool;
use crate::writer::{Ops, WriteFuture};

/// A shadow copy's key: its origin node and the message id.
pub type ShadowKey = (u16, MessageId);

fn own_key(id: MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'o');
    k.extend_from_slice(id.as_bytes());
    k
}

fn shadow_meta_key(origin: u16, id: MessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(19);
    k.push(b's');
    k.extend_from_slice(&shadow_key(origin, id));
    k
}

impl Spool {
    /// Starts a new epoch: reads the stored epoch and volume, stores
    /// `max(stored + 1, floor)` as the epoch (and, on a new or wiped volume, the
    /// same value as the volume id), synced. Returns `(epoch, volume)`.
    ///
    /// # Contract
    /// When `Ok` returns, the new epoch is on stable storage: a later start never
    /// reuses it, even after a crash.
    pub async fn start_epoch(&self, floor: u64) -> Result<(u64, u64), Error> {
        let read = |k: &[u8]| -> Result<Option<u64>, Error> {
            Ok(self
                .core()
                .get(Cf::Cluster, k)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes))
        };
        let epoch = read(b"epoch")?.map_or(floor, |e| e.saturating_add(1).max(floor));
        let volume = read(b"volume")?.unwrap_or(epoch);
        let mut ops = Ops::default();
        ops.put(Cf::Cluster, b"epoch".to_vec(), epoch.to_be_bytes().to_vec());
        ops.put(Cf::Cluster, b"volume".to_vec(), volume.to_be_bytes().to_vec());
        self.writer().submit(ops, true, ()).await?;
        Ok((epoch, volume))
    }

    /// [`Spool::accept_as`] with the message's placement stored beside it in the same
    /// synced batch (same contract).
    pub fn accept_placed(
        &self,
        id: MessageId,
        envelope: Envelope,
        body: impl Into<bytes::Bytes>,
        placement: Vec<u8>,
    ) -> WriteFuture<MessageId> {
        self.accept_with(id, envelope, body, Some((own_key(id), placement)))
    }

    /// [`Spool::accept_spilled`] with the message's placement stored beside it in the
    /// same synced batch (same contract).
    pub fn accept_spilled_placed(
        &self,
        envelope: Envelope,
        head: bytes::Bytes,
        spill: crate::Spill,
        tail: bytes::Bytes,
        placement: Vec<u8>,
    ) -> WriteFuture<MessageId> {
        let id = spill.id();
        self.accept_spilled_with(envelope, head, spill, tail, Some((own_key(id), placement)))
    }

    /// The placement stored with own message `id`, if any.
    pub fn placement(&self, id: MessageId) -> Result<Option<Vec<u8>>, Error> {
        self.core().get(Cf::Cluster, &own_key(id))
    }

    /// Replaces (or sets) the placement of own message `id`.
    pub fn set_placement(&self, id: MessageId, placement: Vec<u8>, durability: Durability) -> WriteFuture<()> {
        let mut ops = Ops::default();
        ops.put(Cf::Cluster, own_key(id), placement);
        self.core().submit(self.writer(), ops, durability, ())
    }

    /// Every own message's stored placement, in id order (a restart's input to the
    /// replication protocol).
    pub fn placements(&self) -> Result<Vec<(MessageId, Vec<u8>)>, Error> {
        self.scan_cluster(b"o", MessageId::from_slice)
    }

    /// Every shadow copy's stored placement, as `((origin, id), placement)`.
    pub fn shadow_placements(&self) -> Result<Vec<(ShadowKey, Vec<u8>)>, Error> {
        self.scan_cluster(b"s", |k| {
            let origin = u16::from_be_bytes(k.get(..2)?.try_into().ok()?);
            Some((origin, MessageId::from_slice(k.get(2..)?)?))
        })
    }

    fn scan_cluster<T>(&self, prefix: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Result<Vec<(T, Vec<u8>)>, Error> {
        let core = self.core();
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(prefix.to_vec());
        let mut upper = prefix.to_vec();
        if let Some(last) = upper.last_mut() {
            *last += 1;
        }
        opts.set_iterate_upper_bound(upper);
        let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::Cluster)?, opts);
        it.seek_to_first();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            match k.get(prefix.len()..).and_then(&parse) {
                Some(t) => out.push((t, v.to_vec())),
                None => tracing::warn!(key = ?k, "malformed cluster key skipped"),
            }
            it.next();
        }
        it.status()
            .map_err(|e| Error::from_read(&core.config.path, Cf::Cluster.name(), prefix, e))?;
        Ok(out)
    }

    /// [`Spool::put_shadow`] with the copy's placement stored beside it in the same
    /// synced batch (same contract).
    pub fn put_shadow_placed(
        &self,
        origin: u16,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
        placement: Vec<u8>,
    ) -> WriteFuture<()> {
        let mut ops = match self.shadow_ops(origin, id, envelope, body) {
            Ok(ops) => ops,
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        ops.put(Cf::Cluster, shadow_meta_key(origin, id), placement);
        self.writer().submit(ops, true, ())
    }

    /// [`Spool::put_shadow_placed`] for a copy received in pieces: `spill`
    /// holds the pieces written as they arrived (buffered), `head` and `tail`
    /// the first and last chunk. One synced batch writes the shadow record
    /// (its envelope's `body_size` set to the total, its body empty: read the
    /// body with [`Spool::body_reader`]), the head, the tail, the pieces'
    /// `complete` record and the placement. Same contract as
    /// [`Spool::put_shadow`]: `Ok` means the whole copy is on stable storage
    /// (the fsync covers the buffered pieces before it); a crash before
    /// leaves pieces that the next open sweeps.
    pub fn put_shadow_spilled(
        &self,
        origin: u16,
        mut envelope: Envelope,
        head: bytes::Bytes,
        spill: crate::Spill,
        tail: bytes::Bytes,
        placement: Vec<u8>,
    ) -> WriteFuture<()> {
        let id = spill.id();
        let (pieces, size) = crate::chunks::finish_ops(head, spill, tail);
        envelope.body_size = size;
        let mut ops = match self.shadow_ops(origin, id, &envelope, &[]) {
            Ok(ops) => ops,
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        ops.extend(pieces);
        ops.put(Cf::Cluster, shadow_meta_key(origin, id), placement);
        self.writer().submit(ops, true, ())
    }

    /// Drops shadow copies and their placements (see [`Spool::release_shadows`]),
    /// with the pieces of those stored in pieces.
    pub fn release_shadows_placed(&self, origin: u16, ids: &[MessageId], durability: Durability) -> WriteFuture<()> {
        let mut ops = Ops::default();
        for id in ids {
            if let Err(e) = self.forget_shadow_pieces(&mut ops, origin, *id) {
                return WriteFuture::ready(Err(e));
            }
            ops.delete(Cf::Shadow, shadow_key(origin, *id).to_vec());
            ops.delete(Cf::Cluster, shadow_meta_key(origin, *id));
        }
        self.core().submit(self.writer(), ops, durability, ())
    }

    /// Adds the deletion of the pieces of shadow `(origin, id)` to `ops`, if
    /// it is stored in pieces. Only while the shadow record exists: a late
    /// release must not delete the body of a message this node promoted
    /// meanwhile (same id, now its own).
    pub(crate) fn forget_shadow_pieces(&self, ops: &mut Ops, origin: u16, id: MessageId) -> Result<(), Error> {
        let core = self.core();
        if crate::chunks::in_pieces(core, id)? && core.get(Cf::Shadow, &shadow_key(origin, id))?.is_some() {
            crate::chunks::forget_pieces(core, ops, id)?;
        }
        Ok(())
    }

    /// Takes over a shadow copy (see [`Spool::promote_shadow`]) and stores
    /// `placement` as the own message's, in one synced batch. `false` if there is
    /// no such copy.
    pub fn promote_shadow_placed(&self, origin: u16, id: MessageId, placement: Vec<u8>) -> WriteFuture<bool> {
        let mut ops = match self.promote_ops(origin, id) {
            Ok(Some(ops)) => ops,
            Ok(None) => return WriteFuture::ready(Ok(false)),
            Err(e) => return WriteFuture::ready(Err(e)),
        };
        ops.delete(Cf::Cluster, shadow_meta_key(origin, id));
        ops.put(Cf::Cluster, own_key(id), placement);
        self.writer().submit(ops, true, true)
    }

    /// The ops that remove an own message's placement (added to [`Spool::remove`]).
    pub(crate) fn forget_placement(ops: &mut Ops, id: MessageId) {
        ops.delete(Cf::Cluster, own_key(id));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{BodyLayout, SpoolConfig};

    fn received_in_pieces(spool: &Spool, origin: u16, chunks: &[&[u8]]) -> (MessageId, Vec<u8>) {
        let id = MessageId::from_parts(1_700_000_000_000, origin, 7);
        let mut spill = spool.spill(id);
        for c in &chunks[1..chunks.len() - 1] {
            spill.write(Bytes::copy_from_slice(c)).wait().expect("piece");
        }
        let head = Bytes::copy_from_slice(chunks[0]);
        let tail = Bytes::copy_from_slice(chunks[chunks.len() - 1]);
        let env = crate::record::tests::sample(1);
        spool
            .put_shadow_spilled(origin, env, head, spill, tail, b"placement".to_vec())
            .wait()
            .expect("shadow");
        (id, chunks.concat())
    }

    #[test]
    fn a_copy_received_in_pieces_is_promoted_without_copying_its_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 1)).expect("open");
        let (id, whole) = received_in_pieces(&spool, 3, &[b"head\r\n", b"one\r\n", b"two\r\n", b"tail\r\n"]);
        let shadow = spool.shadow(3, id).expect("read").expect("held");
        assert!(shadow.body.is_empty());
        assert_eq!(shadow.envelope.body_size, whole.len() as u64);
        assert_eq!(spool.body_layout(id).expect("layout"), BodyLayout::Pieces { count: 4 });
        assert!(spool
            .promote_shadow_placed(3, id, b"p2".to_vec())
            .wait()
            .expect("promote"));
        assert_eq!(spool.shadow(3, id).expect("read"), None);
        assert_eq!(spool.body(id).expect("body"), Some(whole));
        assert_eq!(
            spool.envelope(id).expect("env").map(|e| e.body_size),
            Some(shadow.envelope.body_size)
        );
        // A release arriving late (the copy was promoted meanwhile) leaves
        // the message's body alone.
        spool
            .release_shadows_placed(3, &[id], Durability::Synced)
            .wait()
            .expect("release");
        assert_eq!(spool.body_layout(id).expect("layout"), BodyLayout::Pieces { count: 4 });
        assert!(spool.remove(id, Durability::Synced).wait().expect("remove"));
        assert_eq!(spool.body(id).expect("body"), None);
    }

    #[test]
    fn releasing_a_copy_received_in_pieces_deletes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 1)).expect("open");
        let (id, whole) = received_in_pieces(&spool, 2, &[b"h\r\n", b"a\r\n", b"b\r\n", b"c\r\n", b"t\r\n"]);
        assert_eq!(spool.body(id).expect("body"), Some(whole));
        spool
            .release_shadows_placed(2, &[id], Durability::Synced)
            .wait()
            .expect("release");
        assert_eq!(spool.shadow(2, id).expect("read"), None);
        assert_eq!(spool.body_layout(id).expect("layout"), BodyLayout::Whole);
        assert_eq!(spool.body(id).expect("body"), None);
        assert!(spool.shadow_placements().expect("scan").is_empty());
    }
}
