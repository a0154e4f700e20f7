//! The free-space floor: new mail is refused before the disk is full, so that
//! the queue can still be delivered and emptied (see [`crate::SpoolConfig::min_free_bytes`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// How often the volume's free space is read (a `statvfs`), in ms: MAIL FROM
/// asks far more often than that.
const CHECK_EVERY_MS: u64 = 1000;

/// The last reading of the volume's free space.
#[derive(Debug, Default)]
pub(crate) struct Room {
    checked_ms: AtomicU64,
    /// `u64::MAX` until read (or when it cannot be read: no floor then).
    free: AtomicU64,
}

impl Room {
    /// `Err(NoSpace)` while fewer than `min_free` bytes are free on the volume
    /// holding `path`.
    pub(crate) fn check(&self, path: &Path, min_free: u64) -> Result<(), Error> {
        if min_free == 0 {
            return Ok(());
        }
        let now = crate::id::now_ms();
        let free = if now.saturating_sub(self.checked_ms.load(Ordering::Relaxed)) >= CHECK_EVERY_MS {
            // A volume whose free space cannot be read is not refused for it:
            // the writes themselves still report a full disk.
            let free = rustix::fs::statvfs(path).map_or(u64::MAX, |v| v.f_bavail.saturating_mul(v.f_frsize));
            self.free.store(free, Ordering::Relaxed);
            self.checked_ms.store(now, Ordering::Relaxed);
            free
        } else {
            self.free.load(Ordering::Relaxed)
        };
        if free < min_free {
            return Err(Error::NoSpace {
                path: path.to_path_buf(),
                detail: format!(
                    "{} MB free, below the floor of {} MB kept for deliveries",
                    free >> 20,
                    min_free >> 20
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_refuses_and_none_accepts() {
        let dir = std::env::temp_dir();
        let room = Room::default();
        assert!(room.check(&dir, 0).is_ok());
        assert!(room.check(&dir, 1).is_ok());
        let room = Room::default();
        let err = room.check(&dir, u64::MAX).expect_err("no volume has 16 EiB free");
        assert_eq!(err.reply_code(), (452, "4.3.1"));
    }
}
