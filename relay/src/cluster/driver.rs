//! The task that runs this node's `proto::cluster::Node`: it feeds it frames,
//! links, local events and timer expiries with the current time, and carries
//! out what it asks (send frames, stream copies, store shadows, promote,
//! drop, answer the accept). The protocol's decisions are all in proto; this
//! file only does the I/O they name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use proto::cluster::{
    Action, Frame, LocalEvent, MessageId, NackReason, Node, NodeId, Placement, Replicate, Unavailable,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, info, warn};

use super::replicate::{self, CopyBody, Outbound, ONE_FRAME};

/// What the rest of the node tells the driver.
pub(super) enum Cmd {
    /// A message is about to be committed locally: place its copies. The
    /// placement comes back at once; the outcome once the shadows acked.
    Accept {
        id: MessageId,
        envelope: Vec<u8>,
        body: CopyBody,
        /// Octets of the body.
        body_size: u64,
        placement: oneshot::Sender<Option<Placement>>,
        outcome: oneshot::Sender<Result<(), Unavailable>>,
    },
    /// More of a streamed copy went out (`replicate::stream`).
    CopyProgress(MessageId),
    /// A message left this node's queue (delivered or bounced).
    Final(MessageId),
    /// A control or data frame from a peer (identity from its certificate).
    Frame { from: NodeId, frame: Frame },
    /// The outgoing connection to `peer` came up (with its frame queue and
    /// the frame version it negotiated) or went down.
    Link {
        peer: NodeId,
        link: Option<(mpsc::Sender<Outbound>, u8)>,
    },
    /// A received copy was stored (or not).
    ShadowDone {
        origin: NodeId,
        id: MessageId,
        placement: Placement,
        result: Result<(), NackReason>,
    },
    /// Shadows were promoted into the queue; `applied` fires once the
    /// protocol's answer (its actions) is carried out.
    Promoted {
        origin: NodeId,
        ids: Vec<MessageId>,
        applied: oneshot::Sender<()>,
    },
    /// A status snapshot for `cluster status` and metrics.
    Status(oneshot::Sender<super::Status>),
    /// The messages this node delivers whose other copies are gone.
    SingleCopies(oneshot::Sender<Vec<MessageId>>),
    /// Whether one message is such.
    IsSingleCopy(MessageId, oneshot::Sender<bool>),
    /// Drain: hand the queue to the peers.
    Drain,
    /// A member found in DNS after the start (`discover`).
    AddMember(proto::cluster::MemberConfig),
}

/// What the driver does outside the protocol: the spool and the queue.
pub(super) struct Io {
    pub(super) spool: storage::Spool,
    /// Messages this node may deliver now (promoted, recovered, given back).
    pub(super) deliver: mpsc::UnboundedSender<super::Handover>,
    /// Its own channel, for the spool tasks it spawns.
    pub(super) me: mpsc::Sender<Cmd>,
    /// Whether enough peers are reachable to accept (read at MAIL FROM).
    pub(super) accepting: Arc<std::sync::atomic::AtomicBool>,
    /// Queued messages this node must not start delivering now: recovered
    /// ones until the protocol says `Deliver`, and those it was told a peer
    /// took over (`Hold`, `Handed`, `DropLocal`).
    pub(super) blocked: super::Blocked,
    /// With `min_copies > 1`: promoted messages, held until the queue has
    /// copied them again (`Cluster::copied_again`).
    pub(super) copying: Option<super::Blocked>,
    /// Stamped after each timer run, once its actions are applied.
    pub(super) pulse: super::Pulse,
    /// Bytes of streamed copies queued for the links (`copy_queue_bytes`).
    pub(super) copy_budget: Arc<Semaphore>,
    pub(super) copy_budget_total: u32,
}

/// A message being accepted: what its copies are made of.
pub(super) struct Outgoing {
    envelope: Vec<u8>,
    body: CopyBody,
    body_size: u64,
    /// Its streams stop once this is dropped (the accept has its outcome).
    alive: Arc<()>,
}

pub(super) struct Driver {
    pub(super) node: Node,
    pub(super) io: Io,
    pub(super) links: HashMap<NodeId, mpsc::Sender<Outbound>>,
    /// Messages being accepted, for `SendCopy`.
    pub(super) sending: HashMap<MessageId, Outgoing>,
    pub(super) outcomes: HashMap<MessageId, oneshot::Sender<Result<(), Unavailable>>>,
    /// When each accept in progress asked for its copies.
    started: HashMap<MessageId, Instant>,
    /// Accept to last shadow ack, in µs, of the accepts that succeeded.
    pub(super) latency: hdrhistogram::Histogram<u64>,
    /// Frames encoded during one `flush`, per peer, in the order the node
    /// produced them; each peer's go to its link as one write.
    outgoing: Vec<(NodeId, Vec<u8>)>,
}

/// Commands handled before the node's actions and frames are carried out:
/// under load, the acks, copies and outcomes of many accepts leave in one
/// write per peer instead of one each (fewer wake-ups of the link task and
/// of QUIC's connection driver). Small, so that one turn stays short.
const CMDS_PER_TURN: usize = 64;

/// A peer's frames of one turn are cut into writes of about this size.
const WRITE_BYTES: usize = 1 << 20;

/// 1 µs to 1 h, 3 significant digits.
pub(super) fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    #[allow(clippy::expect_used)]
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds that hdrhistogram accepts")
}

pub(super) fn sid(id: MessageId) -> Option<storage::MessageId> {
    storage::MessageId::from_slice(id.as_bytes())
}

pub(super) fn placement_bytes(p: &Placement) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(p).map_or_else(|_| Vec::new(), |b| b.to_vec())
}

impl Driver {
    pub(super) fn new(node: Node, io: Io) -> Self {
        Self {
            node,
            io,
            links: HashMap::new(),
            sending: HashMap::new(),
            outcomes: HashMap::new(),
            started: HashMap::new(),
            latency: latency_histogram(),
            outgoing: Vec::new(),
        }
    }

    /// Runs until every sender of `rx` is gone.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        self.flush();
        loop {
            let timer = self.node.poll_timeout();
            let sleep = async {
                match timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let timed = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.handle(cmd);
                        // What else is already queued joins this turn.
                        for _ in 1..CMDS_PER_TURN {
                            match rx.try_recv() {
                                Ok(cmd) => self.handle(cmd),
                                Err(_) => break,
                            }
                        }
                        false
                    }
                    None => return,
                },
                () = sleep => {
                    self.node.handle_timeout(Instant::now());
                    true
                }
            };
            self.flush();
            if timed {
                self.io.pulse.beat();
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Accept {
                id,
                envelope,
                body,
                body_size,
                placement,
                outcome,
            } => {
                let size = envelope.len() as u64 + body_size;
                let alive = Arc::new(());
                self.sending.insert(
                    id,
                    Outgoing {
                        envelope,
                        body,
                        body_size,
                        alive,
                    },
                );
                self.outcomes.insert(id, outcome);
                self.started.insert(id, now);
                self.node.handle_local(now, LocalEvent::Accepted { id, size });
                let _ = placement.send(self.node.placement(&id).cloned());
            }
            Cmd::Final(id) => self.node.handle_local(now, LocalEvent::Final { id }),
            Cmd::CopyProgress(id) => self.node.handle_local(now, LocalEvent::CopyProgress { id }),
            Cmd::Frame { from, frame } => match frame {
                // The transport hands copies to `replicate::Receiver`.
                Frame::Replicate(r) => debug!(%from, id = ?r.id, "stray copy chunk ignored"),
                other => self.node.handle_frame(now, from, other),
            },
            Cmd::Link { peer, link } => {
                let version = link.as_ref().map(|(_, v)| *v);
                match link {
                    Some((tx, _)) => self.links.insert(peer, tx),
                    None => self.links.remove(&peer),
                };
                self.node.handle_link(now, peer, version);
            }
            Cmd::ShadowDone {
                origin,
                id,
                placement,
                result,
            } => {
                let event = match result {
                    Ok(()) => LocalEvent::ShadowStored { origin, id, placement },
                    Err(reason) => LocalEvent::ShadowFailed { origin, id, reason },
                };
                self.node.handle_local(now, event);
            }
            Cmd::Promoted { origin, ids, applied } => {
                self.node.handle_local(now, LocalEvent::Promoted { origin, ids });
                self.flush();
                let _ = applied.send(());
            }
            Cmd::Status(tx) => {
                let _ = tx.send(super::Status::of(&self.node, now, &self.latency));
            }
            Cmd::SingleCopies(tx) => {
                let _ = tx.send(self.node.single_copies());
            }
            Cmd::IsSingleCopy(id, tx) => {
                let _ = tx.send(self.node.is_single_copy(&id));
            }
            Cmd::Drain => self.node.handle_local(now, LocalEvent::Drain),
            Cmd::AddMember(member) => {
                let name = member.name.clone();
                if self.node.add_member(now, member) {
                    tracing::info!(member = %name, "cluster member found in DNS");
                }
            }
        }
    }

    /// Carries out actions and sends frames until the node has none.
    fn flush(&mut self) {
        while let Some(action) = self.node.poll_action() {
            self.act(action);
        }
        while let Some((peer, frame)) = self.node.poll_transmit() {
            self.send(peer, &frame);
        }
        for (peer, bytes) in std::mem::take(&mut self.outgoing) {
            self.write(peer, bytes);
        }
        self.io.accepting.store(
            self.node.can_accept(Instant::now()),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Queues `frame` for `peer`; it leaves at the end of this `flush`,
    /// after the frames queued before it for that peer.
    fn send(&mut self, peer: NodeId, frame: &Frame) {
        if !self.links.contains_key(&peer) {
            return;
        }
        let i = match self.outgoing.iter().position(|(p, _)| *p == peer) {
            Some(i) => i,
            None => {
                self.outgoing.push((peer, Vec::new()));
                self.outgoing.len() - 1
            }
        };
        proto::cluster::encode_into(frame, &mut self.outgoing[i].1);
        if self.outgoing[i].1.len() >= WRITE_BYTES {
            let (peer, bytes) = self.outgoing.swap_remove(i);
            self.write(peer, bytes);
        }
    }

    fn write(&self, peer: NodeId, bytes: Vec<u8>) {
        if let Some(link) = self.links.get(&peer) {
            if link.try_send(Outbound::control(bytes)).is_err() {
                // Full or closed: the protocol repairs lost frames (timeouts, reconcile).
                warn!(%peer, "cluster link congested: frames dropped");
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::SendCopy { to, id, placement } => {
                let Some(copy) = self.sending.get(&id) else {
                    return;
                };
                match &copy.body {
                    CopyBody::Whole(body) if body.len() <= ONE_FRAME => {
                        let frame = Frame::Replicate(Replicate {
                            id,
                            placement,
                            offset: 0,
                            envelope: copy.envelope.clone(),
                            chunk: body.to_vec(),
                            last: true,
                        });
                        self.send(to, &frame);
                    }
                    body => {
                        let Some(link) = self.links.get(&to) else { return };
                        tokio::spawn(replicate::stream(replicate::Stream {
                            link: link.clone(),
                            budget: self.io.copy_budget.clone(),
                            budget_total: self.io.copy_budget_total,
                            id,
                            placement,
                            envelope: copy.envelope.clone(),
                            body: body.clone(),
                            size: copy.body_size,
                            alive: Arc::downgrade(&copy.alive),
                            driver: self.io.me.clone(),
                        }));
                    }
                }
            }
            Action::AcceptOutcome { id, result } => {
                self.sending.remove(&id);
                if let Some(t) = self.started.remove(&id) {
                    if result.is_ok() {
                        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = self.latency.record(us.max(1));
                    }
                }
                if let Some(tx) = self.outcomes.remove(&id) {
                    let _ = tx.send(result);
                }
            }
            Action::Deliver { ids } => {
                self.io.blocked.unblock(&ids);
                for id in ids.into_iter().filter_map(sid) {
                    let _ = self.io.deliver.send(super::Handover::Deliver(id));
                }
            }
            // Attempts already started finish (and report `Final`).
            Action::Hold { ids } | Action::Handed { ids } => {
                info!(count = ids.len(), "messages held: a peer delivers them");
                self.io.blocked.block(&ids);
            }
            Action::DropLocal { ids } => {
                self.io.blocked.block(&ids);
                let spool = self.io.spool.clone();
                tokio::spawn(async move {
                    for id in ids.into_iter().filter_map(sid) {
                        let _ = spool.remove(id, storage::Durability::Buffered).await;
                    }
                });
            }
            Action::DropShadows { origin, ids } => {
                let ids: Vec<_> = ids.into_iter().filter_map(sid).collect();
                let fut = self
                    .io
                    .spool
                    .release_shadows_placed(origin.0, &ids, storage::Durability::Buffered);
                tokio::spawn(async move {
                    let _ = fut.await;
                });
            }
            Action::Promote { origin, ids } => {
                // Out of delivery from before the spool has them in its queue
                // until the queue has made their new copies: a scan must not
                // find them first.
                if let Some(copying) = &self.io.copying {
                    copying.block(&ids);
                }
                let (spool, me, deliver) = (self.io.spool.clone(), self.io.me.clone(), self.io.deliver.clone());
                let placements: Vec<(MessageId, Vec<u8>)> = ids
                    .iter()
                    .map(|id| (*id, self.node.placement(id).map(placement_bytes).unwrap_or_default()))
                    .collect();
                let copying = self.io.copying.clone();
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    for (id, placement) in placements {
                        let Some(sid) = sid(id) else { continue };
                        match spool.promote_shadow_placed(origin.0, sid, placement).await {
                            Ok(_) => done.push(id),
                            Err(e) => {
                                // Still a shadow: the protocol's reconcile asks again.
                                warn!(%origin, id = %sid, error = %e, "taking over a copy failed");
                                if let Some(copying) = &copying {
                                    copying.unblock(&[id]);
                                }
                            }
                        }
                    }
                    info!(%origin, count = done.len(), "took over the copies of an unreachable node");
                    // The protocol learns of them first: the queue's new
                    // copies end in `Final` for these ids, which it must
                    // read as final for a queued message (and a release
                    // that came meanwhile has blocked the ids).
                    let (applied, wait) = oneshot::channel();
                    let _ = me
                        .send(Cmd::Promoted {
                            origin,
                            ids: done.clone(),
                            applied,
                        })
                        .await;
                    let _ = wait.await;
                    for sid in done.into_iter().filter_map(sid) {
                        let _ = deliver.send(super::Handover::TakenOver(sid));
                    }
                });
            }
        }
    }
}
