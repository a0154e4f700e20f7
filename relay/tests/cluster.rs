//! The cluster with real processes: three `estafette` binaries on 127.0.0.1,
//! replicating over QUIC with mutual TLS from a cluster CA, `min_copies = 2`.
//! One node is killed with SIGKILL while it holds queued mail; its peers take
//! the mail over after `takeover_after` and deliver it to a real aiosmtpd.
//! A node that can reach no peer answers 451 and accepts again when one
//! returns.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{
    admin_get, cluster, cluster_full, cluster_status, cluster_with_mail, duplicates, exposition, metric, send,
    send_batch, send_to, seqs, shadows_held, until_accepting, until_delivered, Cluster, Proc,
};
use support::peers::{aiosmtpd_on, free_port, PyTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_queue_is_taken_over_and_delivered_by_its_peers() {
    let sink_port = free_port();
    let mut c = cluster(3, 2, 3, sink_port);
    // The destination is down: accepted mail stays queued on node 0.
    assert!(
        until_accepting(c.nodes[0].smtp, 0, 30).await,
        "node 0 never accepted:\n{}",
        c.nodes[0].log()
    );
    let mut acked = vec![0];
    acked.extend(send_batch(c.nodes[0].smtp, 1..20).await);
    assert!(acked.len() >= 15, "too few accepted: {acked:?}\n{}", c.nodes[0].log());
    // Every 250 had a copy on a peer before it was sent, and its time is in
    // the replication histogram.
    let count = metric(&c.nodes[0].config, "estafette_replication_seconds_count");
    assert!(count >= acked.len() as f64, "replication histogram count {count}");
    let status = cluster_status(&c.nodes[0].config);
    assert!(
        status["replication"]["count"].as_u64() >= Some(acked.len() as u64),
        "{status}"
    );
    // And what replication added to each 250, after the local write.
    let added = metric(&c.nodes[0].config, "estafette_replication_added_seconds_count");
    assert!(added >= acked.len() as f64, "replication-added histogram count {added}");
    assert!(status["replication"]["added_p99_ms"].as_f64().is_some(), "{status}");
    // One shadow per queued message, on the peers, under node 0's name.
    let held: u64 = c.nodes[1..]
        .iter()
        .map(|n| {
            cluster_status(&n.config)["shadows_by_origin"]["estafette-0"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(held, acked.len() as u64, "shadows held for estafette-0");
    // The Grafana dashboard's cluster panels query metrics a member exposes.
    let missing = support::grafana::missing(&exposition(&c.nodes[0].config), support::grafana::clustered);
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics a member lacks: {missing:?}"
    );
    // The dashboard's data shows the peers and the shadows held for them.
    let response = admin_get(&c.nodes[1].config, "/api/dashboard");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let dash: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    let peers = dash["cluster"]["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 2, "{dash}");
    let origin = peers.iter().find(|p| p["name"] == "estafette-0").expect("estafette-0");
    assert_eq!(origin["link"], true, "{dash}");
    let held_here = cluster_status(&c.nodes[1].config)["shadows_by_origin"]["estafette-0"].as_u64();
    assert_eq!(origin["shadows_held"].as_u64(), held_here, "{dash}");
    c.nodes[0].kill();
    let killed_at = Instant::now();
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 60, "after the kill", &[&c.nodes[1], &c.nodes[2]]).await;
    eprintln!(
        "takeover: {} acknowledged, all delivered by the peers {:.1} s after the kill, {} duplicates",
        acked.len(),
        killed_at.elapsed().as_secs_f64(),
        duplicates(&got)
    );
    // The killed node comes back on its volume: what its peers delivered is
    // not delivered again by it beyond the counted duplicates.
    c.nodes[0].restart();
    assert!(until_accepting(c.nodes[0].smtp, 100, 30).await, "{}", c.nodes[0].log());
    let got = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = seqs(&sink);
            if got.contains_key(&100) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(got.contains_key(&100), "the restarted node delivers new mail");
    let dups: usize = got.values().map(|n| n - 1).sum();
    eprintln!("after the restart: {dups} duplicate deliveries in all");
    drop(c.dir);
}

/// Sum of `key` in `cluster status` over `nodes`.
fn status_sum(nodes: &[Proc], key: &str) -> u64 {
    nodes
        .iter()
        .map(|n| cluster_status(&n.config)[key].as_u64().unwrap_or(0))
        .sum()
}

/// A taken-over message gets its second copy back before it is delivered:
/// node 0 dies with queued mail, nodes 1 and 2 take their shares over and
/// commit each message again with a copy on the other; then node 1 dies
/// too, and node 2 delivers everything, node 1's share included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_over_mail_is_copied_again_and_survives_its_takers_death() {
    let sink_port = free_port();
    let (mut c, acked) = cluster_with_mail(3, 2, 3, sink_port, 20).await;
    let n = acked.len() as u64;
    let share = |node: &Proc, origin: &str| shadows_held(&node.config, origin);
    // Rendezvous hashing spreads the copies over both peers.
    let on_1 = share(&c.nodes[1], "estafette-0");
    assert!(on_1 > 0 && on_1 < n, "node 1 holds {on_1} of {n} copies");
    // The destination is down: nothing is delivered meanwhile.
    c.nodes[0].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_sum(&c.nodes[1..], "rereplicated") < n {
        assert!(
            Instant::now() < deadline,
            "not copied again: {} of {n}\nnode 1:\n{}\nnode 2:\n{}",
            status_sum(&c.nodes[1..], "rereplicated"),
            c.nodes[1].log(),
            c.nodes[2].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status_sum(&c.nodes[1..], "rereplication_failed"), 0);
    // Node 1's share is now its own mail, with copies on node 2.
    assert_eq!(cluster_status(&c.nodes[1].config)["rereplicated"].as_u64(), Some(on_1));
    assert_eq!(share(&c.nodes[2], "estafette-1"), on_1, "{}", c.nodes[2].log());
    c.nodes[1].kill();
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 60, "after the second death", &[&c.nodes[2]]).await;
    eprintln!(
        "two nodes lost one after the other: {n} acknowledged, all delivered, {} duplicates",
        duplicates(&got)
    );
    // The last node could not copy node 1's share again (no peer left) and
    // delivered it with its one copy, counted.
    let failed = metric(&c.nodes[2].config, "estafette_cluster_rereplication_failed_total");
    assert_eq!(failed, on_1 as f64, "{}", c.nodes[2].log());
    drop(c.dir);
}

/// The origin's side: a holder dies, and the origin copies again the
/// messages whose only other copy it held; then the origin dies too, and the
/// third node delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_copies_again_what_a_dead_holder_held() {
    let sink_port = free_port();
    let (mut c, acked) = cluster_with_mail(3, 2, 3, sink_port, 20).await;
    let n = acked.len() as u64;
    let held = |node: &Proc| shadows_held(&node.config, "estafette-0");
    let on_1 = held(&c.nodes[1]);
    assert!(on_1 > 0 && on_1 < n, "node 1 holds {on_1} of {n} copies");
    c.nodes[1].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster_status(&c.nodes[0].config)["rereplicated"].as_u64() < Some(on_1) {
        assert!(Instant::now() < deadline, "not copied again:\n{}", c.nodes[0].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every message has its second copy on node 2 now.
    assert_eq!(held(&c.nodes[2]), n, "{}", c.nodes[2].log());
    c.nodes[0].kill();
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 60, "after the origin's death", &[&c.nodes[2]]).await;
    eprintln!(
        "holder then origin lost: {n} delivered by the third node, {} duplicates",
        duplicates(&got)
    );
    drop(c.dir);
}

/// Two nodes: the taker of a dead node's mail has no peer to copy it to and
/// keeps it with one copy; when a peer is back (here the dead node, on a new
/// volume) the mail gets its copies, and survives the taker's death too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_left_with_one_copy_is_copied_again_when_a_peer_returns() {
    left_with_one_copy(false).await;
}

/// The same, with the taker restarted while it holds that mail: what it took
/// over in its earlier life is copied again too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_left_with_one_copy_is_copied_again_after_the_takers_restart() {
    left_with_one_copy(true).await;
}

async fn left_with_one_copy(restart_taker: bool) {
    let sink_port = free_port();
    let (mut c, acked) = cluster_with_mail(2, 2, 3, sink_port, 10).await;
    let n = acked.len() as u64;
    c.nodes[0].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster_status(&c.nodes[1].config)["rereplication_failed"].as_u64() < Some(n) {
        assert!(Instant::now() < deadline, "no takeover:\n{}", c.nodes[1].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cluster_status(&c.nodes[1].config)["rereplicated"].as_u64(), Some(0));
    if restart_taker {
        // Its restart check waits for node 0 (restart_wait, 2 s here).
        c.nodes[1].restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster_status(&c.nodes[1].config)["recovering"].as_u64() != Some(0) {
            assert!(Instant::now() < deadline, "{}", c.nodes[1].log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Node 0 comes back without its volume: a peer again, holding nothing.
    std::fs::remove_dir_all(c.dir.path().join("spool-0")).expect("volume lost");
    c.nodes[0].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster_status(&c.nodes[1].config)["rereplicated"].as_u64() < Some(n) {
        assert!(
            Instant::now() < deadline,
            "not copied again:\nnode 1:\n{}\nnode 0:\n{}",
            c.nodes[1].log(),
            c.nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held = cluster_status(&c.nodes[0].config)["shadows_by_origin"]["estafette-1"].as_u64();
    assert_eq!(held, Some(n), "{}", c.nodes[0].log());
    c.nodes[1].kill();
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let got = until_delivered(&sink, &acked, 60, "after the taker's death", &[&c.nodes[0]]).await;
    eprintln!(
        "one copy, then two: {n} delivered by the returned node after the taker died, {} duplicates",
        duplicates(&got)
    );
    drop(c.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reachable_peer_mail_gets_451_until_one_returns() {
    let sink = support::peers::aiosmtpd(PyTls::None);
    let mut c = cluster(2, 2, 60, sink.addr.port());
    assert!(until_accepting(c.nodes[0].smtp, 1, 30).await, "{}", c.nodes[0].log());
    c.nodes[1].kill();
    // Within the peer timeout the survivor refuses: 451, never a silent downgrade.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let code = send(c.nodes[0].smtp, 2).await;
        if code == 451 {
            break;
        }
        assert!(Instant::now() < deadline, "still answering {code} without a peer");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.nodes[1].restart();
    assert!(
        until_accepting(c.nodes[0].smtp, 3, 30).await,
        "no accept after the peer returned:\n{}",
        c.nodes[0].log()
    );
    let got = tokio::task::block_in_place(|| sink.received(2));
    assert!(got.len() >= 2, "accepted mail delivered");
    drop(c.dir);
}

/// `GET /api/cluster` of the node with config `config` (its admin port).
/// The node's `/metrics` (admin listener without a token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_not_taken_over_before_takeover_after_and_its_shadows_are_released() {
    let sink_port = free_port();
    // takeover_after 8 s; node 0 is stopped (SIGSTOP) for less than that.
    let c = cluster(3, 2, 8, sink_port);
    assert!(until_accepting(c.nodes[0].smtp, 0, 30).await, "{}", c.nodes[0].log());
    let mut acked = vec![0];
    acked.extend(send_batch(c.nodes[0].smtp, 1..10).await);
    let held = |c: &Cluster| -> u64 {
        (1..3)
            .map(|i| cluster_status(&c.nodes[i].config)["shadows_held"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        held(&c) >= acked.len() as u64,
        "every acknowledged message has a shadow"
    );
    let signal = |sig: &str| c.nodes[0].signal(sig);
    signal("-STOP");
    let stopped = Instant::now();
    // The peers see node 0 silent (link down) but wait for takeover_after.
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut saw_silence = false;
    while Instant::now() < deadline {
        let s = cluster_status(&c.nodes[1].config);
        let peer0 = s["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["id"] == 0))
            .cloned();
        if peer0
            .as_ref()
            .and_then(|p| p["silent_secs"].as_f64())
            .is_some_and(|t| t > 2.0)
        {
            saw_silence = true;
        }
        assert_eq!(s["takeovers"].as_u64(), Some(0), "takeover before takeover_after");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(saw_silence, "the peers never noticed the pause");
    signal("-CONT");
    eprintln!("node 0 paused {:.1} s", stopped.elapsed().as_secs_f64());
    // Healed: node 0 delivers its own mail, the shadows are released.
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let got = seqs(&sink);
        if acked.iter().all(|s| got.contains_key(s)) && held(&c) == 0 {
            let dups: usize = got.values().map(|n| n - 1).sum();
            eprintln!(
                "after the pause: {} delivered, {dups} duplicates, shadows released",
                acked.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after healing: delivered {:?} of {acked:?}, shadows still held {}",
            got.keys().collect::<Vec<_>>(),
            held(&c)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let takeovers: u64 = (1..3)
        .map(|i| cluster_status(&c.nodes[i].config)["takeovers"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(takeovers, 0, "no takeover for a pause shorter than takeover_after");
    drop(c.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_without_its_volume_has_its_mail_taken_over_at_once() {
    let sink_port = free_port();
    // takeover_after is ten minutes: only the new volume id can explain a takeover.
    let (mut c, acked) = cluster_with_mail(3, 2, 600, sink_port, 10).await;
    c.nodes[0].kill();
    std::fs::remove_dir_all(c.dir.path().join("spool-0")).expect("volume lost");
    let restarted = Instant::now();
    c.nodes[0].restart();
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    until_delivered(&sink, &acked, 60, "(not taken over)", &[&c.nodes[1]]).await;
    eprintln!(
        "volume lost: {} messages delivered by the peers {:.1} s after the empty node came back",
        acked.len(),
        restarted.elapsed().as_secs_f64()
    );
    drop(c.dir);
}

/// Members found in DNS (`[cluster.discover]`), as a StatefulSet's headless
/// Service publishes them: no member is listed in any config. dnsmasq serves
/// the SRV records of all three pods from the start; node 2 starts last, is
/// found before it runs, and takes copies once it is up: with node 1 then
/// killed, node 0 still gets its second copy (on node 2) and accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_found_in_dns_replicate_and_a_late_pod_joins() {
    let sink = support::peers::aiosmtpd(PyTls::None);
    let dir = tempfile::tempdir().expect("tempdir");
    let names = ["estafette-0", "estafette-1", "estafette-2"];
    relay::ops::cluster_pki::write_cluster(&dir.path().join("cluster"), &names).expect("cluster pki");
    let quic: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let mut records = Vec::new();
    for (i, name) in names.iter().enumerate() {
        records.push(format!(
            "--srv-host=_repl._udp.peers.test,{name}.peers.test,{}",
            quic[i]
        ));
        records.push(format!("--host-record={name}.peers.test,127.0.0.1"));
    }
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    let dns = support::dns::dnsmasq(&refs);
    let start = |i: usize| {
        let smtp = free_port();
        let toml = format!(
            r#"
[node]
hostname = "node{i}.test"
spool = "spool-{i}"

[[listener]]
name = "plain"
address = "127.0.0.1:{smtp}"
tls = "none"

[[route]]
domain = "clinique.test"
host = "{sink}"
tls = "none"

[admin]
address = "127.0.0.1:{admin}"

[outbound]
resolver = ["{dns}"]
poll_ms = 100

[cluster]
name = "{name}"
listen = "127.0.0.1:{quic}"
min_copies = 2
takeover_after_secs = 600
ca = "cluster/ca.pem"
cert = "cluster/{name}.pem"
key = "cluster/{name}.key"

[cluster.discover]
srv = "_repl._udp.peers.test"
interval_secs = 1
"#,
            sink = sink.addr,
            admin = free_port(),
            dns = dns.addr,
            name = names[i],
            quic = quic[i],
        );
        let path = dir.path().join(format!("node{i}.toml"));
        std::fs::write(&path, toml).expect("config");
        Proc::start(&path, smtp, dir.path().join(format!("node{i}.log")))
    };
    let mut n0 = start(0);
    let mut n1 = start(1);
    // Node 0 accepts only once it found node 1 in DNS and linked to it; its
    // node id comes from its name's ordinal.
    assert!(until_accepting(n0.smtp, 1, 30).await, "node 0:\n{}", n0.log());
    let status = cluster_status(&n0.config);
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(2), "{status}");
    let n2 = start(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster_status(&n0.config);
        let linked = s["peers"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["name"] == "estafette-2" && p["link"] == true && p["id"] == 2)
        });
        if linked {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never joined: {s}\n{}", n2.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Node 1 gone: the second copy goes to the pod found late.
    n1.kill();
    assert!(
        until_accepting(n0.smtp, 2, 30).await,
        "node 0 without node 1:\n{}",
        n0.log()
    );
    let got = tokio::task::block_in_place(|| sink.received(2));
    assert_eq!(got.len(), 2);
    n0.kill();
    drop(n2);
}

/// A message whose copy is never acknowledged gets 451 and is not delivered
/// either: the queue does not try a message while its commit runs (the
/// due-index scan found it after `handoff_grace_secs`, 2 s here, before the
/// 3 s accept deadline had refused it, and delivered it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_for_want_of_its_copy_is_never_delivered() {
    let sink_port = free_port();
    let c = cluster(2, 2, 30, sink_port);
    let sink = aiosmtpd_on(PyTls::None, sink_port);
    assert!(until_accepting(c.nodes[0].smtp, 1, 30).await, "{}", c.nodes[0].log());
    let signal = |sig: &str| c.nodes[1].signal(sig);
    // The holder stops: the copy of message 2 is never acknowledged, but
    // node 0 still counts it reachable at MAIL FROM (heard from < 3 s ago).
    signal("-STOP");
    let code = send(c.nodes[0].smtp, 2).await;
    signal("-CONT");
    assert_eq!(code, 451, "no copy, no 250:\n{}", c.nodes[0].log());
    // Evidence that delivery runs: a later message arrives.
    assert!(until_accepting(c.nodes[0].smtp, 3, 30).await, "{}", c.nodes[0].log());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seqs(&sink).contains_key(&3) {
        assert!(
            Instant::now() < deadline,
            "message 3 not delivered:\n{}",
            c.nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = seqs(&sink);
    assert!(got.contains_key(&1), "{got:?}");
    assert!(
        !got.contains_key(&2),
        "message 2 was refused (451) and delivered too: {got:?}"
    );
}

/// Messages held for a peer that took them over keep their old due time: a
/// scan of the due index that counted them as started (a page of
/// `max_in_flight` entries) never reached the mail behind them, and a
/// deferred message to another, working destination waited as long as the
/// taker's destination stayed down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_held_for_a_taker_does_not_hide_the_rest_of_the_queue() {
    let (sink_port, other_port) = (free_port(), free_port());
    let route = format!("[[route]]\ndomain = \"other.test\"\nhost = \"127.0.0.1:{other_port}\"\ntls = \"none\"\n");
    let c = cluster_full(2, 2, 3, sink_port, "max_in_flight = 2", &route);
    assert!(until_accepting(c.nodes[0].smtp, 0, 30).await, "{}", c.nodes[0].log());
    // clinique.test is down: node 0 queues these, node 1 holds the copies.
    let acked = send_batch(c.nodes[0].smtp, 1..6).await;
    assert_eq!(acked.len(), 5, "{}", c.nodes[0].log());
    // Node 0 stops long enough for node 1 to take them over; back, it holds
    // them for node 1 (which cannot deliver them either).
    let signal = |sig: &str| c.nodes[0].signal(sig);
    signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster_status(&c.nodes[1].config)["taken_over"].as_u64() < Some(6) {
        assert!(
            Instant::now() < deadline,
            "node 1 took nothing over:\n{}",
            c.nodes[1].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster_status(&c.nodes[0].config)["held_for_takers"].as_u64() < Some(6) {
        assert!(Instant::now() < deadline, "node 0 holds nothing:\n{}", c.nodes[0].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A message to other.test, down for its first attempt: it waits in the
    // due index behind the six held ones.
    let deadline = Instant::now() + Duration::from_secs(30);
    while send_to(c.nodes[0].smtp, 7, "dr@other.test").await != 250 {
        assert!(Instant::now() < deadline, "message 7 refused:\n{}", c.nodes[0].log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.nodes[0].log().contains("rcpt=dr@other.test reply=451") {
        assert!(Instant::now() < deadline, "no first attempt:\n{}", c.nodes[0].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = aiosmtpd_on(PyTls::None, other_port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seqs(&other).contains_key(&7) {
        assert!(
            Instant::now() < deadline,
            "message 7 not delivered while node 0 holds mail for node 1:\n{}",
            c.nodes[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
