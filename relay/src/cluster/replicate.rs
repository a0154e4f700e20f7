//! Copies on the wire: the origin streams a message to a holder in
//! `Replicate` frames and the holder writes it into its shadow column family
//! as the frames arrive. This is the data plane of the replication protocol;
//! the protocol core sees no bodies, only `SendCopy` and the holder's
//! `ShadowStored` / `ShadowFailed`.
//!
//! # Memory
//! A body larger than one frame (1 MiB) is streamed in 256 KiB frames and is
//! never whole in memory on either node:
//! - The origin reads a body the session spilled back from its spool piece by
//!   piece (the pieces written while the client sent it; the trace head and
//!   the tail come from memory). Each frame of a streamed copy holds bytes of
//!   the node's copy budget (`cluster.copy_queue_bytes`, all peers together)
//!   until its link has written it; past that, QUIC's flow-control window
//!   (`cluster.max_in_flight_bytes`) bounds what a peer has not read yet.
//! - The holder keeps the first chunk in memory and writes every later one
//!   but the last to its spool (`storage::Spill`, buffered) before it reads
//!   the peer's next frame: a slow disk slows the sender (flow control)
//!   instead of filling memory. It also delays the control frames that
//!   follow on that connection (heartbeats included), so a disk stalled for
//!   more than `peer_timeout` makes the origin count this node out for new
//!   copies, which it could not store anyway; a chunk whose write takes
//!   over 10 s refuses its copy and the next frames are read. The last chunk's synced batch
//!   (`Spool::put_shadow_spilled`) covers them all before the ack.
//!
//! A copy that does not arrive whole (the link breaks, the origin gives up and
//! releases it, a chunk is out of order) leaves no pieces: dropping its
//! `Spill` discards them, and after a crash the next start sweeps them.
//!
//! Copies start when the local commit starts (after the end of DATA). The
//! protocol refuses an accept whose copy made no progress for
//! `accept_deadline_ms` (each chunk handed to the link is progress), not one
//! whose bytes merely take long; the commit as a whole is bounded by
//! `node.accept_timeout_secs` plus the size at `cluster.copy_rate_bytes`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use proto::cluster::{encode, Frame, MessageId, NackReason, NodeId, Placement, Replicate};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::driver::{placement_bytes, sid, Cmd};

/// Largest body sent whole in one `Replicate` frame.
pub(super) const ONE_FRAME: usize = 1 << 20;

/// Body bytes per frame of a streamed copy: each stream holds about two of
/// them at a time (the chunk and its frame), whatever the message size.
const CHUNK: usize = 256 << 10;

/// Longest wait for the holder's spool to take one chunk; then the copy is
/// refused (the origin answers 451) and the peer's next frames are read.
const CHUNK_WRITE: Duration = Duration::from_secs(10);

/// The body of a message being accepted, as the commit path hands it to the
/// cluster for its copies.
#[derive(Clone, Debug)]
pub enum CopyBody {
    /// Whole in memory.
    Whole(Bytes),
    /// Written to the spool in pieces while it arrived: `head` (the trace
    /// headers), the pieces `pieces` reads, then `tail`.
    Pieces {
        /// The trace headers.
        head: Bytes,
        /// The pieces already in the spool (`storage::Spill::reader`).
        pieces: storage::BodyReader,
        /// What arrived after the last piece.
        tail: Bytes,
    },
}

/// Encoded frames queued for one peer's link, in order.
#[derive(Debug)]
pub(super) struct Outbound {
    pub(super) bytes: Vec<u8>,
    /// A streamed chunk's share of the copy budget, given back once written.
    pub(super) _budget: Option<OwnedSemaphorePermit>,
}

impl Outbound {
    pub(super) fn control(bytes: Vec<u8>) -> Self {
        Self { bytes, _budget: None }
    }
}

/// One copy to stream to one holder.
pub(super) struct Stream {
    pub(super) link: mpsc::Sender<Outbound>,
    pub(super) budget: Arc<Semaphore>,
    /// Total permits of `budget` (a frame never asks for more).
    pub(super) budget_total: u32,
    pub(super) id: MessageId,
    pub(super) placement: Placement,
    pub(super) envelope: Vec<u8>,
    pub(super) body: CopyBody,
    /// Octets of the body: the chunk that reaches it is the last.
    pub(super) size: u64,
    /// Gone once the accept has its outcome: stop sending.
    pub(super) alive: Weak<()>,
    /// Told of each chunk handed to the link (the accept's deadline counts
    /// from the last one).
    pub(super) driver: mpsc::Sender<Cmd>,
}

/// The body as chunks of at most [`CHUNK`] bytes, none empty.
struct Chunks {
    ready: VecDeque<Bytes>,
    pieces: Option<storage::BodyReader>,
    tail: Option<Bytes>,
}

impl Chunks {
    fn new(body: CopyBody) -> Self {
        match body {
            CopyBody::Whole(b) => Self {
                ready: VecDeque::from([b]),
                pieces: None,
                tail: None,
            },
            CopyBody::Pieces { head, pieces, tail } => Self {
                ready: VecDeque::from([head]),
                pieces: Some(pieces),
                tail: Some(tail),
            },
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, storage::Error> {
        loop {
            if let Some(mut b) = self.ready.pop_front() {
                if b.is_empty() {
                    continue;
                }
                if b.len() > CHUNK {
                    self.ready.push_front(b.split_off(CHUNK));
                }
                return Ok(Some(b));
            }
            if let Some(mut reader) = self.pieces.take() {
                let (reader, piece) = tokio::task::spawn_blocking(move || {
                    let piece = reader.next_piece();
                    (reader, piece)
                })
                .await
                .map_err(|e| storage::Error::Unhealthy {
                    reason: format!("body read task: {e}"),
                })?;
                if let Some(p) = piece? {
                    self.pieces = Some(reader);
                    self.ready.push_back(p);
                }
                continue;
            }
            match self.tail.take() {
                Some(t) => self.ready.push_back(t),
                None => return Ok(None),
            }
        }
    }
}

/// Sends one copy, chunk after chunk, waiting for budget and link room. Stops
/// quietly when the link closes, the accept ended, or a piece cannot be read
/// (the message was refused meanwhile): the protocol's deadline and releases
/// deal with a copy that never completes.
pub(super) async fn stream(s: Stream) {
    let mut chunks = Chunks::new(s.body);
    let mut offset = 0u64;
    loop {
        let chunk = match chunks.next().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                warn!(id = %s.id, sent = offset, size = s.size, "copy stopped: body shorter than its size");
                return;
            }
            Err(e) => {
                debug!(id = %s.id, error = %e, "copy stopped: body unreadable");
                return;
            }
        };
        if s.alive.upgrade().is_none() {
            return;
        }
        let end = offset + chunk.len() as u64;
        let frame = Frame::Replicate(Replicate {
            id: s.id,
            placement: s.placement.clone(),
            offset,
            envelope: if offset == 0 { s.envelope.clone() } else { Vec::new() },
            chunk: chunk.to_vec(),
            last: end >= s.size,
        });
        drop(chunk);
        let bytes = encode(&frame);
        drop(frame);
        let want = u32::try_from(bytes.len()).unwrap_or(u32::MAX).min(s.budget_total);
        let Ok(permit) = s.budget.clone().acquire_many_owned(want).await else {
            return;
        };
        let out = Outbound {
            bytes,
            _budget: Some(permit),
        };
        if s.link.send(out).await.is_err() {
            return;
        }
        // Dropped when the driver is busy: the next chunk tells it again.
        let _ = s.driver.try_send(Cmd::CopyProgress(s.id));
        if end >= s.size {
            return;
        }
        offset = end;
    }
}

/// A copy being received in pieces.
struct Incoming {
    envelope: Vec<u8>,
    placement: Placement,
    /// The first chunk (piece 0 of the stored body).
    head: Bytes,
    spill: storage::Spill,
    received: u64,
}

/// The holder's side for the copies one peer streams on one connection
/// (frames arrive in order on it).
pub(super) struct Receiver {
    origin: NodeId,
    spool: storage::Spool,
    driver: mpsc::Sender<Cmd>,
    incoming: HashMap<MessageId, Incoming>,
    /// Copies already refused: their remaining chunks are skipped.
    refused: HashSet<MessageId>,
}

impl Receiver {
    pub(super) fn new(origin: NodeId, spool: storage::Spool, driver: mpsc::Sender<Cmd>) -> Self {
        Self {
            origin,
            spool,
            driver,
            incoming: HashMap::new(),
            refused: HashSet::new(),
        }
    }

    /// Takes one chunk. Awaits the spool's write of a middle chunk (the
    /// back-pressure); the synced store of a complete copy runs on a task of
    /// its own, which reports to the driver.
    pub(super) async fn on_replicate(&mut self, r: Replicate) {
        let id = r.id;
        if r.offset == 0 {
            // A new copy; a copy sent again replaces an unfinished one.
            self.incoming.remove(&id);
            self.refused.remove(&id);
        } else if self.refused.contains(&id) {
            if r.last {
                self.refused.remove(&id);
            }
            return;
        }
        let Some(sid) = sid(id) else {
            return self.refuse(id, r.placement, NackReason::Invalid, r.last).await;
        };
        if r.offset == 0 {
            if r.last {
                self.store(id, r.placement, r.envelope, Stored::Whole(r.chunk));
            } else {
                let entry = Incoming {
                    envelope: r.envelope,
                    placement: r.placement,
                    received: r.chunk.len() as u64,
                    head: Bytes::from(r.chunk),
                    spill: self.spool.spill(sid),
                };
                self.incoming.insert(id, entry);
            }
            return;
        }
        let Some(mut entry) = self.incoming.remove(&id).filter(|e| e.received == r.offset) else {
            return self.refuse(id, r.placement, NackReason::Invalid, r.last).await;
        };
        if !r.envelope.is_empty() {
            entry.envelope = r.envelope;
        }
        entry.received += r.chunk.len() as u64;
        if r.last {
            let Incoming {
                envelope,
                placement,
                head,
                spill,
                ..
            } = entry;
            let stored = Stored::Pieces {
                head,
                spill,
                tail: Bytes::from(r.chunk),
            };
            return self.store(id, placement, envelope, stored);
        }
        match tokio::time::timeout(CHUNK_WRITE, entry.spill.write(Bytes::from(r.chunk))).await {
            Ok(Ok(())) => {
                self.incoming.insert(id, entry);
            }
            Ok(Err(e)) => {
                warn!(origin = %self.origin, id = %sid, error = %e, "copy refused: spool write failed");
                self.refuse(id, entry.placement, nack_reason(&e), false).await;
            }
            Err(_) => {
                warn!(origin = %self.origin, id = %sid, "copy refused: spool write stalled");
                self.refuse(id, entry.placement, NackReason::Storage, false).await;
            }
        }
    }

    /// The origin released these messages: an unfinished copy of one is
    /// dropped with its pieces.
    pub(super) fn released(&mut self, ids: &[MessageId]) {
        for id in ids {
            self.incoming.remove(id);
        }
    }

    async fn refuse(&mut self, id: MessageId, placement: Placement, reason: NackReason, last: bool) {
        if !last {
            self.refused.insert(id);
        }
        let done = Cmd::ShadowDone {
            origin: self.origin,
            id,
            placement,
            result: Err(reason),
        };
        let _ = self.driver.send(done).await;
    }

    fn store(&self, id: MessageId, placement: Placement, envelope: Vec<u8>, body: Stored) {
        let (spool, driver, origin) = (self.spool.clone(), self.driver.clone(), self.origin);
        tokio::spawn(async move {
            let result = store_shadow(&spool, origin, id, &envelope, body, &placement).await;
            let _ = driver
                .send(Cmd::ShadowDone {
                    origin,
                    id,
                    placement,
                    result,
                })
                .await;
        });
    }
}

/// A complete copy to store.
enum Stored {
    Whole(Vec<u8>),
    Pieces {
        head: Bytes,
        spill: storage::Spill,
        tail: Bytes,
    },
}

fn nack_reason(e: &storage::Error) -> NackReason {
    match e {
        storage::Error::NoSpace { .. } => NackReason::NoSpace,
        _ => NackReason::Storage,
    }
}

async fn store_shadow(
    spool: &storage::Spool,
    origin: NodeId,
    id: MessageId,
    envelope: &[u8],
    body: Stored,
    placement: &Placement,
) -> Result<(), NackReason> {
    let envelope = storage::Envelope::from_bytes(envelope).map_err(|_| NackReason::Invalid)?;
    let sid = sid(id).ok_or(NackReason::Invalid)?;
    let placement = placement_bytes(placement);
    let write = match body {
        Stored::Whole(body) => spool.put_shadow_placed(origin.0, sid, &envelope, &body, placement),
        Stored::Pieces { head, spill, tail } => {
            spool.put_shadow_spilled(origin.0, envelope, head, spill, tail, placement)
        }
    };
    write.await.map_err(|e| nack_reason(&e))
}
