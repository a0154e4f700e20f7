//! The node's phases: `Running → Draining → Stopping`, in that order only.
//!
//! - **Running**: listeners accept, the queue delivers.
//! - **Draining**: listeners stop accepting (new connections are refused
//!   by the closed socket), open sessions are told to finish (`421` once
//!   their current command is answered), `/readyz` is false; the queue keeps
//!   delivering. The cluster's drain (hand the queue to peers) runs here.
//! - **Stopping**: the queue finishes the attempts in progress, idle
//!   connections say QUIT, background tasks end, the spool closes.
//!
//! One [`Lifecycle`] per node moves the phase forward; every task holds a
//! [`PhaseWatch`] and waits for the phase it stops at.

use tokio::sync::watch;

/// Where the node is in its life. Ordered: a later phase compares greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accepting and delivering.
    Running,
    /// No new sessions; delivering.
    Draining,
    /// Finishing: nothing new starts.
    Stopping,
}

/// Moves the phase forward (never back).
#[derive(Debug)]
pub struct Lifecycle {
    tx: watch::Sender<Phase>,
}

/// A task's view of the phase; cheap to clone.
#[derive(Clone, Debug)]
pub struct PhaseWatch {
    rx: watch::Receiver<Phase>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A node in [`Phase::Running`].
    pub fn new() -> Self {
        Self {
            tx: watch::channel(Phase::Running).0,
        }
    }

    /// Moves to `phase` if it is later than the current one.
    pub fn advance(&self, phase: Phase) {
        self.tx.send_if_modified(|p| {
            let later = phase > *p;
            if later {
                *p = phase;
            }
            later
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// A watch for a task.
    pub fn watch(&self) -> PhaseWatch {
        PhaseWatch {
            rx: self.tx.subscribe(),
        }
    }
}

impl PhaseWatch {
    /// Whether `phase` (or a later one) has been reached.
    pub fn reached_now(&self, phase: Phase) -> bool {
        *self.rx.borrow() >= phase
    }

    /// Resolves once `phase` (or a later one) is reached, or the node's
    /// [`Lifecycle`] is gone. Cancel-safe: use it in `select!`.
    pub async fn reached(&mut self, phase: Phase) {
        while !self.reached_now(phase) {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward() {
        let life = Lifecycle::new();
        let mut w = life.watch();
        assert!(!w.reached_now(Phase::Draining));
        life.advance(Phase::Draining);
        w.reached(Phase::Draining).await;
        assert!(!w.reached_now(Phase::Stopping));
        life.advance(Phase::Running);
        assert_eq!(life.phase(), Phase::Draining, "never back");
        life.advance(Phase::Stopping);
        w.reached(Phase::Stopping).await;
        assert!(w.reached_now(Phase::Draining));
        drop(life);
        w.reached(Phase::Stopping).await;
    }
}
