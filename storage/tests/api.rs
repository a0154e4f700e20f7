//! The spool's API on a real RocksDB in a temp dir: accept, read, state changes,
//! shadows, events, stats, shutdown.

mod common;

use std::time::Duration;

use common::{body, envelope};
use storage::{Durability, Entry, Error, Event, EventKind, MessageId, RecipientStatus, Spool, SpoolConfig};

fn open(dir: &std::path::Path) -> (Spool, storage::SpoolDropGuard) {
    Spool::open(SpoolConfig::new(dir, 3)).expect("open spool")
}

#[test]
fn accept_then_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let env = envelope(&["a.mssante.fr", "b.mssante.fr"], 1_000);
    let b = body(1, 10_000);
    let id = spool.accept(env.clone(), b.clone()).wait().unwrap();
    assert_eq!(id.node(), 3);
    let mut expected = env;
    expected.body_size = b.len() as u64;
    assert_eq!(spool.envelope(id).unwrap(), Some(expected));
    assert_eq!(spool.body(id).unwrap(), Some(b));
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![(1_000, id)]);
    assert_eq!(spool.due(999, 10).unwrap(), vec![]);
    let unknown = MessageId::from_parts(1, 1, 1);
    assert_eq!(spool.envelope(unknown).unwrap(), None);
    assert_eq!(spool.body(unknown).unwrap(), None);
}

#[test]
fn ids_are_increasing_and_printable() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let futures: Vec<_> = (0..50)
        .map(|i| spool.accept(envelope(&["x.fr"], 0), body(i, 100)))
        .collect();
    let ids: Vec<MessageId> = futures.into_iter().map(|f| f.wait().unwrap()).collect();
    for w in ids.windows(2) {
        assert!(w[0] < w[1]);
        assert!(w[0].to_string() < w[1].to_string());
    }
    let s = ids[0].to_string();
    assert_eq!(s.parse::<MessageId>().unwrap(), ids[0]);
}

#[test]
fn ids_stay_unique_and_ordered_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (spool, _guard) = open(dir.path());
        spool.accept(envelope(&["x.fr"], 0), vec![1]).wait().unwrap()
    };
    let (spool, _guard) = open(dir.path());
    let second = spool.accept(envelope(&["x.fr"], 0), vec![2]).wait().unwrap();
    assert!(second > first);
}

#[test]
fn accept_without_recipients_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let r = spool.accept(envelope(&[], 0), vec![]).wait();
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

#[test]
fn update_moves_the_sched_entry_and_remove_cleans_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let id = spool
        .accept(envelope(&["a.fr", "b.fr"], 100), body(2, 500))
        .wait()
        .unwrap();
    let mut env = spool.envelope(id).unwrap().unwrap();
    env.recipients[0].status = RecipientStatus::Delivered;
    env.recipients[1].status = RecipientStatus::Deferred;
    env.recipients[1].attempts = 1;
    env.recipients[1].next_attempt_ms = 5_000;
    env.recipients[1].last_reply = Some(storage::StoredReply {
        code: 451,
        enhanced: Some(storage::Enhanced {
            class: 4,
            subject: 7,
            detail: 1,
        }),
        text: "later".into(),
    });
    assert!(spool.update(id, &env, Durability::Buffered).wait().unwrap());
    assert_eq!(spool.envelope(id).unwrap().unwrap(), env);
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![(5_000, id)]);

    // Synced path goes through the group commit.
    env.recipients[1].next_attempt_ms = 6_000;
    assert!(spool.update(id, &env, Durability::Synced).wait().unwrap());
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![(6_000, id)]);

    assert!(spool.remove(id, Durability::Buffered).wait().unwrap());
    assert_eq!(spool.envelope(id).unwrap(), None);
    assert_eq!(spool.body(id).unwrap(), None);
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![]);
    assert!(!spool.remove(id, Durability::Buffered).wait().unwrap());
    assert!(!spool.update(id, &env, Durability::Buffered).wait().unwrap());
}

#[test]
fn hold_and_release() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let id = spool
        .accept(envelope(&["a.fr", "b.fr"], 100), vec![0; 10])
        .wait()
        .unwrap();
    assert!(spool.hold(id, Durability::Buffered).wait().unwrap());
    let env = spool.envelope(id).unwrap().unwrap();
    assert!(env.recipients.iter().all(|r| r.status == RecipientStatus::Held));
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![]);
    match spool.recover().next() {
        Some(Entry::Queued(q)) => {
            assert_eq!(q.recipients.len(), 2);
            assert_eq!(q.due_ms(), None);
        }
        other => panic!("{other:?}"),
    }
    assert!(spool.release(id, 7_000, Durability::Synced).wait().unwrap());
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![(7_000, id)]);
    assert!(!spool
        .hold(MessageId::from_parts(1, 1, 1), Durability::Buffered)
        .wait()
        .unwrap());
}

#[test]
fn envelopes_page_through_every_message_held_ones_included() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push(spool.accept(envelope(&["a.fr"], 100 + i), vec![0; 4]).wait().unwrap());
    }
    assert!(spool.hold(ids[2], Durability::Buffered).wait().unwrap());
    let first = spool.envelopes(None, 2).unwrap();
    let first_ids: Vec<_> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(first_ids, ids[..2]);
    let rest = spool.envelopes(Some(ids[1]), 10).unwrap();
    let rest_ids: Vec<_> = rest.iter().map(|(id, _)| *id).collect();
    assert_eq!(rest_ids, ids[2..]);
    let held = rest[0].1.as_ref().unwrap();
    assert!(held.recipients.iter().all(|r| r.status == RecipientStatus::Held));
    // The held message is not in the due index, but it is listed.
    assert!(!spool.due(u64::MAX, 10).unwrap().iter().any(|(_, id)| *id == ids[2]));
    assert!(spool.envelopes(Some(ids[4]), 10).unwrap().is_empty());
}

#[test]
fn reschedule_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let id = spool.accept(envelope(&["a.fr"], 10), vec![]).wait().unwrap();
    spool
        .reschedule(id, Some(10), Some(20), Durability::Buffered)
        .wait()
        .unwrap();
    spool.sync().wait().unwrap();
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![(20, id)]);
    spool.reschedule(id, Some(20), None, Durability::Synced).wait().unwrap();
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![]);
}

#[test]
fn shadows_put_list_release_promote() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let ids: Vec<MessageId> = (0..5).map(|i| MessageId::from_parts(100 + i, 7, i)).collect();
    for (i, id) in ids.iter().enumerate() {
        spool
            .put_shadow(7, *id, &envelope(&["z.fr"], 50), &body(i as u64, 3_000))
            .wait()
            .unwrap();
    }
    // Another origin's copies are not listed.
    spool
        .put_shadow(8, MessageId::from_parts(1, 8, 1), &envelope(&["z.fr"], 50), b"x")
        .wait()
        .unwrap();
    let listed: Vec<_> = spool.shadows_of(7).map(|s| s.unwrap()).collect();
    assert_eq!(listed.len(), 5);
    for (i, s) in listed.iter().enumerate() {
        assert_eq!((s.origin, s.id), (7, ids[i]));
        assert_eq!(s.body, body(i as u64, 3_000));
    }
    spool
        .release_shadows(7, &ids[..2], Durability::Buffered)
        .wait()
        .unwrap();
    assert_eq!(spool.shadows_of(7).count(), 3);

    assert!(spool.promote_shadow(7, ids[2]).wait().unwrap());
    assert!(!spool.promote_shadow(7, ids[2]).wait().unwrap());
    assert_eq!(spool.shadows_of(7).count(), 2);
    assert_eq!(spool.body(ids[2]).unwrap(), Some(body(2, 3_000)));
    assert_eq!(spool.due(u64::MAX, 10).unwrap(), vec![(50, ids[2])]);
    assert_eq!(spool.shadows_of(8).count(), 1);
    assert_eq!(spool.shadows_of(u16::MAX).count(), 0);
}

#[test]
fn events_in_time_order_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let a = MessageId::from_parts(1, 3, 1);
    let b = MessageId::from_parts(1, 3, 2);
    let ev = |at, kind, d: &str| Event {
        at_ms: at,
        kind,
        detail: d.into(),
    };
    spool.record_event(a, &ev(300, EventKind::Delivered, "r0")).unwrap();
    spool.record_event(a, &ev(100, EventKind::Accepted, "from x")).unwrap();
    spool
        .record_event(a, &ev(100, EventKind::Replicated, "node 2"))
        .unwrap();
    spool.record_event(b, &ev(200, EventKind::Deferred, "451")).unwrap();
    // Events are detached writes: wait until the writer applied them.
    spool.sync().wait().unwrap();
    let got: Vec<Event> = spool.events(a).unwrap().into_iter().map(|e| e.unwrap()).collect();
    assert_eq!(
        got.iter().map(|e| (e.at_ms, e.kind)).collect::<Vec<_>>(),
        vec![
            (100, EventKind::Accepted),
            (100, EventKind::Replicated),
            (300, EventKind::Delivered)
        ]
    );
    assert_eq!(spool.sweep_events(200).unwrap(), 2);
    assert_eq!(spool.events(a).unwrap().len(), 1);
    assert_eq!(spool.events(b).unwrap().len(), 1);
    assert_eq!(spool.sweep_events(200).unwrap(), 0);
    assert_eq!(spool.sweep_events(u64::MAX).unwrap(), 2);
    assert!(spool.events(a).unwrap().is_empty());
}

#[test]
fn sweep_handles_more_than_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let id = MessageId::from_parts(1, 3, 1);
    for i in 0..25_000u64 {
        let e = Event {
            at_ms: i,
            kind: EventKind::Note,
            detail: String::new(),
        };
        spool.record_event(id, &e).unwrap();
    }
    spool.sync().wait().unwrap();
    assert_eq!(spool.sweep_events(24_000).unwrap(), 24_000);
    assert_eq!(spool.events(id).unwrap().len(), 1_000);
}

#[test]
fn monthly_stats_add_up_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _guard) = open(dir.path());
        spool
            .add_stats("2025-03", &[("messages_in", 2), ("domain:a.fr", 1)])
            .unwrap();
        spool.add_stats("2025-03", &[("messages_in", 3)]).unwrap();
        spool.add_stats("2025-04", &[("messages_in", 10)]).unwrap();
        assert!(matches!(
            spool.add_stats("2025-3", &[("x", 1)]),
            Err(Error::InvalidArgument(_))
        ));
    }
    let (spool, _guard) = open(dir.path());
    assert_eq!(
        spool.stats("2025-03").unwrap(),
        vec![("domain:a.fr".to_string(), 1), ("messages_in".to_string(), 5)]
    );
    assert_eq!(spool.stats("2025-04").unwrap(), vec![("messages_in".to_string(), 10)]);
    assert!(spool.stats("2025-05").unwrap().is_empty());
    // Read-only, while the spool is open for writing (`estafette stats` on a live node),
    // including increments still only in the WAL.
    spool.add_stats("2025-04", &[("messages_in", 1)]).unwrap();
    spool.sync().wait().unwrap();
    assert_eq!(
        storage::read_stats(dir.path(), "2025-04").unwrap(),
        vec![("messages_in".to_string(), 11)]
    );
    let e = storage::read_stats(&dir.path().join("nope"), "2025-04").unwrap_err();
    assert!(e.to_string().contains("no spool here"), "{e}");
}

#[test]
fn dropping_the_guard_closes_writes_but_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, guard) = open(dir.path());
    let pending: Vec<_> = (0..20)
        .map(|i| spool.accept(envelope(&["a.fr"], 0), body(i, 1_000)))
        .collect();
    drop(guard);
    // Everything queued before the drop was written.
    for f in pending {
        let id = f.wait().unwrap();
        assert!(spool.body(id).unwrap().is_some());
    }
    let r = spool.accept(envelope(&["a.fr"], 0), vec![]).wait();
    assert_eq!(r, Err(Error::Closed));
    assert_eq!(spool.recover().count(), 20);
}

#[test]
fn a_deadline_of_zero_refuses_synced_writes_with_451() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SpoolConfig::new(dir.path(), 1);
    config.write_deadline = Duration::ZERO;
    let (spool, _guard) = Spool::open(config).unwrap();
    let r = spool.accept(envelope(&["a.fr"], 0), vec![]).wait();
    match r {
        Err(e @ Error::DeadlineExceeded { .. }) => assert_eq!(e.reply_code(), (451, "4.3.0")),
        other => panic!("{other:?}"),
    }
    assert_eq!(spool.recover().count(), 0);
}

#[test]
fn futures_work_from_many_threads_and_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let b = body(t * 1000 + i, 2_000);
                        let id = spool.accept(envelope(&["a.fr"], 0), b.clone()).wait().unwrap();
                        (id, b)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    assert_eq!(all.len(), 400);
    for (id, b) in &all {
        assert_eq!(spool.body(*id).unwrap().as_ref(), Some(b));
    }
    assert!(spool.health().is_ok());
}

#[test]
fn large_bodies_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let big = body(9, 100 << 20);
    let id = spool.accept(envelope(&["a.fr"], 0), big.clone()).wait().unwrap();
    assert_eq!(spool.body(id).unwrap().as_deref(), Some(&big[..]));
    drop((spool, _guard));
    let (spool, _guard) = open(dir.path());
    assert_eq!(spool.body(id).unwrap().as_deref(), Some(&big[..]));
}

#[test]
fn the_future_is_send_and_the_spool_is_sync() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync + Clone>() {}
    is_send_sync::<Spool>();
    let dir = tempfile::tempdir().unwrap();
    let (spool, _guard) = open(dir.path());
    let f = spool.accept(envelope(&["a.fr"], 0), vec![]);
    is_send(&f);
    f.wait().unwrap();
}
