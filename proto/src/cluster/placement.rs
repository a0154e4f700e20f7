//! Where a message's copies live: the [`Placement`] record and the rendezvous
//! hashing that chooses the shadow holders.
//!
//! The origin chooses the holders once, at accept, and the choice travels with every
//! copy (in the [`Replicate`](super::frame::Replicate) frame and in the spool next to
//! the message). Nobody recomputes it later: the order of
//! [`Placement::holders`] is the order in which holders take over, so every node that
//! holds a copy ranks the same way whatever its view of the cluster is today.

use super::ids::{MessageId, NodeId};

/// One copy holder as the origin saw it when it placed the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Member {
    /// The node.
    pub node: NodeId,
    /// The node's volume id when the copy was placed: the epoch in which its spool was
    /// created (see [`Boot::volume`](super::Boot::volume)). A node announcing another
    /// volume later has lost this copy.
    pub volume: u64,
}

/// The copies of one message: the origin (which accepted it) and its shadow holders
/// in takeover order.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Placement {
    /// The node that accepted the message and assigned its id.
    pub origin: Member,
    /// The shadow holders, `min_copies - 1` of them in the normal case, in rendezvous
    /// order: the first live one takes over when the origin is gone.
    pub holders: Vec<Member>,
}

impl Placement {
    /// A placement with no holders (`min_copies = 1`).
    pub fn local(origin: Member) -> Self {
        Self {
            origin,
            holders: Vec::new(),
        }
    }

    /// The origin, then the holders in takeover order.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        std::iter::once(&self.origin).chain(&self.holders)
    }

    /// Position of `node` in [`members`](Self::members) (0 = the origin), if it is one.
    pub fn position(&self, node: NodeId) -> Option<usize> {
        self.members().position(|m| m.node == node)
    }

    /// The volume `node` had when the message was placed, if it is a member.
    pub fn volume_of(&self, node: NodeId) -> Option<u64> {
        self.members().find(|m| m.node == node).map(|m| m.volume)
    }
}

/// A peer that may receive a copy, with its zone label if zones are configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The peer.
    pub node: NodeId,
    /// Its zone (`topology.kubernetes.io/zone`), `None` when not configured.
    pub zone: Option<&'a str>,
}

/// The rendezvous (highest random weight) score of `node` for `id`.
///
/// FNV-1a 64 over `id (16 bytes) || node (u16, big-endian)`, then the splitmix64
/// finaliser (FNV alone mixes its last input bytes poorly). Fixed: the same on every
/// node, every run and every version.
pub fn score(id: &MessageId, node: NodeId) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in id.as_bytes().iter().chain(&node.0.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Chooses up to `count` holders for `id` among `candidates`, in takeover order.
///
/// Highest [`score`] first; when `my_zone` is set, a candidate whose zone is set and
/// not yet used (by this node or an earlier choice) goes before any other, so that
/// copies spread over zones before they stack in one. Duplicate candidates are
/// ignored. Pure: same inputs, same answer.
pub fn choose(id: &MessageId, my_zone: Option<&str>, candidates: &[Candidate<'_>], count: usize) -> Vec<NodeId> {
    let mut pool: Vec<(u64, Candidate<'_>)> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if !pool.iter().any(|(_, p)| p.node == c.node) {
            pool.push((score(id, c.node), *c));
        }
    }
    let mut used: Vec<&str> = my_zone.into_iter().collect();
    let mut out = Vec::with_capacity(count.min(pool.len()));
    while out.len() < count && !pool.is_empty() {
        let fresh = |c: &Candidate<'_>| my_zone.is_some() && c.zone.is_some_and(|z| !used.contains(&z));
        let best = pool
            .iter()
            .enumerate()
            .max_by_key(|(_, (s, c))| (fresh(c), *s, std::cmp::Reverse(c.node)))
            .map(|(i, _)| i);
        let Some(i) = best else { break };
        let (_, c) = pool.swap_remove(i);
        if let Some(z) = c.zone {
            used.push(z);
        }
        out.push(c.node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    #[test]
    fn score_is_fixed() {
        // Pinned: a change here changes every placement in a running cluster.
        assert_eq!(score(&id(0), NodeId(0)), score(&id(0), NodeId(0)));
        assert_ne!(score(&id(0), NodeId(0)), score(&id(0), NodeId(1)));
        // Computed independently (Python) from the documented definition.
        assert_eq!(score(&MessageId([0; 16]), NodeId(1)), 0xc98d_8284_1be8_9d30);
    }

    #[test]
    fn choose_spreads_and_is_deterministic() {
        let cands: Vec<Candidate<'_>> = (1..=4)
            .map(|n| Candidate {
                node: NodeId(n),
                zone: None,
            })
            .collect();
        let mut firsts = [0usize; 5];
        for n in 0..=255u8 {
            let a = choose(&id(n), None, &cands, 2);
            assert_eq!(a, choose(&id(n), None, &cands, 2));
            assert_eq!(a.len(), 2);
            assert_ne!(a[0], a[1]);
            firsts[usize::from(a[0].0)] += 1;
        }
        // Each of 4 peers is first for roughly a quarter of 256 ids.
        for f in &firsts[1..] {
            assert!((32..=96).contains(f), "{firsts:?}");
        }
    }

    #[test]
    fn choose_prefers_other_zones() {
        let cands = [
            Candidate {
                node: NodeId(1),
                zone: Some("a"),
            },
            Candidate {
                node: NodeId(2),
                zone: Some("a"),
            },
            Candidate {
                node: NodeId(3),
                zone: Some("b"),
            },
            Candidate {
                node: NodeId(4),
                zone: Some("c"),
            },
        ];
        for n in 0..=64u8 {
            let a = choose(&id(n), Some("a"), &cands, 2);
            let mut zones: Vec<_> = a.iter().map(|c| cands[usize::from(c.0 - 1)].zone).collect();
            zones.sort();
            assert_eq!(zones, [Some("b"), Some("c")], "{a:?}");
            // Only same-zone peers left: they are still used.
            let b = choose(&id(n), Some("a"), &cands[..2], 2);
            assert_eq!(b.len(), 2);
        }
        assert!(choose(&id(1), None, &[], 2).is_empty());
    }
}
