//! Status exchanges between copy holders: the restart check of recovered messages,
//! and the periodic round that repairs lost releases and takeover notices.
//!
//! A `Reconcile` query lists ids with the sender's status; the answer gives the
//! receiver's status for each. An `Absent` *answer* from a member whose volume is the
//! one recorded in the placement means the message is final (or was never accepted):
//! copies are deleted only then, and an answer is computed after the query was sent,
//! so it cannot predate the copy. The querier drops its own copy.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Instant;

use super::copy::{Copy, State};
use super::event::Boot;
use super::frame::{CopyStatus, Frame, Item, Reconcile};
use super::ids::{MessageId, NodeId};
use super::membership::Change;
use super::node::Node;

impl Node {
    /// Loads what the spool recovered: own messages wait for the members' answers,
    /// shadows stand by.
    pub(super) fn recover(&mut self, now: Instant, boot: Boot) {
        let me = self.config.node;
        // A recovered shadow was stored in an earlier life: no accept can still
        // be under way for it, so it is old enough to be checked at once (by
        // the link-up query; its release may have been lost with the crash).
        let stored = now
            .checked_sub(self.config.reconcile_interval + self.config.accept_deadline * 2)
            .unwrap_or(now);
        for r in boot.shadows {
            self.copies.insert(r.id, Copy::new(r.placement, State::Shadow, stored));
        }
        for r in boot.own {
            let waiting: Vec<NodeId> = r
                .placement
                .members()
                .map(|m| m.node)
                .filter(|&n| n != me && self.view.is_peer(n))
                .collect();
            let mut copy = Copy::new(r.placement, State::Recovering { waiting }, now);
            if r.promoted || copy.origin() != me {
                copy.takers.push(me);
            }
            self.copies.insert(r.id, copy);
        }
        let ids: Vec<MessageId> = self.copies.keys().copied().collect();
        let mut waiting = false;
        for id in ids {
            match self.copies.get(&id).map(|c| &c.state) {
                Some(State::Recovering { waiting: w }) if w.is_empty() => self.recovered(now, id),
                Some(State::Recovering { .. }) => waiting = true,
                _ => self.evaluate(now, id),
            }
        }
        if waiting {
            self.restart_deadline = Some(now + self.config.restart_wait);
        }
    }

    /// A recovered message whose check is over joins the queue (delivered here or
    /// held for a taker).
    fn recovered(&mut self, now: Instant, id: MessageId) {
        if let Some(copy) = self.copies.get_mut(&id) {
            copy.set_state(State::Queued { handoff: None }, now);
            copy.reported = false;
            self.evaluate(now, id);
        }
    }

    pub(super) fn restart_wait_expired(&mut self, now: Instant) {
        self.restart_deadline = None;
        let ids: Vec<MessageId> = self
            .copies
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Recovering { .. }))
            .map(|(id, _)| *id)
            .collect();
        self.counters.restart_wait_expired += u64::try_from(ids.len()).unwrap_or(u64::MAX);
        for id in ids {
            self.recovered(now, id);
        }
    }

    /// The link to `peer` is up: pending releases and recovery queries go out, and
    /// the standby copies `peer` also holds are checked with it at once. Releases
    /// sent on a connection that then broke (the peer stopped, a cut link) are lost;
    /// waiting for the periodic round would leave those copies to be promoted, and
    /// delivered a second time, at the next takeover (seen with SIGSTOP in
    /// `scripts/chaos`).
    pub(super) fn link_up(&mut self, now: Instant, peer: NodeId) {
        self.flush_peer_releases(now, peer);
        self.query_recovering(now, Some(peer));
        self.query_standby(now, peer);
    }

    fn query_standby(&mut self, now: Instant, peer: NodeId) {
        // Not a copy whose accept may still be under way (see `reconcile_round`).
        let min_age = self.config.accept_deadline * 2;
        let items: Vec<Item> = self
            .copies
            .iter()
            .filter(|(_, c)| {
                let standby = match c.state {
                    State::Shadow => true,
                    State::Queued { .. } => !c.deliverable,
                    _ => false,
                };
                standby
                    && now.saturating_duration_since(c.since) >= min_age
                    && c.placement.members().any(|m| m.node == peer)
            })
            .map(|(id, c)| Item {
                id: *id,
                status: c.status(),
            })
            .collect();
        if !items.is_empty() {
            self.send_queries(BTreeMap::from([(peer, items)]));
        }
    }

    /// Re-sends the recovery queries still unanswered (lost frames): to each peer at
    /// most every three heartbeat intervals, so that a large recovered queue is not
    /// queried again while its answers are on the way.
    pub(super) fn requery_recovering(&mut self, now: Instant) {
        if self.restart_deadline.is_some() {
            self.query_recovering(now, None);
        }
    }

    /// Queries the peers still owing answers about recovered messages (`only`: that
    /// peer, whatever the last query).
    pub(super) fn query_recovering(&mut self, now: Instant, only: Option<NodeId>) {
        let retry = self.config.heartbeat_interval * 3;
        let due = |p: NodeId, last: Option<&Instant>| match only {
            Some(o) => o == p,
            None => last.is_none_or(|&t| now.saturating_duration_since(t) >= retry),
        };
        let mut per_peer: BTreeMap<NodeId, Vec<Item>> = BTreeMap::new();
        for (id, copy) in &self.copies {
            let State::Recovering { waiting } = &copy.state else {
                continue;
            };
            for &p in waiting {
                if self.view.link(p) && due(p, self.recovery_queried.get(&p)) {
                    per_peer.entry(p).or_default().push(Item {
                        id: *id,
                        status: CopyStatus::Standby,
                    });
                }
            }
        }
        for &p in per_peer.keys() {
            self.recovery_queried.insert(p, now);
        }
        self.send_queries(per_peer);
    }

    fn send_queries(&mut self, per_peer: BTreeMap<NodeId, Vec<Item>>) {
        let batch = self.config.reconcile_batch.max(1);
        for (peer, items) in per_peer {
            for chunk in items.chunks(batch) {
                let frame = self.reconcile_frame(false, chunk.to_vec());
                self.send(peer, frame);
            }
        }
    }

    /// `peer` announced a volume: members that lost theirs need not answer.
    pub(super) fn recovering_peer_changed(&mut self, now: Instant, peer: NodeId) {
        let Some(volume) = self.view.volume(peer) else { return };
        let mut done = Vec::new();
        for (id, copy) in &mut self.copies {
            let recorded = copy.placement.volume_of(peer);
            let State::Recovering { waiting } = &mut copy.state else {
                continue;
            };
            if recorded.is_some_and(|v| v != volume) && waiting.contains(&peer) {
                waiting.retain(|&n| n != peer);
                if waiting.is_empty() {
                    done.push(*id);
                }
            }
        }
        for id in done {
            self.recovered(now, id);
        }
        self.check_restart_done();
    }

    fn check_restart_done(&mut self) {
        if self.restart_deadline.is_some()
            && !self
                .copies
                .values()
                .any(|c| matches!(c.state, State::Recovering { .. }))
        {
            self.restart_deadline = None;
        }
    }

    pub(super) fn reconcile_frame(&self, reply: bool, items: Vec<Item>) -> Frame {
        Frame::Reconcile(Reconcile {
            epoch: self.epoch,
            volume: self.volume,
            reply,
            items,
        })
    }

    pub(super) fn on_reconcile(&mut self, now: Instant, from: NodeId, r: Reconcile) {
        // The frame names its sender's volume: learn it before reading the items.
        match self.view.announce(from, r.epoch, r.volume) {
            None => {
                self.counters.frames_ignored += 1;
                return;
            }
            Some(Change::Peer) => self.peer_changed(now, from),
            Some(Change::None) => {}
        }
        if r.reply {
            self.releases_confirmed(from, &r.items);
        }
        for item in &r.items {
            self.learn(now, from, *item, r.reply, r.volume);
        }
        if !r.reply {
            // A message this node took back from `from` (a drain's hand-back)
            // while `from` restarted: "active" alone would not stop it (an
            // origin's "active" is not a takeover), the notice does. Sent first.
            let me = self.config.node;
            let retaken: Vec<(NodeId, NodeId, MessageId)> = r
                .items
                .iter()
                .filter(|i| {
                    self.copies
                        .get(&i.id)
                        .is_some_and(|c| c.origin() == me && c.deliverable && c.takers.contains(&me))
                })
                .map(|i| (from, me, i.id))
                .collect();
            self.send_notices(retaken);
            let items: Vec<Item> = r
                .items
                .iter()
                .map(|i| Item {
                    id: i.id,
                    status: self.copies.get(&i.id).map_or(CopyStatus::Absent, Copy::status),
                })
                .collect();
            let frame = self.reconcile_frame(true, items);
            self.send(from, frame);
        }
        self.check_restart_done();
    }

    /// What `from`, on volume `volume`, said of one id.
    fn learn(&mut self, now: Instant, from: NodeId, item: Item, reply: bool, volume: u64) {
        let Some(copy) = self.copies.get_mut(&item.id) else {
            return;
        };
        // Only the volume the copy was placed on can vouch for "final".
        let intact = copy.placement.volume_of(from) == Some(volume);
        let changed = match item.status {
            CopyStatus::Active => copy.add_taker(from),
            // Not "given up": a recovering node answers Standby too.
            CopyStatus::Standby => false,
            CopyStatus::Absent => {
                if reply && intact && !matches!(copy.state, State::Accepting { .. }) {
                    self.counters.reconcile_dropped += 1;
                    self.drop_copy(item.id);
                    return;
                }
                copy.remove_taker(from)
            }
        };
        if reply {
            if let State::Recovering { waiting } = &mut copy.state {
                waiting.retain(|&n| n != from);
                if waiting.is_empty() {
                    self.recovered(now, item.id);
                    return;
                }
            }
        }
        if changed {
            self.evaluate(now, item.id);
        }
    }

    /// Every `reconcile_interval`: each standby copy older than the interval is checked
    /// with the node that delivers it (a lost release leaves it there forever
    /// otherwise), and takeover notices are sent again.
    pub(super) fn reconcile_round(&mut self, now: Instant) {
        let me = self.config.node;
        let batch = self.config.reconcile_batch.max(1);
        // Older than an accept can last, too: a holder asked about a copy still on its
        // way could answer "absent" before it stores it.
        let min_age = self.config.reconcile_interval.max(self.config.accept_deadline * 2);
        let old = |c: &Copy| now.saturating_duration_since(c.since) >= min_age;
        let start = self.reconcile_cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let wrapped = self
            .reconcile_cursor
            .map(|c| self.copies.range(..=c))
            .into_iter()
            .flatten();
        let order = self.copies.range((start, Bound::Unbounded)).chain(wrapped);
        let mut queries: BTreeMap<NodeId, Vec<Item>> = BTreeMap::new();
        let mut notices = Vec::new();
        let mut cursor = None;
        for (id, copy) in order {
            let standby = match copy.state {
                State::Shadow => true,
                State::Queued { .. } => !copy.deliverable,
                _ => false,
            };
            if standby && old(copy) {
                let Some(r) = copy.responsible(&self.view).filter(|&r| r != me && self.view.link(r)) else {
                    continue;
                };
                let q = queries.entry(r).or_default();
                if q.len() >= batch {
                    cursor.get_or_insert(*id);
                    continue;
                }
                q.push(Item {
                    id: *id,
                    status: copy.status(),
                });
            } else if copy.deliverable && copy.takers.contains(&me) && old(copy) {
                for n in copy
                    .placement
                    .members()
                    .map(|m| m.node)
                    .chain(copy.takers.iter().copied())
                {
                    if n != me {
                        notices.push((n, copy.origin(), *id));
                    }
                }
            }
        }
        self.reconcile_cursor = cursor.and_then(|c| self.copies.range(..c).next_back().map(|(id, _)| *id));
        self.send_queries(queries);
        self.send_notices(notices);
    }
}
