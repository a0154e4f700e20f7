//! Releases: a message is final, so its other copies go. Sent in batches per
//! peer, and confirmed.
//!
//! A holder answers each `Release` with a `Reconcile` reply naming the ids
//! and what it now has of them (`Absent`, as a rule). That frame is one every
//! node already reads (and ignores for ids it does not hold), so the
//! confirmation needs no new frame and a node of an earlier version simply
//! never confirms. Ids not confirmed within `peer_timeout` are sent again, at
//! most [`RELEASE_SENDS`] times in all; after that the periodic reconcile is
//! what repairs them (counted: `releases_unconfirmed`). When a link goes
//! down, every id not yet confirmed on it waits for the link to return.
//!
//! Without confirmations a release handed to a connection that then broke
//! (a peer paused past the idle timeout, a cut link) was lost, and the copy
//! stood by until a reconcile round, up to two intervals later: long enough
//! for the holder to give it back for delivery if the origin then stopped
//! (scripts/chaos counted such duplicates after SIGSTOP rounds).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::frame::{Frame, Item};
use super::ids::{MessageId, NodeId};
use super::membership::Membership;
use super::node::Node;

/// How often one release id is sent to one peer at most before it is left to
/// the periodic reconcile.
pub(super) const RELEASE_SENDS: u8 = 3;

/// Most release ids kept per peer, in batches, while its link is down or
/// they wait for a confirmation.
const RELEASE_BACKLOG_BATCHES: usize = 64;

/// Release ids waiting per peer, and those sent and not yet confirmed.
#[derive(Debug, Default)]
pub(super) struct Releases {
    per_peer: BTreeMap<NodeId, (Instant, Vec<MessageId>)>,
    unconfirmed: BTreeMap<NodeId, Unconfirmed>,
}

/// Ids sent to one peer that it has not confirmed.
#[derive(Debug, Default)]
struct Unconfirmed {
    /// When each was sent, oldest first. An entry whose time is not its id's
    /// last send (confirmed, or sent again since) is stale and skipped.
    order: VecDeque<(Instant, MessageId)>,
    /// Per id: its last send and how many so far.
    sends: BTreeMap<MessageId, (Instant, u8)>,
}

impl Unconfirmed {
    fn drop_stale_front(&mut self) {
        while let Some(&(t, id)) = self.order.front() {
            if self.sends.get(&id).is_some_and(|(last, _)| *last == t) {
                break;
            }
            self.order.pop_front();
        }
    }
}

impl Releases {
    /// Adds `id` for `peer`; returns how many old ids were discarded to make room.
    fn push(&mut self, now: Instant, peer: NodeId, id: MessageId, cap: usize) -> u64 {
        let (first, ids) = self.per_peer.entry(peer).or_insert_with(|| (now, Vec::new()));
        if ids.is_empty() {
            *first = now;
        }
        ids.push(id);
        let over = ids.len().saturating_sub(cap);
        ids.drain(..over);
        u64::try_from(over).unwrap_or(u64::MAX)
    }

    pub(super) fn next_flush(&self, view: &Membership, interval: Duration) -> Option<Instant> {
        self.per_peer
            .iter()
            .filter(|(p, (_, ids))| !ids.is_empty() && view.link(**p))
            .map(|(_, (first, _))| *first + interval)
            .min()
    }

    /// When the oldest unconfirmed id on a live link is due to be sent again.
    pub(super) fn next_resend(&self, view: &Membership, timeout: Duration) -> Option<Instant> {
        self.unconfirmed
            .iter()
            .filter(|(p, _)| view.link(**p))
            .filter_map(|(_, u)| u.order.front().map(|(t, _)| *t + timeout))
            .min()
    }

    /// Whether ids wait for a peer whose link is up (they leave at the next flush).
    pub(super) fn waiting_on_live_link(&self, view: &Membership) -> bool {
        self.per_peer
            .iter()
            .any(|(p, (_, ids))| !ids.is_empty() && view.link(*p))
    }

    /// Notes ids handed to `peer`'s link at `now`.
    fn sent(&mut self, now: Instant, peer: NodeId, ids: &[MessageId], cap: usize) {
        let u = self.unconfirmed.entry(peer).or_default();
        for &id in ids {
            let sends = u.sends.get(&id).map_or(0, |(_, n)| *n);
            u.sends.insert(id, (now, sends.saturating_add(1)));
            u.order.push_back((now, id));
        }
        while u.sends.len() > cap {
            let Some((_, id)) = u.order.pop_front() else { break };
            u.sends.remove(&id);
        }
        u.drop_stale_front();
    }

    /// `peer` confirmed these ids.
    fn confirmed(&mut self, peer: NodeId, ids: impl Iterator<Item = MessageId>) {
        let Some(u) = self.unconfirmed.get_mut(&peer) else {
            return;
        };
        for id in ids {
            u.sends.remove(&id);
        }
        u.drop_stale_front();
    }

    /// Ids sent to `peer` at least `timeout` ago and not confirmed: those to
    /// send again, and how many were given up (sent [`RELEASE_SENDS`] times).
    fn overdue(&mut self, now: Instant, peer: NodeId, timeout: Duration) -> (Vec<MessageId>, u64) {
        let Some(u) = self.unconfirmed.get_mut(&peer) else {
            return (Vec::new(), 0);
        };
        let (mut again, mut given_up) = (Vec::new(), 0);
        while let Some(&(t, id)) = u.order.front() {
            if now.saturating_duration_since(t) < timeout {
                break;
            }
            u.order.pop_front();
            match u.sends.get(&id) {
                Some((last, n)) if *last == t && *n < RELEASE_SENDS => again.push(id),
                Some((last, _)) if *last == t => {
                    u.sends.remove(&id);
                    given_up += 1;
                }
                _ => {}
            }
            u.drop_stale_front();
        }
        (again, given_up)
    }

    /// `peer`'s link went down: what it did not confirm waits again, ahead of
    /// what was already waiting. How many ids.
    fn requeue(&mut self, now: Instant, peer: NodeId, cap: usize) -> u64 {
        let Some(u) = self.unconfirmed.remove(&peer) else {
            return 0;
        };
        let again: Vec<MessageId> = u
            .order
            .into_iter()
            .filter(|(t, id)| u.sends.get(id).is_some_and(|(last, _)| last == t))
            .map(|(_, id)| id)
            .collect();
        let n = u64::try_from(again.len()).unwrap_or(u64::MAX);
        if n > 0 {
            let (first, ids) = self.per_peer.entry(peer).or_insert_with(|| (now, Vec::new()));
            if ids.is_empty() {
                *first = now;
            }
            let mut all = again;
            all.append(ids);
            let over = all.len().saturating_sub(cap);
            all.drain(..over);
            *ids = all;
        }
        n
    }

    pub(super) fn pending(&self) -> u64 {
        let n: usize = self.per_peer.values().map(|(_, ids)| ids.len()).sum();
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

impl Node {
    fn release_cap(&self) -> usize {
        self.config.release_batch.max(1) * RELEASE_BACKLOG_BATCHES
    }

    pub(super) fn queue_release(&mut self, now: Instant, peer: NodeId, id: MessageId) {
        if !self.view.is_peer(peer) {
            return;
        }
        let cap = self.release_cap();
        self.counters.releases_discarded += self.releases.push(now, peer, id, cap);
        let full = self
            .releases
            .per_peer
            .get(&peer)
            .is_some_and(|(_, ids)| ids.len() >= self.config.release_batch);
        // A draining node is about to exit: no batching.
        if full || self.draining {
            self.flush_peer_releases(now, peer);
        }
    }

    /// Sends the release batches that are full or old enough (`all`: every
    /// batch), after queueing again what went unconfirmed for `peer_timeout`.
    pub(super) fn flush_releases(&mut self, now: Instant, all: bool) {
        let cap = self.release_cap();
        let live: Vec<NodeId> = self
            .releases
            .unconfirmed
            .keys()
            .copied()
            .filter(|p| self.view.link(*p))
            .collect();
        for p in live {
            let (again, given_up) = self.releases.overdue(now, p, self.config.peer_timeout);
            self.counters.releases_unconfirmed += given_up;
            self.counters.releases_resent += again.len() as u64;
            for id in again {
                self.counters.releases_discarded += self.releases.push(now, p, id, cap);
            }
        }
        let due: Vec<NodeId> = self
            .releases
            .per_peer
            .iter()
            .filter(|(p, (first, ids))| {
                !ids.is_empty()
                    && self.view.link(**p)
                    && (all || ids.len() >= self.config.release_batch || now >= *first + self.config.release_interval)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.flush_peer_releases(now, p);
        }
    }

    pub(super) fn flush_peer_releases(&mut self, now: Instant, peer: NodeId) {
        if !self.view.link(peer) {
            return;
        }
        let Some((_, ids)) = self.releases.per_peer.get_mut(&peer) else {
            return;
        };
        let ids = std::mem::take(ids);
        for chunk in ids.chunks(self.config.release_batch.max(1)) {
            self.transmits.push_back((peer, Frame::Release(chunk.to_vec())));
        }
        let cap = self.release_cap();
        self.releases.sent(now, peer, &ids, cap);
    }

    /// `peer`'s link went down: its unconfirmed releases wait for its return.
    pub(super) fn requeue_releases(&mut self, now: Instant, peer: NodeId) {
        let cap = self.release_cap();
        self.counters.releases_resent += self.releases.requeue(now, peer, cap);
    }

    /// `Release` from `from`: the copies go, and `from` is told what this
    /// node now has of each id (its confirmation).
    pub(super) fn on_release_frame(&mut self, now: Instant, from: NodeId, ids: &[MessageId]) {
        self.on_release(now, ids);
        let items: Vec<Item> = ids
            .iter()
            .map(|&id| Item {
                id,
                status: self
                    .copies
                    .get(&id)
                    .map_or(super::frame::CopyStatus::Absent, |c| c.status()),
            })
            .collect();
        let frame = self.reconcile_frame(true, items);
        self.send(from, frame);
    }

    /// A `Reconcile` reply from `peer` names these ids: any release of them
    /// it was sent has arrived (its frames are read in order).
    pub(super) fn releases_confirmed(&mut self, peer: NodeId, items: &[Item]) {
        self.releases.confirmed(peer, items.iter().map(|i| i.id));
    }
}
