//! This node's view of its peers: links, liveness, epochs and volumes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::config::{Config, MemberConfig};
use super::ids::NodeId;

/// One peer as this node sees it (for `estafette cluster status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub node: NodeId,
    /// Its configured name.
    pub name: String,
    /// The driver's connection to it is up.
    pub link: bool,
    /// Heard from within `takeover_after`: not (yet) taken over.
    pub live: bool,
    /// Last heard from (any frame); the node's start time until then. Moved
    /// forward over this node's own pauses (`pause.rs`).
    pub last_heard: Instant,
    /// The latest time another member said it heard this peer (its
    /// [`Seen`](super::Frame::Seen) frames), and which member: while that is
    /// recent the peer stays live with its link down (a cut link, not a death).
    pub vouched: Option<(Instant, NodeId)>,
    /// The highest frame version its link reads (the ALPN it accepted); 0
    /// while the link is down.
    pub wire: u8,
    /// Silent for `takeover_after` and kept live only by another member's word:
    /// counted once per such spell (`kept_live_by_peers`).
    pub(super) kept_by_vouch: bool,
    /// When a frame from it last arrived, never moved over pauses: the age
    /// this node reports in its own sightings.
    pub(super) heard_at: Instant,
    /// Its epoch, once a Hello or Heartbeat arrived.
    pub epoch: Option<u64>,
    /// Its volume id, once a Hello or Heartbeat arrived.
    pub volume: Option<u64>,
    /// Its queue depth from its last heartbeat.
    pub queue_depth: u64,
    /// It announced a drain.
    pub draining: bool,
}

/// What changed in the view, so that the node re-examines its copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Nothing that affects who delivers what.
    None,
    /// The peer is live again, or its volume is known or changed.
    Peer,
}

/// Every peer of this node.
#[derive(Debug)]
pub(super) struct Membership {
    me: NodeId,
    peers: BTreeMap<NodeId, PeerStatus>,
}

impl Membership {
    /// Every configured member but `config.node`, live until `takeover_after` passes
    /// without news (a node that just started does not take over at once).
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        let peers = config
            .members
            .iter()
            .filter(|m| m.node != config.node)
            .map(|m| (m.node, Self::fresh(m, now)))
            .collect();
        Self { me: config.node, peers }
    }

    /// A member found after the start: live for `takeover_after` from `now`,
    /// like the members at start.
    pub(super) fn add(&mut self, now: Instant, member: &MemberConfig) {
        if member.node != self.me {
            self.peers
                .entry(member.node)
                .or_insert_with(|| Self::fresh(member, now));
        }
    }

    fn fresh(m: &MemberConfig, now: Instant) -> PeerStatus {
        PeerStatus {
            node: m.node,
            name: m.name.clone(),
            link: false,
            live: true,
            last_heard: now,
            vouched: None,
            wire: 0,
            kept_by_vouch: false,
            heard_at: now,
            epoch: None,
            volume: None,
            queue_depth: 0,
            draining: false,
        }
    }

    pub(super) fn is_peer(&self, node: NodeId) -> bool {
        self.peers.contains_key(&node)
    }

    pub(super) fn peers(&self) -> impl Iterator<Item = &PeerStatus> + '_ {
        self.peers.values()
    }

    pub(super) fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// Any frame from `node`: it is alive now.
    pub(super) fn heard(&mut self, now: Instant, node: NodeId) -> Change {
        let Some(p) = self.peers.get_mut(&node) else {
            return Change::None;
        };
        if now > p.last_heard {
            p.last_heard = now;
        }
        if now > p.heard_at {
            p.heard_at = now;
        }
        p.kept_by_vouch = false;
        if p.live {
            Change::None
        } else {
            p.live = true;
            Change::Peer
        }
    }

    /// A Hello or Heartbeat: `false` if it is stale (an older epoch than known).
    pub(super) fn announce(&mut self, node: NodeId, epoch: u64, volume: u64) -> Option<Change> {
        let p = self.peers.get_mut(&node)?;
        if p.epoch.is_some_and(|e| epoch < e) {
            return None;
        }
        p.epoch = Some(epoch);
        if p.volume == Some(volume) {
            Some(Change::None)
        } else {
            p.volume = Some(volume);
            Some(Change::Peer)
        }
    }

    pub(super) fn set_name(&mut self, node: NodeId, name: &str) {
        if let Some(p) = self.peers.get_mut(&node) {
            name.clone_into(&mut p.name);
        }
    }

    pub(super) fn set_load(&mut self, node: NodeId, queue_depth: u64, draining: bool) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.queue_depth = queue_depth;
            p.draining = draining;
        }
    }

    /// `node` handed messages over: it drains, whatever its last heartbeat said.
    pub(super) fn set_draining(&mut self, node: NodeId) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.draining = true;
        }
    }

    /// Whether `node` said it drains (until its connection drops).
    pub(super) fn is_draining(&self, node: NodeId) -> bool {
        self.peers.get(&node).is_some_and(|p| p.draining)
    }

    /// The link to `node` came up reading frames up to version `wire`
    /// (`Some`), or went down.
    pub(super) fn set_link(&mut self, node: NodeId, wire: Option<u8>) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.link = wire.is_some();
            p.wire = wire.unwrap_or(0);
            if wire.is_none() {
                // A new connection starts with a Hello: forget the load until then.
                p.draining = false;
            }
        }
    }

    pub(super) fn link(&self, node: NodeId) -> bool {
        self.peers.get(&node).is_some_and(|p| p.link)
    }

    /// The highest frame version `node`'s link reads; 0 if it is down.
    pub(super) fn wire(&self, node: NodeId) -> u8 {
        self.peers.get(&node).map_or(0, |p| p.wire)
    }

    /// `by` heard `node` at `at`, on volume `volume` (see `seen.rs`): counts
    /// only for a peer still live, on the volume this node knows it on.
    pub(super) fn vouch(&mut self, node: NodeId, volume: u64, at: Instant, by: NodeId) {
        let Some(p) = self.peers.get_mut(&node) else { return };
        if p.live && p.volume == Some(volume) && at > Self::quiet_since(p) {
            p.vouched = Some((at, by));
        }
    }

    /// The point from which `p`'s silence counts: the last frame from it, or
    /// a later sighting by another member.
    fn quiet_since(p: &PeerStatus) -> Instant {
        p.vouched.map_or(p.last_heard, |(at, _)| at.max(p.last_heard))
    }

    /// Peers silent for `takeover_after`, and of whom no other member heard
    /// within that time, become dead; returns whether any did, and how many
    /// were kept live only by another member's word (once per spell).
    pub(super) fn expire(&mut self, now: Instant, takeover_after: Duration) -> (bool, u64) {
        let (mut any, mut kept) = (false, 0);
        for p in self.peers.values_mut() {
            if !p.live {
                continue;
            }
            if now.saturating_duration_since(Self::quiet_since(p)) >= takeover_after {
                p.live = false;
                p.kept_by_vouch = false;
                any = true;
            } else if now.saturating_duration_since(p.last_heard) >= takeover_after && !p.kept_by_vouch {
                p.kept_by_vouch = true;
                kept += 1;
            }
        }
        (any, kept)
    }

    /// This node did not run for `pause` (see `pause.rs`): that time is not the
    /// peers' silence.
    pub(super) fn forgive(&mut self, now: Instant, pause: Duration) {
        for p in self.peers.values_mut() {
            if p.live {
                p.last_heard = (p.last_heard + pause).min(now);
                if let Some((at, _)) = &mut p.vouched {
                    *at = (*at + pause).min(now);
                }
            }
        }
    }

    /// When the next live peer turns dead if nothing is heard from it.
    pub(super) fn next_expiry(&self, takeover_after: Duration) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| p.live)
            // Without sightings, when it dies; with them, look again when its
            // own silence passes `takeover_after`, to count the spell.
            .map(|p| {
                if p.kept_by_vouch {
                    Self::quiet_since(p) + takeover_after
                } else {
                    p.last_heard + takeover_after
                }
            })
            .min()
    }

    /// This node, or a peer heard from within `takeover_after`, directly or by
    /// another member (`seen.rs`).
    pub(super) fn is_live(&self, node: NodeId) -> bool {
        node == self.me || self.peers.get(&node).is_some_and(|p| p.live)
    }

    /// The epoch `node` announced last, if known.
    pub(super) fn epoch(&self, node: NodeId) -> Option<u64> {
        self.peers.get(&node).and_then(|p| p.epoch)
    }

    /// The volume `node` announced, if known (this node's own is not tracked here).
    pub(super) fn volume(&self, node: NodeId) -> Option<u64> {
        self.peers.get(&node).and_then(|p| p.volume)
    }

    /// Whether `node` still has the volume it had when a copy was placed there:
    /// unknown counts as yes (the copy is presumed there until the node says otherwise).
    pub(super) fn intact(&self, node: NodeId, recorded: Option<u64>) -> bool {
        if node == self.me {
            return true;
        }
        match (self.volume(node), recorded) {
            (Some(now), Some(then)) => now == then,
            _ => true,
        }
    }

    /// Whether `node` can take a new copy now: connected, announced, heard from within
    /// `peer_timeout`, not draining.
    pub(super) fn reachable(&self, node: NodeId, now: Instant, peer_timeout: Duration) -> bool {
        self.peers.get(&node).is_some_and(|p| {
            p.link && p.volume.is_some() && !p.draining && now.saturating_duration_since(p.last_heard) < peer_timeout
        })
    }
}
