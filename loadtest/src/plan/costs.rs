//! The measured inputs: `costs.json` (CPU and disk per message by size, group
//! commit, from `bench/scripts/capacity.sh`) and `measured.json` (the bench
//! host's throughput and drain, to validate the model against).
//!
//! Both are read as written by the script, never typed in: a file that does
//! not parse or holds a value the model cannot use (a negative cost, sizes out
//! of order) is a [`CostsError`] naming the file and the field.
//! `costs.json` may carry fields this version does not know (the script adds
//! some as it learns to measure them); `measured.json` too, for the same reason.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a costs or measured file cannot be used.
pub type CostsError = crate::file::FileError;

/// The machine a file was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// Cores the whole run (nodes, load generator, sink) shared.
    pub cores: f64,
    /// CPU model, as `/proc/cpuinfo` names it.
    #[serde(default)]
    pub cpu: Option<String>,
}

/// Costs of one message of one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SizeCost {
    /// Message size in octets.
    pub size_bytes: f64,
    /// Relay CPU (ms) per accepted message (destination down, one node).
    pub accept_cpu_ms: f64,
    /// Relay CPU (ms) per delivered message while the queue drains.
    pub deliver_cpu_ms: f64,
    /// Extra relay CPU (ms) per message, summed over all nodes, for one more copy.
    pub replicate_cpu_ms: f64,
    /// The load generator's CPU (ms) per message.
    pub load_cpu_ms: f64,
    /// The sink's CPU (ms) per message.
    pub sink_cpu_ms: f64,
    /// Spool disk growth (octets) per queued message, on one node.
    pub spool_bytes_per_queued: f64,
}

impl SizeCost {
    fn fields(&self) -> [(&'static str, f64); 7] {
        [
            ("size_bytes", self.size_bytes),
            ("accept_cpu_ms", self.accept_cpu_ms),
            ("deliver_cpu_ms", self.deliver_cpu_ms),
            ("replicate_cpu_ms", self.replicate_cpu_ms),
            ("load_cpu_ms", self.load_cpu_ms),
            ("sink_cpu_ms", self.sink_cpu_ms),
            ("spool_bytes_per_queued", self.spool_bytes_per_queued),
        ]
    }

    /// `a + (b - a) * t` field by field (t may be outside 0..=1: extrapolation),
    /// never below zero: a straight line through two small sizes can dip below
    /// zero for a smaller one, and no cost is negative.
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        let f = |x: f64, y: f64| (x + (y - x) * t).max(0.0);
        Self {
            size_bytes: f(a.size_bytes, b.size_bytes),
            accept_cpu_ms: f(a.accept_cpu_ms, b.accept_cpu_ms),
            deliver_cpu_ms: f(a.deliver_cpu_ms, b.deliver_cpu_ms),
            replicate_cpu_ms: f(a.replicate_cpu_ms, b.replicate_cpu_ms),
            load_cpu_ms: f(a.load_cpu_ms, b.load_cpu_ms),
            sink_cpu_ms: f(a.sink_cpu_ms, b.sink_cpu_ms),
            spool_bytes_per_queued: f(a.spool_bytes_per_queued, b.spool_bytes_per_queued),
        }
    }

    /// The share-weighted sum of several costs (the mean over a size mix).
    pub fn weighted(parts: &[(Self, f64)]) -> Self {
        let mut m = Self {
            size_bytes: 0.0,
            accept_cpu_ms: 0.0,
            deliver_cpu_ms: 0.0,
            replicate_cpu_ms: 0.0,
            load_cpu_ms: 0.0,
            sink_cpu_ms: 0.0,
            spool_bytes_per_queued: 0.0,
        };
        for (c, w) in parts {
            m.size_bytes += c.size_bytes * w;
            m.accept_cpu_ms += c.accept_cpu_ms * w;
            m.deliver_cpu_ms += c.deliver_cpu_ms * w;
            m.replicate_cpu_ms += c.replicate_cpu_ms * w;
            m.load_cpu_ms += c.load_cpu_ms * w;
            m.sink_cpu_ms += c.sink_cpu_ms * w;
            m.spool_bytes_per_queued += c.spool_bytes_per_queued * w;
        }
        m
    }
}

/// `costs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Format version: 1.
    pub schema: u32,
    /// Free text (e.g. that the figures are placeholders).
    #[serde(default)]
    pub note: String,
    /// True while the shipped file holds placeholder figures, not a measurement.
    #[serde(default)]
    pub placeholder: bool,
    /// When it was measured (RFC 3339).
    #[serde(default)]
    pub measured_at: Option<String>,
    /// The commit measured.
    #[serde(default)]
    pub commit: Option<String>,
    /// The command that measured it.
    #[serde(default)]
    pub command: Option<String>,
    /// The machine.
    pub host: Host,
    /// Costs by size, smallest first.
    pub sizes: Vec<SizeCost>,
    /// Median duration (ms) of one synced group commit.
    pub commit_fsync_ms_p50: f64,
    /// Most messages seen in one group commit.
    pub messages_per_fsync_max: f64,
}

use crate::file::read;

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, CostsError> {
    serde_json::from_str(text).map_err(|e| CostsError::parse(path, e))
}

fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> CostsError {
    CostsError::invalid(path, field, message)
}

fn non_negative(path: &Path, field: impl Into<String>, v: f64) -> Result<(), CostsError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(path, field, format!("{v} is not a non-negative number")))
    }
}

fn positive(path: &Path, field: impl Into<String>, v: f64) -> Result<(), CostsError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(path, field, format!("{v} is not a positive number")))
    }
}

impl Costs {
    /// Reads and checks `costs.json`.
    ///
    /// # Errors
    /// A [`CostsError`] naming the file (and the field).
    pub fn load(path: &Path) -> Result<Self, CostsError> {
        let c: Self = parse(path, &read(path)?)?;
        c.check(path)?;
        Ok(c)
    }

    /// Parses and checks the text of a costs file (`origin` names it in errors).
    ///
    /// # Errors
    /// A [`CostsError`].
    pub fn parse(origin: &Path, text: &str) -> Result<Self, CostsError> {
        let c: Self = parse(origin, text)?;
        c.check(origin)?;
        Ok(c)
    }

    fn check(&self, path: &Path) -> Result<(), CostsError> {
        if self.schema != 1 {
            return Err(invalid(path, "schema", format!("version {} is not 1", self.schema)));
        }
        positive(path, "host.cores", self.host.cores)?;
        if self.sizes.is_empty() {
            return Err(invalid(path, "sizes", "no size measured"));
        }
        for (i, s) in self.sizes.iter().enumerate() {
            for (name, v) in s.fields() {
                non_negative(path, format!("sizes[{i}].{name}"), v)?;
            }
            positive(path, format!("sizes[{i}].size_bytes"), s.size_bytes)?;
            if i > 0 && s.size_bytes <= self.sizes[i - 1].size_bytes {
                return Err(invalid(
                    path,
                    format!("sizes[{i}].size_bytes"),
                    "sizes must be in increasing order, each once",
                ));
            }
        }
        positive(path, "commit_fsync_ms_p50", self.commit_fsync_ms_p50)?;
        positive(path, "messages_per_fsync_max", self.messages_per_fsync_max)?;
        Ok(())
    }

    /// Costs of a message of `size` octets: linear interpolation between the
    /// two measured sizes around it, and beyond the measured range the line
    /// through the two nearest (CPU and disk grow about linearly with size
    /// once past the fixed per-message part). With one measured size, that
    /// size's costs.
    pub fn at(&self, size: f64) -> SizeCost {
        let s = &self.sizes;
        let Some(first) = s.first() else {
            // `check` refuses an empty list; a zero cost keeps this total.
            return SizeCost::weighted(&[]);
        };
        if s.len() == 1 {
            return SizeCost {
                size_bytes: size,
                ..*first
            };
        }
        // The segment [i, i+1] to interpolate on (or extrapolate from).
        let i = match s.iter().position(|c| c.size_bytes >= size) {
            Some(0) => 0,
            Some(j) => j - 1,
            None => s.len() - 2,
        };
        let (a, b) = (&s[i], &s[i + 1]);
        let t = (size - a.size_bytes) / (b.size_bytes - a.size_bytes);
        SizeCost {
            size_bytes: size,
            ..SizeCost::lerp(a, b, t)
        }
    }

    /// Mean costs over a size mix (`(size, share)` with shares adding up to 1).
    pub fn mean_over(&self, mix: &[(usize, f64)]) -> SizeCost {
        let parts: Vec<(SizeCost, f64)> = mix.iter().map(|(size, w)| (self.at(*size as f64), *w)).collect();
        SizeCost::weighted(&parts)
    }

    /// Most messages one node can commit per second: a full group commit per
    /// median fsync. A shadow's copy is a synced write too, so copies count.
    pub fn commits_per_s(&self) -> f64 {
        self.messages_per_fsync_max * 1000.0 / self.commit_fsync_ms_p50
    }
}

/// One throughput measurement of the bench host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Nodes run.
    pub nodes: u32,
    /// Their `min_copies`.
    pub min_copies: u32,
    /// Messages per second accepted and delivered.
    pub msg_per_s: f64,
}

/// One drain measurement: a queue of `messages` delivered by `nodes` node(s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    /// Nodes run.
    pub nodes: u32,
    /// Messages queued before delivery was let go.
    pub messages: f64,
    /// Connections to the sink.
    #[serde(default)]
    pub connections: Option<u32>,
    /// Seconds until the last was delivered.
    pub seconds: f64,
}

/// `measured.json`: what the bench host did, to compare with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Format version: 1.
    pub schema: u32,
    /// Free text.
    #[serde(default)]
    pub note: String,
    /// True while the shipped file holds placeholder figures.
    #[serde(default)]
    pub placeholder: bool,
    /// When.
    #[serde(default)]
    pub measured_at: Option<String>,
    /// The commit measured.
    #[serde(default)]
    pub commit: Option<String>,
    /// The command.
    #[serde(default)]
    pub command: Option<String>,
    /// The machine.
    pub host: Host,
    /// Message size of every run.
    pub size_bytes: f64,
    /// Throughput by cluster size.
    pub throughput: Vec<Throughput>,
    /// The drain run.
    #[serde(default)]
    pub drain: Option<Drain>,
}

impl Measured {
    /// Reads and checks `measured.json`.
    ///
    /// # Errors
    /// A [`CostsError`] naming the file (and the field).
    pub fn load(path: &Path) -> Result<Self, CostsError> {
        let m: Self = parse(path, &read(path)?)?;
        if m.schema != 1 {
            return Err(invalid(path, "schema", format!("version {} is not 1", m.schema)));
        }
        positive(path, "host.cores", m.host.cores)?;
        positive(path, "size_bytes", m.size_bytes)?;
        for (i, t) in m.throughput.iter().enumerate() {
            positive(path, format!("throughput[{i}].msg_per_s"), t.msg_per_s)?;
            if t.nodes == 0 || t.min_copies == 0 || t.min_copies > t.nodes {
                return Err(invalid(
                    path,
                    format!("throughput[{i}]"),
                    "nodes and min_copies must be at least 1, min_copies at most nodes",
                ));
            }
        }
        if let Some(d) = &m.drain {
            positive(path, "drain.messages", d.messages)?;
            positive(path, "drain.seconds", d.seconds)?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"{"schema": 1, "host": {"cores": 2, "cpu": "x"}, "extra": [1],
      "sizes": [
        {"size_bytes": 10240, "accept_cpu_ms": 0.15, "deliver_cpu_ms": 0.10, "replicate_cpu_ms": 0.25,
         "load_cpu_ms": 0.08, "sink_cpu_ms": 0.05, "spool_bytes_per_queued": 11500},
        {"size_bytes": 1048576, "accept_cpu_ms": 2.8, "deliver_cpu_ms": 1.9, "replicate_cpu_ms": 2.5,
         "load_cpu_ms": 0.5, "sink_cpu_ms": 0.6, "spool_bytes_per_queued": 1060000}],
      "commit_fsync_ms_p50": 2.0, "messages_per_fsync_max": 40}"#;

    fn costs(text: &str) -> Result<Costs, CostsError> {
        Costs::parse(Path::new("costs.json"), text)
    }

    #[test]
    fn interpolates_between_and_extrapolates_beyond() {
        let c = costs(TWO).unwrap();
        assert_eq!(c.at(10240.0).accept_cpu_ms, 0.15);
        let mid = (10240.0 + 1048576.0) / 2.0;
        assert!((c.at(mid).accept_cpu_ms - (0.15 + 2.8) / 2.0).abs() < 1e-9);
        // 10 MiB: the same slope on: about ten times the 1 MiB figure.
        let big = c.at(10.0 * 1048576.0);
        let slope = (2.8 - 0.15) / (1048576.0 - 10240.0);
        assert!((big.accept_cpu_ms - (2.8 + slope * 9.0 * 1048576.0)).abs() < 1e-9);
        assert!(big.spool_bytes_per_queued > 10.0 * 1_000_000.0);
        // Below the smallest size the line may not go negative.
        let tiny = c.at(1.0);
        assert!(tiny.accept_cpu_ms >= 0.0 && tiny.accept_cpu_ms < 0.15);
        assert!(tiny.spool_bytes_per_queued >= 0.0);
    }

    #[test]
    fn mean_over_a_mix_weights_by_share() {
        let c = costs(TWO).unwrap();
        let m = c.mean_over(&[(10240, 0.5), (1048576, 0.5)]);
        assert!((m.deliver_cpu_ms - 1.0).abs() < 1e-9);
        assert!((m.size_bytes - (10240.0 + 1048576.0) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = costs(&TWO.replace("\"accept_cpu_ms\": 2.8", "\"accept_cpu_ms\": -1")).unwrap_err();
        assert!(e.to_string().contains("sizes[1].accept_cpu_ms"), "{e}");
        let e = costs(&TWO.replace("1048576", "1024")).unwrap_err();
        assert!(e.to_string().contains("sizes[1].size_bytes"), "{e}");
        let e = costs(&TWO.replace("\"schema\": 1", "\"schema\": 2")).unwrap_err();
        assert!(e.to_string().contains("schema"), "{e}");
        let e = costs(&TWO.replace("\"deliver_cpu_ms\": 0.10, ", "")).unwrap_err();
        assert!(
            matches!(e, CostsError::Parse { .. }) && e.to_string().contains("deliver_cpu_ms"),
            "{e}"
        );
        let e = costs(&TWO.replace("\"cores\": 2", "\"cores\": 0")).unwrap_err();
        assert!(e.to_string().contains("host.cores"), "{e}");
    }
}
