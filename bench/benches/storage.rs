//! storage micro-benchmarks with real fsync on a temp dir:
//! `cargo bench -p estafette-bench --bench storage`.
//!
//! - `accept_10KB/group_commit/{1,16,64,256}`: durable accepts per second of 10 KB
//!   messages with that many concurrent writers (threads, each waiting for its accept
//!   before sending the next, as SMTP sessions do), through the spool's group-commit
//!   writer.
//! - `accept_10KB/one_sync_per_message/{1,16,64,256}`: the naive baseline in the same
//!   run: the same spool with `max_batch_messages = 1`, i.e. one synced RocksDB write
//!   (one WAL fsync) per message.
//! - `delivery_reads/{10KB,1MiB_piece}/{fresh,reopened}`: what a delivery attempt
//!   reads on its task: the envelope and the body of a random message among 50,000
//!   (10 KB, read whole on the async worker) or 200 (1 MiB pieces of 5 MiB
//!   messages; read one piece at a time, on a blocking thread), right after the
//!   fill (memtables) and after a reopen (SST and blob files, page cache warm).
//!
//! The spool directory is under `$ESTAFETTE_BENCH_DIR` if set (put it on the disk you
//! want to measure), else the system temp dir.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use storage::{Envelope, Notify, Recipient, RecipientStatus, Spool, SpoolConfig, SpoolDropGuard};

const BODY: usize = 10 * 1024;

fn envelope() -> Envelope {
    Envelope {
        sender: "medecin@hopital.mssante.fr".into(),
        recipients: vec![Recipient {
            address: "secretariat@cabinet.mssante.fr".into(),
            orcpt: None,
            notify: Notify(Notify::FAILURE),
            next_hop: "cabinet.mssante.fr".into(),
            status: RecipientStatus::Queued,
            attempts: 0,
            next_attempt_ms: 0,
            last_reply: None,
        }],
        peer_addr: "192.0.2.10:40312".into(),
        helo: "dpi.hopital.fr".into(),
        tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384".into()),
        client_identity: Some("CN=dpi.hopital.fr,O=Hopital".into()),
        ..Envelope::default()
    }
}

fn body() -> Vec<u8> {
    (0..BODY)
        .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/\r\n"[i % 40])
        .collect()
}

static RUN: AtomicU64 = AtomicU64::new(0);

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("ESTAFETTE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!(
        "estafette-bench-spool-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ))
}

struct TempSpool {
    spool: Spool,
    guard: Option<SpoolDropGuard>,
    dir: PathBuf,
    /// Leave the directory when dropped (to reopen it).
    keep: bool,
}

impl TempSpool {
    fn open(max_batch_messages: usize) -> Self {
        let dir = bench_dir();
        let mut config = SpoolConfig::new(&dir, 1);
        config.max_batch_messages = max_batch_messages;
        let (spool, guard) = Spool::open(config).expect("open spool");
        Self {
            spool,
            guard: Some(guard),
            dir,
            keep: false,
        }
    }
}

impl Drop for TempSpool {
    fn drop(&mut self) {
        self.guard.take();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `total` accepts spread over `writers` threads, each waiting for its accept to resolve
/// before sending the next. Returns the wall time.
fn run_accepts(spool: &Spool, writers: u64, total: u64) -> Duration {
    let body = body();
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let n = total / writers + u64::from(w < total % writers);
            let spool = spool.clone();
            let body = body.clone();
            s.spawn(move || {
                for _ in 0..n {
                    spool.accept(envelope(), body.clone()).wait().expect("accept");
                }
            });
        }
    });
    start.elapsed()
}

fn accept(c: &mut Criterion) {
    let mut g = c.benchmark_group("accept_10KB");
    g.throughput(Throughput::Elements(1));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(6));
    g.warm_up_time(Duration::from_secs(1));
    for writers in [1u64, 16, 64, 256] {
        for (name, max_batch) in [("group_commit", 1024), ("one_sync_per_message", 1)] {
            let t = TempSpool::open(max_batch);
            g.bench_with_input(BenchmarkId::new(name, writers), &writers, |b, &w| {
                b.iter_custom(|iters| {
                    // At least one message per writer so that every writer takes part;
                    // the time is scaled back to `iters` messages.
                    let n = iters.max(w);
                    run_accepts(&t.spool, w, n).mul_f64(iters as f64 / n as f64)
                })
            });
        }
    }
    g.finish();
}

/// A spool holding `n` messages of `size` octets, their ids, and the spool's
/// temp dir; with `size` over a MiB the bodies are stored in 1 MiB pieces.
fn filled(n: usize, size: usize) -> (TempSpool, Vec<storage::MessageId>) {
    let t = TempSpool::open(1024);
    let piece = bytes::Bytes::from(body().repeat(size.div_ceil(BODY).min(103)));
    let mut ids = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for _ in 0..n {
        if size <= BODY {
            pending.push(t.spool.accept(envelope(), body()));
        } else {
            let id = t.spool.next_id();
            let mut spill = t.spool.spill(id);
            while spill.len() + (piece.len() as u64) < size as u64 {
                spill.write(piece.clone()).wait().expect("piece");
            }
            pending.push(
                t.spool
                    .accept_spilled(envelope(), bytes::Bytes::new(), spill, piece.clone()),
            );
        }
        if pending.len() >= 256 {
            ids.extend(pending.drain(..).map(|f| f.wait().expect("accept")));
        }
    }
    ids.extend(pending.drain(..).map(|f| f.wait().expect("accept")));
    (t, ids)
}

/// Closes the spool (a clean stop: memtables flushed) and opens it again.
fn reopen(mut t: TempSpool) -> TempSpool {
    t.keep = true;
    let dir = t.dir.clone();
    drop(t);
    let (spool, guard) = Spool::open(SpoolConfig::new(&dir, 1)).expect("reopen");
    TempSpool {
        spool,
        guard: Some(guard),
        dir,
        keep: false,
    }
}

fn delivery_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("delivery_reads");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut pick = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let (t, ids) = filled(50_000, BODY);
    let mut t = Some(t);
    for state in ["fresh", "reopened"] {
        if state == "reopened" {
            t = t.take().map(reopen);
        }
        let spool = &t.as_ref().expect("spool").spool;
        g.bench_function(BenchmarkId::new("10KB", state), |b| {
            b.iter(|| {
                let id = ids[pick(ids.len())];
                let env = spool.envelope(id).expect("read").expect("envelope");
                let body = spool.body(id).expect("read").expect("body");
                (env.recipients.len(), body.len())
            })
        });
    }
    drop(t);
    let (t, ids) = filled(200, 5 << 20);
    let mut t = Some(t);
    for state in ["fresh", "reopened"] {
        if state == "reopened" {
            t = t.take().map(reopen);
        }
        let spool = &t.as_ref().expect("spool").spool;
        g.bench_function(BenchmarkId::new("1MiB_piece", state), |b| {
            b.iter(|| {
                let id = ids[pick(ids.len())];
                let mut reader = spool.body_reader(id).expect("reader");
                let head = reader.next_piece().expect("read");
                let piece = reader.next_piece().expect("read").expect("piece");
                (head.map(|h| h.len()), piece.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, accept, delivery_reads);
criterion_main!(benches);
