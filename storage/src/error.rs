//! The spool's error type, one variant per thing the relay does differently.

use std::path::PathBuf;
use std::time::Duration;

/// A spool failure. Each variant maps to one SMTP reply class ([`Error::reply_code`]) and
/// carries what an operator needs to act on it.
///
/// `Clone` because one group-commit failure is reported to every waiter of the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The disk holding the spool is full. The relay answers `452 4.3.1`. Nothing already
    /// acknowledged is lost, and writes resume by themselves once space is freed (see
    /// [`crate::Spool`], "Disk full").
    #[error("spool disk full at {path}: {detail} (free space on that volume; writes resume by themselves)")]
    NoSpace {
        /// The spool directory.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// RocksDB reported an error that is not "disk full" (I/O error, background error,
    /// write stall timeout). The relay answers `421 4.3.0` / `452 4.3.0` and stops
    /// accepting until [`crate::Spool::health`] is good again.
    #[error("spool unhealthy: {reason}")]
    Unhealthy {
        /// RocksDB's message, or what the spool was doing.
        reason: String,
    },
    /// A synced write waited in the group-commit queue longer than
    /// [`crate::SpoolConfig::write_deadline`] and was dropped without being written.
    /// The relay answers `451 4.3.0`.
    #[error("spool write not started within {waited:?} (disk too slow or stalled)")]
    DeadlineExceeded {
        /// How long it waited.
        waited: Duration,
    },
    /// A stored record failed validation. Scans report it and go on; the record is left in
    /// place for an operator (`estafette queue show`/`delete`).
    #[error("corrupt record in column family {cf}, key {key}: {error}")]
    Corrupt {
        /// Column family name.
        cf: &'static str,
        /// The key, as a message id when it is one, else hex.
        key: String,
        /// What is wrong with it.
        error: String,
    },
    /// The database could not be opened.
    #[error(
        "cannot open spool at {path}: {reason}. If RocksDB reports corruption, stop the node \
         and run `estafette spool repair {path}` (RocksDB's RepairDB, `Spool::repair`): it \
         keeps every record it can read; restore from a replica or backup otherwise"
    )]
    Open {
        /// The spool directory.
        path: PathBuf,
        /// RocksDB's message.
        reason: String,
    },
    /// The spool was shut down ([`crate::SpoolDropGuard`] dropped, or the writer thread
    /// died). The relay answers `421 4.3.2`.
    #[error("spool closed")]
    Closed,
    /// The caller passed something the spool cannot store (for example a malformed month
    /// for [`crate::Spool::add_stats`]). A programming error in the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The SMTP reply a relay gives for this error while accepting mail: `(code, enhanced)`.
    ///
    /// `NoSpace` → 452 4.3.1, `DeadlineExceeded` → 451 4.3.0, `Closed` → 421 4.3.2,
    /// `Unhealthy`/`Open`/`Corrupt`/`InvalidArgument` → 451 4.3.0 (a local error in
    /// processing; the relay may also close the session with 421).
    pub fn reply_code(&self) -> (u16, &'static str) {
        match self {
            Self::NoSpace { .. } => (452, "4.3.1"),
            Self::DeadlineExceeded { .. } => (451, "4.3.0"),
            Self::Closed => (421, "4.3.2"),
            Self::Unhealthy { .. } | Self::Open { .. } | Self::Corrupt { .. } | Self::InvalidArgument(_) => {
                (451, "4.3.0")
            }
        }
    }

    /// True when retrying later may succeed without an operator (space freed, stall over).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NoSpace { .. } | Self::DeadlineExceeded { .. } | Self::Unhealthy { .. }
        )
    }

    pub(crate) fn corrupt(cf: &'static str, key: &[u8], error: impl ToString) -> Self {
        Self::Corrupt {
            cf,
            key: key_display(key),
            error: error.to_string(),
        }
    }

    /// Classifies a RocksDB error from a write or a read of the spool at `path`.
    pub(crate) fn from_db(path: &std::path::Path, e: rocksdb::Error) -> Self {
        let msg = e.into_string();
        if is_no_space(&msg) {
            Self::NoSpace {
                path: path.to_path_buf(),
                detail: msg,
            }
        } else {
            Self::Unhealthy { reason: msg }
        }
    }

    /// Like [`Error::from_db`] for a read of one key: RocksDB corruption becomes `Corrupt`.
    pub(crate) fn from_read(path: &std::path::Path, cf: &'static str, key: &[u8], e: rocksdb::Error) -> Self {
        if e.kind() == rocksdb::ErrorKind::Corruption {
            Self::corrupt(cf, key, e.into_string())
        } else {
            Self::from_db(path, e)
        }
    }
}

/// RocksDB reports ENOSPC as `IO error: No space left on device: ...`; once the DB is in
/// its background-error state, later writes return the same status, sometimes worded
/// through the `NoSpace` subcode.
fn is_no_space(msg: &str) -> bool {
    msg.contains("No space left on device") || msg.contains("NoSpace") || msg.contains("ENOSPC")
}

/// A key for messages: the message id when the key starts with 16 id bytes, else hex.
pub(crate) fn key_display(key: &[u8]) -> String {
    match key.len() {
        16 => crate::MessageId::from_slice(key)
            .map(|id| id.to_string())
            .unwrap_or_default(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        let ns = Error::NoSpace {
            path: "/x".into(),
            detail: "IO error: No space left on device".into(),
        };
        assert_eq!(ns.reply_code(), (452, "4.3.1"));
        assert!(ns.is_transient());
        assert_eq!(
            Error::DeadlineExceeded {
                waited: Duration::from_secs(1)
            }
            .reply_code(),
            (451, "4.3.0")
        );
        assert_eq!(Error::Closed.reply_code().0, 421);
    }

    #[test]
    fn open_error_names_the_repair_path() {
        let e = Error::Open {
            path: "/var/spool/estafette".into(),
            reason: "Corruption: bad block".into(),
        };
        let s = e.to_string();
        assert!(s.contains("estafette spool repair /var/spool/estafette"), "{s}");
    }

    #[test]
    fn no_space_classification() {
        assert!(is_no_space(
            "IO error: No space left on device: While appending to file: /x/000012.log"
        ));
        assert!(!is_no_space("IO error: Input/output error"));
    }

    #[test]
    fn key_display_forms() {
        let id = crate::MessageId::from_parts(1, 2, 3);
        assert_eq!(key_display(id.as_bytes()), id.to_string());
        assert_eq!(key_display(&[0xab, 0x01]), "ab01");
    }
}
