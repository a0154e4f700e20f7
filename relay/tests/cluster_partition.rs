//! A cut link between two living nodes: nftables drops the QUIC datagrams
//! between their two ports, and nothing else, so both still reach the third
//! node and the sink. The third node's `Seen` frames keep each end live for
//! the other: no takeover, no duplicate. With the third node pinned to wire
//! version 1 (the build before `Seen`, as during a rolling upgrade) the links
//! still work, and the cut is taken over after `takeover_after` as before.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::{cluster_each, cluster_status, send_batch, seqs, until_accepting, Cluster};
use support::peers::{aiosmtpd_on, free_port, PyTls};

const TAKEOVER_SECS: u64 = 5;

/// An nftables table dropping UDP between two ports, both ways; removed when
/// dropped. Its name holds this process's id: tests in parallel do not meet.
struct Cut(String);

impl Cut {
    fn new(a: u16, b: u16) -> Self {
        let table = format!("estafette_cut_{}_{a}_{b}", std::process::id());
        nft(&["add", "table", "inet", &table]);
        nft(&[
            "add",
            "chain",
            "inet",
            &table,
            "input",
            "{ type filter hook input priority 0 ; }",
        ]);
        for (x, y) in [(a, b), (b, a)] {
            let (x, y) = (x.to_string(), y.to_string());
            nft(&[
                "add", "rule", "inet", &table, "input", "udp", "sport", &x, "udp", "dport", &y, "drop",
            ]);
        }
        Self(table)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.0]).status();
    }
}

fn nft(args: &[&str]) {
    let out = Command::new("nft")
        .args(args)
        .output()
        .expect("nft (nftables) is installed: scripts/deps");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node `on`'s line for peer `of` in `/api/cluster`.
fn peer(c: &Cluster, on: usize, of: u64) -> serde_json::Value {
    cluster_status(&c.nodes[on].config)["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["id"] == of))
        .cloned()
        .unwrap_or_default()
}

fn counter(c: &Cluster, on: usize, key: &str) -> u64 {
    cluster_status(&c.nodes[on].config)[key].as_u64().unwrap_or(0)
}

/// Waits until every node has a link to every other at the expected version.
async fn linked(c: &Cluster, wire: &dyn Fn(usize, usize) -> u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let n = c.nodes.len();
    loop {
        let all = (0..n).all(|i| {
            (0..n)
                .filter(|&j| j != i)
                .all(|j| peer(c, i, j as u64)["wire"].as_u64() == Some(wire(i, j)))
        });
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "links never came up at the expected versions: {}",
            (0..n)
                .map(|i| cluster_status(&c.nodes[i].config)["peers"].to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Mail on nodes 0 and 1 (the sink is down, so it stays queued), with at
/// least one copy of each one's mail on the other: what a takeover across
/// the cut would deliver twice.
async fn mail_across(c: &Cluster) -> Vec<usize> {
    assert!(until_accepting(c.nodes[0].smtp, 0, 30).await, "{}", c.nodes[0].log());
    let mut acked = vec![0];
    acked.extend(send_batch(c.nodes[0].smtp, 1..12).await);
    acked.extend(send_batch(c.nodes[1].smtp, 100..112).await);
    assert_eq!(acked.len(), 24, "every message accepted");
    let held = |on: usize, origin: &str| cluster_status(&c.nodes[on].config)["shadows_by_origin"][origin].as_u64();
    assert!(
        held(1, "estafette-0") > Some(0) && held(0, "estafette-1") > Some(0),
        "rendezvous put no copy across the link to cut (1 in 2^11 per side)"
    );
    acked
}

/// Starts the sink, heals, and waits until every acknowledged message is
/// delivered and every shadow released; returns the duplicates.
async fn heal_and_deliver(c: &Cluster, cut: Cut, sink_port: u16, acked: &[usize]) -> usize {
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    drop(cut);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = seqs(&sink);
        let held: u64 = (0..3).map(|i| counter(c, i, "shadows_held")).sum();
        if acked.iter().all(|s| got.contains_key(s)) && held == 0 {
            return got.values().map(|n| n - 1).sum();
        }
        assert!(
            Instant::now() < deadline,
            "after healing: {} of {} delivered, {held} shadows held",
            acked.iter().filter(|s| got.contains_key(s)).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_between_two_living_nodes_is_not_taken_over_while_a_third_hears_both() {
    let sink_port = free_port();
    let c = cluster_each(3, 2, TAKEOVER_SECS, sink_port, "", &|_| String::new());
    linked(&c, &|_, _| 2).await;
    let acked = mail_across(&c).await;
    let cut = Cut::new(c.quic[0], c.quic[1]);
    let t0 = Instant::now();
    // Evidence that the cut happened and that node 2 vouches for both ends.
    let deadline = t0 + Duration::from_secs(15);
    loop {
        let (p10, p01) = (peer(&c, 1, 0), peer(&c, 0, 1));
        if p10["link"] == false && p10["vouched_by"] == "estafette-2" && p01["vouched_by"] == "estafette-2" {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 sees node 0 as {p10}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past takeover_after with the link still cut: both ends stay live.
    while t0.elapsed() < Duration::from_secs(TAKEOVER_SECS + 4) {
        for (on, of) in [(1, 0), (0, 1)] {
            assert_eq!(counter(&c, on, "takeovers"), 0, "node {on} took node {of}'s mail over");
            assert_eq!(peer(&c, on, of)["live"], true);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(counter(&c, 1, "kept_live_by_peers"), 1, "{}", peer(&c, 1, 0));
    assert_eq!(counter(&c, 0, "kept_live_by_peers"), 1, "{}", peer(&c, 0, 1));
    let dups = heal_and_deliver(&c, cut, sink_port, &acked).await;
    eprintln!(
        "cut {:.1} s: {} delivered, {dups} duplicates",
        t0.elapsed().as_secs_f64(),
        acked.len()
    );
    assert_eq!(dups, 0, "a message went out twice");
    let takeovers: u64 = (0..3).map(|i| counter(&c, i, "takeovers")).sum();
    assert_eq!(takeovers, 0);
    drop(c.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_version_1_node_the_links_work_and_a_cut_is_taken_over_as_before() {
    let sink_port = free_port();
    let c = cluster_each(3, 2, TAKEOVER_SECS, sink_port, "", &|i| {
        if i == 2 {
            "wire_version = 1".into()
        } else {
            String::new()
        }
    });
    linked(&c, &|i, j| if i == 2 || j == 2 { 1 } else { 2 }).await;
    let mut acked = mail_across(&c).await;
    // Node 2 replicates both ways over its version-1 links.
    acked.extend(send_batch(c.nodes[2].smtp, 200..206).await);
    assert_eq!(acked.len(), 30, "node 2 accepted with copies on version-1 links");
    let cut = Cut::new(c.quic[0], c.quic[1]);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(TAKEOVER_SECS + 20);
    while counter(&c, 0, "takeovers") + counter(&c, 1, "takeovers") == 0 {
        assert!(
            Instant::now() < deadline,
            "no takeover across the cut: {}",
            peer(&c, 1, 0)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let took = t0.elapsed();
    // Silence counts from the last frame, at most a heartbeat (1 s) before the cut.
    assert!(
        took + Duration::from_millis(1500) >= Duration::from_secs(TAKEOVER_SECS),
        "taken over {took:?} after the cut, before takeover_after"
    );
    assert_eq!(
        counter(&c, 0, "kept_live_by_peers") + counter(&c, 1, "kept_live_by_peers"),
        0
    );
    let dups = heal_and_deliver(&c, cut, sink_port, &acked).await;
    eprintln!(
        "version-1 witness: taken over {:.1} s after the cut, {} delivered, {dups} duplicates",
        took.as_secs_f64(),
        acked.len()
    );
    drop(c.dir);
}
