//! Indirect liveness (`seen.rs`): a cut link between two living nodes is not a
//! death while a third member hears both; a death still is.

use super::*;

const TAKEOVER_AFTER: Duration = Duration::from_secs(60);

/// Node 0 accepts messages until one has node 1 as its first holder; returns it.
fn placed_on_node_1(h: &mut Harness) -> MessageId {
    for n in 1..=64 {
        h.local(0, LocalEvent::Accepted { id: id(n), size: 10 });
        assert_eq!(outcome(&h.take(0)), Some(Ok(())));
        let holder = h.nodes[0].placement(&id(n)).map(|p| p.holders[0].node);
        if holder == Some(NodeId(1)) {
            return id(n);
        }
    }
    panic!("rendezvous never placed a copy on node 1");
}

/// [`placed_on_node_1`], then the link between nodes 0 and 1 is cut.
fn cut_with_mail(h: &mut Harness) -> MessageId {
    let m = placed_on_node_1(h);
    h.take(1);
    h.set_link(0, 1, false);
    m
}

fn promoted(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Promote { .. }))
}

fn peer(h: &Harness, on: usize, of: u16) -> PeerStatus {
    h.nodes[on]
        .peers()
        .find(|p| p.node == NodeId(of))
        .cloned()
        .expect("a configured peer")
}

#[test]
fn a_cut_link_is_not_a_death_while_a_third_member_hears_both_ends() {
    let mut h = Harness::new(3, 2);
    let m = cut_with_mail(&mut h);
    h.advance(TAKEOVER_AFTER + Duration::from_secs(30));
    let a = h.take(1);
    assert!(!promoted(&a), "node 1 took node 0's mail over across a cut link: {a:?}");
    assert!(h.nodes[0].may_deliver(&m), "the origin still delivers its message");
    let seen = peer(&h, 1, 0);
    assert!(!seen.link && seen.live, "{seen:?}");
    assert_eq!(seen.vouched.map(|(_, by)| by), Some(NodeId(2)));
    // Counted once per spell, on both ends of the cut.
    assert_eq!(h.nodes[1].counters().kept_live_by_peers, 1);
    assert_eq!(h.nodes[0].counters().kept_live_by_peers, 1);
    assert_eq!(h.nodes[1].counters().taken_over, 0);
    // Healed: the origin delivers, the release reaches the holder.
    h.set_link(0, 1, true);
    h.local(0, LocalEvent::Final { id: m });
    h.advance(Duration::from_secs(1));
    assert!(h
        .take(1)
        .iter()
        .any(|a| matches!(a, Action::DropShadows { ids, .. } if ids.contains(&m))));
}

#[test]
fn with_a_version_1_witness_a_cut_link_is_taken_over_as_before() {
    // Node 2 runs the build before `Seen`: its links negotiate version 1.
    let mut h = Harness::with_wire(3, 2, &[2, 2, 1]);
    assert_eq!(peer(&h, 0, 2).wire, 1);
    assert_eq!(peer(&h, 0, 1).wire, 2);
    let m = cut_with_mail(&mut h);
    h.advance(TAKEOVER_AFTER + Duration::from_secs(2));
    assert!(
        promoted(&h.take(1)),
        "no witness: node 1 takes over after takeover_after"
    );
    assert!(!h.nodes[0].may_deliver(&m) || h.nodes[1].may_deliver(&m));
    assert_eq!(h.nodes[1].counters().kept_live_by_peers, 0);
}

#[test]
fn a_node_that_dies_behind_a_cut_link_is_taken_over_at_takeover_after() {
    let mut h = Harness::new(3, 2);
    cut_with_mail(&mut h);
    h.advance(Duration::from_secs(20));
    assert!(peer(&h, 1, 0).vouched.is_some(), "node 2 vouches for node 0");
    // Node 0 dies: node 2 stops hearing it too, its sightings age.
    h.set_link(0, 2, false);
    h.paused = Some(0);
    h.advance(TAKEOVER_AFTER - Duration::from_secs(2));
    assert!(!promoted(&h.take(1)), "taken over before takeover_after");
    h.advance(Duration::from_secs(4));
    assert!(
        promoted(&h.take(1)),
        "not taken over within a heartbeat of takeover_after"
    );
}

#[test]
fn a_sighting_does_not_hide_a_node_back_on_a_new_volume() {
    let mut h = Harness::new(3, 2);
    let m = cut_with_mail(&mut h);
    // Node 0 comes back without its volume; only node 2 reaches it.
    h.set_link(0, 2, false);
    h.nodes[0] = Node::new(
        h.configs[0].clone(),
        Boot {
            epoch: 50,
            volume: 50,
            ..Boot::default()
        },
        h.now,
    );
    h.set_link(0, 2, true);
    h.advance(TAKEOVER_AFTER - Duration::from_secs(5));
    assert!(!promoted(&h.take(1)), "taken over before takeover_after");
    // Node 2 hears node 0 on volume 50; node 1 knows volume 1: that sighting
    // cannot keep the old volume's copies waiting.
    h.advance(Duration::from_secs(7));
    let a = h.take(1);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Promote { ids, .. } if ids.contains(&m))),
        "{a:?}"
    );
    assert_eq!(h.nodes[1].counters().kept_live_by_peers, 0);
}
