//! The last few refusals and delivery errors, for the dashboard: what an
//! operator looks at first when a counter jumps. Bounded rings in memory
//! (not persisted: the trace and the logs keep the history).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Entries kept per ring.
pub const RECENT_CAP: usize = 20;

/// One refusal or delivery error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentEntry {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The reply code (`550`), or 0 when there was none.
    pub code: u16,
    /// Why: a refusal's reason (`policy`, `auth`…), or `deferred`/`failed`.
    pub reason: String,
    /// Peer and command, or queue id, recipient and reply.
    pub detail: String,
}

/// A bounded ring, newest last.
#[derive(Debug, Default)]
pub struct Recent(Mutex<VecDeque<RecentEntry>>);

impl Recent {
    /// Adds `entry`, dropping the oldest beyond [`RECENT_CAP`].
    pub fn push(&self, entry: RecentEntry) {
        let mut ring = crate::sync::lock(&self.0);
        if ring.len() == RECENT_CAP {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The entries, newest first.
    pub fn newest_first(&self) -> Vec<RecentEntry> {
        crate::sync::lock(&self.0).iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_cap_entries() {
        let ring = Recent::default();
        for i in 0..(RECENT_CAP as u64 + 5) {
            ring.push(RecentEntry {
                at_ms: i,
                code: 451,
                reason: "deferred".into(),
                detail: String::new(),
            });
        }
        let got = ring.newest_first();
        assert_eq!(got.len(), RECENT_CAP);
        assert_eq!(got[0].at_ms, RECENT_CAP as u64 + 4);
        assert_eq!(got[RECENT_CAP - 1].at_ms, 5);
    }
}
