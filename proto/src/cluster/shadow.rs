//! Copies this node holds for other nodes: stored and acked, dropped on release,
//! promoted into the queue on takeover.

use std::collections::btree_map::Entry;
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::copy::{Copy, State};
use super::frame::{Frame, Nack, NackReason, Takeover};
use super::ids::{MessageId, NodeId};
use super::membership::Change;
use super::node::Node;
use super::placement::Placement;

/// Ids released lately, so that a copy stored after its release (a late or repeated
/// `Replicate`, or an accept that timed out while its copy was still on the way) is
/// dropped at once instead of standing by, and maybe being taken over.
#[derive(Debug, Default)]
pub(super) struct Released {
    ids: BTreeSet<MessageId>,
    order: VecDeque<(Instant, MessageId)>,
}

/// Most ids remembered (about 40 MB at worst).
const RELEASED_MAX: usize = 1 << 20;

impl Released {
    fn insert(&mut self, now: Instant, id: MessageId, keep: Duration) {
        while let Some(&(t, old)) = self.order.front() {
            if now.saturating_duration_since(t) < keep && self.order.len() < RELEASED_MAX {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        if self.ids.insert(id) {
            self.order.push_back((now, id));
        }
    }

    fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains(id)
    }
}

impl Node {
    pub(super) fn on_shadow_stored(&mut self, now: Instant, origin: NodeId, id: MessageId, placement: Placement) {
        // The copy just came from the origin: it is alive, whatever its heartbeats say.
        if self.view.heard(now, origin) == Change::Peer {
            self.peer_changed(now, origin);
        }
        if placement.origin.node != origin || placement.position(self.config.node).is_none() {
            // The driver stored something the protocol cannot track: have it dropped.
            self.out.drop_shadows.entry(origin).or_default().push(id);
            return;
        }
        if placement.volume_of(self.config.node) != Some(self.volume) {
            // Placed on a volume this node no longer has (the origin had not read
            // its Hello yet): every member would count this copy as lost, and the
            // origin deliver while this node takes over. Refused: the client retries.
            self.out.drop_shadows.entry(origin).or_default().push(id);
            self.send(
                origin,
                Frame::Nack(Nack {
                    id,
                    reason: NackReason::Invalid,
                }),
            );
            return;
        }
        if self.released.contains(&id) && !self.copies.contains_key(&id) {
            // Stored after its release: drop it (and ack, so the origin stops waiting).
            self.out.drop_shadows.entry(origin).or_default().push(id);
            self.send(origin, Frame::Ack(id));
            return;
        }
        match self.copies.entry(id) {
            Entry::Vacant(e) => {
                e.insert(Copy::new(placement, State::Shadow, now));
                self.evaluate(now, id);
            }
            // A late repeat of a copy already promoted into the queue: the queue has it,
            // the new shadow record must go.
            Entry::Occupied(e) if matches!(e.get().state, State::Queued { .. } | State::Recovering { .. }) => {
                self.out.drop_shadows.entry(origin).or_default().push(id);
            }
            Entry::Occupied(_) => {}
        }
        // Acked again if the copy came twice: the first ack may have been lost.
        self.send(origin, Frame::Ack(id));
    }

    pub(super) fn on_shadow_failed(&mut self, origin: NodeId, id: MessageId, reason: NackReason) {
        self.send(origin, Frame::Nack(Nack { id, reason }));
    }

    /// `Release`: the messages are final (or were never accepted). Drops every copy
    /// except an accept in flight here (a release cannot concern it: only this node
    /// releases before the outcome).
    pub(super) fn on_release(&mut self, now: Instant, ids: &[MessageId]) {
        for id in ids {
            self.released.insert(now, *id, self.config.takeover_after);
            let Some(copy) = self.copies.get_mut(id) else { continue };
            match copy.state {
                State::Accepting { .. } => {}
                State::Promoting { .. } => copy.set_state(State::Promoting { released: true }, now),
                _ => self.drop_copy(*id),
            }
        }
    }

    /// Deletes the copy `id` (queued or shadow) with the matching action. A queued copy
    /// the driver was told it may deliver counts as a possible duplicate.
    pub(super) fn drop_copy(&mut self, id: MessageId) {
        if let Some(copy) = self.copies.get_mut(&id) {
            if let State::Promoting { .. } = copy.state {
                // The driver is moving it: dropped once `Promoted` says where it is.
                copy.state = State::Promoting { released: true };
                return;
            }
        }
        let Some(copy) = self.copies.remove(&id) else { return };
        match copy.state {
            State::Shadow | State::Promoting { .. } => {
                self.out.drop_shadows.entry(copy.origin()).or_default().push(id);
            }
            State::Queued { .. } | State::Recovering { .. } => {
                if copy.reported {
                    self.counters.duplicates_possible += 1;
                }
                self.out.drop_local.push(id);
            }
            State::Accepting { deadline, .. } => {
                self.deadlines.remove(&(deadline, id));
            }
        }
    }

    /// Shadows this node now delivers (see [`Copy::responsible`]).
    pub(super) fn promote(&mut self, now: Instant, id: MessageId) {
        let Some(copy) = self.copies.get_mut(&id) else { return };
        if copy.state != State::Shadow {
            return;
        }
        copy.set_state(State::Promoting { released: false }, now);
        self.out.promote.entry(copy.origin()).or_default().push(id);
    }

    /// The driver moved promoted shadows into the queue: deliver them, and tell every
    /// other copy holder that this node delivers them now.
    pub(super) fn on_promoted(&mut self, now: Instant, ids: &[MessageId]) {
        let me = self.config.node;
        let mut notices: Vec<(NodeId, NodeId, MessageId)> = Vec::new();
        for &id in ids {
            let Some(copy) = self.copies.get_mut(&id) else { continue };
            let State::Promoting { released } = copy.state else {
                continue;
            };
            copy.set_state(State::Queued { handoff: None }, now);
            copy.reported = false;
            copy.deliverable = false;
            // The origin is gone or handed the message over: that it delivered
            // the message before (an answer heard while this was a shadow) no
            // longer holds.
            let origin = copy.origin();
            copy.remove_taker(origin);
            if !copy.takers.contains(&me) {
                copy.takers.push(me);
            }
            if released {
                self.drop_copy(id);
                continue;
            }
            self.counters.taken_over += 1;
            for n in copy
                .placement
                .members()
                .map(|m| m.node)
                .chain(copy.takers.iter().copied())
            {
                if n != me {
                    notices.push((n, copy.origin(), id));
                }
            }
            self.count_taken_from(origin);
            self.evaluate(now, id);
        }
        self.send_notices(notices);
    }

    /// Sends `Takeover` frames, one per (peer, origin).
    pub(super) fn send_notices(&mut self, mut notices: Vec<(NodeId, NodeId, MessageId)>) {
        notices.sort();
        notices.dedup();
        let batch = self.config.reconcile_batch.max(1);
        let mut i = 0;
        while i < notices.len() {
            let (peer, origin, _) = notices[i];
            let mut ids = Vec::new();
            while i < notices.len() && notices[i].0 == peer && notices[i].1 == origin && ids.len() < batch {
                ids.push(notices[i].2);
                i += 1;
            }
            self.send(peer, Frame::Takeover(Takeover { origin, ids }));
        }
    }
}
