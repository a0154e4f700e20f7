//! What one seed simulates: cluster shape, network quality, workload and faults.

use std::time::Duration;

use proto::cluster::{Config, MemberConfig, NodeId};

use super::rng::Rng;

/// One run's parameters, all drawn from the seed.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    pub(crate) nodes: u16,
    pub(crate) min_copies: usize,
    pub(crate) zones: bool,
    /// Per-frame probabilities.
    pub(crate) drop_p: f64,
    pub(crate) dup_p: f64,
    /// Usual one-way delay, ms (uniform 1..=delay_ms), and the chance of a spike
    /// (up to 50x: reordering).
    pub(crate) delay_ms: u64,
    pub(crate) spike_p: f64,
    /// Clock rate error per node, parts per million (both signs).
    pub(crate) drift_ppm: u64,
    /// Messages offered by clients, spread over `workload_ms`.
    pub(crate) messages: usize,
    pub(crate) workload_ms: u64,
    /// Faults are injected in `0..faults_until`; then everything heals.
    pub(crate) faults_until: u64,
    pub(crate) crashes: usize,
    pub(crate) partitions: usize,
    pub(crate) drains: usize,
    /// Volume losses at any time: `min_copies - 1` at most, or a 250'd message
    /// may lose every copy.
    pub(crate) volume_losses: usize,
    /// Volume losses past those, each taken only when the cluster has been
    /// whole for a while (`World::calm`: the relay has committed every message
    /// left with one copy again, under a new id) or when every message that
    /// got 250 and is not delivered has `min_copies` copies
    /// (`World::redundant`): either way a loss then must lose nothing. What
    /// re-replication is for; without it, the first case loses mail.
    pub(crate) repaired_losses: usize,
    /// Delivery attempts that defer (4xx) before the heal.
    pub(crate) defer_p: f64,
    /// The highest frame version each node speaks: a quarter of the seeds
    /// have one node of the version-1 build (a rolling upgrade), whose links
    /// carry no `Seen`. `ESTAFETTE_SIM_WIRE=1` makes every node version 1:
    /// the protocol without indirect liveness, to compare.
    pub(crate) wire: Vec<u8>,
}

/// The shapes the CI cycles through: (nodes, min_copies).
const SHAPES: [(u16, usize); 4] = [(3, 2), (3, 2), (2, 2), (4, 3)];

impl Params {
    pub(crate) fn from_seed(seed: u64) -> Self {
        let mut r = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let (nodes, min_copies) = SHAPES[usize::try_from(seed % 4).unwrap_or(0)];
        let calm = r.chance(0.15);
        let pick = |r: &mut Rng, xs: &[f64]| xs[r.index(xs.len())];
        let mut p = Self {
            nodes,
            min_copies,
            zones: r.chance(0.3),
            drop_p: if calm {
                0.0
            } else {
                pick(&mut r, &[0.0, 0.005, 0.02, 0.08])
            },
            dup_p: if calm { 0.0 } else { pick(&mut r, &[0.0, 0.01, 0.05]) },
            delay_ms: r.range(1, 20),
            spike_p: if calm { 0.0 } else { pick(&mut r, &[0.0, 0.01, 0.05]) },
            drift_ppm: r.range(0, 20_000),
            messages: usize::try_from(r.range(10, 60)).unwrap_or(10),
            workload_ms: r.range(5_000, 40_000),
            faults_until: r.range(20_000, 60_000),
            crashes: if calm {
                0
            } else {
                usize::try_from(r.range(0, 4)).unwrap_or(0)
            },
            partitions: if calm {
                0
            } else {
                usize::try_from(r.range(0, 4)).unwrap_or(0)
            },
            drains: usize::from(r.chance(0.2)),
            volume_losses: if r.chance(0.25) { min_copies - 1 } else { 0 },
            defer_p: pick(&mut r, &[0.0, 0.1, 0.3]),
            repaired_losses: 0,
            wire: vec![proto::cluster::frame::FRAME_VERSION; usize::from(nodes)],
        };
        // From a stream of its own, so that every other parameter of a seed
        // (and the kept regression seeds) stays what it was.
        if p.volume_losses > 0 {
            p.repaired_losses = usize::from(Rng::new(seed ^ 0x7e57_c0b1_e5ad_0a11).chance(0.5));
        }
        let mut w = Rng::new(seed ^ 0x0a1b_2c3d_4e5f_6071);
        if w.chance(0.25) {
            let old = w.index(p.wire.len());
            p.wire[old] = 1;
        }
        if std::env::var("ESTAFETTE_SIM_WIRE").is_ok_and(|v| v == "1") {
            p.wire.fill(1);
        }
        p
    }

    /// The protocol settings: production shapes, shorter times so a run is quick.
    pub(crate) fn config(&self, me: u16) -> Config {
        let zones = ["a", "b"];
        Config {
            node: NodeId(me),
            members: (0..self.nodes)
                .map(|n| MemberConfig {
                    node: NodeId(n),
                    name: format!("estafette-{n}"),
                    zone: self.zones.then(|| zones[usize::from(n) % 2].to_string()),
                })
                .collect(),
            min_copies: self.min_copies,
            allow_degraded: false,
            accept_deadline: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(3),
            takeover_after: Duration::from_secs(10),
            release_batch: 8,
            release_interval: Duration::from_millis(100),
            reconcile_interval: Duration::from_secs(5),
            reconcile_batch: 32,
            restart_wait: Duration::from_secs(4),
            handoff_retry: Duration::from_secs(1),
        }
    }
}
