//! What a node counts, for the relay's metrics and `estafette cluster status`.

/// Counters and gauges of one [`Node`](super::Node). Counters only grow; gauges
/// (marked) are the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gauge: shadow copies held for other nodes.
    pub shadows_held: u64,
    /// Gauge: this node's messages queued for delivery here.
    pub queue_depth: u64,
    /// Gauge: this node's messages held because another node took them over.
    pub held_for_takers: u64,
    /// Gauge: recovered messages still waiting for the peers' word after a
    /// restart (0 once the restart check is complete).
    pub recovering: u64,
    /// Gauge: ids waiting in a release batch (or for a link to come back).
    pub releases_pending: u64,
    /// Accepts answered `Ok` (250).
    pub accepts_ok: u64,
    /// Accepts refused at once: too few reachable peers, or draining.
    pub accepts_refused: u64,
    /// Accepts that failed after the copies were sent: deadline, nack, link lost.
    pub accepts_failed: u64,
    /// Accepts answered `Ok` with fewer copies than `min_copies` (`allow_degraded`).
    pub accepts_degraded: u64,
    /// Promote actions: batches of shadows this node took over.
    pub takeovers: u64,
    /// Messages this node took over (promoted).
    pub taken_over: u64,
    /// Messages this node had queued for delivery when it learnt that another node
    /// delivers them or delivered them (a partition or an expired restart wait): each
    /// may have been delivered twice.
    pub duplicates_possible: u64,
    /// Recovered messages released for delivery because the restart wait expired
    /// before every peer answered.
    pub restart_wait_expired: u64,
    /// Copies dropped because a reconcile showed the message final elsewhere.
    pub reconcile_dropped: u64,
    /// Messages handed to a peer during a drain.
    pub handed: u64,
    /// Messages this node accepted, which the node that took them over handed
    /// back when it drained: delivered here again.
    pub handed_back: u64,
    /// Release ids discarded because too many waited for a peer that is down (the
    /// periodic reconcile repairs them).
    pub releases_discarded: u64,
    /// Release ids sent again: not confirmed within `peer_timeout`, or the
    /// link they went out on broke before they were.
    pub releases_resent: u64,
    /// Release ids sent `RELEASE_SENDS` times and never confirmed (a peer of
    /// an earlier version does not confirm): left to the periodic reconcile.
    pub releases_unconfirmed: u64,
    /// Frames ignored: from a non-member, or stale (older epoch).
    pub frames_ignored: u64,
    /// Times this node found it had not run for several heartbeat intervals
    /// (stopped, frozen, starved): the gap did not count as its peers' silence.
    pub pauses: u64,
    /// Times a peer silent for `takeover_after` was not taken over because
    /// another member heard it meanwhile (`Seen`): a cut link between two
    /// living nodes, not a death. Once per spell of silence.
    pub kept_live_by_peers: u64,
    /// Queued messages held after such a pause reached `takeover_after`, until
    /// their holders said whether they took them over.
    pub paused_rechecks: u64,
}
