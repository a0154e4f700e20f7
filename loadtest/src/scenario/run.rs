//! Running a scenario: the sink and the load generator on their own tokio
//! runtimes, the drain wait, CPU accounting and the report.
//!
//! Threads: the sink and the load generator run on separate runtimes whose
//! threads are named `sink-*` and `send-*`, so the report can give each one's
//! CPU per message.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spec::{send_config, sink_config};
use super::{Scenario, ScenarioError};
use crate::cpu;
use crate::mix::parse_duration;
use crate::progress::Progress;
use crate::report::{curve, timeline, Counts, Cpu, Delivery, Latency, Report, Setup};
use crate::send::{self, Limit, Live};
use crate::seqlog::{read_log, verify};
use crate::sink::Sink;

fn runtime(name: &'static str, threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let n = threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2)
        .max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .thread_name(name)
        .enable_all()
        .build()
}

/// A run id: the clock's nanoseconds mixed with the pid (unique enough to
/// tell runs apart in one sink log).
pub fn new_run_id() -> u64 {
    let t = send::unix_ns();
    (t ^ (u64::from(std::process::id()) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn target_pid(s: &Scenario) -> Result<Option<u32>, ScenarioError> {
    if let Some(p) = s.target_pid {
        return Ok(Some(p));
    }
    match &s.target_pidfile {
        None => Ok(None),
        Some(f) => {
            let text = crate::file::read(f)?;
            text.trim()
                .parse()
                .map(Some)
                .map_err(|_| ScenarioError::Invalid(format!("{}: not a pid", f.display())))
        }
    }
}

/// Runs a scenario to its end and returns the report (also written to
/// `report.dir` when set). `quiet` hides the progress bars.
///
/// # Errors
/// Bad settings, a sink that cannot listen, a target that cannot be reached
/// at the start. Failures during the run are counted in the report.
pub fn run(s: &Scenario, quiet: bool) -> Result<Report, ScenarioError> {
    s.check()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let run_id = new_run_id();
    let dir = s.report.dir.clone();
    if let Some(d) = &dir {
        std::fs::create_dir_all(d)?;
    }
    let send_log = s
        .report
        .send_log
        .clone()
        .or_else(|| dir.as_ref().map(|d| d.join("send.log")));
    let received_log = s
        .report
        .received_log
        .clone()
        .or_else(|| dir.as_ref().map(|d| d.join("received.log")));
    let drain_timeout = parse_duration(&s.report.drain_timeout).map_err(|cause| ScenarioError::Mix {
        field: "report.drain_timeout",
        cause,
    })?;
    let pid = target_pid(s)?;

    let sink_rt = if s.sink.enabled {
        Some(runtime("sink-worker", s.sink.threads)?)
    } else {
        None
    };
    let sink = match &sink_rt {
        Some(rt) => Some(rt.block_on(Sink::start(sink_config(&s.sink, received_log.clone(), run_id)?))?),
        None => None,
    };
    let target = match (&s.target, &sink) {
        (Some(t), _) => t.clone(),
        (None, Some(k)) => k.local_addr().to_string(),
        (None, None) => return Err(ScenarioError::Invalid("no target".into())),
    };
    let config = send_config(&s.load, &target, run_id, send_log.clone())?;
    let send_rt = runtime("send-worker", s.load.threads)?;
    let live = Arc::new(Live::default());
    let total = match config.limit {
        Limit::Messages(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let progress = Progress::start(Some(live.clone()), sink.as_ref().map(Sink::live), total, quiet);

    let target_cpu0 = pid.map(cpu::tree_cpu).transpose()?;
    let machine0 = cpu::machine_cpu()?;
    let tool0 = cpu::self_cpu()?;
    let load0 = cpu::threads_cpu("send-")?;
    let sink0 = cpu::threads_cpu("sink-")?;

    let setup = Setup {
        target: target.clone(),
        tls: s.load.tls.to_string(),
        sessions: s.load.sessions,
        messages: match config.limit {
            Limit::Messages(n) => Some(n),
            Limit::Duration(_) => None,
        },
        duration_s: match config.limit {
            Limit::Duration(d) => Some(d.as_secs_f64()),
            Limit::Messages(_) => None,
        },
        sizes: s.load.size.clone(),
        recipients: s.load.recipients,
        per_connection: s.load.per_connection,
        rate: s.load.rate,
        open_loop: s.load.open_loop,
        pipelining: s.load.pipelining,
        reply_mix: sink.as_ref().map(|_| s.sink.reply_mix.clone()),
    };
    let result = send_rt.block_on(send::run(config, live.clone()));
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            return Err(e.into());
        }
    };
    let load1 = cpu::threads_cpu("send-")?;

    // Drain: every accepted recipient delivered or bounced at the sink.
    let mut drained = None;
    if let Some(k) = &sink {
        let want = live.accepted_rcpts.load(Ordering::Relaxed);
        let deadline = Instant::now() + drain_timeout;
        loop {
            if k.completed_rcpts(run_id) >= want {
                drained = Some(true);
                break;
            }
            if Instant::now() >= deadline {
                drained = Some(false);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let target_cpu1 = pid.map(cpu::tree_cpu).transpose()?;
    let machine1 = cpu::machine_cpu()?;
    let tool1 = cpu::self_cpu()?;
    let sink1 = cpu::threads_cpu("sink-")?;
    progress.finish();

    let sink_live = sink.as_ref().map(Sink::live);
    let snapshot = match (sink, &sink_rt) {
        (Some(k), Some(rt)) => Some(rt.block_on(k.stop())),
        _ => None,
    };
    drop(send_rt);
    drop(sink_rt);

    let accepted = live.accepted.load(Ordering::Relaxed);
    let counts = Counts {
        sent: live.started.load(Ordering::Relaxed),
        accepted,
        temp_failed: live.temp_failed.load(Ordering::Relaxed),
        perm_failed: live.perm_failed.load(Ordering::Relaxed),
        unknown: live.unknown.load(Ordering::Relaxed),
        connections: live.connections.load(Ordering::Relaxed),
        connect_errors: live.connect_errors.load(Ordering::Relaxed),
    };
    let inject_seconds = result.finished.duration_since(result.started).as_secs_f64().max(1e-6);
    let bytes = live.bytes_accepted.load(Ordering::Relaxed) as f64;
    let verdict = match (&send_log, &received_log, &snapshot) {
        (Some(sl), Some(rl), Some(_)) => Some(verify(&read_log(sl)?, &read_log(rl)?)),
        _ => None,
    };
    let (delivery, e2e_latency, e2e_curve, sink_timeline, offset, sink_cpu) = match (&snapshot, &sink_live) {
        (Some(snap), Some(kl)) => {
            let received = kl.received.load(Ordering::Relaxed);
            let delivered = verdict.as_ref().map_or(received, |v| v.delivered + v.bounced);
            let end = snap.last_delivery.unwrap_or(result.finished).max(result.finished);
            let seconds = end.duration_since(result.started).as_secs_f64().max(1e-6);
            let offset = result.started.saturating_duration_since(snap.started).as_secs();
            (
                Some(Delivery {
                    delivered,
                    seconds,
                    msg_per_s: delivered as f64 / seconds,
                    bytes_per_s: kl.bytes.load(Ordering::Relaxed) as f64 / seconds,
                }),
                Some(Latency::of(&snap.e2e_latency)),
                curve(&snap.e2e_latency),
                snap.timeline.clone(),
                offset,
                Some(Cpu::new(sink1.saturating_sub(sink0), received)),
            )
        }
        _ => (None, None, Vec::new(), Vec::new(), 0, None),
    };
    let report = Report {
        name: s.name.clone().unwrap_or_else(|| "estafette-load".into()),
        generated_unix: send::unix_ns() / 1_000_000_000,
        setup,
        counts,
        inject_seconds,
        inject_msg_per_s: accepted as f64 / inject_seconds,
        inject_bytes_per_s: bytes / inject_seconds,
        delivery,
        accept_latency: Latency::of(&result.accept_latency),
        connect_latency: Latency::of(&result.connect_latency),
        e2e_latency,
        accept_curve: curve(&result.accept_latency),
        e2e_curve,
        target_cpu: target_cpu0
            .zip(target_cpu1)
            .map(|(a, b)| Cpu::new(b.saturating_sub(a), accepted)),
        tool_cpu: Cpu::new(tool1.saturating_sub(tool0), accepted),
        machine_cpu: Cpu::new(machine1.saturating_sub(machine0), accepted),
        load_cpu: Some(Cpu::new(load1.saturating_sub(load0), accepted)),
        sink_cpu,
        timeline: timeline(&result.timeline, &sink_timeline, offset),
        verdict,
        drained,
        errors: result.errors,
    };
    if let Some(d) = &dir {
        report.write(d)?;
    }
    Ok(report)
}
