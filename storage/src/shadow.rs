//! Shadow copies: messages this node holds for a peer (the origin) until the origin
//! releases them, or takes them over if the origin is gone.
//!
//! Key: `origin node (u16 BE) || id (16)`. Value:
//! `format version || envelope length (u32 BE) || envelope rkyv bytes || body`; the
//! envelope is read in either record format (see `record`), written in the current one.

use rkyv::util::AlignedVec;
use rocksdb::{DBRawIterator, ReadOptions};

use crate::config::Durability;
use crate::error::{key_display, Error};
use crate::id::MessageId;
use crate::keys::{sched_key, shadow_key, Cf};
use crate::record::{decode_archived, encode_envelope, Envelope, FORMAT_VERSION};
use crate::spool::Spool;
use crate::writer::{Ops, WriteFuture};

/// One shadow copy, as read back for takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// The node that accepted the message.
    pub origin: u16,
    /// Its id (assigned by the origin).
    pub id: MessageId,
    /// The envelope as replicated.
    pub envelope: Envelope,
    /// The body as replicated; empty for a copy received in pieces
    /// ([`Spool::put_shadow_spilled`]: read it with [`Spool::body_reader`]).
    pub body: Vec<u8>,
}

fn encode_shadow(envelope: &Envelope, body: &[u8]) -> Result<Vec<u8>, Error> {
    // encode_envelope prepends FORMAT_VERSION; keep the rkyv part only.
    let env = encode_envelope(envelope)?;
    let rkyv_part = &env[1..];
    let len =
        u32::try_from(rkyv_part.len()).map_err(|_| Error::InvalidArgument("envelope larger than 4 GiB".into()))?;
    let mut v = Vec::with_capacity(1 + 4 + rkyv_part.len() + body.len());
    v.push(FORMAT_VERSION);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(rkyv_part);
    v.extend_from_slice(body);
    Ok(v)
}

fn decode_shadow(key: &[u8], value: &[u8], scratch: &mut AlignedVec) -> Result<Shadow, Error> {
    let cf = Cf::Shadow.name();
    let (origin, id) = match key {
        [a, b, rest @ ..] => match MessageId::from_slice(rest) {
            Some(id) => (u16::from_be_bytes([*a, *b]), id),
            None => return Err(Error::corrupt(cf, key, "key is not origin || id")),
        },
        _ => return Err(Error::corrupt(cf, key, "key is not origin || id")),
    };
    let id_key = id.as_bytes();
    let [version, l0, l1, l2, l3, rest @ ..] = value else {
        return Err(Error::corrupt(cf, id_key, "shadow record too short"));
    };
    let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
    if len > rest.len() {
        return Err(Error::corrupt(
            cf,
            id_key,
            format!("envelope length {len} beyond the record ({} bytes)", rest.len()),
        ));
    }
    let (env_bytes, body) = rest.split_at(len);
    let envelope = decode_archived(*version, env_bytes, scratch, cf, id_key)?;
    Ok(Shadow {
        origin,
        id,
        envelope,
        body: body.to_vec(),
    })
}

impl Spool {
    /// Stores a copy of a message accepted by peer `origin`, so that this node can
    /// deliver it if `origin` dies.
    ///
    /// # Contract
    /// Synced like [`Spool::accept`]: when the future resolves `Ok`, the copy MUST be on
    /// stable storage (group commit, `sync = true`); only then may the replicator send
    /// `Ack{id}` to the origin. A crash before that leaves the whole copy or nothing.
    /// Dropping the future is safe (the origin never got the ack and counts the copy as
    /// missing). Storing the same `(origin, id)` twice overwrites.
    pub fn put_shadow(&self, origin: u16, id: MessageId, envelope: &Envelope, body: &[u8]) -> WriteFuture<()> {
        match self.shadow_ops(origin, id, envelope, body) {
            Ok(ops) => self.writer().submit(ops, true, ()),
            Err(e) => WriteFuture::ready(Err(e)),
        }
    }

    pub(crate) fn shadow_ops(
        &self,
        origin: u16,
        id: MessageId,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<Ops, Error> {
        let value = encode_shadow(envelope, body)?;
        let mut ops = Ops::default();
        ops.put(Cf::Shadow, shadow_key(origin, id).to_vec(), value);
        Ok(ops)
    }

    /// The copy of `id` held for `origin`, if any.
    pub fn shadow(&self, origin: u16, id: MessageId) -> Result<Option<Shadow>, Error> {
        let key = shadow_key(origin, id);
        match self.core().get(Cf::Shadow, &key)? {
            None => Ok(None),
            Some(v) => decode_shadow(&key, &v, &mut AlignedVec::new()).map(Some),
        }
    }

    /// Drops the copies of `ids` held for `origin` (the origin delivered them).
    ///
    /// With [`Durability::Buffered`] a crash may bring some back; if this node later takes
    /// over `origin`, those are delivered again (a duplicate, never a loss). Reconcile
    /// with the origin removes them in the normal case.
    pub fn release_shadows(&self, origin: u16, ids: &[MessageId], durability: Durability) -> WriteFuture<()> {
        let mut ops = Ops::default();
        for id in ids {
            if let Err(e) = self.forget_shadow_pieces(&mut ops, origin, *id) {
                return WriteFuture::ready(Err(e));
            }
            ops.delete(Cf::Shadow, shadow_key(origin, *id).to_vec());
        }
        self.core().submit(self.writer(), ops, durability, ())
    }

    /// Every copy held for `origin`, in id order (for takeover and reconcile). Reads
    /// bodies: for a large backlog, take what is needed and drop the iterator.
    /// A damaged record yields `Err(Error::Corrupt)` and the iteration goes on.
    pub fn shadows_of(&self, origin: u16) -> Shadows<'_> {
        let core = self.core();
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(origin.to_be_bytes().to_vec());
        if let Some(next) = origin.checked_add(1) {
            opts.set_iterate_upper_bound(next.to_be_bytes().to_vec());
        }
        opts.fill_cache(false);
        let (it, done) = match core.cf(Cf::Shadow) {
            Ok(cf) => (core.db.raw_iterator_cf_opt(cf, opts), false),
            Err(_) => (core.db.raw_iterator_opt(ReadOptions::default()), true),
        };
        Shadows {
            it,
            started: false,
            done,
            scratch: AlignedVec::new(),
        }
    }

    /// Takes over one shadow copy: stores it as this node's own queued message (same id,
    /// envelope, body, and `sched` entry) and deletes the shadow, in one synced batch.
    /// Resolves to `false` if there is no such copy.
    ///
    /// # Contract
    /// When `Ok(true)` resolves the message MUST be on stable storage in `msg`/`body`; a
    /// crash before leaves it in `shadow` (retry the takeover) or already moved, never
    /// in neither.
    pub fn promote_shadow(&self, origin: u16, id: MessageId) -> WriteFuture<bool> {
        match self.promote_ops(origin, id) {
            Ok(Some(ops)) => self.writer().submit(ops, true, true),
            Ok(None) => WriteFuture::ready(Ok(false)),
            Err(e) => WriteFuture::ready(Err(e)),
        }
    }

    /// The ops of [`Spool::promote_shadow`]; `None` without such a copy.
    pub(crate) fn promote_ops(&self, origin: u16, id: MessageId) -> Result<Option<Ops>, Error> {
        let Some(shadow) = self.shadow(origin, id)? else {
            return Ok(None);
        };
        let mut ops = Ops::default();
        ops.put(Cf::Msg, id.as_bytes().to_vec(), encode_envelope(&shadow.envelope)?);
        // A copy received in pieces keeps them: they become the message's.
        if !crate::chunks::in_pieces(self.core(), id)? {
            ops.put(Cf::Body, id.as_bytes().to_vec(), shadow.body);
        }
        if let Some(due) = shadow.envelope.due_ms() {
            ops.put(Cf::Sched, sched_key(due, id).to_vec(), Vec::new());
        }
        ops.delete(Cf::Shadow, shadow_key(origin, id).to_vec());
        Ok(Some(ops))
    }
}

/// Iterator over the shadow copies held for one origin; see [`Spool::shadows_of`].
pub struct Shadows<'a> {
    it: DBRawIterator<'a>,
    started: bool,
    done: bool,
    scratch: AlignedVec,
}

impl std::fmt::Debug for Shadows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadows").field("done", &self.done).finish()
    }
}

impl Iterator for Shadows<'_> {
    type Item = Result<Shadow, Error>;

    fn next(&mut self) -> Option<Self::Item> {
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
            return Some(decode_shadow(k, v, &mut self.scratch));
        }
        self.done = true;
        match self.it.status() {
            Ok(()) => None,
            Err(e) => Some(Err(Error::Unhealthy {
                reason: format!(
                    "shadow scan stopped at {}: {}",
                    self.it.key().map(key_display).unwrap_or_default(),
                    e.into_string()
                ),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_record_round_trip_and_damage() {
        let env = crate::record::tests::sample(2);
        let id = MessageId::from_parts(9, 3, 1);
        let key = shadow_key(3, id);
        let v = encode_shadow(&env, b"hello body").unwrap();
        let s = decode_shadow(&key, &v, &mut AlignedVec::new()).unwrap();
        assert_eq!((s.origin, s.id), (3, id));
        assert_eq!(s.envelope, env);
        assert_eq!(s.body, b"hello body");
        for cut in 0..v.len() {
            let _ = decode_shadow(&key, &v[..cut], &mut AlignedVec::new());
        }
        let mut bad = v.clone();
        bad[1] = 0xff;
        assert!(matches!(
            decode_shadow(&key, &bad, &mut AlignedVec::new()),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode_shadow(b"xx", &v, &mut AlignedVec::new()),
            Err(Error::Corrupt { .. })
        ));
    }
}
