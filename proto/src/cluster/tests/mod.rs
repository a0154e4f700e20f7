//! Whole conversations between a few [`Node`]s in memory, on a simulated clock (the
//! quinn `Pair` idea). The randomised, fault-injecting version is
//! `proto/tests/cluster_sim.rs`; these are the readable cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

mod seen;

/// Nodes, the links between them, and everything each node asked of its driver.
struct Harness {
    now: Instant,
    nodes: Vec<Node>,
    configs: Vec<Arc<Config>>,
    link: Vec<Vec<bool>>,
    actions: Vec<Vec<Action>>,
    /// What each node holds on disk: own (id, placement, promoted) and shadows.
    own: Vec<Vec<RecoveredCopy>>,
    /// A node that does not run (SIGSTOP): no timer calls, no frames in or out.
    paused: Option<usize>,
    /// The highest frame version each node speaks (a link reads the lower of
    /// its two ends', as ALPN negotiates it).
    wire: Vec<u8>,
}

fn id(n: u8) -> MessageId {
    MessageId([n; 16])
}

impl Harness {
    fn new(nodes: u16, min_copies: usize) -> Self {
        Self::with_wire(nodes, min_copies, &[])
    }

    /// [`Harness::new`] with node `i` speaking frames up to `wire[i]` (the
    /// highest version for the nodes past the slice's end).
    fn with_wire(nodes: u16, min_copies: usize, wire: &[u8]) -> Self {
        let now = Instant::now();
        let members: Vec<MemberConfig> = (0..nodes)
            .map(|n| MemberConfig {
                node: NodeId(n),
                name: format!("estafette-{n}"),
                zone: None,
            })
            .collect();
        let configs: Vec<Arc<Config>> = (0..nodes)
            .map(|n| {
                Arc::new(Config {
                    node: NodeId(n),
                    members: members.clone(),
                    min_copies,
                    ..Config::default()
                })
            })
            .collect();
        let nodes_v = (0..nodes)
            .map(|n| {
                let epoch = u64::from(n) + 1;
                Node::new(
                    configs[usize::from(n)].clone(),
                    Boot {
                        epoch,
                        volume: epoch,
                        ..Boot::default()
                    },
                    now,
                )
            })
            .collect();
        let n = usize::from(nodes);
        let mut h = Self {
            now,
            nodes: nodes_v,
            configs,
            link: vec![vec![false; n]; n],
            actions: vec![Vec::new(); n],
            own: vec![Vec::new(); n],
            paused: None,
            wire: (0..n)
                .map(|i| wire.get(i).copied().unwrap_or(frame::FRAME_VERSION))
                .collect(),
        };
        for a in 0..nodes {
            for b in a + 1..nodes {
                h.set_link(a, b, true);
            }
        }
        h
    }

    fn set_link(&mut self, a: u16, b: u16, up: bool) {
        let (ua, ub) = (usize::from(a), usize::from(b));
        self.link[ua][ub] = up;
        self.link[ub][ua] = up;
        let version = up.then(|| self.wire[ua].min(self.wire[ub]));
        self.nodes[ua].handle_link(self.now, NodeId(b), version);
        self.nodes[ub].handle_link(self.now, NodeId(a), version);
        self.run();
    }

    /// Moves frames and plays the driver until nothing moves.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            for n in 0..self.nodes.len() {
                while let Some(a) = self.nodes[n].poll_action() {
                    moved = true;
                    self.driver(n, a);
                }
                while let Some((to, frame)) = self.nodes[n].poll_transmit() {
                    moved = true;
                    let to = usize::from(to.0);
                    if self.link[n][to] && self.paused != Some(to) && self.paused != Some(n) {
                        let from = NodeId(u16::try_from(n).unwrap_or(0));
                        self.nodes[to].handle_frame(self.now, from, frame);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// The driver: copies land at once, promotions complete at once.
    fn driver(&mut self, n: usize, a: Action) {
        let me = NodeId(u16::try_from(n).unwrap_or(0));
        match &a {
            Action::SendCopy { to, id, placement } => {
                let t = usize::from(to.0);
                if self.link[n][t] {
                    let ev = LocalEvent::ShadowStored {
                        origin: me,
                        id: *id,
                        placement: placement.clone(),
                    };
                    self.nodes[t].handle_local(self.now, ev);
                }
            }
            Action::Promote { origin, ids } => {
                let ev = LocalEvent::Promoted {
                    origin: *origin,
                    ids: ids.clone(),
                };
                self.nodes[n].handle_local(self.now, ev);
            }
            Action::AcceptOutcome { id, result: Ok(()) } => {
                let placement = self.nodes[n]
                    .placement(id)
                    .cloned()
                    .expect("placement of an accepted message");
                self.own[n].push(RecoveredCopy {
                    id: *id,
                    placement,
                    promoted: false,
                });
            }
            _ => {}
        }
        self.actions[n].push(a);
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            for n in 0..self.nodes.len() {
                if self.paused != Some(n) {
                    self.nodes[n].handle_timeout(self.now);
                }
            }
            self.run();
        }
    }

    fn local(&mut self, n: usize, ev: LocalEvent) {
        self.nodes[n].handle_local(self.now, ev);
        self.run();
    }

    fn take(&mut self, n: usize) -> Vec<Action> {
        std::mem::take(&mut self.actions[n])
    }

    /// Node `n` crashes and starts again with `boot` (links down, then up).
    fn restart(&mut self, n: u16, boot: Boot) {
        let others: Vec<u16> = (0..u16::try_from(self.nodes.len()).unwrap_or(0))
            .filter(|&o| o != n)
            .collect();
        for &o in &others {
            self.set_link(n, o, false);
        }
        self.nodes[usize::from(n)] = Node::new(self.configs[usize::from(n)].clone(), boot, self.now);
        self.run();
        for &o in &others {
            self.set_link(n, o, true);
        }
    }
}

fn outcome(actions: &[Action]) -> Option<Result<(), Unavailable>> {
    actions.iter().find_map(|a| match a {
        Action::AcceptOutcome { result, .. } => Some(*result),
        _ => None,
    })
}

#[test]
fn accept_waits_for_the_shadow_ack_and_final_releases_it() {
    let mut h = Harness::new(3, 2);
    h.advance(Duration::from_secs(1));
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    let a = h.take(0);
    let copies: Vec<_> = a.iter().filter(|a| matches!(a, Action::SendCopy { .. })).collect();
    assert_eq!(copies.len(), 1, "{a:?}");
    assert_eq!(outcome(&a), Some(Ok(())));
    assert!(h.nodes[0].may_deliver(&id(1)));
    let holder = h.nodes[0]
        .placement(&id(1))
        .map(|p| usize::from(p.holders[0].node.0))
        .unwrap_or(0);
    assert_eq!(h.nodes[holder].counters().shadows_held, 1);
    assert_eq!(h.nodes[holder].shadows_by_origin().get(&NodeId(0)), Some(&1));
    h.local(0, LocalEvent::Final { id: id(1) });
    h.advance(Duration::from_millis(200));
    assert!(h
        .take(holder)
        .iter()
        .any(|a| matches!(a, Action::DropShadows { ids, .. } if ids == &[id(1)])));
    assert_eq!(h.nodes[holder].counters().shadows_held, 0);
}

#[test]
fn too_few_peers_is_451_at_once() {
    let mut h = Harness::new(2, 2);
    h.set_link(0, 1, false);
    assert!(!h.nodes[0].can_accept(h.now));
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    assert_eq!(
        outcome(&h.take(0)),
        Some(Err(Unavailable::NotEnoughPeers {
            reachable: 0,
            needed: 1
        }))
    );
    assert_eq!(h.nodes[0].placement(&id(1)), None);
    assert_eq!(Unavailable::Timeout.reply().code, 451);
}

#[test]
fn degraded_accepts_are_allowed_only_when_configured_and_counted() {
    let mut h = Harness::new(2, 2);
    h.set_link(0, 1, false);
    let mut config = (*h.configs[0]).clone();
    config.allow_degraded = true;
    h.nodes[0] = Node::new(
        Arc::new(config),
        Boot {
            epoch: 9,
            volume: 1,
            ..Boot::default()
        },
        h.now,
    );
    assert!(h.nodes[0].can_accept(h.now));
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    assert_eq!(outcome(&h.take(0)), Some(Ok(())));
    assert_eq!(h.nodes[0].counters().accepts_degraded, 1);
    assert_eq!(h.nodes[0].placement(&id(1)).map(|p| p.holders.len()), Some(0));
}

#[test]
fn no_ack_within_the_deadline_is_451() {
    let mut h = Harness::new(2, 2);
    // The holder never stores the copy: cut the data path only by not delivering it.
    h.nodes[0].handle_local(h.now, LocalEvent::Accepted { id: id(1), size: 10 });
    let a: Vec<Action> = std::iter::from_fn(|| h.nodes[0].poll_action()).collect();
    assert!(matches!(a[..], [Action::SendCopy { .. }]), "{a:?}");
    h.advance(Duration::from_secs(5));
    assert_eq!(outcome(&h.take(0)), Some(Err(Unavailable::Timeout)));
    assert_eq!(h.nodes[0].counters().accepts_failed, 1);
}

#[test]
fn a_streamed_copy_that_keeps_moving_is_not_refused_for_its_time() {
    let mut h = Harness::new(2, 2);
    h.nodes[0].handle_local(
        h.now,
        LocalEvent::Accepted {
            id: id(1),
            size: 100 << 20,
        },
    );
    let a: Vec<Action> = std::iter::from_fn(|| h.nodes[0].poll_action()).collect();
    assert!(matches!(a[..], [Action::SendCopy { .. }]), "{a:?}");
    // Chunks go out every 4 s: 12 s in all, far past the 5 s deadline.
    for _ in 0..3 {
        h.advance(Duration::from_secs(4));
        assert_eq!(outcome(&h.take(0)), None);
        h.local(0, LocalEvent::CopyProgress { id: id(1) });
    }
    // Then the copy stalls: refused one deadline after its last progress.
    h.advance(Duration::from_millis(4900));
    assert_eq!(outcome(&h.take(0)), None);
    h.advance(Duration::from_millis(200));
    assert_eq!(outcome(&h.take(0)), Some(Err(Unavailable::Timeout)));
    // Progress for a message no longer being accepted changes nothing.
    h.local(0, LocalEvent::CopyProgress { id: id(1) });
    assert!(h.take(0).is_empty());
}

#[test]
fn silent_origin_is_taken_over_and_learns_it_at_restart() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.local(0, LocalEvent::Accepted { id: id(2), size: 10 });
    assert_eq!(h.nodes[0].counters().accepts_ok, 2);
    let recovered = h.own[0].clone();
    // Node 0 dies: node 1 waits takeover_after, then promotes and delivers both.
    h.set_link(0, 1, false);
    h.advance(Duration::from_secs(59));
    assert!(!h.take(1).iter().any(|a| matches!(a, Action::Promote { .. })));
    h.advance(Duration::from_secs(2));
    let a = h.take(1);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Promote { ids, .. } if ids.len() == 2)),
        "{a:?}"
    );
    assert!(
        a.iter().any(|a| matches!(a, Action::Deliver { ids } if ids.len() == 2)),
        "{a:?}"
    );
    // Node 1 delivers message 1; message 2 is still queued there.
    h.local(1, LocalEvent::Final { id: id(1) });
    // Node 0 restarts with both messages: 1 is final (dropped), 2 taken over (held).
    h.restart(
        0,
        Boot {
            epoch: 10,
            volume: 1,
            own: recovered,
            shadows: Vec::new(),
        },
    );
    h.advance(Duration::from_secs(1));
    let a = h.take(0);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::DropLocal { ids } if ids == &[id(1)])),
        "{a:?}"
    );
    assert!(!a.iter().any(|a| matches!(a, Action::Deliver { .. })), "{a:?}");
    assert!(!h.nodes[0].may_deliver(&id(2)));
    assert_eq!(h.nodes[0].counters().held_for_takers, 1);
    assert_eq!(h.nodes[0].counters().recovering, 0, "the restart check is complete");
    // The taker finishes: the held copy goes.
    h.local(1, LocalEvent::Final { id: id(2) });
    h.advance(Duration::from_millis(200));
    assert!(h
        .take(0)
        .iter()
        .any(|a| matches!(a, Action::DropLocal { ids } if ids == &[id(2)])));
    assert_eq!(h.nodes[1].counters().taken_over, 2);
}

#[test]
fn a_message_whose_other_copies_are_gone_is_named_for_new_copies() {
    let mut h = Harness::new(3, 2);
    for n in 1..=6 {
        h.local(0, LocalEvent::Accepted { id: id(n), size: 10 });
    }
    assert_eq!(h.nodes[0].counters().accepts_ok, 6);
    assert!(h.nodes[0].single_copies().is_empty(), "every message has its copy");
    let on_1: Vec<MessageId> = (1..=6)
        .map(id)
        .filter(|i| h.nodes[0].placement(i).is_some_and(|p| p.position(NodeId(1)).is_some()))
        .collect();
    assert!(!on_1.is_empty() && on_1.len() < 6, "{on_1:?}");
    // Node 1 dies: after takeover_after, the messages it held a copy of have
    // only node 0's; the others still have node 2's.
    h.set_link(0, 1, false);
    h.set_link(1, 2, false);
    h.advance(Duration::from_secs(30));
    assert!(h.nodes[0].single_copies().is_empty(), "silent, not yet dead");
    h.advance(Duration::from_secs(31));
    assert_eq!(h.nodes[0].single_copies(), on_1);
    // Node 2 names none: what it holds has node 0's copy too.
    assert!(h.nodes[2].single_copies().is_empty());
}

#[test]
fn origin_back_on_a_new_volume_is_taken_over_at_once() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.restart(
        0,
        Boot {
            epoch: 5,
            volume: 5,
            ..Boot::default()
        },
    );
    let a = h.take(1);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver { ids } if ids == &[id(1)])),
        "{a:?}"
    );
}

#[test]
fn restarted_origin_delivers_what_was_not_taken_over() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    let recovered = h.own[0].clone();
    h.take(0);
    h.restart(
        0,
        Boot {
            epoch: 3,
            volume: 1,
            own: recovered,
            shadows: Vec::new(),
        },
    );
    let a = h.take(0);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Deliver { ids } if ids == &[id(1)])),
        "{a:?}"
    );
    assert_eq!(h.nodes[0].counters().restart_wait_expired, 0);
}

#[test]
fn restart_wait_is_bounded_and_counted() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    let recovered = h.own[0].clone();
    h.set_link(0, 1, false);
    h.nodes[0] = Node::new(
        h.configs[0].clone(),
        Boot {
            epoch: 3,
            volume: 1,
            own: recovered,
            ..Boot::default()
        },
        h.now,
    );
    h.take(0);
    h.advance(Duration::from_secs(9));
    assert!(!h.nodes[0].may_deliver(&id(1)));
    assert_eq!(h.nodes[0].counters().recovering, 1);
    h.advance(Duration::from_secs(2));
    assert!(h.nodes[0].may_deliver(&id(1)));
    assert_eq!(h.nodes[0].counters().restart_wait_expired, 1);
    assert_eq!(h.nodes[0].counters().recovering, 0);
}

#[test]
fn with_three_copies_only_the_first_live_holder_takes_over() {
    let mut h = Harness::new(4, 3);
    for n in 1..=20 {
        h.local(0, LocalEvent::Accepted { id: id(n), size: 10 });
    }
    let placements: Vec<Placement> = (1..=20).filter_map(|n| h.nodes[0].placement(&id(n)).cloned()).collect();
    for n in 1..4 {
        h.set_link(0, n, false);
    }
    h.advance(Duration::from_secs(61));
    for (i, p) in placements.iter().enumerate() {
        let first = usize::from(p.holders[0].node.0);
        for holder in &p.holders {
            let node = &h.nodes[usize::from(holder.node.0)];
            let mid = id(u8::try_from(i + 1).unwrap_or(0));
            assert_eq!(node.may_deliver(&mid), usize::from(holder.node.0) == first, "{p:?}");
        }
    }
    let taken: u64 = h.nodes.iter().map(|n| n.counters().taken_over).sum();
    assert_eq!(taken, 20);
}

#[test]
fn drain_hands_every_message_to_a_holder() {
    let mut h = Harness::new(3, 2);
    for n in 1..=5 {
        h.local(0, LocalEvent::Accepted { id: id(n), size: 10 });
    }
    h.take(0);
    h.local(0, LocalEvent::Drain);
    assert!(h.nodes[0].is_drained());
    let a = h.take(0);
    let handed: usize = a
        .iter()
        .map(|a| if let Action::Handed { ids } = a { ids.len() } else { 0 })
        .sum();
    assert_eq!(handed, 5, "{a:?}");
    assert!(!h.nodes[0].can_accept(h.now));
    h.local(0, LocalEvent::Accepted { id: id(9), size: 10 });
    assert_eq!(outcome(&h.take(0)), Some(Err(Unavailable::Draining)));
    let delivering: usize = (1..=5)
        .map(|n| (1..3).filter(|&x| h.nodes[x].may_deliver(&id(n))).count())
        .sum();
    assert_eq!(delivering, 5);
}

#[test]
fn a_draining_taker_hands_taken_over_mail_back_to_its_origin() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.local(0, LocalEvent::Accepted { id: id(2), size: 10 });
    let recovered = h.own[0].clone();
    // Node 0 dies, node 1 takes both over.
    h.set_link(0, 1, false);
    h.advance(Duration::from_secs(61));
    assert_eq!(h.nodes[1].counters().taken_over, 2);
    let taken: Vec<RecoveredCopy> = [id(1), id(2)]
        .iter()
        .map(|i| RecoveredCopy {
            id: *i,
            placement: h.nodes[1].placement(i).cloned().expect("placement"),
            promoted: true,
        })
        .collect();
    // Node 0 is back on its volume: it holds both for node 1.
    h.restart(
        0,
        Boot {
            epoch: 10,
            volume: 1,
            own: recovered.clone(),
            shadows: Vec::new(),
        },
    );
    h.advance(Duration::from_secs(1));
    assert!(!h.nodes[0].may_deliver(&id(1)) && !h.nodes[0].may_deliver(&id(2)));
    h.take(0);
    h.take(1);
    // Node 1 drains: the only other copy is the origin's, which delivers again.
    h.local(1, LocalEvent::Drain);
    assert!(h.nodes[1].is_drained(), "no deadline to wait for");
    let a = h.take(1);
    assert!(
        a.iter().any(|a| matches!(a, Action::Handed { ids } if ids.len() == 2)),
        "{a:?}"
    );
    assert!(
        h.take(0)
            .iter()
            .any(|a| matches!(a, Action::Deliver { ids } if ids.len() == 2)),
        "the origin delivers them"
    );
    assert!(h.nodes[0].may_deliver(&id(1)) && h.nodes[0].may_deliver(&id(2)));
    assert_eq!(h.nodes[0].counters().handed_back, 2);
    assert_eq!(h.nodes[1].counters().handed, 2);
    // Node 1 restarts on its volume, still holding its promoted copies: the origin's
    // answer keeps it from taking them again.
    h.restart(
        1,
        Boot {
            epoch: 20,
            volume: 2,
            own: taken,
            shadows: Vec::new(),
        },
    );
    h.advance(Duration::from_secs(1));
    let a = h.take(1);
    assert!(!a.iter().any(|a| matches!(a, Action::Deliver { .. })), "{a:?}");
    assert!(!h.nodes[1].may_deliver(&id(1)) && !h.nodes[1].may_deliver(&id(2)));
    assert_eq!(h.nodes[1].counters().recovering, 0);
    assert!(h.nodes[0].may_deliver(&id(1)));
    // The origin delivers one: node 1 drops its copy.
    h.local(0, LocalEvent::Final { id: id(1) });
    h.advance(Duration::from_millis(200));
    assert!(h
        .take(1)
        .iter()
        .any(|a| matches!(a, Action::DropLocal { ids } if ids == &[id(1)])));
}

#[test]
fn recovery_answers_lost_before_the_peers_link_came_up_are_asked_again() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    let recovered = h.own[0].clone();
    h.set_link(0, 1, false);
    h.nodes[0] = Node::new(
        h.configs[0].clone(),
        Boot {
            epoch: 10,
            volume: 1,
            own: recovered,
            shadows: Vec::new(),
        },
        h.now,
    );
    // Node 0's connection is up first: its query reaches node 1, whose own side
    // of the link is not up yet, so the answer is dropped there.
    h.link[0][1] = true;
    h.link[1][0] = true;
    h.nodes[0].handle_link(h.now, NodeId(1), Some(frame::FRAME_VERSION));
    h.run();
    h.advance(Duration::from_millis(500));
    assert_eq!(h.nodes[0].counters().recovering, 1, "no answer yet");
    h.take(0);
    // Node 1's side comes up (its Hello): node 0 asks again at once instead of
    // waiting for the periodic re-query, and delivers its message.
    h.nodes[1].handle_link(h.now, NodeId(0), Some(frame::FRAME_VERSION));
    h.run();
    assert_eq!(h.nodes[0].counters().recovering, 0);
    assert_eq!(h.nodes[0].counters().restart_wait_expired, 0);
    assert!(
        h.take(0)
            .iter()
            .any(|a| matches!(a, Action::Deliver { ids } if ids == &[id(1)])),
        "delivered once the answer came"
    );
}

#[test]
fn a_copy_stored_after_its_release_is_dropped() {
    let mut h = Harness::new(2, 2);
    let placement = Placement {
        origin: Member {
            node: NodeId(0),
            volume: 1,
        },
        holders: vec![Member {
            node: NodeId(1),
            volume: 2,
        }],
    };
    h.nodes[1].handle_frame(h.now, NodeId(0), Frame::Release(vec![id(7)]));
    h.local(
        1,
        LocalEvent::ShadowStored {
            origin: NodeId(0),
            id: id(7),
            placement,
        },
    );
    assert!(h
        .take(1)
        .iter()
        .any(|a| matches!(a, Action::DropShadows { ids, .. } if ids == &[id(7)])));
    assert_eq!(h.nodes[1].counters().shadows_held, 0);
}

#[test]
fn a_member_added_later_gets_copies_once_heard_from() {
    let mut h = Harness::new(3, 2);
    // Nodes 0 and 1 start knowing only each other; node 2 is found later, as
    // the relay's DNS discovery finds a new pod.
    for n in 0..2 {
        let mut c = (*h.configs[n]).clone();
        c.members.retain(|m| m.node != NodeId(2));
        h.configs[n] = Arc::new(c);
    }
    let boot = |epoch, volume| Boot {
        epoch,
        volume,
        ..Boot::default()
    };
    h.restart(0, boot(10, 1));
    h.restart(1, boot(11, 2));
    h.set_link(0, 1, false);
    h.advance(Duration::from_secs(4));
    // Its only known peer is away: node 2's frames are not a member's.
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    assert!(matches!(
        outcome(&h.take(0)),
        Some(Err(Unavailable::NotEnoughPeers { .. }))
    ));
    assert!(h.nodes[0].counters().frames_ignored > 0);
    let two = h.configs[2].members[2].clone();
    assert!(h.nodes[0].add_member(h.now, two.clone()));
    assert!(!h.nodes[0].add_member(h.now, two), "known already");
    let me = h.configs[0].members[0].clone();
    assert!(!h.nodes[0].add_member(h.now, me), "itself");
    // The driver dials the new member; once heard from, it holds copies.
    h.set_link(0, 2, false);
    h.set_link(0, 2, true);
    assert!(h.nodes[0].peers().any(|p| p.node == NodeId(2) && p.link));
    h.local(0, LocalEvent::Accepted { id: id(2), size: 10 });
    let a = h.take(0);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::SendCopy { to, .. } if *to == NodeId(2))),
        "{a:?}"
    );
    assert_eq!(outcome(&a), Some(Ok(())));
}

#[test]
fn a_paused_node_neither_takes_over_nor_delivers_what_was_taken_over() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.local(1, LocalEvent::Accepted { id: id(2), size: 10 });
    assert!(h.nodes[0].may_deliver(&id(1)));
    h.take(0);
    // Node 0 stops running for longer than takeover_after: node 1 takes id 1 over.
    h.paused = Some(0);
    h.advance(Duration::from_secs(61));
    assert!(
        h.take(1)
            .iter()
            .any(|a| matches!(a, Action::Promote { ids, .. } if ids == &[id(1)])),
        "node 1 takes over the silent node's message"
    );
    // Node 0 runs again: its first timer call sees the gap.
    h.paused = None;
    h.advance(Duration::from_millis(100));
    let a = h.take(0);
    assert_eq!(h.nodes[0].counters().pauses, 1);
    assert!(
        !a.iter().any(|a| matches!(a, Action::Promote { .. })),
        "its own stall is not node 1's silence: {a:?}"
    );
    assert!(
        a.iter().any(|a| matches!(a, Action::Hold { ids } if ids == &[id(1)])),
        "its queued message waits for the holders' word: {a:?}"
    );
    h.advance(Duration::from_secs(1));
    let a = h.take(0);
    assert!(!a.iter().any(|a| matches!(a, Action::Deliver { .. })), "{a:?}");
    assert!(!h.nodes[0].may_deliver(&id(1)), "node 1 delivers it");
    assert_eq!(h.nodes[0].counters().held_for_takers, 1);
    assert_eq!(h.nodes[0].counters().recovering, 0);
    assert_eq!(h.nodes[1].counters().taken_over, 1);
    assert_eq!(h.nodes[0].counters().taken_over, 0);
}

#[test]
fn a_short_pause_keeps_delivering() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.take(0);
    h.paused = Some(0);
    h.advance(pause::gap_for(Duration::from_secs(1)) + Duration::from_secs(1));
    h.paused = None;
    h.advance(Duration::from_millis(100));
    assert_eq!(h.nodes[0].counters().pauses, 1);
    assert!(!h.take(0).iter().any(|a| matches!(a, Action::Hold { .. })));
    assert!(
        h.nodes[0].may_deliver(&id(1)),
        "shorter than takeover_after: nothing was taken over"
    );
}

/// Two nodes; node 0 accepts a message, which is `age` old when its connection
/// dies with the release in it (frames vanish; neither side has noticed yet). The
/// drivers notice `gap` later and reconnect. Returns node 1's actions after that.
fn release_lost_then_relinked(h: &mut Harness, age: Duration, gap: Duration) -> Vec<Action> {
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.advance(age);
    assert_eq!(h.nodes[1].counters().shadows_held, 1);
    h.link[0][1] = false;
    h.link[1][0] = false;
    h.local(0, LocalEvent::Final { id: id(1) });
    h.advance(gap);
    assert_eq!(h.nodes[1].counters().shadows_held, 1, "the release was lost");
    h.take(1);
    h.set_link(0, 1, false);
    h.set_link(0, 1, true);
    h.advance(Duration::from_millis(100));
    h.take(1)
}

#[test]
fn a_release_lost_on_a_broken_connection_is_repaired_when_the_link_returns() {
    let mut h = Harness::new(2, 2);
    // Older than an accept can last (copies younger than that are not queried),
    // and noticed after the origin gave up sending it (three sends,
    // `peer_timeout` apart, all lost): the holder's check of the copy at
    // link-up repairs it, not the next reconcile round (30 s away), which a
    // takeover could beat.
    let a = release_lost_then_relinked(&mut h, Duration::from_secs(12), Duration::from_secs(10));
    assert_eq!(h.nodes[0].counters().releases_unconfirmed, 1);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::DropShadows { ids, .. } if ids == &[id(1)])),
        "the stale shadow goes when the link returns"
    );
    assert_eq!(h.nodes[1].counters().shadows_held, 0);
}

#[test]
fn a_release_lost_on_a_live_link_is_sent_again_until_confirmed() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    h.advance(Duration::from_millis(500));
    assert_eq!(h.nodes[1].counters().shadows_held, 1);
    // The release batch vanishes on its way; the connection stays up.
    h.link[0][1] = false;
    h.local(0, LocalEvent::Final { id: id(1) });
    h.advance(Duration::from_millis(200));
    h.link[0][1] = true;
    assert_eq!(h.nodes[1].counters().shadows_held, 1, "the release was lost");
    h.advance(Duration::from_secs(4));
    assert_eq!(h.nodes[1].counters().shadows_held, 0, "sent again after peer_timeout");
    assert_eq!(h.nodes[0].counters().releases_resent, 1);
    // Confirmed by the holder: not sent again.
    h.advance(Duration::from_secs(10));
    assert_eq!(h.nodes[0].counters().releases_resent, 1);
    assert_eq!(h.nodes[0].counters().releases_unconfirmed, 0);
}

#[test]
fn releases_sent_on_a_connection_that_broke_are_sent_again_when_the_link_returns() {
    let mut h = Harness::new(2, 2);
    // A peer paused past the idle timeout, noticed at once. The copy is young: the
    // holder's own check at link-up leaves it alone (its accept could still run).
    let a = release_lost_then_relinked(&mut h, Duration::from_millis(500), Duration::from_secs(1));
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::DropShadows { ids, .. } if ids == &[id(1)])),
        "the release goes again when the link returns"
    );
    assert_eq!(h.nodes[1].counters().shadows_held, 0);
    assert_eq!(h.nodes[0].counters().releases_resent, 1);
}

#[test]
fn a_holder_restarted_after_a_lost_release_checks_its_shadows_at_once() {
    let mut h = Harness::new(2, 2);
    h.local(0, LocalEvent::Accepted { id: id(1), size: 10 });
    let placement = h.nodes[0].placement(&id(1)).cloned().expect("placed");
    // Node 1 crashes with the release on its way (the frame vanishes).
    h.link[0][1] = false;
    h.link[1][0] = false;
    h.local(0, LocalEvent::Final { id: id(1) });
    h.advance(Duration::from_millis(300));
    h.take(1);
    h.restart(
        1,
        Boot {
            epoch: 20,
            volume: 2,
            own: Vec::new(),
            shadows: vec![RecoveredCopy {
                id: id(1),
                placement,
                promoted: false,
            }],
        },
    );
    h.advance(Duration::from_millis(100));
    assert!(
        h.take(1)
            .iter()
            .any(|a| matches!(a, Action::DropShadows { ids, .. } if ids == &[id(1)])),
        "the recovered shadow of a final message goes when the link comes up"
    );
    assert_eq!(h.nodes[1].counters().shadows_held, 0);
}
