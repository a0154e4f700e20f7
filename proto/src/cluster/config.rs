//! Tunables of the replication protocol.

use std::time::Duration;

use super::ids::NodeId;

/// One cluster member as configured (static list or the headless Service's DNS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    /// Its id: the StatefulSet ordinal.
    pub node: NodeId,
    /// Its name (`estafette-2`), for logs.
    pub name: String,
    /// Its zone label, if zones are configured: copies prefer other zones.
    pub zone: Option<String>,
}

/// Settings of one node's [`Node`](super::Node).
///
/// Plain data with documented defaults ([`Config::default`] is a single node with
/// `min_copies = 1`); the relay fills it from its TOML `[cluster]` section. Every node
/// of a cluster should use the same values except [`node`](Self::node).
#[derive(Clone, Debug)]
pub struct Config {
    /// This node. Default `NodeId(0)`.
    pub node: NodeId,
    /// Every member of the cluster, this node included (entries for other ids are
    /// the peers). Default: this node alone.
    pub members: Vec<MemberConfig>,
    /// Copies on stable storage, this node's included, before a client gets `250`.
    /// Default 1 (a single node); the production example uses 2.
    pub min_copies: usize,
    /// With fewer reachable peers than `min_copies - 1`, accept anyway with the copies
    /// that can be made (counted in `accepts_degraded`) instead of answering `451
    /// 4.3.0`. Default false: DESIGN §3 forbids a silent downgrade.
    pub allow_degraded: bool,
    /// Longest wait for the shadow acks of one message before `451 4.3.0`. Default
    /// 5 s: far above a healthy round trip plus a group-commit fsync, well under an
    /// SMTP client's DATA timeout (10 min) so the client retries elsewhere.
    pub accept_deadline: Duration,
    /// Period of heartbeats on every connection. Default 1 s.
    pub heartbeat_interval: Duration,
    /// A peer not heard from for this long gets no new copies (and
    /// [`Node::can_accept`](super::Node::can_accept) counts it out). Default 3 s:
    /// three heartbeats.
    pub peer_timeout: Duration,
    /// A peer not heard from for this long is dead: its messages are taken over by
    /// the nodes holding their copies. Default 60 s (DESIGN §5): long enough for a pod
    /// restart, short enough that mail does not wait on a dead node.
    pub takeover_after: Duration,
    /// Most ids in one `Release` frame; a full batch leaves at once. Default 512.
    pub release_batch: usize,
    /// Longest a release waits for its batch to fill. Default 100 ms.
    pub release_interval: Duration,
    /// Period of the reconcile that repairs lost releases and takeover notices: each
    /// standby copy older than this (and than twice `accept_deadline`) is checked with
    /// the node that delivers it. Default 30 s.
    pub reconcile_interval: Duration,
    /// Most ids per peer in one reconcile round (and per `Reconcile` frame); a larger
    /// backlog is checked over several rounds. Default 4096 (68 KiB frames).
    pub reconcile_batch: usize,
    /// After a start, longest wait for the peers' answers about recovered messages
    /// before delivering them anyway (each one delivered that way is counted in
    /// `restart_wait_expired`: it may be a duplicate of a takeover). Default 10 s.
    pub restart_wait: Duration,
    /// During a drain, how long a handoff waits for the peer's takeover notice before
    /// it is sent again (to the next holder). Default 2 s.
    pub handoff_retry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node: NodeId(0),
            members: vec![MemberConfig {
                node: NodeId(0),
                name: "estafette-0".into(),
                zone: None,
            }],
            min_copies: 1,
            allow_degraded: false,
            accept_deadline: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(3),
            takeover_after: Duration::from_secs(60),
            release_batch: 512,
            release_interval: Duration::from_millis(100),
            reconcile_interval: Duration::from_secs(30),
            reconcile_batch: 4096,
            restart_wait: Duration::from_secs(10),
            handoff_retry: Duration::from_secs(2),
        }
    }
}

impl Config {
    /// The zone of `node`, if configured.
    pub fn zone_of(&self, node: NodeId) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.node == node)
            .and_then(|m| m.zone.as_deref())
    }
}
