//! A message with one live copy gets its copies back.
//!
//! When a node takes a message over (its origin died, lost its volume, or
//! handed it over while draining), the shadow it promoted is the message's
//! only live copy: losing this node too would lose the message. The same
//! holds for an origin whose holders died (silent for `takeover_after`) or
//! came back on another volume. Which messages are in that case is the
//! protocol's call (`proto::cluster::Node::is_single_copy`). With
//! `min_copies > 1` the queue commits such a message again, through the one
//! commit path ([`Queue::commit`]), under a new id: the body is copied in
//! the spool piece by piece (never whole in memory when it was stored in
//! pieces), the envelope keeps its sender, recipients, DSN parameters,
//! attempts and arrival time, and the cluster places and streams new copies
//! as for any accept. Only once that commit returned (local write synced and
//! every new shadow acked) is the old id removed and reported final, which
//! releases its remaining copies on the peers: a node that comes back reads
//! its copy as final (DESIGN §5, `CopyStatus::Absent`).
//!
//! When: a message just taken over, at once and before it is delivered
//! ([`Queue::taken_over`]); every other one, every few seconds while enough
//! peers are reachable ([`Queue::retry_copies`]): an origin whose holder
//! died, a taken-over message that found no peer at first, or one this node
//! had taken over before a restart; and all of them when the node drains,
//! before its queue is handed over ([`Queue::copy_before_handoff`]): what
//! no peer holds a copy of could be handed to no one.
//!
//! Why a new id rather than new holders for the same one: the protocol's
//! placement is fixed when a message is accepted (every holder derives who
//! delivers from it), and a fresh accept is a path the protocol and its
//! simulation already cover; the two ids are linked in both traces.
//!
//! What it costs and what it does not cover:
//! - until enough peers are reachable, such a message is delivered with its
//!   one copy (counted at its takeover: `estafette_cluster_rereplication_failed`);
//! - a crash between the new commit and the removal of the old id leaves
//!   both: delivered twice at worst, never lost;
//! - the protocol can resolve which of two nodes delivers a message, but not
//!   that two ids are one message: when the two sides of a partition both
//!   copy a message again, both copies are delivered. That is the partition
//!   duplicate at-least-once already allows, made certain where the protocol
//!   would have settled it at the heal (the simulation counts about 6 % more
//!   duplicates under its faults: 70,280 → 74,683 over 100,000 seeds).

use bytes::Bytes;
use storage::{BodyLayout, Durability, EventKind, MessageId, RecipientStatus};
use tracing::{debug, info, warn};

use super::{Body, Prepared, Queue};
use crate::cluster::{Cluster, CopyAgain};
use crate::lifecycle::{Phase, PhaseWatch};

impl Queue {
    /// `id` was just taken over: copied again under a new id before it is
    /// delivered when the cluster wants copies and the protocol says it is
    /// the last one (else, or when no peer is reachable, it is delivered as
    /// it is). Without copies, nothing to do: the protocol's `Deliver` has
    /// handed it to delivery already.
    pub fn taken_over(self: &std::sync::Arc<Self>, id: MessageId) {
        let Some(cluster) = self.cluster.clone().filter(|c| c.replicates()) else {
            return;
        };
        let queue = self.clone();
        tokio::spawn(async move {
            let outcome = if cluster.is_single_copy(id).await {
                match queue.copy_again(id, Why::TakenOver, cluster.accept_deadline()).await {
                    Ok(Some(new)) => {
                        info!(%id, new = %new, "taken-over message committed again with new copies");
                        CopyAgain::Copied
                    }
                    Ok(None) => CopyAgain::Moot,
                    Err(e) => {
                        warn!(%id, error = %e, "taken-over message not copied again yet: its one copy is here");
                        CopyAgain::Failed
                    }
                }
            } else {
                CopyAgain::Moot
            };
            cluster.copied_again(id, outcome);
            if outcome != CopyAgain::Copied {
                queue.submit(id);
            }
        });
    }

    /// Every `every` (`cluster.recopy_interval_secs`) while enough peers
    /// are reachable, until the node drains: copies again what the protocol
    /// says has one copy left (see the module doc). A message being tried
    /// is left for the next round; while one is copied, it is not tried.
    pub async fn retry_copies(self: std::sync::Arc<Self>, mut shutdown: PhaseWatch, every: std::time::Duration) {
        let Some(cluster) = self.cluster.clone().filter(|c| c.replicates()) else {
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.reached(Phase::Draining) => return,
            }
            if cluster.can_accept() {
                self.copy_single_copies(&cluster, || shutdown.reached_now(Phase::Draining))
                    .await;
            }
        }
    }

    /// Before a drain hands the queue over: a message no peer holds a copy
    /// of could not be handed to anyone and would stay on this node's
    /// volume, so each is committed again with new copies first (its new
    /// holders then take it). Tries again while some are left (a peer just
    /// back may still have its old connection to replace), until `until`;
    /// the number copied. What is left then stays here, as before.
    pub async fn copy_before_handoff(&self, until: tokio::time::Instant) -> usize {
        let Some(cluster) = self.cluster.clone().filter(|c| c.replicates()) else {
            return 0;
        };
        let mut copied = 0;
        while tokio::time::Instant::now() < until {
            if cluster.can_accept() {
                copied += self
                    .copy_single_copies(&cluster, || tokio::time::Instant::now() >= until)
                    .await;
            }
            if cluster.single_copies().await.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        copied
    }

    /// One pass: copies again, one after the other, what the protocol says
    /// has one copy left, until `stop` says so or peers are missing.
    async fn copy_single_copies(&self, cluster: &Cluster, mut stop: impl FnMut() -> bool) -> usize {
        let mut copied = 0;
        for id in cluster.single_copies().await {
            if !cluster.can_accept() || stop() {
                break;
            }
            // Being copied since its takeover, or held: not now.
            if !cluster.may_deliver(id) || !self.claim(id) {
                continue;
            }
            let outcome = self.copy_again(id, Why::OneCopyLeft, cluster.accept_deadline()).await;
            self.release(id);
            match outcome {
                Ok(Some(new)) => {
                    info!(%id, new = %new, "message with one copy left committed again with new copies");
                    cluster.copied_again(id, CopyAgain::Copied);
                    copied += 1;
                }
                Ok(None) => {}
                Err(e) => debug!(%id, error = %e, "message with one copy left: not copied again yet"),
            }
        }
        copied
    }

    /// Commits `id` again under a new id and removes it; the new id, or
    /// `None` when it is gone or no longer this node's to deliver. `why`
    /// goes into the new id's trace.
    async fn copy_again(
        &self,
        id: MessageId,
        why: Why,
        deadline: std::time::Duration,
    ) -> Result<Option<MessageId>, CopyError> {
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
            event: Some(match why {
                Why::TakenOver => storage::Event {
                    at_ms: storage::now_ms(),
                    kind: EventKind::TakenOver,
                    detail: format!("copied again from {id}, just taken over from a peer"),
                },
                Why::OneCopyLeft => storage::Event {
                    at_ms: storage::now_ms(),
                    kind: EventKind::Note,
                    detail: format!("copied again from {id}: its other copies were gone"),
                },
            }),
        };
        self.commit(prepared, deadline).await?;
        self.spool.remove(id, Durability::Synced).await?;
        self.release_copies(id);
        self.event(id, EventKind::Removed, format!("copied again as {new}"));
        Ok(Some(new))
    }
}

/// Why a message is copied again (its new id's trace says so).
#[derive(Clone, Copy, Debug)]
enum Why {
    /// This node just took it over.
    TakenOver,
    /// Its other copies are gone (a holder died, a takeover found no peer
    /// then, or it was taken over before a restart).
    OneCopyLeft,
}

/// Why a message was not copied again.
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
