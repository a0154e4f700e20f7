//! What one simulated scenario shows: peaks, drains, delay percentiles and
//! the timeline for the charts (see [`super::sim`] for how they are made).

use std::collections::BTreeMap;

use serde::Serialize;

/// Delay percentiles (seconds from the sender's first try to delivery).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delays {
    /// Messages counted.
    pub count: f64,
    /// Shortest.
    pub min_s: f64,
    /// Median.
    pub p50_s: f64,
    /// 90th percentile.
    pub p90_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// Longest.
    pub max_s: f64,
}

/// A weighted histogram of delays in whole steps: exact at the model's
/// resolution and with fractional counts (hdrhistogram takes integers only).
#[derive(Debug, Default)]
pub(super) struct Hist(BTreeMap<u32, f64>);

impl Hist {
    pub(super) fn add(&mut self, steps: u32, count: f64) {
        if count > 0.0 {
            *self.0.entry(steps).or_default() += count;
        }
    }

    pub(super) fn summary(&self, step: f64) -> Option<Delays> {
        let total: f64 = self.0.values().sum();
        if total <= 0.0 {
            return None;
        }
        let q = |q: f64| {
            let mut acc = 0.0;
            for (k, v) in &self.0 {
                acc += v;
                if acc >= q * total * (1.0 - 1e-12) {
                    return f64::from(*k) * step;
                }
            }
            self.0.keys().next_back().map_or(0.0, |k| f64::from(*k) * step)
        };
        Some(Delays {
            count: total,
            min_s: self.0.keys().next().map_or(0.0, |k| f64::from(*k) * step),
            p50_s: q(0.5),
            p90_s: q(0.9),
            p99_s: q(0.99),
            max_s: self.0.keys().next_back().map_or(0.0, |k| f64::from(*k) * step),
        })
    }
}

/// One destination's queue at its peak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationPeak {
    /// Its name.
    pub destination: String,
    /// Most messages queued for it at the end of a step.
    pub peak_queue: f64,
}

/// How long the backlog of one outage took to deliver once it was over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drain {
    /// The destination.
    pub destination: String,
    /// When it came back, hours.
    pub recovered_at_hours: f64,
    /// Messages queued for it then.
    pub backlog: f64,
    /// Seconds from its return until 99 % of that backlog was delivered (or
    /// bounced); `None`: not within the simulated time.
    pub drain_secs: Option<f64>,
    /// Seconds until all of it was (less than half a message left).
    pub last_secs: Option<f64>,
}

/// One point of the timeline (the worst of its interval).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Hours since Monday 00:00 at the end of the interval (its worst was
    /// reached by then: plotted there, a rise does not seem to start early).
    pub hours: f64,
    /// Live nodes (fewest in the interval).
    pub live: u32,
    /// CPU demand per live node, fraction of its cores (highest).
    pub cpu: f64,
    /// Messages queued in the cluster (most).
    pub queue: f64,
    /// Messages queued for the scenario's focus destination (most).
    pub focus_queue: f64,
    /// Spool bytes per live node (most).
    pub disk_per_node: f64,
}

/// What a run shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimResult {
    /// Nodes.
    pub nodes: u32,
    /// Messages the senders offered (first tries).
    pub offered: f64,
    /// Messages accepted (`250`).
    pub accepted: f64,
    /// Messages delivered.
    pub delivered: f64,
    /// Messages bounced at `max_age`.
    pub bounced: f64,
    /// `451` answers to senders (a message refused twice counts twice).
    pub refused: f64,
    /// Messages refused at least once: deferred at the sender.
    pub deferred_at_sender: f64,
    /// Messages on a node lost for good with no copy elsewhere (`min_copies = 1`).
    pub stranded: f64,
    /// Messages still queued (relay) or waiting at senders at the end.
    pub left_at_end: f64,
    /// Highest CPU demand per live node, fraction of its cores (above 1: overloaded).
    pub peak_cpu: f64,
    /// When, hours.
    pub peak_cpu_at_hours: f64,
    /// Highest group-commit use per live node, fraction.
    pub peak_commit: f64,
    /// Most messages queued in the cluster.
    pub peak_queue: f64,
    /// Per destination.
    pub peak_queue_by_destination: Vec<DestinationPeak>,
    /// Most spool bytes per live node (every copy counted).
    pub peak_disk_bytes_per_node: f64,
    /// That, as a fraction of `cluster.disk_gb_per_node`.
    pub peak_disk_fraction: f64,
    /// Backlogs after each outage.
    pub drains: Vec<Drain>,
    /// Delays of every delivered message.
    pub delay: Option<Delays>,
    /// Delays of messages first offered while an event lasted (from the first
    /// event's start to the last one's end).
    pub window_delay: Option<Delays>,
    /// Delays of messages held on a lost node and delivered later (taken over
    /// after `takeover_after`, or by the node itself on its return).
    pub held_delay: Option<Delays>,
    /// The timeline (empty unless asked), written as columns.
    #[serde(serialize_with = "columns")]
    pub timeline: Vec<Sample>,
}

/// The timeline as one array per field (a fraction of the size of one object
/// per sample), in single precision: the charts need no more.
fn columns<S: serde::Serializer>(samples: &[Sample], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Columns {
        hours: Vec<f32>,
        live: Vec<u32>,
        cpu: Vec<f32>,
        queue: Vec<f32>,
        focus_queue: Vec<f32>,
        disk_per_node: Vec<f32>,
    }
    let col = |f: fn(&Sample) -> f64| samples.iter().map(|x| f(x) as f32).collect();
    Columns {
        hours: col(|x| x.hours),
        live: samples.iter().map(|x| x.live).collect(),
        cpu: col(|x| x.cpu),
        queue: col(|x| x.queue),
        focus_queue: col(|x| x.focus_queue),
        disk_per_node: col(|x| x.disk_per_node),
    }
    .serialize(s)
}
