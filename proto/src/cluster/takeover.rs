//! Who delivers each message: re-examined when the view of a peer changes or a takeover
//! notice arrives; shadows this node is now responsible for are promoted.

use std::time::Instant;

use super::copy::State;
use super::ids::{MessageId, NodeId};
use super::node::Node;

impl Node {
    /// Applies [`Copy::responsible`](super::copy::Copy::responsible) to one copy: a
    /// queued copy becomes deliverable here or not (the change reaches the driver as
    /// `Deliver`/`Hold` when the call ends), a shadow this node is responsible for is
    /// promoted.
    pub(super) fn evaluate(&mut self, now: Instant, id: MessageId) {
        let me = self.config.node;
        let Some(copy) = self.copies.get_mut(&id) else { return };
        let mine = copy.responsible(&self.view) == Some(me);
        match copy.state {
            State::Queued { .. } => {
                copy.deliverable = mine;
                self.out.dirty.insert(id);
            }
            State::Shadow if mine => self.promote(now, id),
            _ => {}
        }
    }

    /// Re-examines every copy (a peer died, came back, or showed another volume).
    ///
    /// O(copies): it runs on membership changes, which are rare.
    pub(super) fn evaluate_all(&mut self, now: Instant) {
        let ids: Vec<MessageId> = self.copies.keys().copied().collect();
        for id in ids {
            self.evaluate(now, id);
        }
    }

    /// `peer` is live again or announced a volume.
    pub(super) fn peer_changed(&mut self, now: Instant, peer: NodeId) {
        self.recovering_peer_changed(now, peer);
        self.evaluate_all(now);
    }

    /// Counts a message taken over from a silent `origin` (see [`Node::origin_seen`]);
    /// not one taken over because the origin lost its volume or handed it over.
    pub(super) fn count_taken_from(&mut self, origin: NodeId) {
        if self.view.is_live(origin) {
            return;
        }
        let epoch = self.view.epoch(origin);
        let e = self.taken_from.entry(origin).or_insert((epoch, 0));
        e.1 += 1;
    }

    /// `origin` announced `epoch`: if messages were taken over from it while it had
    /// that same epoch, it never restarted — it was cut off, alive, and may have
    /// delivered them too (the partition duplicate, counted). A new epoch means it
    /// restarted and checks its recovered messages before delivering them.
    pub(super) fn origin_seen(&mut self, origin: NodeId, epoch: u64) {
        let Some((then, count)) = self.taken_from.remove(&origin) else {
            return;
        };
        if then == Some(epoch) {
            self.counters.duplicates_possible += count;
        }
    }

    /// `Takeover`: `from` delivers these messages now. Except, from a draining
    /// node, for a message this node took back from it: a notice it sent before
    /// handing the message back may arrive after the hand-back (the origin would
    /// then wait for a node that gave the message up).
    pub(super) fn on_takeover_notice(&mut self, now: Instant, from: NodeId, ids: &[MessageId]) {
        let me = self.config.node;
        let draining = self.view.is_draining(from);
        let mut answers = Vec::new();
        for &id in ids {
            let Some(copy) = self.copies.get_mut(&id) else { continue };
            if draining && copy.origin() == me && copy.takers.contains(&me) {
                continue;
            }
            let news = if from == copy.origin() {
                copy.add_retaken()
            } else {
                copy.add_taker(from)
            };
            if news {
                self.evaluate(now, id);
                // Still ours: this node ranks before `from` among the takers. Say
                // so now rather than at the next reconcile round, or both deliver
                // meanwhile (an origin that took the message back, and a holder
                // that a draining node handed it to after the origin's notice was
                // lost).
                if let Some(c) = self.copies.get(&id).filter(|c| c.deliverable && c.takers.contains(&me)) {
                    answers.push((from, c.origin(), id));
                }
            }
        }
        self.send_notices(answers);
    }
}
