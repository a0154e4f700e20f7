//! Messages this node accepted: copies sent before `250`, release once final.

use std::time::Instant;

use super::copy::{Copy, State};
use super::event::{Action, Unavailable};
use super::frame::NackReason;
use super::ids::{MessageId, NodeId};
use super::node::Node;
use super::placement::{self, Candidate, Member, Placement};

impl Node {
    /// Peers that can take a copy now, with their zones.
    pub(super) fn reachable_peers(&self, now: Instant) -> Vec<NodeId> {
        self.view
            .peer_ids()
            .into_iter()
            .filter(|&p| self.view.reachable(p, now, self.config.peer_timeout))
            .collect()
    }

    pub(super) fn on_accepted(&mut self, now: Instant, id: MessageId) {
        if self.copies.contains_key(&id) {
            return;
        }
        if self.draining {
            self.counters.accepts_refused += 1;
            self.outcome(id, Err(Unavailable::Draining));
            return;
        }
        let needed = self.config.min_copies.saturating_sub(1);
        let reachable = self.reachable_peers(now);
        if reachable.len() < needed && !self.config.allow_degraded {
            self.counters.accepts_refused += 1;
            self.outcome(
                id,
                Err(Unavailable::NotEnoughPeers {
                    reachable: reachable.len(),
                    needed,
                }),
            );
            return;
        }
        let config = &self.config;
        let candidates: Vec<Candidate<'_>> = reachable
            .iter()
            .map(|&node| Candidate {
                node,
                zone: config.zone_of(node),
            })
            .collect();
        let chosen = placement::choose(&id, config.zone_of(config.node), &candidates, needed);
        let degraded = chosen.len() < needed;
        let holders: Vec<Member> = chosen
            .iter()
            .map(|&node| Member {
                node,
                volume: self.view.volume(node).unwrap_or(0),
            })
            .collect();
        let placement = Placement {
            origin: Member {
                node: self.config.node,
                volume: self.volume,
            },
            holders,
        };
        if placement.holders.is_empty() {
            self.accepted_ok(now, id, placement, degraded);
            return;
        }
        for &to in &chosen {
            self.actions.push_back(Action::SendCopy {
                to,
                id,
                placement: placement.clone(),
            });
        }
        let deadline = now + self.config.accept_deadline;
        self.deadlines.insert((deadline, id));
        let state = State::Accepting {
            deadline,
            waiting: chosen,
            degraded,
        };
        self.copies.insert(id, Copy::new(placement, state, now));
    }

    /// A streamed copy moved: its accept's deadline starts again.
    pub(super) fn on_copy_progress(&mut self, now: Instant, id: MessageId) {
        let later = now + self.config.accept_deadline;
        if let Some(Copy {
            state: State::Accepting { deadline, .. },
            ..
        }) = self.copies.get_mut(&id)
        {
            if later > *deadline {
                self.deadlines.remove(&(*deadline, id));
                self.deadlines.insert((later, id));
                *deadline = later;
            }
        }
    }

    /// Every holder acked (or there are none): `Ok` for the client, into the queue.
    /// Takeover notices that arrived meanwhile are kept (the copy is then held).
    fn accepted_ok(&mut self, now: Instant, id: MessageId, placement: Placement, degraded: bool) {
        self.counters.accepts_ok += 1;
        if degraded {
            self.counters.accepts_degraded += 1;
        }
        let takers = self.copies.remove(&id).map(|c| c.takers).unwrap_or_default();
        let mut copy = Copy::new(placement, State::Queued { handoff: None }, now);
        copy.takers = takers;
        copy.deliverable = true;
        copy.reported = true;
        self.copies.insert(id, copy);
        self.outcome(id, Ok(()));
        self.evaluate(now, id);
    }

    fn outcome(&mut self, id: MessageId, result: Result<(), Unavailable>) {
        self.actions.push_back(Action::AcceptOutcome { id, result });
    }

    pub(super) fn on_ack(&mut self, now: Instant, from: NodeId, id: MessageId) {
        let Some(copy) = self.copies.get_mut(&id) else { return };
        let State::Accepting {
            deadline,
            waiting,
            degraded,
        } = &mut copy.state
        else {
            return;
        };
        waiting.retain(|&n| n != from);
        if waiting.is_empty() {
            let (deadline, degraded) = (*deadline, *degraded);
            let placement = copy.placement.clone();
            self.deadlines.remove(&(deadline, id));
            self.accepted_ok(now, id, placement, degraded);
        }
    }

    pub(super) fn on_nack(&mut self, now: Instant, from: NodeId, id: MessageId, reason: NackReason) {
        let is_holder = self
            .copies
            .get(&id)
            .is_some_and(|c| matches!(&c.state, State::Accepting { .. }) && c.placement.position(from).is_some());
        if is_holder {
            self.fail_accept(now, id, Unavailable::Refused { peer: from, reason });
        }
    }

    /// Fails an accept in flight: `451` to the client, releases for the holders.
    pub(super) fn fail_accept(&mut self, now: Instant, id: MessageId, why: Unavailable) {
        let Some(copy) = self.copies.remove(&id) else { return };
        if let State::Accepting { deadline, .. } = copy.state {
            self.deadlines.remove(&(deadline, id));
        }
        self.counters.accepts_failed += 1;
        self.outcome(id, Err(why));
        for m in copy.placement.holders {
            self.queue_release(now, m.node, id);
        }
    }

    pub(super) fn expire_accepts(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.fail_accept(now, id, Unavailable::Timeout);
        }
    }

    pub(super) fn link_down(&mut self, now: Instant, peer: NodeId) {
        self.requeue_releases(now, peer);
        let failed: Vec<MessageId> = self
            .copies
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Accepting { .. }) && c.placement.position(peer).is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.fail_accept(now, id, Unavailable::LinkLost(peer));
        }
    }

    /// A message of this node's queue is final: tell every other copy.
    pub(super) fn on_final(&mut self, now: Instant, id: MessageId) {
        let is_own = self
            .copies
            .get(&id)
            .is_some_and(|c| matches!(c.state, State::Queued { .. } | State::Recovering { .. }));
        if !is_own {
            return;
        }
        let Some(copy) = self.copies.remove(&id) else { return };
        let me = self.config.node;
        let mut told: Vec<NodeId> = Vec::new();
        for n in copy
            .placement
            .members()
            .map(|m| m.node)
            .chain(copy.takers.iter().copied())
        {
            if n != me && !told.contains(&n) {
                told.push(n);
                self.queue_release(now, n, id);
            }
        }
    }
}
