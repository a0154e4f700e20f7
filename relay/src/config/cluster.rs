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
    /// Longest wait for the shadows' acks of one message, in ms. Default 5000.
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
    /// Bytes in flight per peer connection (QUIC flow-control window). Default
    /// 64 MiB.
    #[serde(default = "default_window")]
    pub max_in_flight_bytes: u64,
    /// The cluster CA (PEM): peers' certificates must chain to it.
    pub ca: PathBuf,
    /// This node's certificate chain (PEM); its DNS name is the member name.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Every member, this node included.
    #[serde(rename = "member")]
    pub members: Vec<MemberConfig>,
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

fn default_min_copies() -> usize {
    2
}
fn default_accept_deadline_ms() -> u64 {
    5000
}
fn default_takeover_after() -> u64 {
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

    pub(super) fn validate(&self, node_id: u16) -> Result<(), ConfigError> {
        let Some(me) = self.me() else {
            return Err(invalid(
                "cluster.name",
                format!("{:?} is not a [[cluster.member]]", self.name),
            ));
        };
        if me.id != node_id {
            return Err(invalid(
                "cluster.name",
                format!("member {} has id {} but node.node_id is {node_id}", me.name, me.id),
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|o| o.id == m.id || o.name == m.name) {
                return Err(invalid(format!("cluster.member[{i}]"), "duplicate name or id"));
            }
        }
        if self.min_copies == 0 || self.min_copies > self.members.len() {
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
        Ok(())
    }
}
