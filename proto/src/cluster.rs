//! The cluster replication protocol ("shadow redundancy", DESIGN §3 and §5), sans-io.
//!
//! - [`frame`]: the wire frames (versioned rkyv records, validated on read) and the
//!   stream decoder.
//! - [`placement`]: which peers hold a message's copies (rendezvous hashing).
//! - [`ids`]: node and message ids.

pub mod frame;
pub mod ids;
pub mod placement;

pub use frame::{
    encode, CopyStatus, Frame, FrameDecoder, FrameError, Heartbeat, Hello, Item, Nack, NackReason, Reconcile,
    Replicate, Takeover,
};
pub use ids::{MessageId, NodeId};
pub use placement::{Member, Placement};
