//! What a run recorded, and the invariants checked at its end.

use std::collections::BTreeMap;
use std::fmt;

use proto::cluster::{Action, Frame, MessageId};

use super::world::World;

/// The record of one run.
#[derive(Debug, Default)]
pub(crate) struct Log {
    trace: bool,
    pub(crate) offered: u64,
    pub(crate) refused: u64,
    pub(crate) crashes: u64,
    pub(crate) volume_losses: u64,
    /// Of those, the ones past `min_copies - 1` (see `Params::repaired_losses`).
    pub(crate) repaired_losses: u64,
    pub(crate) drains: u64,
    /// Messages that got 250: when and where.
    pub(crate) acked: BTreeMap<MessageId, (u64, u16)>,
    /// Every delivery (the remote server got the message): when and by whom.
    pub(crate) deliveries: BTreeMap<MessageId, Vec<(u64, u16)>>,
    /// Taken-over messages committed again: old id -> the new ids it became.
    pub(crate) recopies: BTreeMap<MessageId, Vec<MessageId>>,
    /// Taken-over messages that got no new copies (delivered with their one).
    pub(crate) recopy_failed: u64,
    /// Volume losses: when, and which node.
    pub(crate) volume_lost: Vec<(u64, u16)>,
    pub(crate) violations: Vec<String>,
    pub(crate) end_time: u64,
    /// Actions by kind (coverage: which paths of the protocol this run took).
    pub(crate) actions: BTreeMap<&'static str, u64>,
}

impl Log {
    pub(crate) fn new(trace: bool) -> Self {
        Self {
            trace,
            ..Self::default()
        }
    }

    pub(crate) fn trace(&self, t: u64, what: fmt::Arguments<'_>) {
        if self.trace {
            println!("{t:>8} {what}");
        }
    }

    pub(crate) fn trace_frame(&self, t: u64, from: u16, to: u16, frame: &Frame) {
        if self.trace && !matches!(frame, Frame::Heartbeat(_)) {
            println!("{t:>8} n{from} -> n{to} {frame:?}");
        }
    }

    pub(crate) fn trace_action(&mut self, t: u64, node: u16, action: &Action) {
        let kind = match action {
            Action::SendCopy { .. } => "SendCopy",
            Action::AcceptOutcome { result: Ok(()), .. } => "AcceptOk",
            Action::AcceptOutcome { result: Err(_), .. } => "AcceptErr",
            Action::Deliver { .. } => "Deliver",
            Action::Hold { .. } => "Hold",
            Action::DropLocal { .. } => "DropLocal",
            Action::Promote { .. } => "Promote",
            Action::DropShadows { .. } => "DropShadows",
            Action::Handed { .. } => "Handed",
        };
        *self.actions.entry(kind).or_default() += 1;
        if self.trace {
            println!("{t:>8} n{node} action {action:?}");
        }
    }

    pub(crate) fn delivered(&mut self, t: u64, node: u16, id: MessageId) {
        self.trace(t, format_args!("n{node} DELIVERS {id:?}"));
        self.deliveries.entry(id).or_default().push((t, node));
    }

    pub(crate) fn acked(&mut self, t: u64, node: u16, id: MessageId, copies: usize, min_copies: usize) {
        self.trace(t, format_args!("n{node} 250 {id:?} ({copies} durable copies)"));
        if copies < min_copies {
            self.violation(
                t,
                format!("250 for {id:?} with {copies} durable copies, {min_copies} required"),
            );
        }
        self.acked.insert(id, (t, node));
    }

    /// A taken-over `old` committed again as `new` with `copies` durable copies.
    pub(crate) fn recopied(
        &mut self,
        t: u64,
        node: u16,
        old: MessageId,
        new: MessageId,
        copies: usize,
        min_copies: usize,
    ) {
        self.trace(
            t,
            format_args!("n{node} copied {old:?} again as {new:?} ({copies} durable copies)"),
        );
        if copies < min_copies {
            self.violation(
                t,
                format!("{old:?} copied again as {new:?} with {copies} durable copies, {min_copies} required"),
            );
        }
        self.recopies.entry(old).or_default().push(new);
    }

    /// The id `id` had when it was accepted (before it was copied again).
    pub(crate) fn first_id(&self, id: MessageId) -> MessageId {
        let mut id = id;
        // Bounded: each step goes to an older id.
        for _ in 0..=self.recopies.len() {
            match self.recopies.iter().find(|(_, news)| news.contains(&id)) {
                Some((old, _)) => id = *old,
                None => break,
            }
        }
        id
    }

    /// Whether `id`, or a message it was copied again as, was delivered.
    pub(crate) fn delivered_as_any(&self, id: &MessageId) -> bool {
        let mut todo = vec![*id];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(id) = todo.pop() {
            if self.deliveries.contains_key(&id) {
                return true;
            }
            if seen.insert(id) {
                todo.extend(self.recopies.get(&id).into_iter().flatten().copied());
            }
        }
        false
    }

    pub(crate) fn violation(&mut self, t: u64, what: String) {
        self.trace(t, format_args!("VIOLATION {what}"));
        self.violations.push(format!("at {t} ms: {what}"));
    }
}

/// Figures of one run (or a sum of runs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Summary {
    pub(crate) seeds: u64,
    pub(crate) offered: u64,
    pub(crate) acked: u64,
    pub(crate) refused: u64,
    pub(crate) deliveries: u64,
    pub(crate) duplicates: u64,
    pub(crate) crashes: u64,
    pub(crate) volume_losses: u64,
    pub(crate) repaired_losses: u64,
    pub(crate) drains: u64,
    pub(crate) taken_over: u64,
    /// Peers silent for `takeover_after` kept live by another's `Seen`.
    pub(crate) kept_live: u64,
    pub(crate) duplicates_possible: u64,
    pub(crate) restart_wait_expired: u64,
    pub(crate) sim_ms: u64,
    pub(crate) reconcile_dropped: u64,
    pub(crate) recopied: u64,
    pub(crate) recopy_failed: u64,
    pub(crate) actions: [u64; ACTION_KINDS.len()],
}

/// The action kinds counted in [`Summary::actions`].
pub(crate) const ACTION_KINDS: [&str; 9] = [
    "SendCopy",
    "AcceptOk",
    "AcceptErr",
    "Deliver",
    "Hold",
    "DropLocal",
    "Promote",
    "DropShadows",
    "Handed",
];

impl Summary {
    pub(crate) fn add(&mut self, o: &Self) {
        self.seeds += o.seeds;
        self.offered += o.offered;
        self.acked += o.acked;
        self.refused += o.refused;
        self.deliveries += o.deliveries;
        self.duplicates += o.duplicates;
        self.crashes += o.crashes;
        self.volume_losses += o.volume_losses;
        self.repaired_losses += o.repaired_losses;
        self.drains += o.drains;
        self.taken_over += o.taken_over;
        self.kept_live += o.kept_live;
        self.duplicates_possible += o.duplicates_possible;
        self.restart_wait_expired += o.restart_wait_expired;
        self.sim_ms += o.sim_ms;
        self.reconcile_dropped += o.reconcile_dropped;
        self.recopied += o.recopied;
        self.recopy_failed += o.recopy_failed;
        for (a, b) in self.actions.iter_mut().zip(o.actions) {
            *a += b;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seeds, {} s simulated: {} messages offered, {} got 250, {} refused (451); {} deliveries, \
             {} duplicates ({} counted as possible by nodes); {} crashes, {} volume losses \
             ({} of them past min_copies - 1, once copies were made again), {} drains; \
             {} messages taken over; {} silent peers kept live by another's sightings; \
             {} delivered after an expired restart wait",
            self.seeds,
            self.sim_ms / 1000,
            self.offered,
            self.acked,
            self.refused,
            self.deliveries,
            self.duplicates,
            self.duplicates_possible,
            self.crashes,
            self.volume_losses,
            self.repaired_losses,
            self.drains,
            self.taken_over,
            self.kept_live,
            self.restart_wait_expired,
        )?;
        write!(
            f,
            "; {} copies dropped by reconcile; {} messages copied again (one copy left), {} taken over with no peer for a new copy; actions:",
            self.reconcile_dropped, self.recopied, self.recopy_failed
        )?;
        for (kind, n) in ACTION_KINDS.iter().zip(self.actions) {
            write!(f, " {kind} {n}")?;
        }
        Ok(())
    }
}

/// The end-of-run invariants; the figures if they hold.
pub(crate) fn verify(w: &World) -> Result<Summary, String> {
    let log = &w.log;
    let mut problems = log.violations.clone();
    for (id, (t, node)) in &log.acked {
        if !log.delivered_as_any(id) {
            problems.push(format!("{id:?} got 250 from n{node} at {t} ms and was never delivered"));
        }
    }
    for n in &w.nodes {
        if !n.up {
            problems.push(format!("n{} is down at the end", n.id));
            continue;
        }
        for id in n.disk.own.keys() {
            problems.push(format!("n{} still has {id:?} queued after healing", n.id));
        }
        for id in n.disk.shadows.keys() {
            problems.push(format!("n{} still holds a shadow of {id:?} after healing", n.id));
        }
    }
    // Without crashes, partitions or lossy links, nothing is delivered twice: the
    // protocol's duplicates are the price of faults only.
    let p = &w.p;
    if p.crashes == 0 && p.partitions == 0 && p.drop_p == 0.0 && p.dup_p == 0.0 {
        for (id, d) in &log.deliveries {
            if d.len() > 1 {
                problems.push(format!(
                    "{id:?} delivered {} times in a run without faults: {d:?}",
                    d.len()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let mut s = Summary {
        seeds: 1,
        offered: log.offered,
        acked: log.acked.len() as u64,
        refused: log.refused,
        crashes: log.crashes,
        volume_losses: log.volume_losses,
        repaired_losses: log.repaired_losses,
        drains: log.drains,
        sim_ms: log.end_time,
        recopied: log.recopies.values().map(|v| v.len() as u64).sum(),
        recopy_failed: log.recopy_failed,
        ..Summary::default()
    };
    // A message copied again is one message under two ids: its deliveries
    // count together.
    let mut per_message: BTreeMap<MessageId, u64> = BTreeMap::new();
    for (id, d) in &log.deliveries {
        s.deliveries += d.len() as u64;
        *per_message.entry(log.first_id(*id)).or_default() += d.len() as u64;
    }
    s.duplicates = per_message.values().map(|n| n - 1).sum();
    for n in &w.nodes {
        if let Some(c) = n.core.as_ref().map(proto::cluster::Node::counters) {
            s.taken_over += c.taken_over;
            s.kept_live += c.kept_live_by_peers;
            s.duplicates_possible += c.duplicates_possible;
            s.restart_wait_expired += c.restart_wait_expired;
            s.reconcile_dropped += c.reconcile_dropped;
        }
    }
    for (i, kind) in ACTION_KINDS.iter().enumerate() {
        s.actions[i] = log.actions.get(kind).copied().unwrap_or(0);
    }
    Ok(s)
}
