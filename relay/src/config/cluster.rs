//! `[cluster]`: the node's peers and the replication rules (DESIGN §3, §5).
//!
//! Without `[cluster]` (or with one member and `min_copies = 1`) the node runs
//! alone. With it, every accepted message is on `min_copies` nodes' stable
//! storage before `250`, over QUIC with mutual TLS from a cluster CA that is
//! separate from the SMTP and trust-space certificates.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// `[cluster]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's member name (one of `member`); its id must equal
    /// `node.node_id` (the id is in every message id).
    pub name: String,
    /// UDP address the QUIC endpoint binds (`0.0.0.0:7946` in production).
    pub listen: std::net::SocketAddr,
    /// Copies on stable storage (this node's included) before `250`. Default 2.
    #[serde(default = "default_min_copies")]
    pub min_copies: usize,
    /// Accept with fewer copies when too few peers are reachable, instead of
    /// `451 4.3.0` (counted). Default false: DESIGN §3 forbids a silent downgrade.
    #[serde(default)]
    pub allow_degraded: bool,
    /// Longest wait for the shadows' acks of one message, in ms, counted
    /// from the last progress of a copy streamed in several frames. Default
    /// 5000.
    #[serde(default = "default_accept_deadline_ms")]
    pub accept_deadline_ms: u64,
    /// Seconds a peer may be silent before its queue is taken over by the nodes
    /// holding its copies. Default 60.
    #[serde(default = "default_takeover_after")]
    pub takeover_after_secs: u64,
    /// After a start, longest wait (seconds) for the peers' answers about the
    /// recovered queue before delivering it anyway (counted). Default 10.
    #[serde(default = "default_restart_wait")]
    pub restart_wait_secs: u64,
    /// Seconds between two looks for messages this node delivers whose
    /// other copies are gone (a holder died or came back on a new volume,
    /// a takeover found no peer): each is committed again with new copies
    /// (`queue/rereplicate.rs`). A drain makes them at once. Default 5.
    #[serde(default = "default_recopy_interval")]
    pub recopy_interval_secs: u64,
    /// Longest a drain (`estafette drain`, the preStop hook) works at
    /// handing the queue over before the node stops anyway, in seconds;
    /// what is not handed over by then stays on its volume and the drain
    /// says so. The Kubernetes termination grace period must be longer, and
    /// `estafette drain --wait` too. Default 60.
    #[serde(default = "default_drain_deadline")]
    pub drain_deadline_secs: u64,
    /// The highest replication frame version this node speaks (ALPN
    /// `estafette-repl/1` up to this). Each link uses the highest version both
    /// ends speak, so builds mix during a rolling upgrade without this setting;
    /// set it to 1 to keep every link on the old version until the last node
    /// is upgraded (version 2 adds indirect liveness: a cut link between two
    /// living nodes is not taken for a death). Default and most: 2.
    #[serde(default = "default_wire_version")]
    pub wire_version: u8,
    /// Kernel buffer asked for the QUIC socket, each way, in bytes (capped
    /// by `net.core.rmem_max` / `wmem_max`, logged at start). A receive
    /// buffer that fills drops datagrams, which QUIC resends only after its
    /// loss detection: tens of milliseconds added to the accepts waiting for
    /// those copies. 0 keeps the system's default (208 KiB on most hosts).
    /// Default 4 MiB.
    #[serde(default = "default_udp_buffer")]
    pub udp_buffer_bytes: usize,
    /// Bytes in flight per peer connection (QUIC flow-control window). Default
    /// 64 MiB.
    #[serde(default = "default_window")]
    pub max_in_flight_bytes: u64,
    /// Bytes of streamed copies (bodies over 1 MiB) queued for the peers'
    /// links, all peers together, before the copies wait. Default 8 MiB, at
    /// least 4 MiB (one frame).
    #[serde(default = "default_copy_queue")]
    pub copy_queue_bytes: u32,
    /// The slowest average rate (bytes per second) at which a large
    /// message's copies may reach the peers: its commit may take
    /// `node.accept_timeout_secs` plus `size / copy_rate_bytes` before the
    /// client gets `451`. (A copy that stops moving for
    /// `accept_deadline_ms` is refused sooner.) Default 2 MiB/s: 50 s more
    /// for 100 MB, well under an SMTP client's 10-minute wait after DATA.
    #[serde(default = "default_copy_rate")]
    pub copy_rate_bytes: u64,
    /// The cluster CA (PEM): peers' certificates must chain to it.
    pub ca: PathBuf,
    /// This node's certificate chain (PEM); its DNS name is the member name.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The members known in advance, this node included unless `discover`
    /// finds it (a StatefulSet's pods need none listed with `discover`).
    #[serde(default, rename = "member")]
    pub members: Vec<MemberConfig>,
    /// Members found in DNS as well: a Kubernetes headless Service's SRV
    /// records (`[cluster.discover]`). Absent: the list above only.
    #[serde(default)]
    pub discover: Option<DiscoverConfig>,
}

/// `[cluster.discover]`: members from the SRV records of a headless Service
/// (`_repl._udp.estafette-peers.NAMESPACE.svc.cluster.local`: one record per
/// pod, `publishNotReadyAddresses` so that a pod is found before it is ready).
///
/// Each record's target names a member: its first label is the member name
/// (`estafette-2`, the pod's name), the number after its last `-` the member id
/// (the StatefulSet ordinal), and the target's address with the record's port
/// is where its QUIC endpoint is. Looked up at start and every
/// `interval_secs`: a new member is added (new copies go to it once it is
/// heard from), a moved one (a rescheduled pod's new address) is dialled at
/// its new address. A member that leaves DNS is not removed: it is a dead
/// member, and its mail is taken over after `takeover_after` like any other.
/// Only names of this node's own StatefulSet (the same prefix before the
/// ordinal as `cluster.name`) are members.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverConfig {
    /// The SRV name to look up, asked of `[outbound] resolver`.
    pub srv: String,
    /// Seconds between lookups. Default 10.
    #[serde(default = "default_discover_interval")]
    pub interval_secs: u64,
}

fn default_discover_interval() -> u64 {
    10
}

/// `estafette-2` → `("estafette", 2)`: a StatefulSet pod's name split into the
/// set's name and its ordinal.
pub fn ordinal(name: &str) -> Option<(&str, u16)> {
    let (set, n) = name.rsplit_once('-')?;
    if set.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((set, n.parse().ok()?))
}

/// `[[cluster.member]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its name (`estafette-2`): the DNS name its certificate carries.
    pub name: String,
    /// Its node id (the StatefulSet ordinal), 0..=65535.
    pub id: u16,
    /// Where its QUIC endpoint is: `host:port`, resolved again at each connection
    /// attempt (a headless Service's DNS name works).
    pub address: String,
    /// Its zone, if zones are configured: copies go to another zone first.
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_copy_queue() -> u32 {
    8 << 20
}
fn default_copy_rate() -> u64 {
    2 << 20
}
fn default_min_copies() -> usize {
    2
}
fn default_accept_deadline_ms() -> u64 {
    5000
}
fn default_takeover_after() -> u64 {
    60
}
fn default_recopy_interval() -> u64 {
    5
}

fn default_udp_buffer() -> usize {
    4 << 20
}

fn default_wire_version() -> u8 {
    proto::cluster::frame::FRAME_VERSION
}

fn default_drain_deadline() -> u64 {
    60
}
fn default_restart_wait() -> u64 {
    10
}
fn default_window() -> u64 {
    64 << 20
}

impl ClusterConfig {
    /// This node's member entry.
    pub fn me(&self) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.name == self.name)
    }

    /// This node's member id: its entry's, or with `discover` its name's ordinal.
    pub fn my_id(&self) -> Option<u16> {
        match self.me() {
            Some(m) => Some(m.id),
            None if self.discover.is_some() => ordinal(&self.name).map(|(_, n)| n),
            None => None,
        }
    }

    /// The id of the member a peer's certificate names (`name`): a listed
    /// member's, or with `discover` a pod of this node's own StatefulSet.
    pub fn member_id(&self, name: &str) -> Option<u16> {
        if let Some(m) = self.members.iter().find(|m| m.name.eq_ignore_ascii_case(name)) {
            return Some(m.id);
        }
        self.discover.as_ref()?;
        let (set, id) = ordinal(name)?;
        let (mine, _) = ordinal(&self.name)?;
        set.eq_ignore_ascii_case(mine).then_some(id)
    }

    pub(super) fn validate(&self, node_id: u16) -> Result<(), ConfigError> {
        let Some(id) = self.my_id() else {
            let why = if self.discover.is_some() {
                "is neither a [[cluster.member]] nor a StatefulSet pod name (NAME-ORDINAL)"
            } else {
                "is not a [[cluster.member]]"
            };
            return Err(invalid("cluster.name", format!("{:?} {why}", self.name)));
        };
        if id != node_id {
            return Err(invalid(
                "cluster.name",
                format!("member {} has id {id} but node.node_id is {node_id}", self.name),
            ));
        }
        if let Some(d) = &self.discover {
            if d.srv.trim().is_empty() || d.interval_secs == 0 {
                return Err(invalid(
                    "cluster.discover",
                    "srv must be a DNS name and interval_secs at least 1",
                ));
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|o| o.id == m.id || o.name == m.name) {
                return Err(invalid(format!("cluster.member[{i}]"), "duplicate name or id"));
            }
        }
        // With discovery, how many members there will be is not known here.
        let known = if self.discover.is_some() {
            usize::MAX
        } else {
            self.members.len()
        };
        if self.min_copies == 0 || self.min_copies > known {
            return Err(invalid(
                "cluster.min_copies",
                format!("must be between 1 and the number of members ({})", self.members.len()),
            ));
        }
        if self.accept_deadline_ms == 0 || self.takeover_after_secs == 0 || self.max_in_flight_bytes < 1 << 20 {
            return Err(invalid(
                "cluster.accept_deadline_ms",
                "accept_deadline_ms and takeover_after_secs must be positive, max_in_flight_bytes at least 1 MiB",
            ));
        }
        if self.recopy_interval_secs == 0 {
            return Err(invalid("cluster.recopy_interval_secs", "must be at least 1"));
        }
        if !(1..=proto::cluster::frame::FRAME_VERSION).contains(&self.wire_version) {
            return Err(invalid(
                "cluster.wire_version",
                format!("must be between 1 and {}", proto::cluster::frame::FRAME_VERSION),
            ));
        }
        if self.drain_deadline_secs == 0 {
            return Err(invalid("cluster.drain_deadline_secs", "must be at least 1"));
        }
        if self.copy_queue_bytes < 4 << 20 || self.copy_rate_bytes < 64 << 10 {
            return Err(invalid(
                "cluster.copy_queue_bytes",
                "copy_queue_bytes must be at least 4 MiB and copy_rate_bytes at least 64 KiB",
            ));
        }
        Ok(())
    }
}
