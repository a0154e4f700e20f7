//! Crash durability: a child process accepts messages as fast as it can and prints each
//! id only after its future resolved; the parent SIGKILLs it at a random moment, reopens
//! the spool and checks that every printed id is there with its exact body.
//!
//! The child is this same test binary, re-run with `ESTAFETTE_CRASH_CHILD` set and only
//! the `crash_child` test selected.
//!
//! 20 rounds by default; `ESTAFETTE_LONG_TESTS=1` runs 200 (or `ESTAFETTE_CRASH_ROUNDS`).
//! SIGKILL loses the process, not the page cache: this checks that `Ok` is only reported
//! after the data reached the kernel in one atomic batch; the fsync itself (power loss) is
//! covered by RocksDB's `sync = true` and is not simulated here.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{clock_random, crash_body, envelope};
use storage::{Entry, MessageId, Spool, SpoolConfig};

const CHILD_ENV: &str = "ESTAFETTE_CRASH_CHILD";
const WRITERS: u64 = 8;

/// Child side: does nothing unless started by `crash_durability`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let (spool, _guard) = Spool::open(SpoolConfig::new(&dir, 1)).expect("child opens spool");
    println!("READY");
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let n = i * WRITERS + w;
                    let hops = ["a.mssante.fr", "b.mssante.fr"];
                    let env = envelope(&hops[..1 + (n % 2) as usize], n);
                    let id = spool.accept(env, crash_body(n)).wait().expect("accept");
                    // One line per acknowledged message, written whole.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {id} {n} .").expect("stdout");
                    out.flush().expect("stdout");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn rounds() -> usize {
    if let Some(n) = std::env::var("ESTAFETTE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var_os("ESTAFETTE_LONG_TESTS").is_some() {
        200
    } else {
        20
    }
}

/// Runs one child against `dir`, kills it after `delay` (counted from its READY line, or
/// from spawn when `before_ready`), and returns the acknowledged (id, n) pairs.
fn run_child(dir: &std::path::Path, delay: Duration, before_ready: bool) -> Vec<(MessageId, u64)> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test crash_child ... " before the child's first line.
            if line.ends_with("READY") {
                let _ = tx.send(());
            } else if let Some(rest) = line.strip_prefix("ACK ") {
                let mut parts = rest.split(' ');
                let id = parts.next().and_then(|s| s.parse::<MessageId>().ok());
                let n = parts.next().and_then(|s| s.parse::<u64>().ok());
                // Only a complete line (ending in " .") counts; a line cut by the kill
                // (it cannot be, one write(2) under PIPE_BUF, but be strict) is ignored.
                let complete = parts.next() == Some(".");
                if let (Some(id), Some(n), true) = (id, n, complete) {
                    acks.push((id, n));
                }
            }
        }
        acks
    });
    if !before_ready {
        // Give the child up to 60 s to open the spool.
        let _ = rx.recv_timeout(Duration::from_secs(60));
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL child");
    let _ = child.wait();
    reader.join().expect("reader thread")
}

#[test]
fn crash_durability() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let rounds = rounds();
    let dir = tempfile::tempdir().unwrap();
    let mut total_acked = 0usize;
    let started = Instant::now();
    for round in 0..rounds {
        let r = clock_random();
        // Mostly kill while accepting; every fifth round possibly during open/recovery.
        let before_ready = round % 5 == 4;
        let delay = Duration::from_millis(if before_ready { r % 300 } else { 50 + r % 700 });
        let acked = run_child(dir.path(), delay, before_ready);
        total_acked += acked.len();

        let (spool, _guard) = Spool::open(SpoolConfig::new(dir.path(), 1))
            .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
        for (id, n) in &acked {
            let body = spool
                .body(*id)
                .unwrap_or_else(|e| panic!("round {round}: body({id}): {e}"))
                .unwrap_or_else(|| panic!("round {round}: acknowledged {id} (n={n}) lost"));
            assert!(body == crash_body(*n), "round {round}: body of {id} differs");
            let env = spool.envelope(*id).unwrap().expect("envelope present");
            assert_eq!(env.received_at_ms, *n);
            assert_eq!(env.body_size, body.len() as u64);
        }
        // The whole spool scans cleanly: no torn record from the crash.
        for entry in spool.recover() {
            if let Entry::Corrupt { id, error } = entry {
                panic!("round {round}: corrupt record {id} after crash: {error}");
            }
        }
        // Keep the spool small between rounds: drop what this round verified.
        for (id, _) in &acked {
            spool.remove(*id, storage::Durability::Buffered).wait().unwrap();
        }
    }
    eprintln!(
        "crash_durability: {rounds} rounds, {total_acked} acknowledged messages all found, {:?}",
        started.elapsed()
    );
    assert!(total_acked > 0, "the child never acknowledged anything");
}
