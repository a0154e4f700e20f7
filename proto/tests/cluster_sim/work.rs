//! The driver's side of a node: client accepts, spool writes and what the actions ask.

use proto::cluster::{Action, Frame, LocalEvent, MessageId, NodeId, Replicate};

use super::driver::{DiskOp, Pending};
use super::world::{Ev, World};

impl World {
    /// Submits a write to the node's group commit: durable a few ms later, in order.
    pub(crate) fn disk(&mut self, node: u16, op: DiskOp) {
        let d = self.rng.range(1, 6);
        let n = &mut self.nodes[usize::from(node)];
        let at = n.disk_busy_until.max(self.now) + d;
        n.disk_busy_until = at;
        let inc = n.inc;
        self.at(at, Ev::Disk { node, inc, op });
    }

    pub(crate) fn on_disk(&mut self, node: u16, op: DiskOp) {
        let now = self.local(node);
        let n = &mut self.nodes[usize::from(node)];
        match op {
            DiskOp::OwnWrite { id, placement } => {
                n.disk.own.insert(id, (placement, false));
                if let Some(p) = n.pending.get_mut(&id) {
                    p.synced = true;
                }
                self.maybe_250(node, id);
            }
            DiskOp::OwnDelete { id } => {
                n.disk.own.remove(&id);
            }
            DiskOp::ShadowWrite { origin, id, placement } => {
                n.disk.shadows.insert(id, placement.clone());
                let ev = LocalEvent::ShadowStored {
                    origin: NodeId(origin),
                    id,
                    placement,
                };
                n.core().handle_local(now, ev);
                self.pump(node);
            }
            DiskOp::ShadowDelete { ids } => {
                for id in ids {
                    n.disk.shadows.remove(&id);
                }
            }
            DiskOp::Promote { origin, ids } => {
                for id in &ids {
                    if let Some(placement) = n.disk.shadows.remove(id) {
                        n.disk.own.insert(*id, (placement, true));
                    }
                }
                self.log
                    .trace(self.now, format_args!("n{node} promoted {} of n{origin}", ids.len()));
                n.core().handle_local(
                    now,
                    LocalEvent::Promoted {
                        origin: NodeId(origin),
                        ids: ids.clone(),
                    },
                );
                self.pump(node);
                if self.p.min_copies > 1 {
                    for id in ids {
                        self.recopy(node, id, true);
                    }
                }
            }
            DiskOp::Recopied { old, new } => {
                n.disk.own.remove(&old);
                n.recopying.remove(&new);
                n.deliverable.remove(&old);
                n.core().handle_local(now, LocalEvent::Final { id: old });
                self.pump(node);
            }
        }
    }

    pub(crate) fn on_action(&mut self, node: u16, action: Action) {
        self.log.trace_action(self.now, node, &action);
        match action {
            Action::SendCopy { to, id, placement } => {
                let chunks = self.rng.range(1, 4);
                for i in 0..chunks {
                    let frame = Frame::Replicate(Replicate {
                        id,
                        placement: placement.clone(),
                        offset: i * 10,
                        envelope: if i == 0 { vec![1, 2, 3] } else { Vec::new() },
                        chunk: vec![0; 10],
                        last: i + 1 == chunks,
                    });
                    self.send(node, to.0, frame);
                }
            }
            Action::AcceptOutcome { id, result } => match result {
                Ok(()) => {
                    if let Some(p) = self.node(node).pending.get_mut(&id) {
                        p.ok = true;
                    }
                    self.maybe_250(node, id);
                }
                Err(_) => {
                    if self.node(node).pending.remove(&id).is_some() {
                        self.disk(node, DiskOp::OwnDelete { id });
                    }
                    match self.node(node).recopying.remove(&id) {
                        // No new copies: the old id is delivered with its one
                        // copy, and copied again at the next try; the cluster
                        // is not calm (`World::calm`) until the tries had
                        // `CALM_MS` without a failure.
                        Some(old) => {
                            self.calm_since = self.calm_since.max(self.now);
                            self.schedule_attempt(node, old);
                        }
                        None => self.log.refused += 1,
                    }
                }
            },
            Action::Deliver { ids } => {
                for id in ids {
                    self.node(node).deliverable.insert(id);
                    self.schedule_attempt(node, id);
                }
            }
            Action::Hold { ids } | Action::Handed { ids } => {
                for id in ids {
                    self.node(node).deliverable.remove(&id);
                }
            }
            Action::DropLocal { ids } => {
                for id in ids {
                    self.node(node).deliverable.remove(&id);
                    self.disk(node, DiskOp::OwnDelete { id });
                }
            }
            Action::Promote { origin, ids } => self.disk(node, DiskOp::Promote { origin: origin.0, ids }),
            Action::DropShadows { origin: _, ids } => self.disk(node, DiskOp::ShadowDelete { ids }),
        }
    }

    /// A fresh message id, minted on `node`.
    fn mint(&mut self, node: u16) -> MessageId {
        self.msg_seq += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.now.to_be_bytes());
        b[8..10].copy_from_slice(&node.to_be_bytes());
        b[10..].copy_from_slice(&self.msg_seq.to_be_bytes()[2..]);
        MessageId(b)
    }

    /// The relay's `queue/rereplicate.rs` for a message with one copy left:
    /// unless it is no longer this node's to deliver, or too few peers are
    /// reachable, it is accepted again under a new id (local write and
    /// copies, as a client's), and once that succeeded the old id is removed
    /// and reported final. Until then the old id is not delivered.
    pub(crate) fn recopy(&mut self, node: u16, old: MessageId, takeover: bool) {
        let now = self.local(node);
        let n = self.node(node);
        if !n.disk.own.contains_key(&old) || !n.core().may_deliver(&old) || !n.core().is_single_copy(&old) {
            return;
        }
        if !n.core().can_accept(now) {
            if takeover {
                self.log.recopy_failed += 1;
            }
            return;
        }
        let new = self.mint(node);
        let n = self.node(node);
        n.recopying.insert(new, old);
        n.core().handle_local(now, LocalEvent::Accepted { id: new, size: 1000 });
        if let Some(placement) = n.core().placement(&new).cloned() {
            n.pending.insert(
                new,
                Pending {
                    synced: false,
                    ok: false,
                },
            );
            self.disk(node, DiskOp::OwnWrite { id: new, placement });
        }
        self.pump(node);
    }

    /// After a timer run: what the protocol says has one copy left is copied
    /// again if peers are reachable (the relay's `Queue::retry_copies`, every
    /// few seconds), except a message being delivered right now.
    pub(crate) fn retry_copies(&mut self, node: u16) {
        let now = self.local(node);
        let n = self.node(node);
        if !n.core().can_accept(now) {
            return;
        }
        for id in n.core().single_copies() {
            let n = self.node(node);
            if n.attempting.contains(&id) || n.is_recopying(&id) {
                continue;
            }
            self.recopy(node, id, false);
        }
    }

    /// A client offers a message to a random node that is up and not draining.
    pub(crate) fn accept(&mut self) {
        let up: Vec<u16> = (0..self.p.nodes)
            .filter(|&n| self.node(n).up && !self.node(n).draining)
            .collect();
        if up.is_empty() {
            self.log.refused += 1;
            return;
        }
        let node = up[self.rng.index(up.len())];
        let id = self.mint(node);
        self.log.offered += 1;
        if self.rng.chance(0.3) {
            // A destination that defers for a while: the message stays queued through faults.
            let until = self.now + self.rng.range(1_000, self.p.faults_until);
            self.dest_down_until.insert(id, until);
        }
        let now = self.local(node);
        let n = self.node(node);
        n.core().handle_local(now, LocalEvent::Accepted { id, size: 1000 });
        if let Some(placement) = n.core().placement(&id).cloned() {
            n.pending.insert(
                id,
                Pending {
                    synced: false,
                    ok: false,
                },
            );
            self.disk(node, DiskOp::OwnWrite { id, placement });
        }
        self.pump(node);
    }

    /// 250 once the local commit and the replication outcome are both Ok.
    pub(crate) fn maybe_250(&mut self, node: u16, id: MessageId) {
        let n = self.node(node);
        if !n.pending.get(&id).is_some_and(|p| p.synced && p.ok) {
            return;
        }
        n.pending.remove(&id);
        n.deliverable.insert(id);
        let recopy_of = n.recopying.get(&id).copied();
        let holders: Vec<u16> = n
            .core()
            .placement(&id)
            .map(|p| p.holders.iter().map(|m| m.node.0).collect())
            .unwrap_or_default();
        // A holder that acked, then lost its volume before the local write
        // ended, had the copy durable when it acked (ids begin with the
        // world time they were minted at).
        let since = u64::from_be_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
        let lost = holders
            .iter()
            .filter(|h| self.log.volume_lost.iter().any(|(t, n)| n == *h && *t >= since))
            .count();
        let copies = lost
            + self
                .nodes
                .iter()
                .filter(|x| x.disk.own.contains_key(&id) || x.disk.shadows.contains_key(&id))
                .count();
        match recopy_of {
            Some(old) => {
                self.log.recopied(self.now, node, old, id, copies, self.p.min_copies);
                self.disk(node, DiskOp::Recopied { old, new: id });
            }
            None => self.log.acked(self.now, node, id, copies, self.p.min_copies),
        }
        self.schedule_attempt(node, id);
    }
}
