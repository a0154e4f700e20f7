//! Delivery attempts, and the invariants checked when one starts.

use std::time::Duration;

use proto::cluster::{LocalEvent, MessageId, NodeId};

use super::driver::DiskOp;
use super::world::{Ev, World};

impl World {
    pub(crate) fn schedule_attempt(&mut self, node: u16, id: MessageId) {
        let n = &self.nodes[usize::from(node)];
        if n.scheduled.contains(&id) || n.attempting.contains(&id) {
            return;
        }
        let d = if self.rng.chance(0.2) {
            self.rng.range(1_000, 8_000)
        } else {
            self.rng.range(10, 500)
        };
        let inc = n.inc;
        self.node(node).scheduled.insert(id);
        self.at(self.now + d, Ev::AttemptStart { node, inc, id });
    }

    pub(crate) fn attempt_start(&mut self, node: u16, inc: u64, id: MessageId) {
        if self.node(node).inc != inc {
            return;
        }
        self.node(node).scheduled.remove(&id);
        if !self.node(node).deliverable.contains(&id) || self.node(node).draining || self.node(node).is_recopying(&id) {
            return;
        }
        self.check_attempt(node, id);
        self.node(node).attempting.insert(id);
        let d = self.rng.range(5, 200);
        let dest_down = self.dest_down_until.get(&id).is_some_and(|&u| self.now < u);
        if !self.healed && (dest_down || self.rng.chance(self.p.defer_p)) {
            self.at(
                self.now + d,
                Ev::AttemptEnd {
                    node,
                    inc,
                    id,
                    delivered: false,
                },
            );
        } else {
            self.at(self.now + d, Ev::AttemptRemote { node, inc, id });
        }
    }

    pub(crate) fn attempt_end(&mut self, node: u16, inc: u64, id: MessageId, delivered: bool) {
        if self.node(node).inc != inc {
            return;
        }
        self.node(node).attempting.remove(&id);
        if delivered {
            self.node(node).deliverable.remove(&id);
            self.disk(node, DiskOp::OwnDelete { id });
            let now = self.local(node);
            self.node(node).core().handle_local(now, LocalEvent::Final { id });
            self.pump(node);
        } else if self.node(node).deliverable.contains(&id) {
            self.schedule_attempt(node, id);
        }
    }

    /// Invariants at the start of an attempt.
    pub(crate) fn check_attempt(&mut self, node: u16, id: MessageId) {
        let now = self.local(node);
        let takeover_after = Duration::from_secs(10);
        let n = &self.nodes[usize::from(node)];
        let core = n.core.as_ref().expect("up");
        if !core.may_deliver(&id) {
            self.log.violation(
                self.now,
                format!("n{node} driver may deliver {id:?} but the core says no"),
            );
        }
        if n.released_seen.contains(&id) {
            self.log
                .violation(self.now, format!("n{node} starts {id:?} after a Release for it"));
        }
        let Some(takers) = n.takeover_seen.get(&id) else { return };
        let placement = core.placement(&id).cloned();
        // A taker (promoted, or an origin that took the message back) yields only
        // to a taker that ranks before it.
        let i_promoted = n.disk.own.get(&id).is_some_and(|(_, p)| *p) || core.is_taker(&id);
        for &t in takers {
            let taker = &self.nodes[usize::from(t)];
            let heard = n
                .last_heard
                .get(&t)
                .is_some_and(|&h| now.saturating_duration_since(h) < takeover_after);
            let rank = |x: u16| {
                placement
                    .as_ref()
                    .and_then(|p| p.position(NodeId(x)))
                    .unwrap_or(usize::MAX)
            };
            let priority = !i_promoted || rank(t) < rank(node);
            // A draining taker starts no attempt (its notices are ignored).
            if taker.up && !taker.draining && taker.deliverable.contains(&id) && heard && priority {
                self.log.violation(
                    self.now,
                    format!("n{node} starts {id:?} although n{t} told it took it over and is live"),
                );
            }
        }
    }
}
