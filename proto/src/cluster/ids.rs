//! Node and message identities as the cluster protocol names them.

use std::fmt;

/// A cluster member: the StatefulSet ordinal of the node (`estafette-3` is `NodeId(3)`).
///
/// A small integer because it is part of every message id (the spool's ids are
/// `time_ms || node (u16) || seq`) and of every shadow key (`origin || id`). The
/// human name travels once per connection, in [`Hello`](super::frame::Frame::Hello).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct NodeId(pub u16);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// A message id: the 16 bytes of the spool's sortable id (`time_ms (8) || node (2) ||
/// seq (6)`, big-endian).
///
/// The cluster treats it as opaque bytes: it never reads the time or the node out of
/// it (the origin of a copy is always carried explicitly), so the spool may change its
/// layout without changing the protocol. Ids are unique across the cluster and never
/// reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// The id from its 16 stored bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 stored bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for MessageId {
    /// Lower-case hex, 32 digits (traces and test failures).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
