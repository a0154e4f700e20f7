//! The model against the bench host: predict what `bench/scripts/capacity.sh`
//! measured (`measured.json`) from the costs alone, and show the error.
//!
//! On the bench host every node, the load generator and the sink share the
//! same `host.cores` cores, so each message costs, in CPU ms,
//! `accept + deliver + (min_copies - 1) x replicate + load + sink`, and the
//! predicted rate is `cores x 1000 / that`. The runs use min_copies = 1 on one
//! node and 2 on two or three (as `measured.json` says per run). A drain costs
//! `deliver + sink` per message (the load generator is idle): predicted
//! seconds = `messages / (cores x 1000 / (deliver + sink))`. Neither file
//! gives a rate per connection, so no connection bound is applied. The
//! formula is not fitted to the measurement: the error is what it is.

use serde::Serialize;

use super::costs::{Costs, Measured};

/// One predicted figure beside its measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// What: `throughput` or `drain`.
    pub what: String,
    /// Nodes.
    pub nodes: u32,
    /// Their `min_copies`.
    pub min_copies: u32,
    /// Unit of the two figures (`msg/s`, `s`).
    pub unit: String,
    /// The model's figure.
    pub predicted: f64,
    /// The bench host's.
    pub measured: f64,
    /// (predicted - measured) / measured, percent.
    pub error_pct: f64,
    /// CPU ms per message the prediction used.
    pub cpu_ms_per_msg: f64,
}

/// The validation table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    /// Message size of the runs.
    pub size_bytes: f64,
    /// Cores of the bench host.
    pub host_cores: f64,
    /// Commit measured (`measured.json`).
    pub commit: Option<String>,
    /// When.
    pub measured_at: Option<String>,
    /// Whether `measured.json` says its figures are placeholders.
    pub placeholder: bool,
    /// Notes on how the two files relate (e.g. different hosts).
    pub notes: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

fn error_pct(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured * 100.0
}

/// Predicts the bench host's figures and sets them beside the measured ones.
pub fn validate(costs: &Costs, m: &Measured) -> Validation {
    let c = costs.at(m.size_bytes);
    let cores = m.host.cores;
    let mut notes = Vec::new();
    if (costs.host.cores - m.host.cores).abs() > f64::EPSILON {
        notes.push(format!(
            "costs.json was measured on {} cores, measured.json on {}: the prediction uses {}",
            costs.host.cores, m.host.cores, m.host.cores
        ));
    }
    if costs.commit != m.commit {
        notes.push(format!(
            "costs.json is of commit {}, measured.json of {}",
            costs.commit.as_deref().unwrap_or("?"),
            m.commit.as_deref().unwrap_or("?")
        ));
    }
    let mut rows = Vec::new();
    for t in &m.throughput {
        let per = c.accept_cpu_ms
            + c.deliver_cpu_ms
            + f64::from(t.min_copies.saturating_sub(1)) * c.replicate_cpu_ms
            + c.load_cpu_ms
            + c.sink_cpu_ms;
        let predicted = if per > 0.0 { cores * 1000.0 / per } else { f64::INFINITY };
        rows.push(Row {
            what: "throughput".into(),
            nodes: t.nodes,
            min_copies: t.min_copies,
            unit: "msg/s".into(),
            predicted,
            measured: t.msg_per_s,
            error_pct: error_pct(predicted, t.msg_per_s),
            cpu_ms_per_msg: per,
        });
    }
    if let Some(d) = &m.drain {
        let per = c.deliver_cpu_ms + c.sink_cpu_ms;
        let rate = if per > 0.0 { cores * 1000.0 / per } else { f64::INFINITY };
        let predicted = d.messages / rate;
        rows.push(Row {
            what: format!("drain of {:.0} messages", d.messages),
            nodes: d.nodes,
            min_copies: 1,
            unit: "s".into(),
            predicted,
            measured: d.seconds,
            error_pct: error_pct(predicted, d.seconds),
            cpu_ms_per_msg: per,
        });
    }
    Validation {
        size_bytes: m.size_bytes,
        host_cores: cores,
        commit: m.commit.clone(),
        measured_at: m.measured_at.clone(),
        placeholder: m.placeholder,
        notes,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::costs::{Drain, Host, SizeCost, Throughput};

    fn costs() -> Costs {
        let s = |size: f64, k: f64| SizeCost {
            size_bytes: size,
            accept_cpu_ms: 1.0 * k,
            deliver_cpu_ms: 0.5 * k,
            replicate_cpu_ms: 2.0 * k,
            load_cpu_ms: 0.25 * k,
            sink_cpu_ms: 0.25 * k,
            spool_bytes_per_queued: size,
        };
        Costs {
            schema: 1,
            note: String::new(),
            placeholder: false,
            measured_at: None,
            commit: Some("c".into()),
            command: None,
            host: Host { cores: 2.0, cpu: None },
            sizes: vec![s(1000.0, 1.0), s(2000.0, 2.0)],
            commit_fsync_ms_p50: 2.0,
            messages_per_fsync_max: 40.0,
        }
    }

    #[test]
    fn copies_cost_replication_and_the_drain_skips_acceptance() {
        let m = Measured {
            schema: 1,
            note: String::new(),
            placeholder: false,
            measured_at: None,
            commit: Some("c".into()),
            command: None,
            host: Host { cores: 2.0, cpu: None },
            size_bytes: 1500.0,
            throughput: vec![
                Throughput {
                    nodes: 1,
                    min_copies: 1,
                    msg_per_s: 1000.0,
                },
                Throughput {
                    nodes: 2,
                    min_copies: 2,
                    msg_per_s: 400.0,
                },
            ],
            drain: Some(Drain {
                nodes: 1,
                messages: 3000.0,
                connections: Some(20),
                seconds: 3.0,
            }),
        };
        let v = validate(&costs(), &m);
        assert!(v.notes.is_empty(), "{:?}", v.notes);
        // At 1500 octets every cost is 1.5 times the 1000-octet one.
        let one = &v.rows[0];
        assert!((one.cpu_ms_per_msg - 3.0).abs() < 1e-9);
        assert!((one.predicted - 2000.0 / 3.0).abs() < 1e-6);
        assert!((one.error_pct - (2000.0 / 3.0 - 1000.0) / 10.0).abs() < 1e-6);
        // A second copy adds the replication cost, so fewer messages per second.
        let two = &v.rows[1];
        assert!(two.predicted < one.predicted);
        assert!((two.cpu_ms_per_msg - 6.0).abs() < 1e-9);
        // Drain: deliver + sink only, 1.125 ms, 2 cores: 3000 messages in 1.6875 s.
        let d = &v.rows[2];
        assert!((d.predicted - 3000.0 * 1.125 / 2000.0).abs() < 1e-9);
        assert!(d.error_pct < 0.0);
    }
}
