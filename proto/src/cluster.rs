//! The cluster replication protocol ("shadow redundancy", DESIGN §3 and §5), sans-io.
//!
//! # Layout
//! - [`frame`]: the wire frames (versioned rkyv records, validated on read) and the
//!   stream decoder.
//! - [`placement`]: which peers hold a message's copies (rendezvous hashing).
//! - [`ids`]: node and message ids.
//! - `node`, `membership`, `copy`, `origin`, `release`, `shadow`, `takeover`,
//!   `reconcile`, `drain`, `pause`: the per-node state machine [`Node`], one concept per file.
//! - [`Config`], [`Counters`], and the driver contract: [`LocalEvent`] in, [`Action`]
//!   and frames out.
//!
//! # The protocol in one page
//! **Accept.** A message complete in the local spool is reported
//! ([`LocalEvent::Accepted`]); the node picks `min_copies - 1` reachable peers by
//! rendezvous hashing (another zone first) and asks the driver to stream a copy to
//! each ([`Action::SendCopy`]). The copy carries its [`Placement`]: the origin and the
//! holders in takeover order, each with its *volume id*. A holder stores it durably,
//! then the node there acks it. When every holder acked, the outcome is `Ok` (250);
//! a nack, a lost link or `accept_deadline` gives `451 4.3.0`, and the holders are
//! released.
//!
//! **Who delivers.** Every node holding a copy applies one rule
//! (`Copy::responsible`, in `copy.rs`) to the placement: the first *available*
//! node among the known takers (by placement order), else among the members in
//! placement order — the origin while it lives. Available means heard from within
//! `takeover_after` and still on the volume recorded in the placement. So a holder
//! takes over when the origin has been silent for `takeover_after`, or at once when
//! the origin comes back on a new volume (its copies are gone); with three copies the
//! first live holder does, and only it. Taking over is a two-step durable move
//! ([`Action::Promote`], then [`LocalEvent::Promoted`]), after which the taker tells
//! every other member ([`Frame::Takeover`], repeated each reconcile round). A node
//! that learns of a live taker stops delivering its copy ([`Action::Hold`]) and keeps
//! it as a standby: if the taker dies before the message is final, the copy is given
//! back ([`Action::Deliver`]).
//!
//! **Final.** The node that finishes a message releases every other copy
//! ([`Frame::Release`], batched; each holder confirms with a `Reconcile` reply,
//! and what is not confirmed is sent again, `release.rs`). Copies are deleted only when a message is final (or
//! was never accepted): so a member on its recorded volume that answers `Absent` to a
//! [`Frame::Reconcile`] query proves the message needs no delivery. Standby copies are
//! checked that way every `reconcile_interval` (lost releases), and a restarted node
//! checks every recovered message with the members of its placement before
//! delivering it: taken over by a live node → held; absent from one → dropped (it was
//! delivered elsewhere, e.g. by the node that took it over while this one was down);
//! otherwise delivered. The wait is bounded by `restart_wait`; what is delivered when
//! it expires is counted (it may duplicate a takeover).
//!
//! **Duplicates.** Delivery is at-least-once. A partitioned but living origin and its
//! taker may both deliver (not when a third member still hears the origin: its
//! `Seen` frames keep it live, `seen.rs`); a node that crashes after delivering and before its final
//! state is synced delivers again. Both are counted (`duplicates_possible`) where the
//! protocol can see them. No copy is lost while one holder with its volume survives.
//!
//! **Pauses.** A node that did not run for a while (SIGSTOP, a frozen VM) does not
//! count that time as its peers' silence, and after a pause as long as
//! `takeover_after` its queued messages go through the restart check again
//! (`pause.rs`).

//!
//! # What the driver (relay's QUIC layer) does
//! - **Start**: `Node::new(config, Boot { epoch, volume, own, shadows }, now)` with
//!   what the spool recovered (each message with the placement stored beside it).
//! - **Connections**: one per peer (ALPN `estafette-repl/N` for each version the
//!   node speaks, mTLS from the cluster CA, the certificate naming the peer's id).
//!   Established: `handle_link(now, peer, Some(negotiated version))`; lost:
//!   `None`. Bytes go through a [`FrameDecoder`]; a [`FrameError`]
//!   closes that connection only. Outgoing: [`Node::poll_transmit`] then [`encode`].
//! - **Control frames** go to [`Node::handle_frame`]. **`Replicate` frames** are
//!   the driver's: append the chunks (envelope in the first, offsets contiguous) to the
//!   shadow column family, commit synced on `last`, then report
//!   [`LocalEvent::ShadowStored`] (or [`LocalEvent::ShadowFailed`]).
//! - **Actions** ([`Node::poll_action`]): `SendCopy` → stream envelope and body chunks
//!   as `Replicate` frames carrying the placement; `AcceptOutcome` → `250` if `Ok` and
//!   the local commit is `Ok`, else `451 4.3.0` and delete the local copy; `Deliver`,
//!   `Hold`, `Handed` → the delivery queue (or ask [`Node::may_deliver`] before each
//!   attempt); `DropLocal`, `DropShadows` → delete; `Promote` → move the shadows into
//!   the queue durably (promoted flag, same placement), then report
//!   [`LocalEvent::Promoted`]. Copies are never deleted otherwise, except after
//!   [`LocalEvent::Final`].
//! - **Local events**: `Accepted` when a message is complete locally (store
//!   [`Node::placement`] in its commit), `Final` when every recipient is final, `Drain`
//!   once in-flight delivery attempts are over.
//! - **Timer**: sleep until [`Node::poll_timeout`], then [`Node::handle_timeout`].
//! - **Status**: [`Node::can_accept`] (`451` at MAIL FROM, `/readyz`),
//!   [`Node::counters`] (metrics), [`Node::peers`] (`estafette cluster status`).

pub mod frame;
pub mod ids;
pub mod placement;

mod config;
mod copy;
mod counters;
mod drain;
mod event;
mod membership;
mod node;
mod origin;
mod pause;
mod reconcile;
mod release;
mod seen;
mod shadow;
mod takeover;

#[cfg(test)]
mod tests;

pub use config::{Config, MemberConfig};
pub use counters::Counters;
pub use event::{Action, Boot, LocalEvent, RecoveredCopy, Unavailable};
pub use frame::{
    encode, encode_into, CopyStatus, Frame, FrameDecoder, FrameError, Heartbeat, Hello, Item, Nack, NackReason,
    Reconcile, Replicate, Sighting, Takeover,
};
pub use ids::{MessageId, NodeId};
pub use membership::PeerStatus;
pub use node::Node;
pub use placement::{Member, Placement};
