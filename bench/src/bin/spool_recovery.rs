//! Restart with a large queue: fill a spool with N queued messages, reopen it, time the
//! recovery scan, and measure the memory of the in-memory queues rebuilt from it.
//!
//! `cargo run --release -p estafette-bench --bin spool_recovery -- [N] [BODY_BYTES] [DIR]`
//! (defaults: 1,000,000 messages, 1,024-byte bodies, a directory under the system temp
//! dir, removed at the end unless DIR is given; a DIR that already holds a spool is reused
//! without filling, so the scan can be re-timed).
//!
//! Prints: fill rate, open time (WAL replay), scan time, and RSS growth per queued
//! message while building the index (`/proc/self/status` VmRSS before and after). The
//! index is what a relay keeps: per message its `QueuedMessage` (id and pending
//! recipients, next hops interned), ready queues per next hop and a deferred index by
//! due time.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use storage::{Entry, Envelope, Notify, QueuedMessage, Recipient, RecipientStatus, Spool, SpoolConfig};

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 1 in 3 messages has two recipients; 1 in 4 is deferred; next hops among 500 domains.
fn envelope(i: u64) -> Envelope {
    let rcpt = |k: u64| {
        let domain = format!("etab{}.mssante.fr", (i * 7 + k) % 500);
        let deferred = i.is_multiple_of(4);
        Recipient {
            address: format!("dr.martin{k}@{domain}"),
            orcpt: None,
            notify: Notify(Notify::FAILURE | Notify::DELAY),
            next_hop: domain,
            status: if deferred {
                RecipientStatus::Deferred
            } else {
                RecipientStatus::Queued
            },
            attempts: u32::from(deferred),
            next_attempt_ms: 1_700_000_000_000 + if deferred { 60_000 + i % 3_600_000 } else { 0 },
            last_reply: deferred.then(|| storage::StoredReply {
                code: 451,
                enhanced: Some(storage::Enhanced {
                    class: 4,
                    subject: 4,
                    detail: 1,
                }),
                text: "connection timed out".to_string(),
            }),
        }
    };
    let n = if i.is_multiple_of(3) { 2 } else { 1 };
    Envelope {
        sender: "secretariat@hopital.mssante.fr".into(),
        recipients: (0..n).map(rcpt).collect(),
        peer_addr: "192.0.2.10:40312".into(),
        helo: "dpi.hopital.fr".into(),
        tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384".into()),
        client_identity: Some("CN=dpi.hopital.fr,O=Hopital".into()),
        received_at_ms: 1_700_000_000_000 + i,
        ..Envelope::default()
    }
}

/// What a relay rebuilds at start.
#[derive(Default)]
struct Index {
    messages: Vec<QueuedMessage>,
    ready: HashMap<Arc<str>, VecDeque<u32>>,
    deferred: BTreeSet<(u64, u32)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let body_bytes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let (dir, keep) = match args.get(3) {
        Some(d) => (PathBuf::from(d), true),
        None => (
            std::env::temp_dir().join(format!("estafette-spool-recovery-{}", std::process::id())),
            false,
        ),
    };
    let existing = dir.join("CURRENT").exists();

    if !existing {
        let (spool, guard) = Spool::open(SpoolConfig::new(&dir, 1)).expect("open");
        let body = vec![b'x'; body_bytes];
        let t = Instant::now();
        let mut in_flight = VecDeque::new();
        for i in 0..n {
            in_flight.push_back(spool.accept(envelope(i), body.clone()));
            if in_flight.len() >= 4096 {
                if let Some(f) = in_flight.pop_front() {
                    f.wait().expect("accept");
                }
            }
        }
        for f in in_flight {
            f.wait().expect("accept");
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "filled {n} messages ({body_bytes}-byte bodies) in {secs:.1} s: {:.0} accepts/s",
            n as f64 / secs
        );
        drop(guard);
        drop(spool);
    }

    let t_open = Instant::now();
    let (spool, _guard) = Spool::open(SpoolConfig::new(&dir, 1)).expect("reopen");
    let open_s = t_open.elapsed().as_secs_f64();

    let rss_before = vm_rss_kib();
    let t_scan = Instant::now();
    let mut index = Index::default();
    let mut corrupt = 0u64;
    for entry in spool.recover() {
        match entry {
            Entry::Queued(q) => {
                let slot = index.messages.len() as u32;
                for r in &q.recipients {
                    match r.status {
                        RecipientStatus::Queued => index.ready.entry(r.next_hop.clone()).or_default().push_back(slot),
                        RecipientStatus::Deferred => {
                            index.deferred.insert((r.next_attempt_ms, slot));
                        }
                        _ => {}
                    }
                }
                index.messages.push(q);
            }
            Entry::Corrupt { .. } => corrupt += 1,
        }
    }
    let scan_s = t_scan.elapsed().as_secs_f64();
    let rss_after = vm_rss_kib();
    let count = index.messages.len() as u64;
    let per_msg = (rss_after.saturating_sub(rss_before) * 1024) as f64 / count.max(1) as f64;
    println!("open (WAL replay): {open_s:.2} s");
    println!(
        "recovery scan: {count} messages ({corrupt} corrupt) in {scan_s:.2} s ({:.0} msg/s); \
         {} ready queues, {} deferred recipients",
        count as f64 / scan_s,
        index.ready.len(),
        index.deferred.len()
    );
    println!(
        "open + scan: {:.2} s; index RSS growth {} KiB = {per_msg:.0} bytes per queued message",
        open_s + scan_s,
        rss_after.saturating_sub(rss_before)
    );
    drop(index);
    drop(spool);
    if !keep {
        drop(_guard);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
