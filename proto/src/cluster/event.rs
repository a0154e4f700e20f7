//! What the driver tells a [`Node`](super::Node) and what the node asks the driver to do.

use super::frame::NackReason;
use super::ids::{MessageId, NodeId};
use super::placement::Placement;
use crate::reply::{EnhancedCode, Reply};

/// What a starting node recovered from its volume: the input of
/// [`Node::new`](super::Node::new), which is how a restart reaches the protocol (the
/// process restarted, so does its state machine).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Boot {
    /// This start's epoch. MUST be synced before the node talks to peers, and MUST be
    /// greater than every epoch this node used before, even if its volume was lost
    /// (e.g. `max(stored + 1, unix seconds)`).
    pub epoch: u64,
    /// The volume id: the epoch in which this node's spool was created, stored in the
    /// spool. A new (or wiped) volume takes the current epoch. Peers compare it with the
    /// value recorded in each placement to learn that a copy is gone.
    pub volume: u64,
    /// This node's queued messages (its own and those it took over), with the placement
    /// stored beside each. They are not delivered until [`Action::Deliver`] names them.
    pub own: Vec<RecoveredCopy>,
    /// The shadow copies it holds for other nodes.
    pub shadows: Vec<RecoveredCopy>,
}

/// One message recovered from the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredCopy {
    /// The message.
    pub id: MessageId,
    /// Its placement, as stored with it.
    pub placement: Placement,
    /// Own messages only: this node took it over ([`Action::Promote`]) rather than
    /// accepting it. Ignored for shadows.
    pub promoted: bool,
}

/// A local event, reported with [`Node::handle_local`](super::Node::handle_local).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalEvent {
    /// A message is complete in the local spool (its commit may still be in flight)
    /// and needs `min_copies - 1` shadows. The node answers with
    /// [`Action::SendCopy`]s, then one [`Action::AcceptOutcome`]. The client gets
    /// `250` only when that outcome is `Ok` **and** the local commit returned `Ok`.
    ///
    /// Right after this call, [`Node::placement`](super::Node::placement) gives the
    /// placement the driver MUST store with the message in that same commit (a
    /// restart needs it); `None` means the accept was refused at once.
    Accepted {
        /// The id the spool assigned; never reused.
        id: MessageId,
        /// Envelope plus body, in bytes (for the driver's flow control and metrics).
        size: u64,
    },
    /// More of the copy of `id`, an accept in progress, went out to a holder
    /// (the driver streams copies of more than one frame). The accept's
    /// deadline moves to `now + accept_deadline`: a copy that keeps moving is
    /// not refused for the time its size takes, one that stalls for
    /// `accept_deadline` is. Ignored for any other message.
    CopyProgress {
        /// The message being accepted.
        id: MessageId,
    },
    /// The copy received for a peer (all its `Replicate` frames, `last` included) is on
    /// stable storage in the shadow column family, with `placement`. The node acks it.
    ShadowStored {
        /// The origin (the Replicate frames' sender).
        origin: NodeId,
        /// The message.
        id: MessageId,
        /// The placement from the frames.
        placement: Placement,
    },
    /// A copy received for a peer could not be stored (or was malformed): the node
    /// nacks it and the origin answers its client `451`.
    ShadowFailed {
        /// The origin.
        origin: NodeId,
        /// The message.
        id: MessageId,
        /// Why.
        reason: NackReason,
    },
    /// The driver finished an [`Action::Promote`]: the shadows are in this node's queue,
    /// durably marked as promoted.
    Promoted {
        /// Their origin.
        origin: NodeId,
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// A message of this node's queue is final (delivered to every recipient, or bounced
    /// with its DSN committed) and leaves the spool. Report it even for an attempt
    /// that started before an [`Action::Hold`].
    Final {
        /// The message.
        id: MessageId,
    },
    /// Drain: accept nothing more and hand every queued message to a peer holding a
    /// copy. [`Node::is_drained`](super::Node::is_drained) turns true when done.
    ///
    /// Report it once no delivery attempt is in flight: stop starting attempts, let
    /// the running ones finish (bounded by the drain deadline) and report their
    /// `Final` first. A message handed over while its attempt still runs here may be
    /// delivered twice.
    Drain,
}

/// Why an accept cannot be confirmed: answer `451 4.3.0` and delete the local copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// Fewer reachable peers than `min_copies - 1`.
    #[error("{reachable} peers reachable, {needed} needed")]
    NotEnoughPeers {
        /// Peers that could take a copy.
        reachable: usize,
        /// Peers needed.
        needed: usize,
    },
    /// No ack from every holder within `accept_deadline`.
    #[error("no replication ack within the deadline")]
    Timeout,
    /// A holder refused the copy.
    #[error("peer {peer} refused the copy: {reason:?}")]
    Refused {
        /// The holder.
        peer: NodeId,
        /// Its reason.
        reason: NackReason,
    },
    /// The connection to a holder was lost before its ack.
    #[error("connection to {0} lost before its ack")]
    LinkLost(NodeId),
    /// The node is draining.
    #[error("node draining")]
    Draining,
}

impl Unavailable {
    /// The reply the client gets: `451 4.3.0` (the text never names peers).
    pub fn reply(&self) -> Reply {
        Reply::new(
            451,
            EnhancedCode::new(4, 3, 0),
            "Replication unavailable, try again later",
        )
    }
}

/// What the driver must do, from [`Node::poll_action`](super::Node::poll_action).
///
/// Only two actions allow a delivery attempt to start: `AcceptOutcome { result: Ok }`
/// and [`Deliver`](Self::Deliver). [`Hold`](Self::Hold), [`DropLocal`](Self::DropLocal)
/// and [`Handed`](Self::Handed) withdraw it: an attempt that already started may finish,
/// and is reported with [`LocalEvent::Final`].
///
/// The driver MUST NOT delete a copy (own or shadow) except when an action says so or
/// after [`LocalEvent::Final`]: peers read "this node no longer has it" as "final".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stream the message (envelope, body chunks) to `to` as `Replicate` frames carrying
    /// `placement`. The node expects an `Ack` within `accept_deadline`.
    SendCopy {
        /// The holder.
        to: NodeId,
        /// The message.
        id: MessageId,
        /// To store with the copy (and, before the local commit, with the message).
        placement: Placement,
    },
    /// The answer for an [`LocalEvent::Accepted`] message. `Ok`: the shadows are durable
    /// (answer `250` once the local commit is `Ok` too) and the message may be delivered.
    /// `Err`: answer `451 4.3.0` and delete the local copy (the node releases the
    /// shadows).
    AcceptOutcome {
        /// The message.
        id: MessageId,
        /// The outcome.
        result: Result<(), Unavailable>,
    },
    /// These queued messages may be delivered now (recovered after a restart, promoted,
    /// or given back after the node that took them over died).
    Deliver {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Do not start delivering these any more: another node took them over. Keep the
    /// copies: they stand by until released or given back with `Deliver`.
    Hold {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Delete these queued messages without delivering them: they are final elsewhere
    /// (or were never accepted).
    DropLocal {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Move these shadows into this node's queue, durably marked as promoted (keeping
    /// their placement), then report [`LocalEvent::Promoted`]; a `Deliver` follows.
    Promote {
        /// Their origin (the shadow key prefix).
        origin: NodeId,
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Delete these shadow records (the shadow column family only: a copy of the same
    /// id in the queue stays): final, never accepted, or a late repeat of a copy
    /// already promoted.
    DropShadows {
        /// Their origin (the shadow key prefix).
        origin: NodeId,
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Drain: a peer took these over. Stop delivering them and keep the copies (like
    /// `Hold`); once [`Node::is_drained`](super::Node::is_drained) the node may exit.
    Handed {
        /// The messages.
        ids: Vec<MessageId>,
    },
}
