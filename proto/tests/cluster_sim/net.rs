//! The simulated network: links that come and go with crashes and partitions, frames
//! dropped, delayed (reordered) and duplicated, and the replication data plane.

use proto::cluster::{self, Frame, LocalEvent, NackReason, NodeId, Replicate};

use super::driver::DiskOp;
use super::world::{pair, Ev, World};

impl World {
    pub(crate) fn update_links(&mut self) {
        self.calm_since = self.now;
        for a in 0..self.p.nodes {
            for b in a + 1..self.p.nodes {
                let want = self.node(a).up && self.node(b).up && self.cuts.get(&(a, b)).copied().unwrap_or(0) == 0;
                let link = self.links.entry((a, b)).or_default();
                if link.up == want {
                    continue;
                }
                link.up = want;
                if want {
                    link.conn += 1;
                }
                self.log.trace(
                    self.now,
                    format_args!("link {a}-{b} {}", if want { "up" } else { "down" }),
                );
                for (x, y) in [(a, b), (b, a)] {
                    if self.node(x).up {
                        let now = self.local(x);
                        let version = want.then(|| self.wire(x).min(self.wire(y)));
                        self.node(x).core().handle_link(now, NodeId(y), version);
                        self.pump(x);
                    }
                }
            }
        }
    }

    /// Drains a node's actions and frames, then re-arms its timer.
    pub(crate) fn pump(&mut self, node: u16) {
        loop {
            let Some(core) = self.node(node).core.as_mut() else {
                return;
            };
            if let Some(a) = core.poll_action() {
                self.on_action(node, a);
            } else if let Some((to, f)) = core.poll_transmit() {
                self.send(node, to.0, f);
            } else {
                break;
            }
        }
        let n = &mut self.nodes[usize::from(node)];
        let Some(t) = n.core.as_ref().and_then(cluster::Node::poll_timeout) else {
            return;
        };
        let us = u64::try_from(t.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX);
        let at = n.world_ms_for(us).max(self.now);
        if n.timer_at != Some(at) {
            n.timer_at = Some(at);
            self.at(at, Ev::Timer { node });
        }
    }

    pub(crate) fn send(&mut self, from: u16, to: u16, frame: Frame) {
        let link = self.links.get(&pair(from, to)).copied().unwrap_or_default();
        if !link.up || self.rng.chance(self.p.drop_p) {
            return;
        }
        let frame = if self.codec {
            let bytes = cluster::encode(&frame);
            let (mut frames, err) = cluster::frame::decode_stream(&bytes, cluster::frame::DEFAULT_MAX_FRAME);
            assert!(err.is_none() && frames.len() == 1, "codec round trip of {frame:?}");
            frames.remove(0)
        } else {
            frame
        };
        let copies = if self.rng.chance(self.p.dup_p) { 2 } else { 1 };
        for _ in 0..copies {
            let mut d = self.rng.range(1, self.p.delay_ms + 1);
            if self.rng.chance(self.p.spike_p) {
                d *= self.rng.range(2, 50);
            }
            self.at(
                self.now + d,
                Ev::Frame {
                    from,
                    to,
                    conn: link.conn,
                    frame: frame.clone(),
                },
            );
        }
    }

    pub(crate) fn on_frame(&mut self, from: u16, to: u16, conn: u64, frame: Frame) {
        let link = self.links.get(&pair(from, to)).copied().unwrap_or_default();
        if !link.up || link.conn != conn || !self.node(to).up {
            return;
        }
        let now = self.local(to);
        if let Frame::Replicate(r) = &frame {
            return self.on_replicate(from, to, r);
        }
        // What the core hears (data frames are the driver's): its liveness view.
        let n = self.node(to);
        n.last_heard.insert(from, now);
        match &frame {
            Frame::Release(ids) => n.released_seen.extend(ids.iter().copied()),
            Frame::Takeover(t) => {
                for id in &t.ids {
                    n.takeover_seen.entry(*id).or_default().insert(from);
                }
            }
            // A draining taker gives the message up: its earlier notice no
            // longer holds (it starts no attempt while it drains).
            Frame::Handoff(ids) => {
                for id in ids {
                    if let Some(takers) = n.takeover_seen.get_mut(id) {
                        takers.remove(&from);
                    }
                }
            }
            _ => {}
        }
        self.log.trace_frame(self.now, from, to, &frame);
        self.node(to).core().handle_frame(now, NodeId(from), frame);
        self.pump(to);
    }

    pub(crate) fn on_replicate(&mut self, from: u16, to: u16, r: &Replicate) {
        let key = (from, r.id);
        let n = self.node(to);
        let entry = n.assembling.entry(key).or_default();
        entry.0.insert(r.offset);
        if r.last {
            entry.1 = Some(r.offset);
        }
        let Some(last) = entry.1 else { return };
        if u64::try_from(entry.0.len()).unwrap_or(0) != last / 10 + 1 {
            return;
        }
        n.assembling.remove(&key);
        if self.rng.chance(0.01) {
            self.log
                .trace(self.now, format_args!("n{to} fails to store {:?}", r.id));
            let now = self.local(to);
            let ev = LocalEvent::ShadowFailed {
                origin: NodeId(from),
                id: r.id,
                reason: NackReason::NoSpace,
            };
            self.node(to).core().handle_local(now, ev);
            self.pump(to);
            return;
        }
        self.disk(
            to,
            DiskOp::ShadowWrite {
                origin: from,
                id: r.id,
                placement: r.placement.clone(),
            },
        );
    }
}
