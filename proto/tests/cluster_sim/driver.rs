//! One simulated node: the protocol core plus what the relay's driver would do around
//! it (spool writes that become durable after a sync delay, replication streams,
//! delivery attempts), and the bookkeeping the invariants need.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use proto::cluster::{MessageId, Node, Placement};

/// What a node's volume holds once synced. A crash keeps exactly this.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    /// The epoch of the last start (0: never started / new volume).
    pub(crate) epoch: u64,
    /// The volume id (0: not yet created).
    pub(crate) volume: u64,
    /// Own queue: placement and the promoted flag.
    pub(crate) own: BTreeMap<MessageId, (Placement, bool)>,
    /// Shadows held for others.
    pub(crate) shadows: BTreeMap<MessageId, Placement>,
}

/// A write submitted to the node's group commit; durable when its event fires.
#[derive(Clone, Debug)]
pub(crate) enum DiskOp {
    OwnWrite {
        id: MessageId,
        placement: Placement,
    },
    OwnDelete {
        id: MessageId,
    },
    ShadowWrite {
        origin: u16,
        id: MessageId,
        placement: Placement,
    },
    ShadowDelete {
        ids: Vec<MessageId>,
    },
    Promote {
        origin: u16,
        ids: Vec<MessageId>,
    },
    /// A taken-over message committed again as `new` is removed (synced), then
    /// reported final (the relay's `queue/rereplicate.rs`).
    Recopied {
        old: MessageId,
        new: MessageId,
    },
}

/// A client waiting for its reply: 250 once the local commit and the outcome are Ok.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) synced: bool,
    pub(crate) ok: bool,
}

/// One node of the simulation.
pub(crate) struct SimNode {
    pub(crate) id: u16,
    pub(crate) up: bool,
    /// Bumped at each crash and start: events of an older incarnation are void.
    pub(crate) inc: u64,
    pub(crate) core: Option<Node>,
    pub(crate) clock_offset_us: u64,
    pub(crate) drift_ppm: i64,
    pub(crate) disk: Disk,
    /// When the last submitted disk write completes (writes complete in order).
    pub(crate) disk_busy_until: u64,
    pub(crate) pending: BTreeMap<MessageId, Pending>,
    /// What the driver may deliver (from AcceptOutcome Ok + commit, Deliver; minus
    /// Hold, Handed, DropLocal).
    pub(crate) deliverable: BTreeSet<MessageId>,
    pub(crate) scheduled: BTreeSet<MessageId>,
    pub(crate) attempting: BTreeSet<MessageId>,
    /// Replicate chunks received per (origin, id): offsets, and the end once seen.
    pub(crate) assembling: BTreeMap<(u16, MessageId), (BTreeSet<u64>, Option<u64>)>,
    pub(crate) timer_at: Option<u64>,
    pub(crate) draining: bool,
    /// Taken-over messages being committed again: new id -> old id. The old
    /// ones are not delivered meanwhile.
    pub(crate) recopying: BTreeMap<MessageId, MessageId>,
    // Invariant bookkeeping, reset at each start (it is what this incarnation was told).
    pub(crate) released_seen: BTreeSet<MessageId>,
    pub(crate) takeover_seen: BTreeMap<MessageId, BTreeSet<u16>>,
    pub(crate) last_heard: BTreeMap<u16, Instant>,
}

impl SimNode {
    pub(crate) fn new(id: u16, clock_offset_us: u64, drift_ppm: i64) -> Self {
        Self {
            id,
            up: false,
            inc: 0,
            core: None,
            clock_offset_us,
            drift_ppm,
            disk: Disk::default(),
            disk_busy_until: 0,
            pending: BTreeMap::new(),
            deliverable: BTreeSet::new(),
            scheduled: BTreeSet::new(),
            attempting: BTreeSet::new(),
            assembling: BTreeMap::new(),
            timer_at: None,
            draining: false,
            recopying: BTreeMap::new(),
            released_seen: BTreeSet::new(),
            takeover_seen: BTreeMap::new(),
            last_heard: BTreeMap::new(),
        }
    }

    /// Loses everything not synced: the process dies.
    pub(crate) fn crash(&mut self) {
        self.up = false;
        self.inc += 1;
        self.core = None;
        self.pending.clear();
        self.deliverable.clear();
        self.scheduled.clear();
        self.attempting.clear();
        self.assembling.clear();
        self.timer_at = None;
        self.draining = false;
        self.recopying.clear();
        self.released_seen.clear();
        self.takeover_seen.clear();
        self.last_heard.clear();
    }

    /// The node's local clock at world time `t_ms` (offset and rate error).
    pub(crate) fn local_us(&self, t_ms: u64) -> u64 {
        let base = t_ms * 1000;
        let skew = i128::from(t_ms) * i128::from(self.drift_ppm) / 1000;
        self.clock_offset_us + u64::try_from(i128::from(base) + skew).unwrap_or(0)
    }

    /// The first world time at which the local clock reads at least `target_us`.
    pub(crate) fn world_ms_for(&self, target_us: u64) -> u64 {
        let rel = i128::from(target_us.saturating_sub(self.clock_offset_us));
        let rate = 1_000_000i128 + i128::from(self.drift_ppm);
        let mut t = u64::try_from((rel * 1000 / rate).max(0)).unwrap_or(0).saturating_sub(1);
        while self.local_us(t) < target_us {
            t += 1;
        }
        t
    }

    /// Whether `id` waits for its new copies (not delivered meanwhile).
    pub(crate) fn is_recopying(&self, id: &MessageId) -> bool {
        self.recopying.values().any(|old| old == id)
    }

    pub(crate) fn core(&mut self) -> &mut Node {
        self.core.as_mut().expect("node is up")
    }
}
