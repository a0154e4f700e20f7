//! One message copy held by this node, and the rule that says which node delivers it.

use std::time::Instant;

use super::frame::CopyStatus;
use super::ids::NodeId;
use super::membership::Membership;
use super::placement::Placement;

/// Where a copy stands on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Own: accepted locally, shadow acks awaited from `waiting`.
    Accepting {
        /// When the accept fails.
        deadline: Instant,
        /// Holders that have not acked yet.
        waiting: Vec<NodeId>,
        /// Fewer holders than `min_copies - 1` (`allow_degraded`).
        degraded: bool,
    },
    /// Own, recovered at start: not delivered until the members in `waiting` said what
    /// they know of it, or the restart wait expired.
    Recovering {
        /// Members whose answer is missing.
        waiting: Vec<NodeId>,
    },
    /// Own, in the delivery queue.
    Queued {
        /// Handoff in progress (drain): the peer asked, and when.
        handoff: Option<(NodeId, Instant)>,
    },
    /// A shadow held for another node.
    Shadow,
    /// A shadow being moved into the queue ([`Action::Promote`](super::Action::Promote)
    /// sent, `Promoted` not yet reported); `released` if a Release came meanwhile.
    Promoting {
        /// The message became final meanwhile: drop it once moved.
        released: bool,
    },
}

/// One copy.
#[derive(Clone, Debug)]
pub(super) struct Copy {
    /// As the origin chose it.
    pub(super) placement: Placement,
    /// Nodes known to have taken the message over (this one included once promoted).
    pub(super) takers: Vec<NodeId>,
    pub(super) state: State,
    /// When `state` last changed (reconcile only checks copies older than an interval).
    pub(super) since: Instant,
    /// Queued only: who delivers it is this node (computed by [`Copy::evaluate`]).
    pub(super) deliverable: bool,
    /// Queued only: what the driver was last told (a Deliver or an Ok outcome).
    pub(super) reported: bool,
}

impl Copy {
    pub(super) fn new(placement: Placement, state: State, now: Instant) -> Self {
        Self {
            placement,
            takers: Vec::new(),
            state,
            since: now,
            deliverable: false,
            reported: false,
        }
    }

    pub(super) fn set_state(&mut self, state: State, now: Instant) {
        self.state = state;
        self.since = now;
    }

    pub(super) fn origin(&self) -> NodeId {
        self.placement.origin.node
    }

    /// This node's status for the message, as told to peers.
    pub(super) fn status(&self) -> CopyStatus {
        match self.state {
            State::Accepting { .. } => CopyStatus::Active,
            State::Queued { .. } if self.deliverable => CopyStatus::Active,
            // Being moved into the queue to be delivered here: answering
            // "standby" would let an origin that asks at that moment (woken
            // from a pause) deliver it too (seen in scripts/chaos).
            State::Promoting { released: false } => CopyStatus::Active,
            _ => CopyStatus::Standby,
        }
    }

    /// Records that `node` delivers the message; whether that is news. Not the
    /// origin: that it delivers is what the placement says already, and counting
    /// its "active" as taking over would make a taker and the origin each wait
    /// for the other (see [`Copy::add_retaken`]).
    pub(super) fn add_taker(&mut self, node: NodeId) -> bool {
        if node == self.origin() || self.takers.contains(&node) {
            false
        } else {
            self.takers.push(node);
            true
        }
    }

    /// Records that the origin took the message back from a draining taker (its
    /// `Takeover` notice, or this node is the origin): it then ranks first among
    /// the takers, on every node that knows, itself included.
    pub(super) fn add_retaken(&mut self) -> bool {
        let origin = self.origin();
        if self.takers.contains(&origin) {
            false
        } else {
            self.takers.push(origin);
            true
        }
    }

    /// Forgets that `node` delivers the message; whether it was known.
    pub(super) fn remove_taker(&mut self, node: NodeId) -> bool {
        let before = self.takers.len();
        self.takers.retain(|&n| n != node);
        before != self.takers.len()
    }

    /// Whether `node` is live and still has the volume recorded for it.
    pub(super) fn available(&self, node: NodeId, view: &Membership) -> bool {
        view.is_live(node) && view.intact(node, self.placement.volume_of(node))
    }

    /// The node that should deliver the message, as this node sees the cluster.
    ///
    /// The first available taker in placement order (a taker outside the placement
    /// after those, by id); if none, the first available member in placement order
    /// (the origin while it lives). "Available" is live (heard within
    /// `takeover_after`) and holding the volume recorded in the placement; this node
    /// always is. Every node that holds a copy applies the same rule to the same
    /// placement, so once views agree exactly one node delivers.
    pub(super) fn responsible(&self, view: &Membership) -> Option<NodeId> {
        let rank = |n: NodeId| (self.placement.position(n).unwrap_or(usize::MAX), n);
        let mut takers = self.takers.clone();
        takers.sort_by_key(|&n| rank(n));
        takers
            .into_iter()
            .chain(self.placement.members().map(|m| m.node))
            .find(|&n| self.available(n, view))
    }
}
