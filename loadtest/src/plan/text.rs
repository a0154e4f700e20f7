//! The text table `estafette-load plan` prints: the capacity line of each
//! cluster, each scenario's figures, and the validation against the bench
//! host. Also the number formats the HTML report shares.

use std::fmt::Write as _;

use super::search::ClusterPlan;
use super::sim::{Delays, SimResult};
use super::Plan;

/// `28000000` → `28,000,000` (fractions rounded).
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let n = v.round().abs() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if v < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Octets in B, KB, MB, GB, TB (powers of 1000).
pub fn bytes(v: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut x = v;
    let mut u = 0;
    while x >= 1000.0 && u + 1 < units.len() {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{x:.0} {}", units[u])
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// Seconds as `40 s`, `12 min`, `3.5 h`, `2.1 d`.
pub fn secs(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v < 120.0 {
        format!("{v:.0} s")
    } else if v < 7200.0 {
        format!("{:.0} min", v / 60.0)
    } else if v < 172_800.0 {
        format!("{:.1} h", v / 3600.0)
    } else {
        format!("{:.1} d", v / 86400.0)
    }
}

/// The time to drain 99 % of the first outage's backlog, or `not drained`
/// when it did not within the run.
pub fn drain(r: &SimResult) -> String {
    match r.drains.first() {
        None => "-".into(),
        Some(d) => d.drain_secs.map_or_else(|| "not drained".into(), secs),
    }
}

/// `99 % / all` drain times of the first outage's backlog.
pub fn drains(r: &SimResult) -> String {
    match r.drains.first() {
        None => "-".into(),
        Some(d) => {
            let f = |v: Option<f64>| v.map_or_else(|| "not drained".into(), secs);
            format!("{} / {}", f(d.drain_secs), f(d.last_secs))
        }
    }
}

/// `p50 / p99 / max` of a delay summary.
pub fn delays(d: Option<&Delays>) -> String {
    match d {
        None => "-".into(),
        Some(d) => format!("{} / {} / {}", secs(d.p50_s), secs(d.p99_s), secs(d.max_s)),
    }
}

/// Percent: one decimal below 10 %, none above.
pub fn pct(v: f64) -> String {
    if v < 0.1 {
        format!("{:.1} %", v * 100.0)
    } else {
        format!("{:.0} %", v * 100.0)
    }
}

/// Delay p99 during a node loss: of all mail offered meanwhile, and of the
/// mail that was on the lost node.
pub fn loss_p99(r: &SimResult) -> String {
    let p = |d: Option<&Delays>| d.map_or_else(|| "-".into(), |d| secs(d.p99_s));
    format!("{} / {}", p(r.window_delay.as_ref()), p(r.held_delay.as_ref()))
}

/// The table printed on stdout.
pub fn render(plan: &Plan) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "estafette-load plan: {} ({}): {} messages/month, {}",
        plan.profile,
        plan.description,
        count(plan.messages_per_month),
        if plan.federation {
            format!("a federation of {} clusters", plan.clusters.len())
        } else {
            "one cluster".into()
        }
    );
    let c = &plan.costs;
    let _ = writeln!(
        t,
        "costs: {}{} (commit {}, measured {}, {} cores)",
        c.path,
        if c.placeholder {
            " [PLACEHOLDER figures, not a measurement]"
        } else {
            ""
        },
        c.commit.as_deref().unwrap_or("?"),
        c.measured_at.as_deref().unwrap_or("not yet"),
        c.host_cores
    );
    let m = &plan.mean_message;
    let _ = writeln!(
        t,
        "mean message of {}: {}; CPU ms accept {:.3}, replicate {:.3}, deliver {:.3}; spool {} per queued copy; min_copies {}",
        plan.sizes,
        bytes(m.size_bytes),
        m.accept_cpu_ms,
        m.replicate_cpu_ms,
        m.deliver_cpu_ms,
        bytes(m.spool_bytes_per_queued),
        plan.min_copies
    );
    t.push('\n');
    let _ = writeln!(
        t,
        "{:<26} {:>13} {:>9} {:>13} {:<18} {:>10} {:>11} {:>12} {:>10} {:>17}",
        "cluster",
        "msgs/month",
        "peak/s",
        "nodes x cores",
        "bound by",
        "CPU 1 lost",
        "1h drain",
        "1d disk/node",
        "1d drain",
        "loss p99 all/held"
    );
    for k in &plan.clusters {
        capacity_line(&mut t, k);
    }
    if plan.clusters.len() > 1 {
        let _ = writeln!(
            t,
            "{:<26} {:>13} {:>9} {:>13}",
            "total",
            count(plan.messages_per_month),
            "",
            format!("{} nodes, {} cores", plan.total_nodes, plan.total_cores)
        );
    }
    for k in &plan.clusters {
        t.push('\n');
        let _ = writeln!(
            t,
            "{}: {} nodes x {} cores, {} GB spool each{}",
            k.name,
            k.nodes,
            k.cores_per_node,
            k.disk_gb_per_node,
            if k.nodes_from_profile {
                format!(" (set by the profile; {} needed)", k.nodes_needed)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            t,
            "  {:<22} {:>8} {:>12} {:>10} {:>17} {:>26} {:>26} {:>10} {:>9}",
            "scenario",
            "peak CPU",
            "peak queue",
            "disk/node",
            "drain 99% / all",
            "delay p50 / p99 / max",
            "in event: p50 / p99 / max",
            "refused",
            "bounced"
        );
        for r in &k.runs {
            let x = &r.result;
            let _ = writeln!(
                t,
                "  {:<22} {:>8} {:>12} {:>10} {:>17} {:>26} {:>26} {:>10} {:>9}",
                r.scenario.id,
                pct(x.peak_cpu),
                count(x.peak_queue),
                bytes(x.peak_disk_bytes_per_node),
                drains(x),
                delays(x.delay.as_ref()),
                delays(x.window_delay.as_ref()),
                count(x.refused),
                count(x.bounced)
            );
        }
    }
    if !plan.sweep.is_empty() {
        t.push('\n');
        let _ = writeln!(
            t,
            "nodes needed by volume (one cluster, the profile's node shape and targets):"
        );
        let _ = writeln!(
            t,
            "  {:>13} {:>9} {:>13} {:>7} {:<22} {:>10} {:>12}",
            "msgs/month", "peak/s", "nodes x cores", "cores", "bound by", "CPU 1 lost", "1d disk use"
        );
        for r in &plan.sweep {
            let _ = writeln!(
                t,
                "  {:>13} {:>9.1} {:>13} {:>7} {:<22} {:>10} {:>12}",
                count(r.messages_per_month),
                r.peak_msg_per_s,
                format!("{} x {}{}", r.nodes, r.cores_per_node, if r.fits { "" } else { "!" }),
                f64::from(r.nodes) * r.cores_per_node,
                r.binding,
                pct(r.cpu_one_lost),
                pct(r.disk_day_outage)
            );
        }
    }
    if let Some(v) = &plan.validation {
        t.push('\n');
        let _ = writeln!(
            t,
            "validation on the bench host ({} cores, {} messages; measured {} at commit {}){}:",
            v.host_cores,
            bytes(v.size_bytes),
            v.measured_at.as_deref().unwrap_or("not yet"),
            v.commit.as_deref().unwrap_or("?"),
            if v.placeholder { " [PLACEHOLDER figures]" } else { "" }
        );
        for n in &v.notes {
            let _ = writeln!(t, "  note: {n}");
        }
        let _ = writeln!(
            t,
            "  {:<24} {:>5} {:>6} {:>11} {:>11} {:>8} {:>11}",
            "", "nodes", "copies", "predicted", "measured", "error", "CPU ms/msg"
        );
        for r in &v.rows {
            let _ = writeln!(
                t,
                "  {:<24} {:>5} {:>6} {:>11} {:>11} {:>7.0}% {:>11.3}",
                r.what,
                r.nodes,
                r.min_copies,
                format!("{:.1} {}", r.predicted, r.unit),
                format!("{:.1} {}", r.measured, r.unit),
                r.error_pct,
                r.cpu_ms_per_msg
            );
        }
    }
    t
}

fn capacity_line(t: &mut String, k: &ClusterPlan) {
    let h1 = k
        .run("destination-down-1h")
        .map(|r| drain(&r.result))
        .unwrap_or_default();
    let (d1_disk, d1_drain) = k
        .run("destination-down-1d")
        .map(|r| (bytes(r.result.peak_disk_bytes_per_node), drain(&r.result)))
        .unwrap_or_default();
    let loss = k.run("node-loss").map_or_else(|| "-".into(), |r| loss_p99(&r.result));
    let _ = writeln!(
        t,
        "{:<26} {:>13} {:>9.1} {:>13} {:<18} {:>10} {:>11} {:>12} {:>10} {:>17}",
        k.name,
        count(k.messages_per_month),
        k.peak_msg_per_s,
        format!("{} x {}{}", k.nodes, k.cores_per_node, if k.fits { "" } else { "!" }),
        k.binding,
        k.run("node-loss")
            .map_or_else(|| "-".into(), |r| pct(r.result.peak_cpu)),
        h1,
        d1_disk,
        d1_drain,
        loss
    );
}
