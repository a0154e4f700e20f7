//! Real nodes on 127.0.0.1 ephemeral ports with a generated PKI in a
//! temporary directory, and the command-line clients that talk to them
//! (swaks, Python's smtplib, the `estafette` binary), run off the runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

use relay::config::Config;
use relay::Node;

pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.node.addr(listener).expect("listener").port()
    }
}

/// A node with listeners `plain` (no TLS), `mta` (STARTTLS, client cert
/// optional) and `smtps` (implicit TLS, client cert optional); `extra` is
/// appended to the TOML (more `[limits]`, routes…).
pub async fn start_node(limits: &str, listener_extra: &str) -> TestNode {
    start_node_with(limits, listener_extra, "").await
}

/// [`start_node`] with more TOML appended at the end (`[outbound]`, routes).
pub async fn start_node_with(limits: &str, listener_extra: &str, tail: &str) -> TestNode {
    start_node_full(Extra {
        limits,
        plain: listener_extra,
        tail,
        ..Extra::default()
    })
    .await
}

/// TOML lines added to each part of the test node's config.
#[derive(Default)]
pub struct Extra<'a> {
    pub node: &'a str,
    pub plain: &'a str,
    pub mta: &'a str,
    pub limits: &'a str,
    pub tail: &'a str,
}

/// A test node with `extra` lines in each section.
pub async fn start_node_full(extra: Extra<'_>) -> TestNode {
    let Extra {
        node: node_extra,
        plain: listener_extra,
        mta: mta_extra,
        limits,
        tail,
    } = extra;
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Node logs appear with a failing test's output (RUST_LOG overrides).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    relay::ops::dev::ensure_pki(&dir.path().join("pki")).expect("pki");
    let toml = format!(
        r#"
[node]
hostname = "relay.test"
node_id = 7
spool = "spool"
accept_timeout_secs = 10
{node_extra}

[tls]
cert = "pki/server.pem"
key = "pki/server.key"
client_ca = "pki/ca.pem"
reload_secs = 1

[[listener]]
name = "plain"
address = "127.0.0.1:0"
tls = "none"
{listener_extra}

[[listener]]
name = "mta"
address = "127.0.0.1:0"
tls = "starttls"
client_cert = "optional"
{mta_extra}

[[listener]]
name = "smtps"
address = "127.0.0.1:0"
tls = "implicit"
client_cert = "optional"

[limits]
{limits}

# Accepted at RCPT, never delivered: a dead port keeps messages deferred
# in the spool (a route without host would mean MX lookup in real DNS).
[[route]]
domain = "cabinet.test"
host = "127.0.0.1:1"
tls = "none"

[[route]]
domain = ".mssante.test"
host = "127.0.0.1:1"
tls = "none"

{tail}
"#
    );
    let path = dir.path().join("estafette.toml");
    std::fs::write(&path, toml).expect("write config");
    let config = Config::load(&path).expect("config");
    let node = Node::start(config).await.expect("node starts");
    TestNode { node, dir }
}

/// Runs a command to completion off the async runtime; returns (status ok, stdout+stderr).
pub async fn run(mut cmd: Command) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("command runs (is it installed? scripts/deps installs it)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The queue id from a `250 2.0.0 queued as ID` line in a transcript.
pub fn queued_id(transcript: &str) -> Option<String> {
    let at = transcript.find("queued as ")? + "queued as ".len();
    Some(
        transcript[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect(),
    )
}

pub fn file(p: &Path) -> String {
    p.display().to_string()
}

/// The node's counters as `/metrics` writes them (no scrape-time values).
pub fn counters(node: &Node) -> String {
    relay::metrics::Metrics::encode(
        node.metrics(),
        &relay::metrics::Snapshot::default(),
        relay::metrics::Format::PrometheusText,
    )
    .expect("metrics")
}

/// The sum of the samples on the exposition's lines that start with
/// `prefix` and contain every one of `labels`.
pub fn metric_sum(exposition: &str, prefix: &str, labels: &[&str]) -> u64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
