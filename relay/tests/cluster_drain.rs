//! Drains of a cluster node with real processes (`estafette drain`, the
//! Kubernetes preStop hook): the queue goes to the peers holding copies,
//! mail no peer holds is copied again first, a taker hands taken-over mail
//! back to its returned origin, and a drain that cannot hand everything
//! over says what stays on the node's volume (exit status 3) and loses
//! none of it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::{
    cluster_status, cluster_with_mail, cluster_with_mail_and, duplicates, metric, shadows_held, until_delivered,
    Cluster,
};
use support::peers::{aiosmtpd_on, free_port, PyTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_exits_and_its_queue_is_delivered_by_peers_at_once() {
    let sink_port = free_port();
    // takeover_after is long: only the drain's hand-off can move the mail.
    let (mut c, acked) = cluster_with_mail(3, 2, 600, sink_port, 10).await;
    let out = drain(&c.nodes[0].config).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n{}", c.nodes[0].log());
    assert!(text.contains("every queued message is with a peer"), "{text}");
    let status = c.nodes[0].child.as_mut().and_then(|ch| ch.wait().ok());
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the drained node exits 0");
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    until_delivered(&sink, &acked, 30, "after the drain", &[&c.nodes[0], &c.nodes[1]]).await;
    drop(c.dir);
}

/// A drained node whose mail no peer holds a copy of: its only peer came
/// back on a new volume, and the periodic look for such mail is an hour
/// away. The drain copies that mail again first, then hands the new copies
/// over: the peer delivers all of it, and the drained node exits 0 with an
/// empty queue (before, the hand-off waited for its deadline and the mail
/// stayed on the drained node's volume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_copies_again_what_no_peer_holds_then_hands_it_over() {
    let sink_port = free_port();
    let (mut c, acked) = cluster_with_mail_and(2, 2, 600, sink_port, 10, "recopy_interval_secs = 3600").await;
    let n = acked.len() as u64;
    let peer_epoch = |c: &Cluster| cluster_status(&c.nodes[0].config)["peers"][0]["epoch"].as_u64();
    let before = peer_epoch(&c);
    c.nodes[1].kill();
    std::fs::remove_dir_all(c.dir.path().join("spool-1")).expect("volume lost");
    c.nodes[1].restart();
    // Node 0 has the new node's Hello (its epoch and new volume): nothing of
    // its queue has a copy left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while peer_epoch(&c) == before || cluster_status(&c.nodes[0].config)["accepting"] != true {
        assert!(Instant::now() < deadline, "peer not back:\n{}", c.nodes[0].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        shadows_held(&c.nodes[1].config, "estafette-0"),
        0,
        "the new volume holds nothing"
    );
    let out = drain(&c.nodes[0].config).await;
    assert!(out.status.success(), "{}", c.nodes[0].log());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("with a peer ({n} committed again with new copies first)")),
        "{said}"
    );
    let status = c.nodes[0].child.as_mut().and_then(|ch| ch.wait().ok());
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the drained node exits 0");
    let log = c.nodes[0].log();
    assert!(log.contains("drained: every queued message is with a peer"), "{log}");
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 60, "after the drain", &[&c.nodes[1]]).await;
    eprintln!(
        "drain with no copy on the peer: {n} copied again and handed over, {} duplicates",
        duplicates(&got)
    );
    drop(c.dir);
}

/// A drain with no peer to take the mail: the only peer is down, so
/// nothing can be copied or handed over. Within `drain_deadline_secs` the
/// node stops (exit 0) and `estafette drain` says how many messages stay on
/// its volume, with exit status 3 (before, it printed "drained" and exited
/// 0, and the scale-down instructions let the volume go). Started again
/// with its peer, the node delivers every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cannot_hand_over_says_what_stays_and_loses_nothing() {
    let sink_port = free_port();
    let (mut c, acked) = cluster_with_mail_and(2, 2, 600, sink_port, 10, "drain_deadline_secs = 4").await;
    let n = acked.len();
    c.nodes[1].kill();
    let started = Instant::now();
    let out = drain(&c.nodes[0].config).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{out:?}\n{}", c.nodes[0].log());
    assert!(
        said.contains(&format!(
            "{n} messages were not handed over and stay on this node's volume"
        )),
        "{said}"
    );
    let status = c.nodes[0].child.as_mut().and_then(|ch| ch.wait().ok());
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the drained node exits 0");
    eprintln!(
        "drain with no peer: {n} messages left on the volume, reported after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Nothing was lost: back with its peer, node 0 delivers all of it.
    c.nodes[1].restart();
    c.nodes[0].restart();
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 60, "after the restart", &[&c.nodes[0], &c.nodes[1]]).await;
    assert_eq!(duplicates(&got), 0, "{got:?}");
    drop(c.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_taker_hands_taken_over_mail_back_to_its_returned_origin() {
    let sink_port = free_port();
    let (mut c, acked) = cluster_with_mail(2, 2, 3, sink_port, 8).await;
    let n = acked.len() as u64;
    // The destination is down. Node 0 is killed, node 1 takes its mail over.
    c.nodes[0].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster_status(&c.nodes[1].config)["taken_over"].as_u64() < Some(n) {
        assert!(Instant::now() < deadline, "no takeover:\n{}", c.nodes[1].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Node 0 is back on its volume: its copies are the only others, held for node 1.
    c.nodes[0].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster_status(&c.nodes[0].config);
        if s["held_for_takers"].as_u64() == Some(n) && s["recovering"].as_u64() == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{s}\n{}\nnode 1:\n{}",
            c.nodes[0].log(),
            c.nodes[1].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Node 1 drains: it hands the mail back to node 0 instead of waiting for
    // its deadline, and exits 0.
    let started = Instant::now();
    let out = drain(&c.nodes[1].config).await;
    assert!(out.status.success(), "{out:?}\n{}", c.nodes[1].log());
    let status = c.nodes[1].child.as_mut().and_then(|ch| ch.wait().ok());
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the drained node exits 0");
    let log = c.nodes[1].log();
    assert!(log.contains("drained: every queued message is with a peer"), "{log}");
    let back = metric(&c.nodes[0].config, "estafette_cluster_handed_back_messages_total");
    assert_eq!(back, n as f64, "handed back to node 0\n{}", c.nodes[0].log());
    eprintln!(
        "hand-back: {n} taken-over messages back with their origin, drain done {:.1} s after it began",
        started.elapsed().as_secs_f64()
    );
    // The destination returns: node 0 delivers every one, once.
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 30, "after the hand-back", &[&c.nodes[0]]).await;
    assert_eq!(duplicates(&got), 0, "{got:?}");
}

/// `estafette drain --config CONFIG --wait 60`: its output once it returned.
async fn drain(config: &std::path::Path) -> std::process::Output {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_estafette"))
            .args(["drain", "--config"])
            .arg(&config)
            .args(["--wait", "60"])
            .output()
            .expect("estafette drain")
    })
    .await
    .expect("join")
}
