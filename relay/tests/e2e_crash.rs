//! kill -9 of a real `estafette` process while clients send and deliveries run;
//! after a restart every message that got `250` reaches the downstream server.
//! Duplicates are allowed only for messages in flight at the kill; counted.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::peers::{aiosmtpd, free_port, PyTls};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path, port: u16) -> Node {
    let child = Command::new(env!("CARGO_BIN_EXE_estafette"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("estafette starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Node(child)
}

const SENDER: &str = r#"
import smtplib, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
seq = 0
tries = 0
while seq < n:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            for _ in range(5):
                if seq >= n:
                    break
                msg = "From: app@ch.mssante.test\r\nTo: dr@clinique.test\r\nX-Seq: %d\r\nSubject: %d\r\n\r\n%s" % (seq, seq, ("x" * 76 + "\r\n") * 26)
                s.sendmail("app@ch.mssante.test", ["dr@clinique.test"], msg)
                print("ok", seq, flush=True)
                seq += 1
    except Exception as e:
        # Like an MTA: retry the same message (a few times) once the node is back.
        print("err", seq, type(e).__name__, flush=True)
        tries += 1
        if tries > 100:
            tries = 0
            seq += 1
        time.sleep(0.1)
"#;

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let peer = aiosmtpd(PyTls::None);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("estafette.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
hostname = "relay.test"
node_id = 3
spool = "spool"

[[listener]]
name = "plain"
address = "127.0.0.1:{port}"
tls = "none"

[[route]]
domain = "clinique.test"
host = "{addr}"
tls = "none"

[outbound]
retry_first_secs = 1
retry_cap_secs = 1
retry_jitter = 0.0
poll_ms = 100
"#,
            addr = peer.addr
        ),
    )
    .expect("config");

    let mut node = start(&config, port);
    let total = 200;
    let mut sender = Command::new("/usr/bin/python3")
        .args(["-c", SENDER, &port.to_string(), &total.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let out = BufReader::new(sender.stdout.take().expect("stdout"));
    let mut acked = BTreeSet::new();
    let mut killed = false;
    let mut transcript = Vec::new();
    for line in out.lines() {
        let line = line.expect("line");
        transcript.push(line.clone());
        let mut words = line.split_whitespace();
        if words.next() == Some("ok") {
            acked.insert(words.next().and_then(|w| w.parse::<u32>().ok()).expect("seq"));
        }
        if !killed && acked.len() >= total as usize / 2 {
            // SIGKILL: no shutdown, no flush.
            node.0.kill().expect("kill -9");
            node.0.wait().expect("reaped");
            killed = true;
            // Restart at once: clients that were refused meanwhile retry.
            node = start(&config, port);
        }
    }
    let _ = sender.wait();
    assert!(
        killed,
        "the node was killed mid-stream: {:?}",
        &transcript[..transcript.len().min(5)]
    );
    assert!(acked.len() > total as usize / 2, "sending went on after the restart");

    // Wait for every acknowledged message downstream.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counts: HashMap<u32, u32> = HashMap::new();
    loop {
        counts.clear();
        for f in peer.files() {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if let Some(seq) = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Seq: "))
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                *counts.entry(seq).or_default() += 1;
            }
        }
        if acked.iter().all(|s| counts.contains_key(s)) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lost: Vec<u32> = acked.iter().copied().filter(|s| !counts.contains_key(s)).collect();
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    println!(
        "acknowledged {}, delivered {} distinct, duplicates {duplicates}, lost {}",
        acked.len(),
        counts.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but never delivered: {lost:?}");
    // Only messages in flight at the kill can be delivered twice: at most the
    // in-flight limit, in practice a handful.
    assert!(duplicates <= 256, "{duplicates} duplicates");
    drop(node);
}
