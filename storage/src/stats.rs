//! Monthly operator counters (`estafette stats --month YYYY-MM`).
//!
//! Key `month "YYYY-MM" || counter name` → u64 big-endian, summed by a RocksDB merge
//! operator so that adding never reads.

use rocksdb::ReadOptions;

use crate::error::Error;
use crate::keys::{prefix_end, Cf};
use crate::spool::{Core, Spool};
use crate::writer::Ops;

/// Checks `month` is `YYYY-MM` (digits, month 01–12).
fn check_month(month: &str) -> Result<(), Error> {
    let b = month.as_bytes();
    let ok = b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("month must be YYYY-MM, got {month:?}")))
    }
}

/// Every counter of `month` in the spool at `path`, read without opening the
/// spool for writing: safe while the node that owns it runs
/// (`estafette stats`).
///
/// # Errors
/// [`Error::Open`] if the directory is not a spool; a bad `month`; a damaged counter.
pub fn read_stats(path: &std::path::Path, month: &str) -> Result<Vec<(String, u64)>, Error> {
    check_month(month)?;
    counters(&Core::open_read_only(path)?, month)
}

fn counters(core: &Core, month: &str) -> Result<Vec<(String, u64)>, Error> {
    let mut opts = ReadOptions::default();
    if let Some(end) = prefix_end(month.as_bytes()) {
        opts.set_iterate_upper_bound(end);
    }
    let mut it = core.db.raw_iterator_cf_opt(core.cf(Cf::Stats)?, opts);
    it.seek(month.as_bytes());
    let mut out = Vec::new();
    while let Some((k, v)) = it.item() {
        let name = String::from_utf8_lossy(&k[month.len().min(k.len())..]).into_owned();
        let value = <[u8; 8]>::try_from(v)
            .map(u64::from_be_bytes)
            .map_err(|_| Error::corrupt(Cf::Stats.name(), k, "counter is not 8 bytes"))?;
        out.push((name, value));
        it.next();
    }
    it.status()
        .map_err(|e| Error::from_read(&core.config.path, Cf::Stats.name(), month.as_bytes(), e))?;
    Ok(out)
}

impl Spool {
    /// Adds `delta` to each named counter of `month` (`"2025-03"`), atomically for the
    /// whole slice.
    ///
    /// Detached like [`Spool::record_event`] (queued for the writer, not waited for, no
    /// fsync; a merge: no read): a crash may lose the last increments, so
    /// the counters are indicators, not accounting. Counter names are free-form
    /// (`"messages_in"`, `"sender_domain:hopital.fr"`, `"x-mss-ins"`).
    pub fn add_stats(&self, month: &str, deltas: &[(&str, u64)]) -> Result<(), Error> {
        check_month(month)?;
        let mut ops = Ops::default();
        for (name, delta) in deltas {
            let mut key = Vec::with_capacity(7 + name.len());
            key.extend_from_slice(month.as_bytes());
            key.extend_from_slice(name.as_bytes());
            ops.merge(Cf::Stats, key, delta.to_be_bytes().to_vec());
        }
        self.writer().submit_detached(ops)
    }

    /// Every counter of `month`, sorted by name.
    pub fn stats(&self, month: &str) -> Result<Vec<(String, u64)>, Error> {
        check_month(month)?;
        counters(self.core(), month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert!(check_month("2025-03").is_ok());
        assert!(check_month("2025-12").is_ok());
        for bad in ["2025-13", "2025-00", "2025/03", "25-03", "2025-3", "abcd-03"] {
            assert!(check_month(bad).is_err(), "{bad}");
        }
    }
}
