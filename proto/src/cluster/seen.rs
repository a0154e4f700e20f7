//! Indirect liveness: each node tells its peers whom it hears, so that a cut link
//! between two living nodes is not taken for a death.
//!
//! Without it, when the path between A and B breaks while both still talk to C,
//! B sees A silent and after `takeover_after` promotes the copies it holds of
//! A's mail, while A keeps delivering them: every such message goes out twice
//! (the partition duplicate). With it, C's [`Frame::Seen`] tells B that C heard A
//! a moment ago, and B keeps A live: A delivers its mail alone, B keeps its
//! shadows until the link heals and the releases (or the reconcile) reach it.
//!
//! The rules keep a dead node from being kept alive by rumour:
//! - a node reports only peers it heard **directly**, with how long ago by its own
//!   clock (an age, so clock offsets between nodes do not matter; a frame delayed
//!   in flight makes the news look fresher by that delay, which only postpones a
//!   takeover by as much);
//! - a sighting counts only for a peer the receiver still holds live (news of a
//!   node already declared dead does not revive it: only its own frames do) and
//!   only with the volume the receiver knows it on (a node back on a new volume
//!   lost its copies: a sighting must not hide that);
//! - a sighting moves the point from which silence counts, never `last_heard`,
//!   and never makes a peer reachable for new copies (that needs a link).
//!
//! A SIGSTOPped or crashed node is heard by nobody: the sightings age with it and
//! the takeover comes at `takeover_after`, as before, at most a heartbeat later.
//!
//! `Seen` exists from wire version 2 on (`estafette-repl/2`): it is sent only on
//! links that negotiated it, so a node of an older build in the cluster works as
//! before and its links give the old behaviour.

use std::time::{Duration, Instant};

use super::frame::{Frame, Sighting};
use super::ids::NodeId;
use super::node::Node;

impl Node {
    /// Sightings for `to`: every other peer heard directly within `takeover_after`.
    pub(super) fn sightings_for(&self, now: Instant, to: NodeId) -> Vec<Sighting> {
        let limit = self.config.takeover_after;
        self.view
            .peers()
            .filter(|p| p.node != to && p.live)
            .filter_map(|p| {
                let volume = p.volume?;
                let age = now.saturating_duration_since(p.last_heard);
                (age < limit).then(|| Sighting {
                    node: p.node,
                    volume,
                    age_ms: u32::try_from(age.as_millis()).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Sends `Seen` to `to` if its link is up and reads it (with each
    /// heartbeat, and when the link comes up).
    pub(super) fn send_sightings(&mut self, now: Instant, to: NodeId) {
        if self.view.link(to) && self.view.wire(to) >= Frame::SEEN_SINCE {
            let seen = self.sightings_for(now, to);
            if !seen.is_empty() {
                self.send(to, Frame::Seen(seen));
            }
        }
    }

    /// `from` heard these peers: each one it heard after the point from which
    /// this node counts its silence moves that point.
    pub(super) fn on_seen(&mut self, now: Instant, from: NodeId, sightings: &[Sighting]) {
        let me = self.config.node;
        for s in sightings {
            if s.node == me || s.node == from {
                continue;
            }
            let Some(at) = now.checked_sub(Duration::from_millis(u64::from(s.age_ms))) else {
                continue;
            };
            self.view.vouch(s.node, s.volume, at, from);
        }
    }
}
