//! `estafette-load`: load generator, smart SMTP sink and scenario runner.
//!
//! ```text
//! estafette-load send --target 127.0.0.1:2525 --sessions 20 --messages 10000 --size 10k
//! estafette-load sink --listen 127.0.0.1:2526 --reply-mix 451:2,550:1 --received-log received.log
//! estafette-load run loadtest/scenario.example.toml
//! estafette-load verify --sent send.log --received received.log
//! estafette-load plan --costs bench/capacity/costs.json --profile bench/capacity/regional.toml --out plan
//! ```
//! Exit status: 0 done (and, for `run`/`verify`, nothing lost or duplicated),
//! 1 loss/duplicates found, 2 bad usage or a run that could not start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use estafette_load::conn::Security;
use estafette_load::mix::parse_duration;
use estafette_load::progress::Progress;
use estafette_load::scenario::{self, LoadSpec, ReportSpec, Scenario, SinkSpec};
use estafette_load::seqlog::{read_log, verify};
use estafette_load::sink::Sink;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "estafette-load",
    version,
    about = "SMTP load generator, smart sink and scenario runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load to an SMTP server and report acceptance rate and latency.
    Send(Box<SendArgs>),
    /// Run an SMTP sink that records every sequence number it receives.
    Sink(SinkArgs),
    /// Run a scenario file: sink, load, drain, report.
    Run(RunArgs),
    /// Compare a send log with a received log: lost and duplicated messages.
    Verify(VerifyArgs),
    /// Capacity model: nodes needed, outages and node loss, from measured costs and a traffic profile.
    Plan(PlanArgs),
}

#[derive(Args)]
struct LoadArgs {
    /// Concurrent sessions.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Messages to send (default 10000 unless --duration).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Or send for this long (e.g. 30s).
    #[arg(long)]
    duration: Option<String>,
    /// Messages per second over all sessions (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Measure latency from each message's due time (needs --rate).
    #[arg(long, requires = "rate")]
    open_loop: bool,
    /// Size or size mix, e.g. 10k or 1k:50,10k:40,1m:10.
    #[arg(long, default_value = "1k")]
    size: String,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: u32,
    /// Messages per connection (0: keep each connection to the end; 1: one connection per message).
    #[arg(long, default_value_t = 100)]
    per_connection: u32,
    /// Transport security.
    #[arg(long, value_enum, default_value_t = Security::None)]
    tls: Security,
    /// Trust anchors (PEM) for the target's certificate.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Accept any target certificate (benchmarks against self-signed relays).
    #[arg(long)]
    insecure: bool,
    /// Resume TLS sessions across connections (as Postfix's TLS session cache does).
    #[arg(long)]
    resume: bool,
    /// Server name for SNI and verification (default: the target's host).
    #[arg(long)]
    tls_name: Option<String>,
    /// Client certificate chain (PEM).
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client certificate key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// AUTH PLAIN credentials, user:password (needs TLS).
    #[arg(long)]
    auth: Option<String>,
    /// Do not pipeline MAIL/RCPT/DATA even when offered.
    #[arg(long)]
    no_pipelining: bool,
    /// Do not use BDAT even when CHUNKING is offered.
    #[arg(long)]
    no_chunking: bool,
    /// MAIL FROM address.
    #[arg(long, default_value = "load@estafette-load.test")]
    from: String,
    /// Recipient domain (rcpt<i>@DOMAIN).
    #[arg(long, default_value = "sink.test")]
    to_domain: String,
    /// EHLO name.
    #[arg(long, default_value = "estafette-load.test")]
    ehlo: String,
    /// Connect / TLS handshake / AUTH timeout.
    #[arg(long, default_value = "30s")]
    connect_timeout: String,
    /// Timeout for each reply.
    #[arg(long, default_value = "30s")]
    reply_timeout: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

impl LoadArgs {
    fn spec(self) -> LoadSpec {
        LoadSpec {
            sessions: self.sessions,
            messages: self.messages,
            duration: self.duration,
            rate: self.rate,
            open_loop: self.open_loop,
            size: self.size,
            recipients: self.recipients,
            per_connection: self.per_connection,
            tls: self.tls,
            tls_ca: self.tls_ca,
            insecure: self.insecure,
            resume: self.resume,
            tls_name: self.tls_name,
            client_cert: self.client_cert,
            client_key: self.client_key,
            auth: self.auth,
            pipelining: !self.no_pipelining,
            chunking: !self.no_chunking,
            from: self.from,
            to_domain: self.to_domain,
            ehlo: self.ehlo,
            connect_timeout: self.connect_timeout,
            reply_timeout: self.reply_timeout,
            threads: self.threads,
        }
    }
}

#[derive(Args)]
struct SendArgs {
    /// The SMTP server, host:port.
    #[arg(long)]
    target: String,
    #[command(flatten)]
    load: LoadArgs,
    /// The target's pid, to report its CPU per message (with its descendants).
    #[arg(long)]
    target_pid: Option<u32>,
    /// Write the send log (`<seq> <code> <recipients>` per message) here.
    #[arg(long)]
    send_log: Option<PathBuf>,
    /// Write report.json and report.html (and send.log) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SinkArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: String,
    /// none, starttls (offered) or implicit.
    #[arg(long, value_enum, default_value_t = Security::None)]
    tls: Security,
    /// Certificate chain (PEM); default: self-signed for localhost/127.0.0.1.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Its key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Reply mix in percent, e.g. 451:2,550:1,delay=200ms:5,disconnect:1 (the rest: 250);
    /// tlsdrop:10 also closes 10 % of sessions at their STARTTLS.
    #[arg(long, default_value = "")]
    reply_mix: String,
    /// Record every finished transaction (`<seq> <code> <recipients>`) here.
    #[arg(long)]
    received_log: Option<PathBuf>,
    /// Require AUTH with user:password (offered over TLS only).
    #[arg(long)]
    auth: Option<String>,
    /// Stop after this long (default: at Ctrl-C / SIGTERM).
    #[arg(long)]
    duration: Option<String>,
    /// At the end, verify against this send log (needs --received-log).
    #[arg(long, requires = "received_log")]
    verify: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The scenario (TOML); see loadtest/scenario.example.toml.
    scenario: PathBuf,
    /// Report directory (overrides the scenario's report.dir).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The sender's log.
    #[arg(long)]
    sent: PathBuf,
    /// The sink's log.
    #[arg(long)]
    received: PathBuf,
}

#[derive(Args)]
struct PlanArgs {
    /// Measured costs (written by bench/scripts/capacity.sh).
    #[arg(long)]
    costs: PathBuf,
    /// Traffic profile (TOML), e.g. bench/capacity/regional.toml.
    #[arg(long)]
    profile: PathBuf,
    /// The bench host's measurements, to show predicted and measured side by side.
    #[arg(long)]
    measured: Option<PathBuf>,
    /// Write plan.json and plan.html into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also the nodes needed for these messages per month, e.g. 300k,3m,28m,280m.
    #[arg(long, value_delimiter = ',')]
    volumes: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("estafette-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Send(a) => {
            let a = *a;
            let s = Scenario {
                name: Some("send".into()),
                target: Some(a.target),
                target_pid: a.target_pid,
                target_pidfile: None,
                load: a.load.spec(),
                sink: SinkSpec {
                    enabled: false,
                    ..SinkSpec::default()
                },
                report: ReportSpec {
                    dir: a.report,
                    send_log: a.send_log,
                    ..ReportSpec::default()
                },
            };
            let report = scenario::run(&s, a.quiet)?;
            print_report(&report, a.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(a) => {
            let mut s = Scenario::load(&a.scenario)?;
            if a.report.is_some() {
                s.report.dir = a.report;
            }
            let report = scenario::run(&s, a.quiet)?;
            print_report(&report, a.json)?;
            let clean = report.verdict.as_ref().is_none_or(|v| v.is_clean());
            Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Verify(a) => {
            let v = verify(&read_log(&a.sent)?, &read_log(&a.received)?);
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(if v.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Sink(a) => sink(a),
        Command::Plan(a) => {
            let volumes = a
                .volumes
                .iter()
                .map(|v| estafette_load::plan::parse_volume(v))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = estafette_load::plan::plan_files(&a.costs, &a.profile, a.measured.as_deref(), &volumes)?;
            print!("{}", estafette_load::plan::text::render(&plan));
            if let Some(dir) = &a.out {
                plan.write(dir)?;
                eprintln!(
                    "wrote {} and {}",
                    dir.join("plan.json").display(),
                    dir.join("plan.html").display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(report: &estafette_load::report::Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}

fn sink(a: SinkArgs) -> Result<ExitCode> {
    let spec = SinkSpec {
        enabled: true,
        listen: a.listen,
        tls: a.tls,
        cert: a.cert,
        key: a.key,
        client_ca: a.client_ca,
        reply_mix: a.reply_mix,
        auth: a.auth,
        threads: a.threads,
    };
    let duration = a.duration.as_deref().map(parse_duration).transpose()?;
    let config = scenario::sink_config(&spec, a.received_log.clone(), scenario::new_run_id())?;
    let threads = spec
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("sink-worker")
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let cpu0 = estafette_load::cpu::self_cpu()?;
    let (live, snap) = rt.block_on(async {
        let sink = Sink::start(config).await?;
        eprintln!(
            "estafette-load sink listening on {} (tls {})",
            sink.local_addr(),
            spec.tls
        );
        let live = sink.live();
        let progress = Progress::start(None, Some(live.clone()), None, a.quiet);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let wait = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        progress.finish();
        anyhow::Ok((live, sink.stop().await))
    })?;
    let cpu = estafette_load::cpu::self_cpu()?.saturating_sub(cpu0);
    let received = live.received.load(Ordering::Relaxed);
    let lat = estafette_load::report::Latency::of(&snap.e2e_latency);
    println!(
        "sink: sessions {}  transactions {}  received {}  4yz {}  5yz {}  dropped {}  unsequenced {}  tls dropped {}",
        live.sessions.load(Ordering::Relaxed),
        live.messages.load(Ordering::Relaxed),
        received,
        live.deferred.load(Ordering::Relaxed),
        live.bounced.load(Ordering::Relaxed),
        live.dropped.load(Ordering::Relaxed),
        live.unsequenced.load(Ordering::Relaxed),
        live.tls_dropped.load(Ordering::Relaxed)
    );
    println!(
        "e2e latency p50 {:.3} ms  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.p999_ms, lat.max_ms
    );
    println!(
        "sink CPU {:.2} s = {:.3} ms/msg",
        cpu.as_secs_f64(),
        if received == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1000.0 / received as f64
        }
    );
    if let (Some(sent), Some(rl)) = (a.verify, a.received_log) {
        let v = verify(&read_log(&sent)?, &read_log(&rl)?);
        println!("{}", serde_json::to_string_pretty(&v)?);
        if !v.is_clean() {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
