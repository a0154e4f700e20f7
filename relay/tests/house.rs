//! What the node had written but never started, each checked on a real node
//! with real peers: the outbound idle reaper and QUIT at shutdown, trace
//! retention, the look-ahead scan that must not retry deferred mail early,
//! the phased shutdown (listeners drain while the queue delivers), the full
//! spool refused at MAIL FROM, and `estafette spool repair`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::node::{run, start_node_full, start_node_with, Extra, TestNode};
use support::peers::{aiosmtpd, Peer, PyTls};

/// A node routing `clinique.test` to `peer` in clear, retrying after 1 s.
async fn node_to(peer: &Peer, retry_secs: u64, outbound: &str, node: &str) -> TestNode {
    let tail = format!(
        r#"
[[route]]
domain = "clinique.test"
host = "{addr}"
tls = "none"

[outbound]
retry_first_secs = {retry_secs}
retry_cap_secs = {retry_secs}
retry_jitter = 0.0
poll_ms = 100
{outbound}
"#,
        addr = peer.addr
    );
    start_node_full(Extra {
        node,
        tail: &tail,
        ..Extra::default()
    })
    .await
}

/// Sends one message over the plain listener with Python's smtplib; returns
/// the queue id.
async fn send(t: &TestNode, to: &str) -> String {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('dpi.test')
code, reply = s.mail('app@ch.mssante.test')[0], None
r = s.rcpt(sys.argv[2])
assert r[0] == 250, r
code, reply = s.data(b'Subject: house\r\n\r\nbody\r\n')
assert code == 250, (code, reply)
print(reply.decode())
s.quit()
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &t.port("plain").to_string(), to]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    support::node::queued_id(&out).unwrap_or_else(|| panic!("no queue id in {out}"))
}

async fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_outbound_connections_are_reaped_then_closed_at_shutdown() {
    // Reaper: idle connections older than idle_timeout_secs get QUIT.
    let peer = aiosmtpd(PyTls::None);
    let t = node_to(&peer, 1, "idle_timeout_secs = 1", "").await;
    let before = peer.quits();
    send(&t, "dr@clinique.test").await;
    tokio::task::block_in_place(|| peer.received(1));
    wait_until("the reaper's QUIT", 15, || peer.quits() > before).await;
    t.node.shutdown().await;

    // Shutdown: a connection that would stay idle for an hour gets QUIT when
    // the node stops.
    let peer = aiosmtpd(PyTls::None);
    let t = node_to(&peer, 1, "idle_timeout_secs = 3600", "").await;
    let before = peer.quits();
    send(&t, "dr@clinique.test").await;
    tokio::task::block_in_place(|| peer.received(1));
    // Delivered and the connection parked idle: the reaper must not close it.
    assert_eq!(peer.quits(), before, "closed before shutdown");
    t.node.shutdown().await;
    wait_until("QUIT at shutdown", 10, || peer.quits() > before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_events_older_than_the_retention_are_swept() {
    let peer = aiosmtpd(PyTls::None);
    let t = node_to(&peer, 1, "", "trace_retention_days = 1\ntrace_sweep_secs = 1").await;
    let id: storage::MessageId = send(&t, "dr@clinique.test").await.parse().expect("id");
    // An event from three days ago on another message id, as a node that ran
    // long ago would have left.
    let old_id = t.node.spool.next_id();
    let three_days_ago = storage::now_ms() - 3 * 86_400_000;
    t.node
        .spool
        .record_event(
            old_id,
            &storage::Event {
                at_ms: three_days_ago,
                kind: storage::EventKind::Accepted,
                detail: "old".into(),
            },
        )
        .expect("event");
    // Written (trace events are detached writes; the sync covers them), so
    // that its disappearance below can only be the sweep's doing.
    t.node.spool.sync().await.expect("sync");
    wait_until("the sweep", 15, || {
        t.node.spool.events(old_id).is_ok_and(|e| e.is_empty())
    })
    .await;
    // Today's trace stays.
    assert!(
        !t.node.spool.events(id).expect("read").is_empty(),
        "a fresh trace was swept"
    );
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_look_ahead_scan_does_not_retry_deferred_mail_early() {
    // A spool with one deferred message (next attempt in a minute) and one
    // never tried (dated ahead by the hand-off grace), as a restart finds it.
    let peer = aiosmtpd(PyTls::None);
    let t = node_to(&peer, 60, "", "").await;
    let deferred: storage::MessageId = send(&t, "defer@clinique.test").await.parse().expect("id");
    wait_until("the first attempt", 15, || {
        t.node
            .spool
            .envelope(deferred)
            .ok()
            .flatten()
            .is_some_and(|e| e.recipients[0].attempts == 1)
    })
    .await;
    let spool_dir = t.node.spool.config().path.clone();
    let dir = t.dir;
    t.node.shutdown().await;
    // Before the restart, a message accepted but never tried (a node killed
    // right after its 250): dated ahead by the hand-off grace, as the node
    // dates them.
    let fresh = {
        let (spool, guard) = storage::Spool::open(storage::SpoolConfig {
            path: spool_dir.clone(),
            node_id: 7,
            ..storage::SpoolConfig::default()
        })
        .expect("open spool");
        let fresh = spool.next_id();
        let now = storage::now_ms();
        let env = storage::Envelope {
            sender: "app@ch.mssante.test".into(),
            recipients: vec![storage::Recipient {
                address: "dr@clinique.test".into(),
                next_hop: "clinique.test".into(),
                next_attempt_ms: now + 300_000,
                ..storage::Recipient::default()
            }],
            received_at_ms: now,
            ..storage::Envelope::default()
        };
        spool
            .accept_as(fresh, env, b"Subject: fresh\r\n\r\nx\r\n".to_vec())
            .await
            .expect("accept");
        drop(guard);
        fresh
    };
    let config = relay::config::Config::load(&dir.path().join("estafette.toml")).expect("config");
    assert_eq!(config.node.spool, spool_dir);
    let node = relay::Node::start(config).await.expect("restart");
    // The look-ahead scan ran: the never-tried message is delivered.
    tokio::task::block_in_place(|| peer.received(1));
    wait_until("the fresh message to leave the spool", 15, || {
        node.spool.envelope(fresh).ok().flatten().is_none()
    })
    .await;
    // ...and it did not start the deferred one, which is due in a minute.
    let env = node.spool.envelope(deferred).expect("read").expect("still queued");
    assert_eq!(env.recipients[0].attempts, 1, "deferred message retried early");
    assert_eq!(
        node.queue().attempts_started(),
        1,
        "only the never-tried message started"
    );
    node.shutdown().await;
}

/// The SMTP greeting of `port`, or the connection error.
fn greeting(port: u16) -> std::io::Result<String> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let _ = (&s).write_all(b"QUIT\r\n");
    Ok(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_stops_the_listeners_while_the_queue_keeps_delivering() {
    // The destination is down at first: the message waits deferred.
    let port = support::peers::free_port();
    let down = format!("127.0.0.1:{port}");
    let tail = format!(
        "[[route]]\ndomain = \"clinique.test\"\nhost = \"{down}\"\ntls = \"none\"\n\n[outbound]\nretry_first_secs = 1\nretry_cap_secs = 1\nretry_jitter = 0.0\npoll_ms = 100\n"
    );
    let mut t = start_node_with("", "", &tail).await;
    let smtp = t.port("plain");
    assert!(greeting(smtp).expect("greeting").starts_with("220"));
    let id: storage::MessageId = send(&t, "dr@clinique.test").await.parse().expect("id");
    wait_until("a deferred attempt", 15, || {
        t.node
            .spool
            .envelope(id)
            .ok()
            .flatten()
            .is_some_and(|e| e.recipients[0].attempts >= 1)
    })
    .await;
    t.node.drain_listeners().await;
    assert_eq!(t.node.phase(), relay::lifecycle::Phase::Draining);
    assert!(greeting(smtp).is_err(), "a draining node still accepts connections");
    // The destination comes back: the draining node still delivers.
    let peer = support::peers::aiosmtpd_on(PyTls::None, port);
    let got = tokio::task::block_in_place(|| peer.received(1));
    assert_eq!(got.len(), 1, "queued mail delivered while draining");
    wait_until("the spool to empty", 15, || {
        t.node.spool.envelope(id).ok().flatten().is_none()
    })
    .await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_repair_command_repairs_a_stopped_spool() {
    let t = start_node_with("", "", "").await;
    let spool = t.node.spool.config().path.clone();
    let id = send(&t, "dr@cabinet.test").await;
    let dir = t.dir;
    t.node.shutdown().await;
    let bin = env!("CARGO_BIN_EXE_estafette");
    let mut cmd = Command::new(bin);
    cmd.args(["spool", "repair", &spool.display().to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    assert!(out.contains("repaired"), "{out}");
    // The message survived the repair.
    let config = relay::config::Config::load(&dir.path().join("estafette.toml")).expect("config");
    let node = relay::Node::start(config).await.expect("start after repair");
    let id: storage::MessageId = id.parse().expect("id");
    assert!(
        node.spool.envelope(id).expect("read").is_some(),
        "message lost by the repair"
    );
    node.shutdown().await;
    // Not a spool: a clear error, not a panic.
    let mut cmd = Command::new(bin);
    cmd.args(["spool", "repair", "/nonexistent/spool"]);
    let (ok, out) = run(cmd).await;
    assert!(!ok);
    assert!(out.contains("no spool here"), "{out}");
}
