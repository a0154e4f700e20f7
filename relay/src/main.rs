//! `estafette`: the relay node's command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay::config::Config;
use relay::ops::client::AdminClient;
use relay::ops::dev;
use relay::ops::node::Request;
use relay::ops::queue_cli::{self, QueueCmd};
use relay::ops::reload::ReloadReport;
use relay::ops::trace_export::{self, ExportFormat};
use relay::Node;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Estafette: SMTP relay for secure health messaging (MSSanté).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Serve {
        /// Configuration file (see relay/estafette.example.toml).
        #[arg(long, short, required_unless_present = "dev")]
        config: Option<PathBuf>,
        /// Dev mode: generated certificates and config under --data, loopback ports.
        #[arg(long, conflicts_with = "config")]
        dev: bool,
        /// Data directory for dev mode.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Log as JSON lines (production) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// AUTH account tools.
    Account {
        #[command(subcommand)]
        command: AccountCmd,
    },
    /// MSSanté trust list tools.
    Trustlist {
        #[command(subcommand)]
        command: TrustlistCmd,
    },
    /// A message's trace: accepted (from whom, over which TLS), each
    /// delivery attempt's result per recipient, DSNs, removal; or, with
    /// `export`, every event in a time window. Reads the spool read-only:
    /// safe while the node runs.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Trace {
        #[command(subcommand)]
        command: Option<TraceCmd>,
        /// The queue id (`250 2.0.0 queued as ID`).
        #[arg(required = true)]
        id: Option<String>,
        #[command(flatten)]
        source: SpoolSource,
    },
    /// The cluster as this node sees it: members, links, epochs, shadows
    /// held, takeovers (asks the node's admin API).
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Drain the node (the Kubernetes preStop hook): it stops taking mail,
    /// hands its queue to peers holding copies, and exits 0. Asks the node's
    /// admin API, prints the outcome and waits until the node has stopped
    /// answering. Exit status 3: the node stopped with mail still on its
    /// volume (delivered when it starts again: keep the volume).
    Drain {
        /// The node's configuration file (its `[admin]` address and token).
        #[arg(long, short)]
        config: PathBuf,
        /// Longest wait for the node to exit, in seconds.
        #[arg(long, default_value_t = 90)]
        wait: u64,
    },
    /// Queue control: list, show, summary, hold, release, retry, bounce,
    /// delete (asks the node's admin API; changes need the write token).
    Queue {
        #[command(subcommand)]
        command: QueueCmd,
    },
    /// Reload the node's configuration file without a restart (as SIGHUP
    /// does): prints what was reloaded and what needs a restart; a bad file
    /// is refused and the running configuration stays (exit 1).
    Reload {
        /// The node's configuration file (its `[admin]` address and tokens).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The node's log filter: print it, or set it (`debug`,
    /// `info,relay::outbound=debug`) while the node runs.
    Log {
        /// The node's configuration file (its `[admin]` address and tokens).
        #[arg(long, short)]
        config: PathBuf,
        /// The new filter.
        filter: Option<String>,
    },
    /// Spool maintenance.
    Spool {
        #[command(subcommand)]
        command: SpoolCmd,
    },
    /// Test PKI tools.
    Pki {
        #[command(subcommand)]
        command: PkiCmd,
    },
    /// The operator's monthly indicators (messages by sender and recipient
    /// domain, X-MSS-NIL, X-MSS-CODECDA, X-MSS-INS, size, outcome). Reads the
    /// spool read-only: safe while the node runs.
    Stats {
        /// The month, YYYY-MM (UTC).
        #[arg(long)]
        month: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = StatsFormat::Csv)]
        format: StatsFormat,
        /// The node's configuration file (its spool is read).
        #[arg(long, short, required_unless_present = "spool")]
        config: Option<PathBuf>,
        /// The spool directory, instead of --config.
        #[arg(long, conflicts_with = "config")]
        spool: Option<PathBuf>,
    },
}

/// Where a read-only command finds the spool.
#[derive(clap::Args)]
struct SpoolSource {
    /// The node's configuration file (its spool is read).
    #[arg(long, short, required_unless_present = "spool")]
    config: Option<PathBuf>,
    /// The spool directory, instead of --config.
    #[arg(long, conflicts_with = "config")]
    spool: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TraceCmd {
    /// Every trace event in a window, oldest first, for an audit or a SIEM
    /// (see relay/src/ops/trace_export.rs for the fields).
    Export {
        /// From (inclusive): RFC 3339, a UTC date, or a duration ago (`24h`).
        /// Default: the oldest event kept.
        #[arg(long)]
        since: Option<String>,
        /// Until (exclusive), same forms. Default: now.
        #[arg(long)]
        until: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        #[command(flatten)]
        source: SpoolSource,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StatsFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Members, links, epochs, shadows, takeovers, as a table (or JSON).
    Status {
        /// The node's configuration file (its `[admin]` address and token).
        #[arg(long, short)]
        config: PathBuf,
        /// Print the JSON of `GET /api/cluster`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SpoolCmd {
    /// Repair a spool that fails to open (RocksDB's RepairDB): keeps every
    /// record it can read and sets damaged files aside in `lost/`. The node
    /// must be stopped. Then start the node: recovery reports what is still
    /// damaged.
    Repair {
        /// The spool directory (`node.spool`).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Write a test PKI shaped like IGC-Santé (RSA 2048 root, "organisations"
    /// intermediate, server and client certificates with O, OU, ST, C) and a
    /// matching trust list into DIR. For dev and tests only.
    Dev {
        /// The directory (created; existing files are overwritten).
        dir: PathBuf,
    },
    /// Write a cluster CA (separate from every SMTP certificate) and, per
    /// member NAME, NAME.pem/NAME.key for the replication port.
    Cluster {
        /// The directory.
        dir: PathBuf,
        /// Member names (`estafette-0 estafette-1 ...`).
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TrustlistCmd {
    /// Parse a trust list file as the relay would load it; print a summary and
    /// the entries it would skip. Exit status 1 if the relay would refuse the
    /// list (or, with --strict, if any entry would be skipped).
    Check {
        /// The list (ANS's XML file).
        file: PathBuf,
        /// ANS's SHA-256 checksum file to verify the list against.
        #[arg(long)]
        checksum: Option<PathBuf>,
        /// Also fail when entries would be skipped.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Read a password on standard input, print its argon2 hash for the
    /// identities file (`password = "..."`).
    Hash,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Load and validate a configuration file, print what is wrong.
    Check {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Config {
            command: ConfigCmd::Check { file },
        } => {
            // A bad file exits 2 (usage-style error), with the file, the key and
            // the problem named once.
            match Config::load(&file) {
                Ok(config) => {
                    for w in config.warnings() {
                        eprintln!("warning: {w}");
                    }
                    if !config.overrides.is_empty() {
                        eprintln!("from the environment: {}", config.overrides.join(", "));
                    }
                    println!("{}: OK", file.display());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(2);
                }
            }
        }
        Cmd::Trustlist {
            command: TrustlistCmd::Check { file, checksum, strict },
        } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let expected = match checksum {
                Some(path) => {
                    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let digest = relay::trust::fetch::parse_checksum(&text);
                    Some(digest.with_context(|| format!("{}: not a SHA-256 checksum file", path.display()))?)
                }
                None => None,
            };
            let report = relay::trust::check::check(&file.display().to_string(), &bytes, expected.as_deref());
            print!("{}", report.text);
            if !report.loadable || (strict && report.problems > 0) {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Cluster {
            command: ClusterCmd::Status { config, json },
        } => {
            let body = AdminClient::from_config(&config, "")?
                .get("/api/cluster")?
                .ok("/api/cluster")?;
            if json {
                println!("{body}");
                return Ok(());
            }
            let s: serde_json::Value = serde_json::from_str(&body).context("reading /api/cluster")?;
            relay::ops::client::print_cluster_status(&s);
            Ok(())
        }
        Cmd::Reload { config } => {
            let client = AdminClient::from_config(&config, &std::env::var("USER").unwrap_or_default())?;
            let answer = client.write("/api/reload", &serde_json::json!({}))?;
            println!("{}", answer.ok("/api/reload")?);
            Ok(())
        }
        Cmd::Log { config, filter } => {
            let client = AdminClient::from_config(&config, &std::env::var("USER").unwrap_or_default())?;
            let answer = match filter {
                Some(f) => client.put_text("/api/log", &f)?,
                None => client.get("/api/log")?,
            };
            println!("{}", answer.ok("/api/log")?);
            Ok(())
        }
        Cmd::Queue { command } => {
            let code = queue_cli::run(command)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Cmd::Drain { config, wait } => {
            let code = relay::ops::client::drain(&config, std::time::Duration::from_secs(wait))?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Cmd::Spool {
            command: SpoolCmd::Repair { dir },
        } => {
            anyhow::ensure!(
                dir.join("CURRENT").exists(),
                "{}: no spool here (no CURRENT file)",
                dir.display()
            );
            storage::Spool::repair(&dir).with_context(|| format!("repairing {}", dir.display()))?;
            println!("{}: repaired; start the node to recover its queue", dir.display());
            Ok(())
        }
        Cmd::Pki {
            command: PkiCmd::Cluster { dir, names },
        } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            relay::ops::cluster_pki::write_cluster(&dir, &names)?;
            println!(
                "{}: ca.pem and NAME.pem/NAME.key for {}",
                dir.display(),
                names.join(", ")
            );
            Ok(())
        }
        Cmd::Pki {
            command: PkiCmd::Dev { dir },
        } => {
            relay::ops::pki::write_dev(&dir, &relay::ops::pki::dev_operators())?;
            println!(
                "{}: ca.pem (root), server.pem/.key, sink.pem/.key (operators), client.pem/.key \
                 (an establishment's application), trustlist.xml",
                dir.display()
            );
            Ok(())
        }
        Cmd::Trace {
            command:
                Some(TraceCmd::Export {
                    since,
                    until,
                    format,
                    source,
                }),
            ..
        } => {
            let spool = spool_dir(source.spool, source.config)?;
            let now = chrono::Utc::now();
            let since = since.map(|t| trace_export::parse_time(&t, now)).transpose()?;
            let until = until.map(|t| trace_export::parse_time(&t, now)).transpose()?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = trace_export::export(&spool, since.unwrap_or(0), until.unwrap_or(u64::MAX), format, &mut out)?;
            eprintln!("{n} events");
            Ok(())
        }
        Cmd::Trace { id, source, .. } => {
            let spool = spool_dir(source.spool, source.config)?;
            let id = id.context("a queue id is needed")?;
            let id: storage::MessageId = id.parse().map_err(|e| anyhow::anyhow!("{id}: not a queue id: {e}"))?;
            let events = storage::read_events(&spool, id)?;
            anyhow::ensure!(!events.is_empty(), "{id}: no trace in {}", spool.display());
            for e in events {
                match e {
                    Ok(e) => {
                        let at = chrono::DateTime::from_timestamp_millis(i64::try_from(e.at_ms).unwrap_or(0))
                            .unwrap_or_default()
                            .format("%Y-%m-%dT%H:%M:%S%.3fZ");
                        println!("{at} {:?} {}", e.kind, e.detail);
                    }
                    Err(e) => println!("(damaged event: {e})"),
                }
            }
            Ok(())
        }
        Cmd::Stats {
            month,
            format,
            config,
            spool,
        } => {
            let spool = spool_dir(spool, config)?;
            let counters = storage::read_stats(&spool, &month)?;
            match format {
                StatsFormat::Csv => print!("{}", relay::trust::indicators::to_csv(&month, &counters)),
                StatsFormat::Json => println!("{}", relay::trust::indicators::to_json(&month, &counters)),
            }
            Ok(())
        }
        Cmd::Account {
            command: AccountCmd::Hash,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "empty password");
            let hash = relay::inbound::identity::hash_password(password)
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
            println!("{hash}");
            Ok(())
        }
        Cmd::Serve {
            config,
            dev,
            data,
            json,
        } => {
            relay::ops::logging::init(json);
            let _ = rustls::crypto::ring::default_provider().install_default();
            let path = match (config, dev) {
                (Some(p), _) => p,
                (None, _) => dev::prepare(&data).context("preparing dev mode")?,
            };
            let config = Config::load(&path)?;
            if !config.overrides.is_empty() {
                tracing::info!(file = %path.display(), keys = ?config.overrides, "settings from the environment");
            }
            let runtime = tokio::runtime::Runtime::new()?;
            let mut restart = false;
            runtime.block_on(async {
                if dev {
                    let addr = ([127, 0, 0, 1], dev::DEV_SINK_PORT).into();
                    relay::ops::sink::spawn(addr, data.join("sink"))
                        .await
                        .context("starting the dev sink")?;
                }
                let node = Node::start(config).await?;
                if dev {
                    println!("{}", dev::banner(&data));
                    if let Some(admin) = node.admin_addr() {
                        println!(
                            "Admin: http://{admin}/dashboard, http://{admin}/metrics (also /healthz, \
                             /readyz, /api/queue, /api/trace/ID, /api/trustlist); \
                             estafette queue summary -c {}",
                            path.display()
                        );
                    }
                }
                let mut node = node;
                let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .context("installing the SIGHUP handler")?;
                let stop = wait_for_signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        () = &mut stop => break,
                        _ = hangup.recv() => {
                            tracing::info!("SIGHUP: reloading {}", path.display());
                            let _ = reload(&node, &path).await;
                        }
                        request = node.requested() => match request {
                            Request::Drain(reply) => {
                                tracing::info!("drain requested");
                                let outcome = node.drain().await;
                                tracing::info!(
                                    handed_over = outcome.handed_over,
                                    left = outcome.left,
                                    secs = outcome.secs,
                                    "drain over"
                                );
                                let _ = reply.send(outcome);
                                break;
                            }
                            Request::Reload(reply) => {
                                let _ = reply.send(reload(&node, &path).await);
                            }
                            Request::Restart => {
                                tracing::error!(
                                    "the spool is stuck read-only: shutting down, exit status {EXIT_RESTART} \
                                     (the supervisor starts the node again and the spool is reopened)"
                                );
                                restart = true;
                                break;
                            }
                        },
                    }
                }
                tracing::info!("shutting down");
                node.shutdown().await;
                anyhow::Ok(())
            })?;
            if restart {
                std::process::exit(EXIT_RESTART);
            }
            Ok(())
        }
    }
}

/// `estafette serve`'s exit status when the node must be started again (a
/// spool stuck read-only): EX_TEMPFAIL.
const EXIT_RESTART: i32 = 75;

/// Reads `path` again and reloads what can change without a restart; a bad
/// file is refused as a whole (logged, and returned for the API's caller).
async fn reload(node: &Node, path: &std::path::Path) -> Result<ReloadReport, String> {
    let result = match Config::load(path) {
        Ok(config) => node.reload(config).await.map_err(|e| format!("{e:#}")),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &result {
        tracing::error!(file = %path.display(), error = %e, "reload refused: the running configuration stays");
    }
    result
}

/// The spool directory from `--spool`, or from the config file's `node.spool`.
fn spool_dir(spool: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match (spool, config) {
        (Some(s), _) => Ok(s),
        (None, Some(c)) => Ok(Config::load(&c)?.node.spool),
        (None, None) => anyhow::bail!("--config or --spool is needed"),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
