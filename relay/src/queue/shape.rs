//! The queue's shape (`estafette queue summary`): messages waiting per
//! destination, by age, like Postfix's qshape, so that an operator sees at a
//! glance which destination is stuck and since when.

use std::collections::HashMap;

use serde::Serialize;
use storage::Envelope;

use super::Queue;

/// Upper bounds of the age columns, in minutes (qshape's): a message aged
/// 7 minutes counts in the `10` column; the last column is "older than 1280".
pub const AGE_BUCKETS_MIN: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// One destination (next hop) of the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShapeRow {
    /// The next hop (`TOTAL` for the sum row).
    pub destination: String,
    /// Messages with at least one recipient waiting for this destination.
    pub messages: u64,
    /// Of which held by an operator (for this destination).
    pub held: u64,
    /// Age of the oldest of them, seconds.
    pub oldest_age_secs: u64,
    /// Messages by age: one count per [`AGE_BUCKETS_MIN`] bound, then the rest.
    pub by_age: Vec<u64>,
}

impl ShapeRow {
    fn new(destination: String) -> Self {
        Self {
            destination,
            by_age: vec![0; AGE_BUCKETS_MIN.len() + 1],
            ..Self::default()
        }
    }

    fn add(&mut self, age_ms: u64, held: bool) {
        self.messages += 1;
        self.held += u64::from(held);
        self.oldest_age_secs = self.oldest_age_secs.max(age_ms / 1000);
        let minutes = age_ms / 60_000;
        let column = AGE_BUCKETS_MIN
            .iter()
            .position(|&bound| minutes < bound)
            .unwrap_or(AGE_BUCKETS_MIN.len());
        if let Some(n) = self.by_age.get_mut(column) {
            *n += 1;
        }
    }
}

/// The queue by destination, busiest first, and the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Every message waiting, once (however many destinations it has).
    pub total: ShapeRow,
    /// One row per destination, most messages first.
    pub rows: Vec<ShapeRow>,
    /// Messages read (damaged records are skipped and logged).
    pub scanned: u64,
    /// The scan stopped at its limit: counts are lower bounds.
    pub truncated: bool,
}

impl Shape {
    /// The shape of `messages` at `now_ms`. Only recipients still waiting
    /// (queued, deferred or held) count.
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a Envelope>, now_ms: u64) -> Self {
        let mut total = ShapeRow::new("TOTAL".into());
        let mut rows: HashMap<&str, ShapeRow> = HashMap::new();
        let mut scanned = 0;
        for env in messages {
            scanned += 1;
            let age = now_ms.saturating_sub(env.received_at_ms);
            let mut seen: Vec<&str> = Vec::new();
            for r in env.recipients.iter().filter(|r| !r.status.is_final()) {
                if seen.contains(&r.next_hop.as_str()) {
                    continue;
                }
                seen.push(&r.next_hop);
                let held = env
                    .recipients
                    .iter()
                    .filter(|o| o.next_hop == r.next_hop && !o.status.is_final())
                    .all(|o| o.status == storage::RecipientStatus::Held);
                rows.entry(&r.next_hop)
                    .or_insert_with(|| ShapeRow::new(r.next_hop.clone()))
                    .add(age, held);
            }
            if !seen.is_empty() {
                let held = env
                    .recipients
                    .iter()
                    .filter(|r| !r.status.is_final())
                    .all(|r| r.status == storage::RecipientStatus::Held);
                total.add(age, held);
            }
        }
        let mut rows: Vec<ShapeRow> = rows.into_values().collect();
        rows.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.destination.cmp(&b.destination))
        });
        Self {
            total,
            rows,
            scanned,
            truncated: false,
        }
    }
}

impl Queue {
    /// The shape of the whole queue after reading at most `scan_limit`
    /// records. Reads the spool on the calling thread: call it off the async
    /// threads.
    ///
    /// # Errors
    /// The spool's read error; a damaged record is skipped (and logged).
    pub fn shape(&self, scan_limit: usize) -> Result<Shape, storage::Error> {
        let mut envelopes = Vec::new();
        let truncated = self.scan(scan_limit, |_, env| {
            envelopes.push(env);
            true
        })?;
        let mut shape = Shape::of(&envelopes, storage::now_ms());
        shape.truncated = truncated;
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use storage::{Recipient, RecipientStatus};

    use super::*;

    fn env(received_at_ms: u64, rcpts: &[(&str, RecipientStatus)]) -> Envelope {
        Envelope {
            received_at_ms,
            recipients: rcpts
                .iter()
                .map(|(hop, status)| Recipient {
                    address: format!("x@{hop}"),
                    next_hop: (*hop).to_string(),
                    status: *status,
                    ..Recipient::default()
                })
                .collect(),
            ..Envelope::default()
        }
    }

    #[test]
    fn counts_each_message_once_per_destination_by_age() {
        use RecipientStatus::*;
        let now = 100 * 60_000 * 60;
        let min = 60_000;
        let messages = [
            env(now - 2 * min, &[("a.fr", Queued), ("a.fr", Deferred), ("b.fr", Held)]),
            env(now - 7 * min, &[("a.fr", Deferred)]),
            env(now - 2000 * min, &[("b.fr", Held), ("c.fr", Delivered)]),
            env(now, &[("c.fr", Delivered), ("c.fr", Failed)]),
        ];
        let shape = Shape::of(&messages, now);
        assert_eq!(shape.scanned, 4);
        assert_eq!(shape.total.messages, 3, "the all-final message does not count");
        assert_eq!(shape.total.held, 1);
        assert_eq!(shape.rows.len(), 2);
        let (a, b) = (&shape.rows[0], &shape.rows[1]);
        assert_eq!((a.destination.as_str(), a.messages, a.held), ("a.fr", 2, 0));
        assert_eq!(a.by_age, vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(a.oldest_age_secs, 7 * 60);
        assert_eq!((b.destination.as_str(), b.messages, b.held), ("b.fr", 2, 2));
        assert_eq!(b.by_age, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(b.oldest_age_secs, 2000 * 60);
    }
}
