//! Recovery: 100,000 messages in mixed states come back, after a restart, as the right
//! ready queues (per next hop), deferred index (per due time), held set and finished set.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::envelope;
use storage::{Durability, Entry, Envelope, MessageId, RecipientStatus, Spool, SpoolConfig};

const N: u64 = 100_000;
const HOPS: [&str; 7] = [
    "a.mssante.fr",
    "b.mssante.fr",
    "c.mssante.fr",
    "d.mssante.fr",
    "e.mssante.fr",
    "f.mssante.fr",
    "g.mssante.fr",
];

/// The queues the relay rebuilds, as plain sorted sets.
#[derive(Debug, Default, PartialEq, Eq)]
struct Queues {
    /// (next hop, id, recipient index) of Queued recipients.
    ready: BTreeSet<(String, MessageId, u32)>,
    /// (due, id, recipient index) of Deferred recipients.
    deferred: BTreeSet<(u64, MessageId, u32)>,
    /// (id, recipient index) of Held recipients.
    held: BTreeSet<(MessageId, u32)>,
    /// Messages whose recipients are all final.
    finished: BTreeSet<MessageId>,
}

impl Queues {
    fn add_envelope(&mut self, id: MessageId, env: &Envelope) {
        if env.is_complete() {
            self.finished.insert(id);
        }
        for (i, r) in env.recipients.iter().enumerate() {
            let i = i as u32;
            match r.status {
                RecipientStatus::Queued => {
                    self.ready.insert((r.next_hop.clone(), id, i));
                }
                RecipientStatus::Deferred => {
                    self.deferred.insert((r.next_attempt_ms, id, i));
                }
                RecipientStatus::Held => {
                    self.held.insert((id, i));
                }
                RecipientStatus::Delivered | RecipientStatus::Failed => {}
            }
        }
    }
}

fn initial_envelope(i: u64) -> Envelope {
    let hop = HOPS[(i % 7) as usize];
    let hop2 = HOPS[((i + 1) % 7) as usize];
    let hop3 = HOPS[((i + 3) % 7) as usize];
    match i % 10 {
        4 | 7 => envelope(&[hop, hop2], 1_000 + i),
        8 => {
            let mut e = envelope(&[hop], 0);
            e.recipients[0].status = RecipientStatus::Deferred;
            e.recipients[0].attempts = 3;
            e.recipients[0].next_attempt_ms = 2_000_000 + i;
            e
        }
        9 => {
            let mut e = envelope(&[hop, hop2, hop3], 1_000 + i);
            e.recipients[0].status = RecipientStatus::Failed;
            e.recipients[2].status = RecipientStatus::Held;
            e
        }
        _ => envelope(&[hop], 1_000 + i),
    }
}

#[test]
fn recovery_of_100k_messages_rebuilds_the_queues() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Queues::default();
    let mut expected_due = BTreeSet::new();
    let mut expected_ids = Vec::new();
    {
        let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 2)).unwrap();
        let mut ids = Vec::with_capacity(N as usize);
        for chunk in 0..N / 2_000 {
            let futures: Vec<_> = (chunk * 2_000..(chunk + 1) * 2_000)
                .map(|i| spool.accept(initial_envelope(i), vec![b'x'; 64]))
                .collect();
            ids.extend(futures.into_iter().map(|f| f.wait().expect("accept")));
        }
        for (i, &id) in (0u64..).zip(&ids) {
            let mut env = initial_envelope(i);
            env.body_size = 64;
            match i % 10 {
                4 => {
                    env.recipients[0].status = RecipientStatus::Delivered;
                    env.recipients[1].status = RecipientStatus::Deferred;
                    env.recipients[1].attempts = 1;
                    env.recipients[1].next_attempt_ms = 5_000_000 + i;
                    assert!(spool.update(id, &env, Durability::Buffered).wait().unwrap());
                }
                5 => {
                    assert!(spool.hold(id, Durability::Buffered).wait().unwrap());
                    env.recipients[0].status = RecipientStatus::Held;
                }
                6 => {
                    assert!(spool.remove(id, Durability::Buffered).wait().unwrap());
                    continue;
                }
                7 => {
                    for r in &mut env.recipients {
                        r.status = RecipientStatus::Delivered;
                    }
                    assert!(spool.update(id, &env, Durability::Buffered).wait().unwrap());
                }
                _ => {}
            }
            expected.add_envelope(id, &env);
            if let Some(d) = env.due_ms() {
                expected_due.insert((d, id));
            }
            expected_ids.push(id);
        }
        // A clean shutdown is not required for buffered writes to survive a process
        // exit; the test reopens without syncing.
    }

    let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 2)).unwrap();
    let mut got = Queues::default();
    let mut seen = Vec::new();
    let mut hop_ptrs: HashMap<String, *const u8> = HashMap::new();
    let mut scan = spool.recover();
    for entry in scan.by_ref() {
        let q = match entry {
            Entry::Queued(q) => q,
            Entry::Corrupt { id, error } => panic!("corrupt {id}: {error}"),
        };
        seen.push(q.id);
        if q.recipients.is_empty() {
            got.finished.insert(q.id);
        }
        for r in &q.recipients {
            // Interned: one allocation per next hop.
            let p = hop_ptrs.entry(r.next_hop.to_string()).or_insert(r.next_hop.as_ptr());
            assert_eq!(*p, r.next_hop.as_ptr());
            match r.status {
                RecipientStatus::Queued => {
                    got.ready.insert((r.next_hop.to_string(), q.id, r.index));
                }
                RecipientStatus::Deferred => {
                    got.deferred.insert((r.next_attempt_ms, q.id, r.index));
                }
                RecipientStatus::Held => {
                    got.held.insert((q.id, r.index));
                }
                s => panic!("final status {s:?} reported as pending"),
            }
        }
    }
    assert_eq!(scan.next_hops(), HOPS.len());
    drop(scan);
    assert_eq!(seen, expected_ids, "ids in id order, removed ones absent");
    assert_eq!(got.ready.len(), expected.ready.len());
    assert_eq!(got.deferred.len(), expected.deferred.len());
    assert_eq!(got.held.len(), expected.held.len());
    assert_eq!(got.finished.len(), expected.finished.len());
    assert_eq!(got, expected);
    // Every class is represented (the test exercises what it claims to).
    assert!(!expected.ready.is_empty() && !expected.deferred.is_empty());
    assert!(!expected.held.is_empty() && !expected.finished.is_empty());

    // The on-disk deferred index agrees with the envelopes.
    let due: BTreeSet<(u64, MessageId)> = spool.due(u64::MAX, usize::MAX).unwrap().into_iter().collect();
    assert_eq!(due, expected_due);
}
