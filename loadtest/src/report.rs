//! The report of one run: what was sent, how fast, how long it took, what it
//! cost in CPU, and what was lost. Written as JSON (`report.json`), as a
//! self-contained HTML page (see [`crate::html`]) and as a text summary.
//!
//! Units: rates per second of wall-clock time; latencies in milliseconds
//! (from microsecond histograms); CPU in seconds and in milliseconds per
//! message (accepted messages for the sender and the target, received
//! messages for the sink).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::seqlog::Verdict;

/// Percentile summary of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    /// Summarises a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Quantiles plotted in the latency charts.
const CURVE: [f64; 16] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 0.999_999, 1.0,
];

/// `(quantile, ms)` points of a histogram, for the charts.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE.iter().map(|&q| (q, ms(h.value_at_quantile(q)))).collect()
}

/// CPU time of one process or part of this tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// CPU seconds (user + system) during the run.
    pub seconds: f64,
    /// Milliseconds of CPU per message.
    pub ms_per_msg: f64,
}

impl Cpu {
    /// `used` over `messages` (0 messages: 0 ms).
    pub fn new(used: Duration, messages: u64) -> Self {
        let seconds = used.as_secs_f64();
        Self {
            seconds,
            ms_per_msg: if messages == 0 {
                0.0
            } else {
                seconds * 1000.0 / messages as f64
            },
        }
    }
}

/// The load's settings, as run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Setup {
    /// Target address.
    pub target: String,
    /// `none`, `starttls` or `implicit`.
    pub tls: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Message count, or `None` for a timed run.
    pub messages: Option<u64>,
    /// Duration of a timed run, seconds.
    pub duration_s: Option<f64>,
    /// Size mix as given.
    pub sizes: String,
    /// Recipients per message.
    pub recipients: u32,
    /// Messages per connection (0: unlimited).
    pub per_connection: u32,
    /// Rate limit, msg/s.
    pub rate: Option<f64>,
    /// Open-loop latency measurement.
    pub open_loop: bool,
    /// PIPELINING used when offered.
    pub pipelining: bool,
    /// Sink reply mix, when a sink ran.
    pub reply_mix: Option<String>,
}

/// Message counts at the sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Messages handed to a connection.
    pub sent: u64,
    /// Accepted (2yz).
    pub accepted: u64,
    /// Refused with 4yz.
    pub temp_failed: u64,
    /// Refused with 5yz.
    pub perm_failed: u64,
    /// Fate unknown (connection broke before the reply).
    pub unknown: u64,
    /// Connections opened.
    pub connections: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
}

/// Delivery as seen by the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Delivery {
    /// Messages the sink answered 250 (this run's, when known).
    pub delivered: u64,
    /// From the start of the load to the last 250, seconds.
    pub seconds: f64,
    /// `delivered / seconds`.
    pub msg_per_s: f64,
    /// Octets delivered per second.
    pub bytes_per_s: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Seconds since the load started.
    pub second: u64,
    /// Messages accepted by the target in that second.
    pub accepted: u64,
    /// Messages delivered to the sink in that second.
    pub delivered: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Scenario or run name.
    pub name: String,
    /// When the report was made, Unix seconds.
    pub generated_unix: u64,
    /// The load's settings.
    pub setup: Setup,
    /// Counts at the sender.
    pub counts: Counts,
    /// From the first connection to the last reply, seconds.
    pub inject_seconds: f64,
    /// Accepted messages per second.
    pub inject_msg_per_s: f64,
    /// Accepted message octets per second.
    pub inject_bytes_per_s: f64,
    /// Delivery to the sink, when a sink ran.
    pub delivery: Option<Delivery>,
    /// Acceptance latency (message sent, or due in open loop, to the 2yz).
    pub accept_latency: Latency,
    /// Connection setup latency (TCP, greeting, EHLO, TLS, AUTH).
    pub connect_latency: Latency,
    /// End-to-end latency (stamp written to content received by the sink).
    pub e2e_latency: Option<Latency>,
    /// Acceptance latency curve `(quantile, ms)`.
    pub accept_curve: Vec<(f64, f64)>,
    /// End-to-end latency curve `(quantile, ms)`.
    pub e2e_curve: Vec<(f64, f64)>,
    /// The target's CPU, when its pid was given (per accepted message).
    pub target_cpu: Option<Cpu>,
    /// This tool's whole CPU (per accepted message).
    pub tool_cpu: Cpu,
    /// The whole machine's busy CPU during the run, this tool included (per
    /// accepted message).
    pub machine_cpu: Cpu,
    /// The load generator's threads only.
    pub load_cpu: Option<Cpu>,
    /// The sink's threads only (per message received).
    pub sink_cpu: Option<Cpu>,
    /// Per-second timeline.
    pub timeline: Vec<Point>,
    /// Loss and duplicates, when both logs exist.
    pub verdict: Option<Verdict>,
    /// Whether the queue drained before the drain timeout (scenario runs).
    pub drained: Option<bool>,
    /// Distinct errors seen, with counts.
    pub errors: Vec<(String, u64)>,
}

/// Per-second sender and sink counts, the sink's shifted by `offset` seconds
/// (sink start to load start).
pub fn timeline(accepted: &[u64], delivered: &[u64], offset: u64) -> Vec<Point> {
    let off = usize::try_from(offset).unwrap_or(usize::MAX);
    let delivered = delivered.get(off..).unwrap_or(&[]);
    let n = accepted.len().max(delivered.len());
    (0..n)
        .map(|i| Point {
            second: i as u64,
            accepted: accepted.get(i).copied().unwrap_or(0),
            delivered: delivered.get(i).copied().unwrap_or(0),
        })
        .collect()
}

impl Report {
    /// Writes `report.json` and `report.html` into `dir` (created if needed).
    ///
    /// # Errors
    /// The directory or a file cannot be written.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.html"), crate::html::render(self))?;
        Ok(())
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.counts;
        let _ = writeln!(
            s,
            "{}: {} sessions, {} messages to {} (tls {}), sizes {}, {} rcpt, {} msg/connection",
            self.name,
            self.setup.sessions,
            c.sent,
            self.setup.target,
            self.setup.tls,
            self.setup.sizes,
            self.setup.recipients,
            self.setup.per_connection
        );
        let _ = writeln!(
            s,
            "sent {}  accepted {}  4yz {}  5yz {}  unknown {}  connections {} (failed {})",
            c.sent, c.accepted, c.temp_failed, c.perm_failed, c.unknown, c.connections, c.connect_errors
        );
        let _ = writeln!(
            s,
            "inject   {:>10.0} msg/s  {:>8.2} MB/s  over {:.2} s",
            self.inject_msg_per_s,
            self.inject_bytes_per_s / 1e6,
            self.inject_seconds
        );
        if let Some(d) = &self.delivery {
            let _ = writeln!(
                s,
                "e2e      {:>10.0} msg/s  {:>8.2} MB/s  ({} delivered in {:.2} s)",
                d.msg_per_s,
                d.bytes_per_s / 1e6,
                d.delivered,
                d.seconds
            );
        }
        let lat = |name: &str, l: &Latency, s: &mut String| {
            let _ = writeln!(
                s,
                "{name:<8} p50 {:.3} ms  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            );
        };
        lat("accept", &self.accept_latency, &mut s);
        lat("connect", &self.connect_latency, &mut s);
        if let Some(l) = &self.e2e_latency {
            lat("e2e", l, &mut s);
        }
        if let Some(t) = &self.target_cpu {
            let _ = writeln!(s, "target CPU {:.2} s = {:.3} ms/msg", t.seconds, t.ms_per_msg);
        }
        let _ = writeln!(
            s,
            "machine CPU {:.2} s = {:.3} ms/msg",
            self.machine_cpu.seconds, self.machine_cpu.ms_per_msg
        );
        let _ = write!(
            s,
            "tool CPU {:.2} s = {:.3} ms/msg",
            self.tool_cpu.seconds, self.tool_cpu.ms_per_msg
        );
        if let Some(l) = &self.load_cpu {
            let _ = write!(s, " (load {:.3} ms/msg", l.ms_per_msg);
            if let Some(k) = &self.sink_cpu {
                let _ = write!(s, ", sink {:.3} ms/msg", k.ms_per_msg);
            }
            s.push(')');
        }
        s.push('\n');
        if let Some(v) = &self.verdict {
            let _ = writeln!(
                s,
                "verdict: {}  accepted {}  delivered {}  bounced {}  lost {}  duplicated {}  unacknowledged-but-received {}  refused-but-received {}",
                if v.is_clean() { "CLEAN" } else { "PROBLEM" },
                v.accepted,
                v.delivered,
                v.bounced,
                v.lost,
                v.duplicated,
                v.received_unacknowledged,
                v.received_refused
            );
        }
        if self.drained == Some(false) {
            let _ = writeln!(s, "warning: the queue did not drain before the drain timeout");
        }
        for (e, n) in self.errors.iter().take(5) {
            let _ = writeln!(s, "error x{n}: {e}");
        }
        s
    }
}
