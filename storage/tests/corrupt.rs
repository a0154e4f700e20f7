//! Damaged data: a corrupt record is a typed error naming the key and the scan goes on;
//! a damaged SST makes open fail with a clear error, and the documented repair path
//! brings the spool back.

mod common;

use std::path::Path;

use common::{body, envelope};
use rocksdb::{Options, DB};
use storage::{Durability, Entry, Error, MessageId, Spool, SpoolConfig};

const CFS: [&str; 9] = [
    "msg",
    "body",
    "sched",
    "shadow",
    "event",
    "event_by_time",
    "stats",
    "cluster",
    "chunks",
];

/// Opens the spool's database directly, bypassing the crate (to damage it).
fn raw(path: &Path) -> DB {
    DB::open_cf(&Options::default(), path, CFS).expect("raw open")
}

fn fill(path: &Path, n: u64) -> Vec<MessageId> {
    let (spool, _guard) = Spool::open(SpoolConfig::new(path, 1)).unwrap();
    let f: Vec<_> = (0..n)
        .map(|i| spool.accept(envelope(&["a.fr"], i), body(i, 2_000)))
        .collect();
    f.into_iter().map(|f| f.wait().unwrap()).collect()
}

#[test]
fn corrupt_envelope_is_a_typed_error_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let ids = fill(dir.path(), 5);
    {
        let db = raw(dir.path());
        let msg = db.cf_handle("msg").unwrap();
        db.put_cf(msg, ids[2].as_bytes(), b"\x01garbage that is not an envelope")
            .unwrap();
        db.put_cf(msg, ids[3].as_bytes(), b"\x07unknown version").unwrap();
        db.put_cf(msg, b"\xffshort", b"\x01x").unwrap();
    }
    let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 1)).unwrap();
    match spool.envelope(ids[2]) {
        Err(Error::Corrupt { cf, key, error }) => {
            assert_eq!(cf, "msg");
            assert_eq!(key, ids[2].to_string());
            assert!(!error.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(spool.envelope(ids[3]), Err(Error::Corrupt { .. })));
    // Other records are fine, and the body of the damaged one is still readable.
    assert!(spool.envelope(ids[1]).unwrap().is_some());
    assert_eq!(spool.body(ids[2]).unwrap(), Some(body(2, 2_000)));

    let entries: Vec<Entry> = spool.recover().collect();
    assert_eq!(entries.len(), 6);
    let corrupt: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Corrupt { id, error } => Some((*id, error.clone())),
            Entry::Queued(_) => None,
        })
        .collect();
    assert_eq!(corrupt.len(), 3);
    assert_eq!(corrupt[0].0, ids[2]);
    assert_eq!(corrupt[1].0, ids[3]);
    match &corrupt[2].1 {
        Error::Corrupt { key, .. } => assert_eq!(key, "ff73686f7274"),
        e => panic!("{e:?}"),
    }
    // Operations on the damaged record fail typed or succeed; an operator can delete it.
    assert!(matches!(
        spool.hold(ids[2], Durability::Buffered).wait(),
        Err(Error::Corrupt { .. })
    ));
    assert!(spool.remove(ids[2], Durability::Buffered).wait().unwrap());
    assert_eq!(spool.envelope(ids[2]).unwrap(), None);
}

fn largest_sst(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
}

#[test]
fn damaged_sst_fails_open_clearly_and_repair_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ids = fill(dir.path(), 200);
    {
        let db = raw(dir.path());
        for cf in CFS {
            db.flush_cf(db.cf_handle(cf).unwrap()).unwrap();
        }
    }
    let sst = largest_sst(dir.path()).expect("an SST after flush");
    let len = std::fs::metadata(&sst).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&sst).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    let err = Spool::open(SpoolConfig::new(dir.path(), 1)).expect_err("open must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(msg.contains("estafette spool repair"), "{msg}");
    eprintln!("open error, as an operator sees it: {msg}");

    Spool::repair(dir.path()).expect("repair");
    let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 1)).expect("open after repair");
    // Whatever survived scans without panics; every entry is well-formed or typed.
    let mut queued = 0;
    for e in spool.recover() {
        if let Entry::Queued(q) = e {
            assert!(ids.contains(&q.id));
            queued += 1;
        }
    }
    eprintln!("after repair: {queued} of {} messages readable", ids.len());
    // The spool accepts mail again.
    spool.accept(envelope(&["a.fr"], 0), vec![1]).wait().unwrap();
}
