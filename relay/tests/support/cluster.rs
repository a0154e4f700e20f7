//! A cluster of real `estafette` processes on 127.0.0.1 (QUIC between them,
//! mutual TLS from a cluster CA), and the clients that send through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::peers::free_port;

/// One node process; killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub config: PathBuf,
    pub smtp: u16,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(config: &Path, smtp: u16, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_estafette"))
            .args(["serve", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("ESTAFETTE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("estafette starts");
        Self {
            child: Some(child),
            config: config.to_path_buf(),
            smtp,
            log,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        *self = Self::start(&self.config.clone(), self.smtp, self.log.clone());
    }

    /// Sends `sig` (`-STOP`, `-CONT`) to the running process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().map(Child::id).expect("running");
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Proc>,
    /// Each node's QUIC (UDP) port.
    pub quic: Vec<u16>,
}

/// `n` nodes, `min_copies` copies, mail for `clinique.test` to `sink_port`.
pub fn cluster(n: usize, min_copies: usize, takeover_secs: u64, sink_port: u16) -> Cluster {
    cluster_with(n, min_copies, takeover_secs, sink_port, "")
}

/// [`cluster`] with `extra` in every node's configuration, right after the
/// `[cluster]` keys: more of them, then whole tables (`[limits]`).
pub fn cluster_with(n: usize, min_copies: usize, takeover_secs: u64, sink_port: u16, extra: &str) -> Cluster {
    cluster_full(n, min_copies, takeover_secs, sink_port, "", extra)
}

/// [`cluster_with`] with `outbound` added to the `[outbound]` keys.
pub fn cluster_full(
    n: usize,
    min_copies: usize,
    takeover_secs: u64,
    sink_port: u16,
    outbound: &str,
    extra: &str,
) -> Cluster {
    cluster_each(n, min_copies, takeover_secs, sink_port, outbound, &|_| {
        extra.to_string()
    })
}

/// [`cluster_full`] with node `i`'s extra `[cluster]` keys from `extra(i)`.
pub fn cluster_each(
    n: usize,
    min_copies: usize,
    takeover_secs: u64,
    sink_port: u16,
    outbound: &str,
    extra: &dyn Fn(usize) -> String,
) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..n).map(|i| format!("estafette-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    relay::ops::cluster_pki::write_cluster(&dir.path().join("cluster"), &refs).expect("cluster pki");
    let quic: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let smtp: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let admin: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let members: String = (0..n)
        .map(|i| {
            format!(
                "[[cluster.member]]\nname = \"{}\"\nid = {i}\naddress = \"127.0.0.1:{}\"\n\n",
                names[i], quic[i]
            )
        })
        .collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let toml = format!(
            r#"
[node]
hostname = "node{i}.test"
node_id = {i}
spool = "spool-{i}"
accept_timeout_secs = 10

[[listener]]
name = "plain"
address = "127.0.0.1:{smtp}"
tls = "none"

[[route]]
domain = "clinique.test"
host = "127.0.0.1:{sink_port}"
tls = "none"

[admin]
address = "127.0.0.1:{admin}"

[outbound]
retry_first_secs = 1
retry_cap_secs = 1
retry_jitter = 0.0
poll_ms = 100
handoff_grace_secs = 2
# The destination is down on purpose for a while: never park it.
circuit_threshold = 1000000
{outbound}

[cluster]
name = "{name}"
listen = "127.0.0.1:{quic}"
min_copies = {min_copies}
takeover_after_secs = {takeover_secs}
accept_deadline_ms = 3000
restart_wait_secs = 2
ca = "cluster/ca.pem"
cert = "cluster/{name}.pem"
key = "cluster/{name}.key"
{extra}

{members}"#,
            smtp = smtp[i],
            admin = admin[i],
            name = names[i],
            quic = quic[i],
            extra = extra(i),
        );
        let path = dir.path().join(format!("node{i}.toml"));
        std::fs::write(&path, toml).expect("config");
        nodes.push(Proc::start(&path, smtp[i], dir.path().join(format!("node{i}.log"))));
    }
    Cluster { dir, nodes, quic }
}

/// Sends one message numbered `seq` to `port`; the final reply code of the
/// transaction (250 accepted, 451 refused, 0 no connection).
pub async fn send(port: u16, seq: usize) -> u16 {
    send_to(port, seq, "dr@clinique.test").await
}

/// [`send`] to `rcpt`.
pub async fn send_to(port: u16, seq: usize, rcpt: &str) -> u16 {
    let script = r#"
import smtplib, sys
port, seq, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    s = smtplib.SMTP('127.0.0.1', port, timeout=20)
except OSError:
    print(0); sys.exit(0)
try:
    s.ehlo('dpi.test')
    code, _ = s.mail('app@ch.test')
    if code != 250:
        print(code); sys.exit(0)
    code, _ = s.rcpt(rcpt)
    if code != 250:
        print(code); sys.exit(0)
    code, _ = s.data(('Subject: seq %s\r\nX-Seq: %s\r\n\r\nbody\r\n' % (seq, seq)).encode())
    print(code)
    s.quit()
except smtplib.SMTPException as e:
    print(getattr(e, 'smtp_code', 1))
"#;
    let rcpt = rcpt.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", script, &port.to_string(), &seq.to_string(), &rcpt])
            .output()
            .expect("python3")
    })
    .await
    .expect("join");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(1)
}

/// Sends the messages numbered `seqs` one after the other; those that got 250.
pub async fn send_batch(port: u16, seqs: std::ops::Range<usize>) -> Vec<usize> {
    let mut acked = Vec::new();
    for seq in seqs {
        if send(port, seq).await == 250 {
            acked.push(seq);
        }
    }
    acked
}

/// [`cluster`] with node 0 accepting and messages `1..count` sent to it
/// (message 0 proved it accepts): the cluster, and the sequence numbers
/// that got 250.
pub async fn cluster_with_mail(
    n: usize,
    min_copies: usize,
    takeover_secs: u64,
    sink_port: u16,
    count: usize,
) -> (Cluster, Vec<usize>) {
    cluster_with_mail_and(n, min_copies, takeover_secs, sink_port, count, "").await
}

/// [`cluster_with_mail`] with `extra` in each node's `[cluster]` (as
/// [`cluster_with`]).
pub async fn cluster_with_mail_and(
    n: usize,
    min_copies: usize,
    takeover_secs: u64,
    sink_port: u16,
    count: usize,
    extra: &str,
) -> (Cluster, Vec<usize>) {
    let c = cluster_with(n, min_copies, takeover_secs, sink_port, extra);
    assert!(until_accepting(c.nodes[0].smtp, 0, 30).await, "{}", c.nodes[0].log());
    let mut acked = vec![0];
    acked.extend(send_batch(c.nodes[0].smtp, 1..count).await);
    (c, acked)
}

/// Shadow copies the node with config `config` holds for member `origin`.
pub fn shadows_held(config: &Path, origin: &str) -> u64 {
    cluster_status(config)["shadows_by_origin"][origin]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `port` accepts a message (the cluster links are up).
pub async fn until_accepting(port: u16, seq: usize, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if send(port, seq).await == 250 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

/// The `X-Seq` of every message the sink received, with how often.
pub fn seqs(peer: &super::peers::Peer) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for f in peer.files() {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Seq: "))
            .and_then(|v| v.trim().parse().ok())
        {
            *seen.entry(v).or_insert(0) += 1;
        }
    }
    seen
}

/// Waits up to `secs` until `sink` holds every sequence number in `acked`;
/// what it received then (sequence number, deliveries). Fails naming the
/// missing ones, `what` happened before, and the logs of `nodes`.
pub async fn until_delivered(
    sink: &super::peers::Peer,
    acked: &[usize],
    secs: u64,
    what: &str,
    nodes: &[&Proc],
) -> HashMap<usize, usize> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = seqs(sink);
        if acked.iter().all(|s| got.contains_key(s)) {
            return got;
        }
        if Instant::now() >= deadline {
            let logs: String = nodes
                .iter()
                .map(|n| format!("\n{}:\n{}", n.log.display(), n.log()))
                .collect();
            panic!(
                "not delivered {what}: {:?}{logs}",
                acked.iter().filter(|s| !got.contains_key(s)).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deliveries beyond the first, in what [`until_delivered`] returned.
pub fn duplicates(got: &HashMap<usize, usize>) -> usize {
    got.values().map(|n| n - 1).sum()
}

/// The node's `/metrics` text.
pub fn exposition(config: &Path) -> String {
    admin_get(config, "/metrics")
}

/// `GET path` on the admin port of the node with config `config`: the
/// whole HTTP/1.0 response.
pub fn admin_get(config: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let admin = relay::config::Config::load(config)
        .expect("config")
        .admin
        .expect("[admin]");
    let mut http = std::net::TcpStream::connect(admin.address).expect("admin listener");
    http.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .expect("request");
    let mut text = String::new();
    http.read_to_string(&mut text).expect("response");
    text
}

/// One sample of the node's `/metrics`.
pub fn metric(config: &Path, name: &str) -> f64 {
    let text = exposition(config);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// `estafette cluster status --json` of the node with config `config`.
pub fn cluster_status(config: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_estafette"))
        .args(["cluster", "status", "--json", "--config"])
        .arg(config)
        .output()
        .expect("estafette cluster status");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
