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
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        cause: std::io::Error,
    },
    /// The stat line has an unexpected shape.
    #[error("{0}: unexpected format")]
    Format(String),
}

/// The fields after the parenthesised command name (which may hold spaces):
/// index 0 is field 3 (state), 1 the ppid, 11 utime, 12 stime, 13 cutime,
/// 14 cstime.
fn stat_fields(path: &Path) -> Result<Vec<u64>, CpuError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| CpuError::Io {
        path: name.clone(),
        cause,
    })?;
    let rest = text.rfind(')').map(|i| &text[i + 1..]).ok_or(CpuError::Format(name))?;
    // The state letter is not a number: keep positions with 0.
    Ok(rest
        .split_ascii_whitespace()
        .take(15)
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .collect())
}

fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 1000 / USER_HZ)
}

/// CPU time of process `pid` and all its descendants: each live process's
/// utime + stime + cutime + cstime (children it reaped are in the last two).
/// Sampled before and after a run, the difference is what the process tree
/// used in between, also for children that came and went (Postfix's smtpd,
/// cleanup, smtp). Races with processes ending mid-scan cost one tick or so.
///
/// # Errors
/// `pid` does not exist, or `/proc` unreadable.
pub fn tree_cpu(pid: u32) -> Result<Duration, CpuError> {
    let own = stat_fields(&Path::new("/proc").join(pid.to_string()).join("stat"))?;
    let total = |f: &[u64]| f.get(11..15).map_or(0, |v| v.iter().sum::<u64>());
    let mut sum = total(&own);
    // Parent links of every process, then a walk down from `pid`.
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(f) = stat_fields(&e.path().join("stat")) {
                let ppid = f.get(1).copied().unwrap_or(0) as u32;
                procs.push((p, ppid, total(&f)));
            }
        }
    }
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp, t) in &procs {
            if pp == parent && p != pid {
                sum += t;
                frontier.push(p);
            }
        }
    }
    Ok(ticks(sum))
}

/// Busy CPU time of the whole machine (all cores: user, nice, system, irq,
/// softirq), from `/proc/stat`.
///
/// # Errors
/// `/proc/stat` unreadable or malformed.
pub fn machine_cpu() -> Result<Duration, CpuError> {
    let path = "/proc/stat";
    let text = std::fs::read_to_string(path).map_err(|cause| CpuError::Io {
        path: path.into(),
        cause,
    })?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| CpuError::Format(path.into()))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0, 1, 2, 5, 6].iter().map(|&i| v.get(i).copied().unwrap_or(0)).sum();
    Ok(ticks(busy))
}

/// utime + stime from one `stat` file (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces).
fn stat_cpu(path: &Path) -> Result<Duration, CpuError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| CpuError::Io {
        path: name.clone(),
        cause,
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
    let entries = std::fs::read_dir(dir).map_err(|cause| CpuError::Io {
        path: dir.display().to_string(),
        cause,
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
        assert!(tree_cpu(std::process::id()).is_ok_and(|d| d > Duration::ZERO));
        assert!(machine_cpu().is_ok_and(|d| d > Duration::ZERO));
    }
}
