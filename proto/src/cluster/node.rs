//! [`Node`]: the replication state machine of one cluster member.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::config::{Config, MemberConfig};
use super::copy::{Copy, State};
use super::counters::Counters;
use super::event::{Action, Boot, LocalEvent};
use super::frame::{Frame, Heartbeat, Hello};
use super::ids::{MessageId, NodeId};
use super::membership::{Change, Membership, PeerStatus};
use super::placement::Placement;
use super::release::Releases;
use super::shadow::Released;

/// The replication protocol of one node, sans-io (quinn-proto style).
///
/// # Driving it
/// - Create it at start with what the spool recovered ([`Node::new`]): a restart is
///   a new `Node`.
/// - Feed it: control frames from peers ([`handle_frame`](Self::handle_frame)),
///   connection changes ([`handle_link`](Self::handle_link)), local events
///   ([`handle_local`](Self::handle_local)) and timer expiries
///   ([`handle_timeout`](Self::handle_timeout)), each with the current time.
/// - After any `handle_*` call, drain [`poll_action`](Self::poll_action) (durable work
///   and answers for clients), then [`poll_transmit`](Self::poll_transmit) (frames to
///   send), and re-arm the timer from [`poll_timeout`](Self::poll_timeout).
///
/// It does no I/O and reads no clock; it holds ids and placements, never bodies
/// (`Replicate` frames are the driver's: it streams them on [`Action::SendCopy`] and
/// reports [`LocalEvent::ShadowStored`] when a received copy is durable). Frames for a
/// peer whose link is down are discarded (releases wait for the link, and are sent
/// again until confirmed); the protocol
/// repairs what is lost with timeouts and its periodic reconcile.
///
/// # Guarantees (checked by `proto/tests/cluster_sim.rs` under faults)
/// - `AcceptOutcome { result: Ok }` only after every holder acked a durable copy, and
///   with no holder's link lost in between (acked or not).
/// - Every copy names, in its placement, the order in which holders take over; the
///   node that delivers a message is the first available taker, else the first
///   available member (see the module docs of [`cluster`](super)).
/// - A recovered message is not delivered before the members of its placement
///   answered (or `restart_wait` expired, counted).
#[derive(Debug)]
pub struct Node {
    pub(super) config: Arc<Config>,
    pub(super) epoch: u64,
    pub(super) volume: u64,
    pub(super) view: Membership,
    pub(super) copies: BTreeMap<MessageId, Copy>,
    /// Accept deadlines, earliest first.
    pub(super) deadlines: BTreeSet<(Instant, MessageId)>,
    pub(super) transmits: VecDeque<(NodeId, Frame)>,
    pub(super) actions: VecDeque<Action>,
    pub(super) out: Out,
    pub(super) releases: Releases,
    pub(super) released: Released,
    pub(super) next_heartbeat: Instant,
    pub(super) next_reconcile: Instant,
    /// Where the next reconcile round starts (rotates through the copies).
    pub(super) reconcile_cursor: Option<MessageId>,
    /// Until when recovered messages wait for the peers' answers.
    pub(super) restart_deadline: Option<Instant>,
    /// When each peer was last asked about recovered messages.
    pub(super) recovery_queried: BTreeMap<NodeId, Instant>,
    pub(super) next_handoff: Option<Instant>,
    pub(super) draining: bool,
    /// Messages taken over per origin, with the origin's epoch then: if it shows up
    /// again in that epoch it was alive (partitioned) and may have delivered them too.
    pub(super) taken_from: BTreeMap<NodeId, (Option<u64>, u64)>,
    pub(super) counters: Counters,
    /// The last [`Node::handle_timeout`] call (see `pause.rs`).
    pub(super) last_timeout: Instant,
}

/// Ids collected during one `handle_*` call, turned into batched actions at its end.
#[derive(Debug, Default)]
pub(super) struct Out {
    /// Queued copies whose deliverability may have changed.
    pub(super) dirty: BTreeSet<MessageId>,
    pub(super) drop_local: Vec<MessageId>,
    pub(super) promote: BTreeMap<NodeId, Vec<MessageId>>,
    pub(super) drop_shadows: BTreeMap<NodeId, Vec<MessageId>>,
}

impl Node {
    /// A node starting at `now` with what its spool recovered.
    ///
    /// Recovered own messages wait for the peers' answers ([`Action::Deliver`] follows
    /// per message), recovered shadows stand by. Peers count as live for
    /// `takeover_after` from now.
    pub fn new(config: Arc<Config>, boot: Boot, now: Instant) -> Self {
        let view = Membership::new(&config, now);
        let mut node = Self {
            epoch: boot.epoch,
            volume: boot.volume,
            view,
            copies: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            out: Out::default(),
            releases: Releases::default(),
            released: Released::default(),
            next_heartbeat: now,
            next_reconcile: now + config.reconcile_interval,
            reconcile_cursor: None,
            restart_deadline: None,
            recovery_queried: BTreeMap::new(),
            next_handoff: None,
            draining: false,
            taken_from: BTreeMap::new(),
            counters: Counters::default(),
            last_timeout: now,
            config,
        };
        node.recover(now, boot);
        node.flush();
        node
    }

    /// A control frame from `from` (whose identity the driver verified).
    ///
    /// `Replicate` frames are the driver's and are ignored here. Frames from a node
    /// that is not a configured peer are ignored and counted.
    pub fn handle_frame(&mut self, now: Instant, from: NodeId, frame: Frame) {
        if !self.view.is_peer(from) {
            self.counters.frames_ignored += 1;
            return;
        }
        let mut changed = self.view.heard(now, from) == Change::Peer;
        match frame {
            Frame::Hello(Hello {
                node,
                name,
                epoch,
                volume,
            }) => {
                if node != from {
                    self.counters.frames_ignored += 1;
                    return;
                }
                self.view.set_name(from, &name);
                match self.view.announce(from, epoch, volume) {
                    Some(c) => {
                        changed |= c == Change::Peer;
                        self.origin_seen(from, epoch);
                        // Its side of the link is up now: the answers to recovery
                        // queries sent before it was were dropped there. Ask again
                        // rather than let the restart wait expire.
                        self.query_recovering(now, Some(from));
                    }
                    None => self.counters.frames_ignored += 1,
                }
            }
            Frame::Heartbeat(Heartbeat {
                node,
                epoch,
                volume,
                queue_depth,
                draining,
            }) => {
                if node != from {
                    self.counters.frames_ignored += 1;
                    return;
                }
                match self.view.announce(from, epoch, volume) {
                    Some(c) => {
                        changed |= c == Change::Peer;
                        self.view.set_load(from, queue_depth, draining);
                        self.origin_seen(from, epoch);
                    }
                    None => self.counters.frames_ignored += 1,
                }
            }
            Frame::Replicate(_) => {}
            Frame::Ack(id) => self.on_ack(now, from, id),
            Frame::Nack(nack) => self.on_nack(now, from, nack.id, nack.reason),
            Frame::Release(ids) => self.on_release_frame(now, from, &ids),
            Frame::Takeover(t) => self.on_takeover_notice(now, from, &t.ids),
            Frame::Reconcile(r) => self.on_reconcile(now, from, r),
            Frame::Handoff(ids) => self.on_handoff(now, from, &ids),
            Frame::Seen(sightings) => self.on_seen(now, from, &sightings),
        }
        if changed {
            self.peer_changed(now, from);
        }
        self.flush();
    }

    /// The driver's connection to `peer` came up (`Some(version)`: the highest
    /// frame version the peer reads on it, from the negotiated ALPN; our Hello
    /// goes first) or went down (`None`: accepts waiting on its ack fail now
    /// rather than at their deadline). No frame above `version` is sent on it.
    pub fn handle_link(&mut self, now: Instant, peer: NodeId, link: Option<u8>) {
        if !self.view.is_peer(peer) {
            return;
        }
        self.view.set_link(peer, link);
        if link.is_some() {
            // A connection handshake just completed: the peer is alive.
            if self.view.heard(now, peer) == Change::Peer {
                self.peer_changed(now, peer);
            }
            let hello = Hello {
                node: self.config.node,
                name: self.my_name(),
                epoch: self.epoch,
                volume: self.volume,
            };
            self.transmits.push_back((peer, Frame::Hello(hello)));
            self.transmits.push_back((peer, Frame::Heartbeat(self.heartbeat())));
            self.send_sightings(now, peer);
            self.link_up(now, peer);
        } else {
            self.link_down(now, peer);
        }
        self.flush();
    }

    /// A member found after the start (the driver's DNS discovery of a
    /// StatefulSet's pods): a peer from now on, live for `takeover_after` like
    /// the members at start, given new copies once heard from. `false` if it is
    /// this node or known already. Members are never removed: one that leaves
    /// DNS is a dead member, whose mail is taken over like any other's.
    pub fn add_member(&mut self, now: Instant, member: MemberConfig) -> bool {
        if member.node == self.config.node || self.view.is_peer(member.node) {
            return false;
        }
        self.view.add(now, &member);
        Arc::make_mut(&mut self.config).members.push(member);
        true
    }

    /// A local event (see [`LocalEvent`] for each one's contract).
    pub fn handle_local(&mut self, now: Instant, event: LocalEvent) {
        match event {
            LocalEvent::Accepted { id, size: _ } => self.on_accepted(now, id),
            LocalEvent::CopyProgress { id } => self.on_copy_progress(now, id),
            LocalEvent::ShadowStored { origin, id, placement } => self.on_shadow_stored(now, origin, id, placement),
            LocalEvent::ShadowFailed { origin, id, reason } => self.on_shadow_failed(origin, id, reason),
            LocalEvent::Promoted { origin: _, ids } => self.on_promoted(now, &ids),
            LocalEvent::Final { id } => self.on_final(now, id),
            LocalEvent::Drain => self.on_drain(now),
        }
        self.flush();
    }

    /// Timers: call when [`poll_timeout`](Self::poll_timeout) has passed (early or
    /// repeated calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.check_pause(now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            let hb = Frame::Heartbeat(self.heartbeat());
            for p in self.view.peer_ids() {
                if self.view.link(p) {
                    self.transmits.push_back((p, hb.clone()));
                }
            }
            for p in self.view.peer_ids() {
                self.send_sightings(now, p);
            }
            self.requery_recovering(now);
        }
        let (died, kept) = self.view.expire(now, self.config.takeover_after);
        self.counters.kept_live_by_peers += kept;
        if died {
            self.evaluate_all(now);
        }
        self.expire_accepts(now);
        self.flush_releases(now, false);
        if self.restart_deadline.is_some_and(|d| now >= d) {
            self.restart_wait_expired(now);
        }
        if now >= self.next_reconcile {
            self.next_reconcile = now + self.config.reconcile_interval;
            self.reconcile_round(now);
        }
        if self.next_handoff.is_some_and(|t| now >= t) {
            self.drain_round(now);
        }
        self.flush();
    }

    /// The next frame to send: `(peer, frame)`. Encode it with
    /// [`encode`](super::encode) on the connection to `peer`.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Frame)> {
        self.transmits.pop_front()
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = &self.config;
        [
            Some(self.next_heartbeat),
            Some(self.next_reconcile),
            self.view.next_expiry(c.takeover_after),
            self.deadlines.first().map(|(t, _)| *t),
            self.releases.next_flush(&self.view, c.release_interval),
            self.releases.next_resend(&self.view, c.peer_timeout),
            self.restart_deadline,
            self.next_handoff,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether an attempt to deliver `id` may start now: it is queued here and this node
    /// is the one that delivers it. The same answer the last
    /// `AcceptOutcome`/`Deliver`/`Hold` gave.
    pub fn may_deliver(&self, id: &MessageId) -> bool {
        self.copies
            .get(id)
            .is_some_and(|c| matches!(c.state, State::Queued { .. }) && c.deliverable && c.reported)
    }

    /// Whether this node counts itself among the takers of `id`: it took the
    /// message over, or (its origin) took it back from a draining taker. Takers
    /// rank by placement position, the origin first.
    pub fn is_taker(&self, id: &MessageId) -> bool {
        let me = self.config.node;
        self.copies.get(id).is_some_and(|c| c.takers.contains(&me))
    }

    /// Messages this node delivers whose every other copy is gone, as it sees
    /// the cluster ([`Node::is_single_copy`]). With `min_copies > 1` the
    /// driver copies them again (a new accept, then `Final` for these).
    /// O(copies): call it every few seconds, not per event.
    pub fn single_copies(&self) -> Vec<MessageId> {
        self.copies
            .iter()
            .filter(|(_, c)| self.single(c))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `id` is queued here, delivered by this node, and its every
    /// other copy is gone: each other member of its placement and each other
    /// taker is unavailable (silent for `takeover_after`, back on another
    /// volume) or draining, or there was none (a degraded accept).
    pub fn is_single_copy(&self, id: &MessageId) -> bool {
        self.copies.get(id).is_some_and(|c| self.single(c))
    }

    fn single(&self, c: &Copy) -> bool {
        let me = self.config.node;
        matches!(c.state, State::Queued { .. })
            && c.deliverable
            && c.placement
                .members()
                .map(|m| m.node)
                .chain(c.takers.iter().copied())
                .filter(|&n| n != me)
                .all(|n| !c.available(n, &self.view) || self.view.is_draining(n))
    }

    /// Whether an accept started now could get its copies: `min_copies - 1` peers
    /// reachable (or `allow_degraded`), and not draining. Answer `451` at MAIL FROM
    /// and report not ready when false.
    pub fn can_accept(&self, now: Instant) -> bool {
        !self.draining && (self.config.allow_degraded || self.reachable_peers(now).len() + 1 >= self.config.min_copies)
    }

    /// The placement chosen for an accepted message (or recovered with it), to store
    /// beside the message in the same commit: available as soon as
    /// [`LocalEvent::Accepted`] returns, unless the accept was refused at once.
    pub fn placement(&self, id: &MessageId) -> Option<&Placement> {
        self.copies.get(id).map(|c| &c.placement)
    }

    /// Counters and gauges.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.shadows_held = 0;
        c.queue_depth = 0;
        c.held_for_takers = 0;
        c.recovering = 0;
        for copy in self.copies.values() {
            match copy.state {
                State::Recovering { .. } => c.recovering += 1,
                State::Shadow | State::Promoting { .. } => c.shadows_held += 1,
                State::Queued { .. } if copy.deliverable => c.queue_depth += 1,
                State::Queued { .. } => c.held_for_takers += 1,
                _ => {}
            }
        }
        c.releases_pending = self.releases.pending();
        c
    }

    /// Shadow copies held for each origin (`estafette cluster status`). O(copies):
    /// for status pages, not for a hot path.
    pub fn shadows_by_origin(&self) -> BTreeMap<NodeId, u64> {
        let mut by = BTreeMap::new();
        for copy in self.copies.values() {
            if matches!(copy.state, State::Shadow | State::Promoting { .. }) {
                *by.entry(copy.placement.origin.node).or_insert(0) += 1;
            }
        }
        by
    }

    /// This node's view of each peer.
    pub fn peers(&self) -> impl Iterator<Item = &PeerStatus> + '_ {
        self.view.peers()
    }

    /// After [`LocalEvent::Drain`]: true once no message is left to hand over (every
    /// queued message was taken over by a peer, no accept is in flight) and every
    /// release for a connected peer was sent: the process may exit once
    /// [`poll_transmit`](Self::poll_transmit) is drained and written.
    pub fn is_drained(&self) -> bool {
        self.draining
            && !self.releases.waiting_on_live_link(&self.view)
            && self.copies.values().all(|c| match c.state {
                State::Queued { .. } => !c.deliverable,
                State::Accepting { .. } | State::Recovering { .. } => false,
                State::Shadow | State::Promoting { .. } => true,
            })
    }

    /// This node's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(super) fn my_name(&self) -> String {
        let me = self.config.node;
        self.config
            .members
            .iter()
            .find(|m| m.node == me)
            .map_or_else(|| me.to_string(), |m| m.name.clone())
    }

    fn heartbeat(&self) -> Heartbeat {
        let depth = self
            .copies
            .values()
            .filter(|c| matches!(c.state, State::Queued { .. }) && c.deliverable)
            .count();
        Heartbeat {
            node: self.config.node,
            epoch: self.epoch,
            volume: self.volume,
            queue_depth: u64::try_from(depth).unwrap_or(u64::MAX),
            draining: self.draining,
        }
    }

    /// Queues `frame` for `to` if its link is up and reads it; drops it otherwise.
    pub(super) fn send(&mut self, to: NodeId, frame: Frame) {
        if self.view.link(to) && frame.version() <= self.view.wire(to) {
            self.transmits.push_back((to, frame));
        }
    }

    /// Turns what this call collected into actions.
    pub(super) fn flush(&mut self) {
        let out = std::mem::take(&mut self.out);
        let (mut deliver, mut hold, mut handed) = (Vec::new(), Vec::new(), Vec::new());
        for id in out.dirty {
            let Some(c) = self.copies.get_mut(&id) else { continue };
            let State::Queued { handoff } = c.state else { continue };
            if c.deliverable == c.reported {
                continue;
            }
            c.reported = c.deliverable;
            if c.deliverable {
                deliver.push(id);
            } else if handoff.is_some() {
                handed.push(id);
            } else {
                hold.push(id);
            }
        }
        self.counters.handed += u64::try_from(handed.len()).unwrap_or(u64::MAX);
        if !out.drop_local.is_empty() {
            self.actions.push_back(Action::DropLocal { ids: out.drop_local });
        }
        for (origin, ids) in out.drop_shadows {
            self.actions.push_back(Action::DropShadows { origin, ids });
        }
        if !hold.is_empty() {
            self.actions.push_back(Action::Hold { ids: hold });
        }
        if !handed.is_empty() {
            self.actions.push_back(Action::Handed { ids: handed });
        }
        for (origin, ids) in out.promote {
            self.counters.takeovers += 1;
            self.actions.push_back(Action::Promote { origin, ids });
        }
        if !deliver.is_empty() {
            self.actions.push_back(Action::Deliver { ids: deliver });
        }
    }
}
