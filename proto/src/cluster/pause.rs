//! A node that did not run for a while: stopped (SIGSTOP), its container or VM
//! frozen, its runtime starved. It did not hear its peers because it was not
//! listening, and its peers may have taken its messages over meanwhile.
//!
//! [`Node::handle_timeout`] runs at least every `heartbeat_interval` while the
//! node runs (a heartbeat is always due), so a longer gap between two calls is
//! time this node was not running. That time does not count as the peers'
//! silence: without this rule a node woken after `takeover_after` would promote
//! every shadow it holds (its peers all look silent) and deliver each of those
//! messages a second time. And when the gap reached `takeover_after`, the
//! node's own queued messages go back through the restart check: not delivered
//! until their holders said whether they took them over (bounded by
//! `restart_wait`, as after a restart). Attempts already in flight when the
//! node stopped finish; those are the duplicates at-least-once allows.

use std::time::Instant;

use super::copy::State;
use super::event::Action;
use super::ids::NodeId;
use super::node::Node;

/// A gap between two timer calls longer than this many heartbeat intervals is a
/// pause (two would flag ordinary scheduling jitter on a loaded host).
const PAUSE_HEARTBEATS: u32 = 3;

impl Node {
    /// Called first in every [`Node::handle_timeout`].
    pub(super) fn check_pause(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_timeout);
        self.last_timeout = now;
        let beat = self.config.heartbeat_interval;
        if gap <= beat * PAUSE_HEARTBEATS {
            return;
        }
        self.counters.pauses += 1;
        self.view.forgive(now, gap.saturating_sub(beat));
        if gap >= self.config.takeover_after {
            self.recheck_own(now);
        }
    }

    /// Own queued messages wait for their holders' word again, as recovered ones
    /// do after a restart (see `reconcile.rs`).
    fn recheck_own(&mut self, now: Instant) {
        let me = self.config.node;
        let view = &self.view;
        let mut hold = Vec::new();
        for (id, copy) in &mut self.copies {
            // A handoff in progress (drain) has its own exchange with the peer.
            if copy.state != (State::Queued { handoff: None }) {
                continue;
            }
            let waiting: Vec<NodeId> = copy
                .placement
                .members()
                .map(|m| m.node)
                .filter(|&n| n != me && view.is_peer(n))
                .collect();
            if waiting.is_empty() {
                continue;
            }
            if copy.reported {
                hold.push(*id);
            }
            copy.deliverable = false;
            copy.reported = false;
            copy.set_state(State::Recovering { waiting }, now);
        }
        self.counters.paused_rechecks += u64::try_from(hold.len()).unwrap_or(u64::MAX);
        if !hold.is_empty() {
            self.actions.push_back(Action::Hold { ids: hold });
        }
        if self
            .copies
            .values()
            .any(|c| matches!(c.state, State::Recovering { .. }))
        {
            self.restart_deadline = Some(now + self.config.restart_wait);
            self.recovery_queried.clear();
            self.requery_recovering(now);
        }
    }
}

/// The shortest gap between timer calls that counts as a pause, plus one
/// heartbeat (for tests).
#[cfg(test)]
pub(super) fn gap_for(beat: std::time::Duration) -> std::time::Duration {
    beat * (PAUSE_HEARTBEATS + 1)
}
