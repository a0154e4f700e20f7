//! A taken-over message gets its copies back before it is delivered.
//!
//! When a node takes a message over (its origin died, lost its volume, or
//! handed it over while draining), the shadow it promoted is the message's
//! only live copy: losing this node too would lose the message. With
//! `min_copies > 1` the queue therefore commits it again, through the one
//! commit path ([`Queue::commit`]), under a new id: the body is copied in
//! the spool piece by piece (never whole in memory when it was stored in
//! pieces), the envelope keeps its sender, recipients, DSN parameters,
//! attempts and arrival time, and the cluster places and streams new copies
//! as for any accept. Only once that commit returned (local write synced and
//! every new shadow acked) is the taken-over id removed and reported final,
//! which releases its remaining copies on the peers: an origin that comes
//! back reads its copy as final (DESIGN §5, `CopyStatus::Absent`).
//!
//! Why a new id rather than new holders for the same one: the protocol's
//! placement is fixed when a message is accepted (every holder derives who
//! delivers from it), and a fresh accept is a path the protocol and its
//! simulation already cover; the two ids are linked in both traces.
//!
//! What it costs and what it does not cover:
//! - if no peer can take a copy (a two-node cluster with one node gone) or
//!   the commit fails, the message is delivered with the one copy it has
//!   (counted: `estafette_cluster_rereplication_failed`), and copied again
//!   as soon as enough peers are reachable, if it is still queued then
//!   ([`Queue::retry_copies`]); after a restart, every recovered message
//!   this node had taken over is such a candidate;
//! - a crash between the new commit and the removal of the old id leaves
//!   both, and the old one is copied again after the restart: delivered
//!   twice at worst, never lost;
//! - with `min_copies >= 3`, two holders whose views disagree may both take
//!   a message over and both copy it again: delivered twice, as two takers
//!   that both deliver would.

use bytes::Bytes;
use storage::{BodyLayout, Durability, EventKind, MessageId, RecipientStatus};
use tracing::{debug, info, warn};

use super::{Body, Prepared, Queue};
use crate::cluster::CopyAgain;
use crate::lifecycle::{Phase, PhaseWatch};
use crate::sync::lock;

/// How often [`Queue::retry_copies`] looks for reachable peers.
const RETRY_COPIES: std::time::Duration = std::time::Duration::from_secs(1);

impl Queue {
    /// `id` was just taken over (see the module doc): copied again under a
    /// new id when the cluster wants copies. Without, nothing to do: the
    /// protocol's `Deliver` has handed it to delivery already.
    pub fn taken_over(self: &std::sync::Arc<Self>, id: MessageId) {
        let Some(cluster) = self.cluster.clone().filter(|c| c.replicates()) else {
            return;
        };
        let queue = self.clone();
        tokio::spawn(async move {
            let outcome = match queue.copy_again(id, cluster.accept_deadline()).await {
                Ok(Some(new)) => {
                    info!(%id, new = %new, "taken-over message committed again with new copies");
                    CopyAgain::Copied
                }
                Ok(None) => CopyAgain::Moot,
                Err(e) => {
                    warn!(%id, error = %e, "taken-over message not copied again: delivered with its one copy");
                    CopyAgain::Failed
                }
            };
            cluster.copied_again(id, outcome);
            if outcome == CopyAgain::Failed {
                lock(&queue.single_copy).insert(id);
            }
            if outcome != CopyAgain::Copied {
                queue.submit(id);
            }
        });
    }

    /// `id` may have only this node's copy (see [`crate::cluster::Handover::SingleCopy`]):
    /// [`Queue::retry_copies`] copies it again.
    pub fn may_have_one_copy(&self, id: MessageId) {
        lock(&self.single_copy).insert(id);
    }

    /// Copies again the taken-over messages that were left with one copy,
    /// once enough peers are reachable, until the node stops. Each is taken
    /// out of delivery while it is copied (an attempt under way is waited
    /// for: its id is tried again at the next round).
    pub async fn retry_copies(self: std::sync::Arc<Self>, mut shutdown: PhaseWatch) {
        let Some(cluster) = self.cluster.clone().filter(|c| c.replicates()) else {
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(RETRY_COPIES) => {}
                () = shutdown.reached(Phase::Draining) => return,
            }
            if !cluster.can_accept() || lock(&self.single_copy).is_empty() {
                continue;
            }
            let ids: Vec<MessageId> = lock(&self.single_copy).iter().copied().collect();
            for id in ids {
                if !cluster.can_accept() || shutdown.reached_now(Phase::Draining) {
                    break;
                }
                // Not yet (a restart's check) or not now (held for a taker):
                // asked again at the next round, unless gone from the spool.
                if !cluster.may_deliver(id) {
                    if matches!(self.spool.envelope(id), Ok(None)) {
                        lock(&self.single_copy).remove(&id);
                    }
                    continue;
                }
                if !self.claim(id) {
                    continue;
                }
                let outcome = self.copy_again(id, cluster.accept_deadline()).await;
                self.release(id);
                match outcome {
                    Ok(Some(new)) => {
                        info!(%id, new = %new, "message left with one copy committed again with new copies");
                        cluster.copied_again(id, CopyAgain::Copied);
                        lock(&self.single_copy).remove(&id);
                    }
                    Ok(None) => {
                        lock(&self.single_copy).remove(&id);
                    }
                    Err(e) => debug!(%id, error = %e, "message left with one copy: not copied again yet"),
                }
            }
        }
    }

    /// Commits `id` again under a new id and removes it; the new id, or
    /// `None` when it is gone or no longer this node's to deliver.
    async fn copy_again(&self, id: MessageId, deadline: std::time::Duration) -> Result<Option<MessageId>, CopyError> {
        let Some(mut envelope) = self.spool.envelope(id)? else {
            return Ok(None);
        };
        if let Some(c) = &self.cluster {
            if c.held_elsewhere(id) {
                return Ok(None);
            }
            // Before copying the body: the commit would refuse at once.
            if !c.can_accept() {
                return Err(CopyError::NoPeers);
            }
        }
        let (new, body) = match self.spool.body_layout(id)? {
            BodyLayout::Whole => {
                let body = self.spool.body(id)?.ok_or(CopyError::NoBody)?;
                (self.next_id(), Body::Whole(Bytes::from(body)))
            }
            BodyLayout::Pieces { .. } => {
                let mut spill = self.spill();
                let mut reader = self.spool.body_reader(id)?;
                loop {
                    let (back, piece) = tokio::task::spawn_blocking(move || {
                        let piece = reader.next_piece();
                        (reader, piece)
                    })
                    .await
                    .map_err(|_| CopyError::NoBody)?;
                    reader = back;
                    match piece? {
                        Some(piece) => spill.write(piece).await?,
                        None => break,
                    }
                }
                (
                    spill.id(),
                    Body::Spilled {
                        head: Bytes::new(),
                        spill,
                        tail: Bytes::new(),
                    },
                )
            }
        };
        // Handed to delivery at once (`commit` submits it), like a new accept.
        let due = self.first_due(storage::now_ms());
        for r in &mut envelope.recipients {
            if matches!(r.status, RecipientStatus::Queued | RecipientStatus::Deferred) {
                r.next_attempt_ms = due;
            }
        }
        let prepared = Prepared {
            id: new,
            envelope,
            body,
            counters: Vec::new(),
            event: Some(storage::Event {
                at_ms: storage::now_ms(),
                kind: EventKind::TakenOver,
                detail: format!("copied again from {id}, taken over from a peer"),
            }),
        };
        self.commit(prepared, deadline).await?;
        self.spool.remove(id, Durability::Synced).await?;
        self.release_copies(id);
        self.event(id, EventKind::Removed, format!("copied again as {new}"));
        Ok(Some(new))
    }
}

/// Why a taken-over message was not copied again.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    /// Reading it or writing the new copy.
    #[error(transparent)]
    Spool(#[from] storage::Error),
    /// The commit of the new id (replication unavailable, spool, timeout).
    #[error(transparent)]
    Commit(#[from] super::CommitError),
    /// Fewer live peers than `min_copies - 1` (or this node is draining).
    #[error("too few peers reachable for new copies")]
    NoPeers,
    /// Its body is missing.
    #[error("body missing")]
    NoBody,
}
