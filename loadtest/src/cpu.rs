//! CPU time from `/proc`: a whole process (the target relay, or this tool) and
//! this tool's threads by name (so that `run` can tell the load generator's
//! CPU from its sink's).
//!
//! Resolution is the kernel's clock tick: `USER_HZ`, 100 per second on every
//! Linux architecture this runs on (10 ms): measure runs of seconds, not
//! milliseconds.

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, fixed at 100 by the
/// Linux ABI on x86 and ARM).
const USER_HZ: u64 = 100;

/// Why CPU time could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// `/proc/<pid>/stat` could not be read (no such process?).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The stat line has an unexpected shape.
    #[error("{0}: unexpected format")]
    Format(String),
}

/// utime + stime from one `stat` file (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces).
fn stat_cpu(path: &Path) -> Result<Duration, CpuError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CpuError::Io {
        path: name.clone(),
        source,
    })?;
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| CpuError::Format(name.clone()))?;
    // After ")": state is field 3, so utime (14) is index 11 here.
    let mut f = rest.split_ascii_whitespace().skip(11);
    let mut next = || f.next().and_then(|v| v.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (next(), next()) else {
        return Err(CpuError::Format(name));
    };
    Ok(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU time (user + system, all threads) used so far by process `pid`.
///
/// # Errors
/// No such process, or `/proc` unreadable.
pub fn process_cpu(pid: u32) -> Result<Duration, CpuError> {
    stat_cpu(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// CPU time used so far by this process.
///
/// # Errors
/// `/proc/self/stat` unreadable.
pub fn self_cpu() -> Result<Duration, CpuError> {
    stat_cpu(Path::new("/proc/self/stat"))
}

/// CPU time used so far by this process's live threads whose name starts
/// with `prefix` (tokio runtimes here name their workers).
///
/// # Errors
/// `/proc/self/task` unreadable.
pub fn threads_cpu(prefix: &str) -> Result<Duration, CpuError> {
    let dir = Path::new("/proc/self/task");
    let entries = std::fs::read_dir(dir).map_err(|source| CpuError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut total = Duration::ZERO;
    for entry in entries.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            // A thread may end between listing and reading: skip it.
            total += stat_cpu(&entry.path().join("stat")).unwrap_or_default();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_refuses_missing_pid() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu().is_ok_and(|d| d > Duration::ZERO));
        assert!(matches!(process_cpu(u32::MAX), Err(CpuError::Io { .. })));
    }
}
