//! Drain (`estafette drain`, the preStop hook): accept nothing more and hand every
//! queued message to a peer that holds its copy; the peer promotes it at once.

use std::collections::BTreeMap;
use std::time::Instant;

use super::copy::State;
use super::frame::{Frame, Takeover};
use super::ids::{MessageId, NodeId};
use super::node::Node;

impl Node {
    pub(super) fn on_drain(&mut self, now: Instant) {
        self.draining = true;
        self.drain_round(now);
    }

    /// Sends `Handoff` for every message still delivered here whose last handoff is
    /// older than `handoff_retry` (to the next holder in placement order that is
    /// reachable and still has its volume).
    pub(super) fn drain_round(&mut self, now: Instant) {
        let retry = self.config.handoff_retry;
        let mut per_peer: BTreeMap<NodeId, Vec<MessageId>> = BTreeMap::new();
        let mut pending = false;
        let ids: Vec<MessageId> = self.copies.keys().copied().collect();
        for id in ids {
            let Some(copy) = self.copies.get(&id) else { continue };
            match copy.state {
                State::Accepting { .. } | State::Recovering { .. } => {
                    pending = true;
                    continue;
                }
                State::Queued { .. } if copy.deliverable => pending = true,
                _ => continue,
            }
            let State::Queued { handoff } = copy.state else {
                continue;
            };
            if handoff.is_some_and(|(_, at)| now < at + retry) {
                continue;
            }
            // The other members: the holders of an own message; for one this node
            // took over, its origin (back, holding it for this node) and the
            // other holders.
            let eligible: Vec<NodeId> = copy
                .placement
                .members()
                .filter(|m| m.node != self.config.node)
                .filter(|m| {
                    self.view.reachable(m.node, now, self.config.peer_timeout)
                        && self.view.volume(m.node) == Some(m.volume)
                })
                .map(|m| m.node)
                .collect();
            let next = match handoff {
                Some((last, _)) => eligible.iter().position(|&n| n == last).map_or(0, |i| i + 1),
                None => 0,
            };
            let Some(&target) = eligible.get(next % eligible.len().max(1)) else {
                continue;
            };
            per_peer.entry(target).or_default().push(id);
            if let Some(c) = self.copies.get_mut(&id) {
                c.state = State::Queued {
                    handoff: Some((target, now)),
                };
            }
        }
        let batch = self.config.reconcile_batch.max(1);
        for (peer, ids) in per_peer {
            for chunk in ids.chunks(batch) {
                self.send(peer, Frame::Handoff(chunk.to_vec()));
            }
        }
        self.next_handoff = pending.then(|| now + retry);
    }

    /// `Handoff` from a draining peer: promote the copies held for it now. A message
    /// this node accepted and `from` took over comes back: `from` no longer counts
    /// as its taker, so this node delivers it again (unless another taker ranks
    /// first), and says so with a `Takeover` notice.
    pub(super) fn on_handoff(&mut self, now: Instant, from: NodeId, ids: &[MessageId]) {
        let me = self.config.node;
        self.view.set_draining(from);
        let mut again: BTreeMap<NodeId, Vec<MessageId>> = BTreeMap::new();
        for &id in ids {
            let Some(copy) = self.copies.get_mut(&id) else { continue };
            match copy.state {
                State::Shadow => self.promote(now, id),
                State::Queued { .. } if copy.takers.contains(&me) => {
                    // Already ours: the notice was lost, send it again.
                    again.entry(copy.origin()).or_default().push(id);
                }
                State::Queued { .. } if copy.origin() == me && !self.draining => {
                    copy.remove_taker(from);
                    // Back to the origin only if no other taker it can see
                    // delivers it (that one keeps it; `from` hands it there next).
                    if copy.responsible(&self.view) == Some(me) {
                        copy.add_retaken();
                    }
                    self.evaluate(now, id);
                    if self.copies.get(&id).is_some_and(|c| c.deliverable) {
                        self.counters.handed_back += 1;
                        again.entry(me).or_default().push(id);
                    }
                }
                _ => {}
            }
        }
        for (origin, ids) in again {
            self.send(from, Frame::Takeover(Takeover { origin, ids }));
        }
    }
}
