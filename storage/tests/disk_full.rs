//! Disk full on a small tmpfs: accept fails with the typed error, the database stays
//! readable and openable, acknowledged data is intact, and writes resume by themselves
//! once space is freed.
//!
//! Needs root (to mount a tmpfs). Not root: skipped with a printed reason. Root but the
//! mount fails (no CAP_SYS_ADMIN in a container): the test fails and says why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{body, envelope};
use storage::{Error, MessageId, Spool, SpoolConfig};

struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            // Something still holds a file open: detach lazily so nothing is left mounted.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// RocksDB's own account of its error handling, for a failure message.
fn print_rocksdb_log(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("LOG")).unwrap_or_default();
    for line in log.lines().filter(|l| {
        ["rror", "ecover", "free space", "Clearing", "Resum", "space"]
            .iter()
            .any(|w| l.contains(w))
    }) {
        eprintln!("LOG: {line}");
    }
}

fn config(path: &Path) -> SpoolConfig {
    let mut c = SpoolConfig::new(path, 1);
    c.write_buffer_bytes = 4 << 20;
    c.block_cache_bytes = 8 << 20;
    c
}

/// Accepts 64 KiB messages, 8 at a time, until one fails; returns that error.
fn fill_until_error(spool: &Spool, acked: &mut Vec<(MessageId, u64)>, n: &mut u64) -> Error {
    let limit = *n + 10_000;
    loop {
        let batch: Vec<_> = (0..8)
            .map(|_| {
                *n += 1;
                (*n, spool.accept(envelope(&["a.fr"], *n), body(*n, 64 << 10)))
            })
            .collect();
        let mut err = None;
        for (n, f) in batch {
            match f.wait() {
                Ok(id) => acked.push((id, n)),
                Err(e) => err = Some(e),
            }
        }
        if let Some(e) = err {
            return e;
        }
        assert!(*n < limit, "the tmpfs never filled up");
    }
}

/// Accepts one small message every 200 ms until it works (at most 60 s).
fn wait_for_resume(spool: &Spool, spool_dir: &Path) -> MessageId {
    let t0 = Instant::now();
    loop {
        match spool.accept(envelope(&["a.fr"], 0), body(0, 1_000)).wait() {
            Ok(id) => {
                eprintln!("writes resumed {:?} after freeing space", t0.elapsed());
                return id;
            }
            Err(e) if t0.elapsed() < Duration::from_secs(60) => {
                assert!(e.is_transient(), "{e:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                print_rocksdb_log(spool_dir);
                panic!("writes did not resume within 60 s of freeing space: {e}")
            }
        }
    }
}

fn check_acked(spool: &Spool, acked: &[(MessageId, u64)]) {
    for (id, n) in acked {
        assert_eq!(spool.body(*id).unwrap(), Some(body(*n, 64 << 10)), "{id}");
    }
}

#[test]
fn disk_full_refuses_with_no_space_then_recovers_by_itself() {
    if !is_root() {
        eprintln!("SKIPPED disk_full test: not root, cannot mount a tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(dir.path(), "56m")
        .unwrap_or_else(|e| panic!("disk-full test needs a tmpfs and could not mount one: {e}"));
    let ballast1 = fs.path.join("ballast1");
    let ballast2 = fs.path.join("ballast2");
    std::fs::write(&ballast1, vec![0xAAu8; 12 << 20]).unwrap();
    std::fs::write(&ballast2, vec![0xBBu8; 12 << 20]).unwrap();
    let spool_dir = fs.path.join("spool");
    let mut acked = Vec::new();
    let mut n = 0;

    // 1. Fill the disk: accept fails with the typed error, reads keep working.
    let (spool, guard) = Spool::open(config(&spool_dir)).expect("open on tmpfs");
    let failure = fill_until_error(&spool, &mut acked, &mut n);
    eprintln!("disk full after {} acked messages: {failure}", acked.len());
    assert!(
        matches!(failure, Error::NoSpace { .. }),
        "expected NoSpace, got {failure:?}"
    );
    assert_eq!(failure.reply_code(), (452, "4.3.1"));
    assert!(matches!(spool.health(), Err(Error::NoSpace { .. })));
    let again = spool.accept(envelope(&["a.fr"], 0), vec![1; 100]).wait();
    assert!(matches!(again, Err(Error::NoSpace { .. })), "{again:?}");
    check_acked(&spool, &acked);

    // 2. Free space: writes resume by themselves, without reopening.
    std::fs::remove_file(&ballast1).unwrap();
    let resumed = wait_for_resume(&spool, &spool_dir);
    assert!(spool.health().is_ok());

    // 3. Fill again, then close and reopen while the disk is still full.
    // RocksDB's recovery may have to write (flush the recovered memtables to
    // blob and table files): then the open fails for want of space, and
    // succeeds once space is freed, with nothing acknowledged lost. Which of
    // the two happens depends on how full the last file left the disk.
    let failure = fill_until_error(&spool, &mut acked, &mut n);
    assert!(matches!(failure, Error::NoSpace { .. }), "{failure:?}");
    drop(guard);
    drop(spool);
    let (spool, guard) = match Spool::open(config(&spool_dir)) {
        Ok(opened) => opened,
        Err(e) => {
            assert!(e.to_string().contains("No space left"), "reopen on a full disk: {e:?}");
            eprintln!("reopen on the full disk needed space: {e}; freeing some");
            std::fs::remove_file(&ballast2).unwrap();
            Spool::open(config(&spool_dir)).expect("reopen once space is freed")
        }
    };
    check_acked(&spool, &acked);

    // 4. Free space again; writes resume; a last reopen finds everything.
    if ballast2.exists() {
        std::fs::remove_file(&ballast2).unwrap();
    }
    let resumed2 = wait_for_resume(&spool, &spool_dir);
    drop(guard);
    drop(spool);
    let (spool, _guard) = Spool::open(config(&spool_dir)).expect("reopen after disk full");
    check_acked(&spool, &acked);
    assert!(spool.body(resumed).unwrap().is_some());
    assert!(spool.body(resumed2).unwrap().is_some());
    eprintln!("{} acknowledged messages intact", acked.len());
}
