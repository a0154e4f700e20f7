//! Column families and their big-endian key layouts (byte order = time order).

use crate::id::MessageId;

/// The column families of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    /// `id (16)` → envelope record.
    Msg,
    /// `id (16)` → raw message bytes.
    Body,
    /// `due_ms (8) || id (16)` → empty.
    Sched,
    /// `origin node (2) || id (16)` → shadow record (envelope + body).
    Shadow,
    /// `id (16) || at_ms (8) || n (4)` → event record.
    Event,
    /// `at_ms (8) || id (16) || n (4)` → empty.
    EventByTime,
    /// `month "YYYY-MM" (7) || counter name` → u64 big-endian (merge operator adds).
    Stats,
    /// The cluster's records, opaque to the spool: `b"epoch"`/`b"volume"` → u64
    /// big-endian; `b"o" || id (16)` → the placement of an own message;
    /// `b"s" || origin (2) || id (16)` → the placement of a shadow copy.
    Cluster,
    /// `id (16)` → how its body is stored in pieces: `state (1) || count (4)`;
    /// the pieces are `body` keys `id (16) || n (4)` (see `chunks.rs`).
    Chunks,
}

impl Cf {
    pub(crate) const ALL: [Self; 9] = [
        Self::Msg,
        Self::Body,
        Self::Sched,
        Self::Shadow,
        Self::Event,
        Self::EventByTime,
        Self::Stats,
        Self::Cluster,
        Self::Chunks,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Msg => "msg",
            Self::Body => "body",
            Self::Sched => "sched",
            Self::Shadow => "shadow",
            Self::Event => "event",
            Self::EventByTime => "event_by_time",
            Self::Stats => "stats",
            Self::Cluster => "cluster",
            Self::Chunks => "chunks",
        }
    }
}

pub(crate) fn sched_key(due_ms: u64, id: MessageId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&due_ms.to_be_bytes());
    k[8..].copy_from_slice(id.as_bytes());
    k
}

pub(crate) fn parse_sched_key(k: &[u8]) -> Option<(u64, MessageId)> {
    if k.len() != 24 {
        return None;
    }
    let due = u64::from_be_bytes(k[..8].try_into().ok()?);
    Some((due, MessageId::from_slice(&k[8..])?))
}

pub(crate) fn shadow_key(origin: u16, id: MessageId) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..2].copy_from_slice(&origin.to_be_bytes());
    k[2..].copy_from_slice(id.as_bytes());
    k
}

pub(crate) fn event_key(id: MessageId, at_ms: u64, n: u32) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..16].copy_from_slice(id.as_bytes());
    k[16..24].copy_from_slice(&at_ms.to_be_bytes());
    k[24..].copy_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn event_time_key(id: MessageId, at_ms: u64, n: u32) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..24].copy_from_slice(id.as_bytes());
    k[24..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `(id, at_ms, n)` from an `event_by_time` key.
pub(crate) fn parse_event_time_key(k: &[u8]) -> Option<(MessageId, u64, u32)> {
    if k.len() != 28 {
        return None;
    }
    let at = u64::from_be_bytes(k[..8].try_into().ok()?);
    let id = MessageId::from_slice(&k[8..24])?;
    let n = u32::from_be_bytes(k[24..].try_into().ok()?);
    Some((id, at, n))
}

/// The smallest key strictly greater than every key starting with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_keys_sort_by_due_then_id() {
        let a = MessageId::from_parts(5, 0, 9);
        let b = MessageId::from_parts(1, 0, 0);
        assert!(sched_key(10, a) < sched_key(11, b));
        assert!(sched_key(10, b) < sched_key(10, a));
        assert_eq!(parse_sched_key(&sched_key(10, a)), Some((10, a)));
        assert_eq!(parse_sched_key(b"short"), None);
    }

    #[test]
    fn event_keys() {
        let id = MessageId::from_parts(5, 0, 9);
        let k = event_time_key(id, 77, 3);
        assert_eq!(parse_event_time_key(&k), Some((id, 77, 3)));
        assert_eq!(&event_key(id, 77, 3)[..16], id.as_bytes());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
