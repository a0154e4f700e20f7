//! Large messages in a cluster of two real `estafette` processes
//! (`min_copies = 2`, QUIC with mutual TLS): the copy of a 100 MB message
//! travels to the peer in 1 MiB frames read back from the origin's spool
//! piece by piece and is written to the peer's spool as it arrives, so that
//! neither node holds it whole (peak resident memory bounded on both). The
//! origin is then killed; the peer takes the copies over and delivers them to
//! Postfix's smtp-sink, compared byte for byte with what the client sent.
//!
//! Three nodes: a large message taken over is copied again piece by piece,
//! and delivered whole by the third node after the first two died.
//!
//! And the peer killed in the middle of a copy: the client gets 451, and the
//! restarted peer deletes the pieces it had written (no orphan).
//!
//! Sizes can be lowered for a quick run: `ESTAFETTE_LARGE_MB` (default 100)
//! and `ESTAFETTE_CLUSTER_LARGE_N` (messages sent at once, default 4).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::{cluster_status, cluster_with, exposition, until_accepting, Cluster};
use support::large::{assert_whole, bulk, dir_bytes, env_or, CLIENT};
use support::peers::{free_port, smtp_sink_on};
use support::raw::vm_kib;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_stream_in_pieces_and_are_delivered_whole_after_a_takeover() {
    let mb = env_or("ESTAFETTE_LARGE_MB", 100);
    let n = env_or("ESTAFETTE_CLUSTER_LARGE_N", 4);
    // The destination is down until the origin is gone: the copies wait.
    // Takeover after 10 s: the uploads load both cores for a while.
    let (mut c, sink_port) = two_nodes(10).await;
    let pids: Vec<u32> = c.nodes.iter().map(|p| p.child.as_ref().expect("child").id()).collect();
    let idle: Vec<u64> = pids.iter().map(|&p| vm_kib(p, "VmRSS")).collect();

    let bulk = bulk(mb);
    let path = c.dir.path().join("bulk.eml");
    std::fs::write(&path, &bulk).expect("bulk file");
    let port = c.nodes[0].smtp;
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| send_large(port, n, &path));
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    let accepted = replies.lines().filter(|l| l.starts_with("250 ")).count();
    assert_eq!(
        accepted,
        n,
        "every message acknowledged with its copy:\n{replies}\nnode0:\n{}\nnode1:\n{}",
        c.nodes[0].log(),
        c.nodes[1].log()
    );
    let accept_secs = started.elapsed().as_secs_f64();
    let peaks: Vec<u64> = pids.iter().map(|&p| vm_kib(p, "VmHWM")).collect();
    // Each 250 came after the peer stored its copy: it holds them all.
    let held = cluster_status(&c.nodes[1].config)["shadows_by_origin"]["estafette-0"].as_u64();
    assert_eq!(
        held,
        Some(n as u64 + 1),
        "copies held for estafette-0\nnode0:\n{}\nnode1:\n{}",
        c.nodes[0].log(),
        c.nodes[1].log()
    );

    c.nodes[0].kill();
    let sink = smtp_sink_on(sink_port, &[]);
    let deadline = Instant::now() + Duration::from_secs(300);
    // smtp-sink writes its dump before it answers 250: count the peer's
    // deliveries, not the files (one may still be written).
    while delivered(&c.nodes[1].config) < n as u64 + 1 {
        assert!(
            Instant::now() < deadline,
            "{} of {} delivered after the takeover:\n{}",
            delivered(&c.nodes[1].config),
            n + 1,
            c.nodes[1].log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let paths = sink.files();
    // The origin's trace header travelled with the copy.
    assert_whole(&paths, n, &bulk, "by node0.test (Estafette)");
    let above: Vec<u64> = peaks
        .iter()
        .zip(&idle)
        .map(|(p, i)| p.saturating_sub(*i) / 1024)
        .collect();
    println!(
        "{n} x {mb} MiB accepted with their copies in {accept_secs:.1} s; peak RSS above idle: origin +{} MiB, peer +{} MiB; delivered by the peer after the takeover",
        above[0], above[1]
    );
    // What is left is the fixed part: RocksDB's memtables (two of 64 MiB
    // for bodies) and block cache (64 MiB), the QUIC window (16 MiB here).
    // Whole copies would add n × mb on each side (twice that on the origin
    // while a copy waited for the link).
    for (node, mib) in above.iter().enumerate() {
        assert!(
            *mib < 300,
            "node {node}: peak RSS {mib} MiB above idle with {n} x {mb} MiB copies"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_in_the_middle_of_a_copy_keeps_no_orphan_pieces() {
    let (mut c, _) = two_nodes(30).await;
    let path = c.dir.path().join("bulk.eml");
    std::fs::write(&path, bulk(100)).expect("bulk file");
    let spool = c.dir.path().join("spool-1");
    let before = dir_bytes(&spool);
    let port = c.nodes[0].smtp;
    let client = std::thread::spawn(move || send_large(port, 1, &path));
    // Evidence that the copy is being written on the peer: its spool grew
    // by 40 MiB (the copy starts once the DATA has ended).
    let deadline = Instant::now() + Duration::from_secs(180);
    while dir_bytes(&spool) < before + (40 << 20) {
        assert!(
            Instant::now() < deadline,
            "the copy never reached the peer's spool:\n{}",
            c.nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.nodes[1].kill();
    let out = tokio::task::block_in_place(|| client.join()).expect("client thread");
    let reply = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        reply.starts_with("451"),
        "no copy, no 250: {reply}\n{}",
        c.nodes[0].log()
    );
    c.nodes[1].restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let needle = "pieces of unacknowledged messages deleted at start messages=1";
    while !c.nodes[1].log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "the restarted peer did not sweep the unfinished copy:\n{}",
            c.nodes[1].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A large message taken over is committed again with new copies piece by
/// piece: three nodes, the origin killed with the message queued, then the
/// survivor that took it over killed too once it has copied it again; the
/// last node delivers it, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_taken_over_is_copied_again_in_pieces() {
    let mb = env_or("ESTAFETTE_LARGE_MB", 100).min(32);
    let sink_port = free_port();
    let mut c = cluster_with(
        3,
        2,
        3,
        sink_port,
        "max_in_flight_bytes = 16777216\n[limits]\nmax_message_size = 500000000\n",
    );
    assert!(until_accepting(c.nodes[0].smtp, 0, 30).await, "{}", c.nodes[0].log());
    let bulk = bulk(mb);
    let path = c.dir.path().join("bulk.eml");
    std::fs::write(&path, &bulk).expect("bulk file");
    let port = c.nodes[0].smtp;
    let out = tokio::task::block_in_place(|| send_large(port, 1, &path));
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(replies.starts_with("250 "), "{replies}\n{}", c.nodes[0].log());
    // The large message's copy is on node 1 or node 2: that one takes it over.
    let holder = |c: &Cluster| {
        (1..3)
            .max_by_key(|&i| dir_bytes(&c.dir.path().join(format!("spool-{i}"))))
            .unwrap_or(1)
    };
    let taker = holder(&c);
    let other = 3 - taker;
    c.nodes[0].kill();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Every message it took over (the large one, maybe the small one sent
    // first, promoted in one batch) copied again.
    let done = |c: &Cluster| {
        let s = cluster_status(&c.nodes[taker].config);
        let taken = s["taken_over"].as_u64().unwrap_or(0);
        taken > 0 && s["rereplicated"].as_u64() == Some(taken)
    };
    while !done(&c) {
        assert!(
            Instant::now() < deadline,
            "node {taker} did not copy it again:\n{}",
            c.nodes[taker].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held = cluster_status(&c.nodes[other].config)["shadows_by_origin"][format!("estafette-{taker}")].as_u64();
    assert!(held >= Some(1), "no new copy on node {other}: {held:?}");
    c.nodes[taker].kill();
    let sink = smtp_sink_on(sink_port, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&c.nodes[other].config) < 2 {
        assert!(
            Instant::now() < deadline,
            "not delivered by the last node:\n{}",
            c.nodes[other].log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_whole(&sink.files(), 1, &bulk, "by node0.test (Estafette)");
    println!("{mb} MiB: taken over by node {taker}, copied again onto node {other}, delivered by it after both deaths");
}

/// Two nodes, `min_copies = 2`, 500 MB messages allowed, a 16 MiB QUIC
/// window, the destination on the port returned (down until a test starts
/// a sink there); node 0 accepts mail when this returns.
async fn two_nodes(takeover_secs: u64) -> (Cluster, u16) {
    let sink_port = free_port();
    let c = cluster_with(
        2,
        2,
        takeover_secs,
        sink_port,
        "max_in_flight_bytes = 16777216\n[limits]\nmax_message_size = 500000000\n",
    );
    assert!(
        until_accepting(c.nodes[0].smtp, 0, 30).await,
        "node 0 never accepted:\n{}",
        c.nodes[0].log()
    );
    (c, sink_port)
}

/// Sends `n` copies of the message in `path` at once to `port`, plain SMTP,
/// for clinique.test; the client's output (one reply per message).
fn send_large(port: u16, n: usize, path: &std::path::Path) -> std::process::Output {
    Command::new("python3")
        .args(["-c", CLIENT, &port.to_string(), "-", &n.to_string()])
        .arg(path)
        .arg("clinique.test")
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 runs")
}

/// Recipients the node has delivered (its `/metrics`).
fn delivered(config: &std::path::Path) -> u64 {
    exposition(config)
        .lines()
        .filter(|l| l.starts_with("estafette_deliveries") && l.contains("delivered"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
