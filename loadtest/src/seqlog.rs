//! Sequence numbers, the logs that record them, and the loss/duplicate verdict.
//!
//! Every message the sender builds carries two header fields:
//! `X-Estafette-Seq: <run>-<n>` (run: 16 hex digits chosen per run; n: 0, 1, 2…)
//! and `X-Estafette-Sent: <unix time in ns>`, for end-to-end latency.
//!
//! Log formats (text, one record a line, space separated, append-only):
//! - send log: `<seq> <code> <accepted-recipients>`, one line per message the
//!   sender finished; `code` is the reply that decided it (the reply after the
//!   content, or MAIL's/RCPT's refusal), `0` when the connection broke before
//!   any answer (the target may or may not have it);
//! - received log: `<seq> <code> <recipients>`, one line per transaction the
//!   sink finished; `code` is what the sink answered (`250`, a 4yz/5yz from
//!   its reply mix, `0` for a deliberate disconnect).
//!
//! [`verify`] compares the two: a message the target accepted (2yz, at least one
//! recipient) must reach the sink once per accepted recipient, as `250` (delivered)
//! or as a 5yz the sink chose (bounced: the relay's business, not a loss).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

/// Header field carrying the sequence number.
pub const SEQ_HEADER: &str = "X-Estafette-Seq";
/// Header field carrying the send time (Unix nanoseconds).
pub const SENT_HEADER: &str = "X-Estafette-Sent";

/// One message's identity: the run it belongs to and its number in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq {
    /// The run id (printed as 16 hex digits).
    pub run: u64,
    /// The message number within the run, from 0.
    pub n: u64,
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.run, self.n)
    }
}

impl Seq {
    /// Parses `<16 hex>-<decimal>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (run, n) = s.trim().split_once('-')?;
        if run.len() != 16 {
            return None;
        }
        Some(Self {
            run: u64::from_str_radix(run, 16).ok()?,
            n: n.parse().ok()?,
        })
    }
}

/// What the sink found in a message's header section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// The sequence number, if the message has one.
    pub seq: Option<Seq>,
    /// The send time in Unix nanoseconds, if present.
    pub sent_ns: Option<u64>,
}

/// Longest header section searched for the stamp: the sender puts it in the
/// first few hundred octets; a relay adds a Received line or two on top.
const HEADER_SCAN: usize = 16 * 1024;

/// Finds the stamp in the top-level header section only (up to the first
/// empty line): a bounce quoting the original headers is not the original.
pub fn find_stamp(body: &[u8]) -> Stamp {
    let scan = &body[..body.len().min(HEADER_SCAN)];
    let end = memchr::memmem::find(scan, b"\r\n\r\n").map_or(scan.len(), |i| i + 2);
    let headers = &scan[..end];
    let mut stamp = Stamp::default();
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case(SEQ_HEADER.as_bytes()) {
            stamp.seq = Seq::parse(value);
        } else if name.eq_ignore_ascii_case(SENT_HEADER.as_bytes()) {
            stamp.sent_ns = value.trim().parse().ok();
        }
    }
    stamp
}

/// Appends the two stamp header lines (CRLF-terminated) to `out`.
pub fn write_stamp(out: &mut Vec<u8>, seq: Seq, sent_ns: u64) {
    let mut s = String::with_capacity(80);
    let _ = write!(s, "{SEQ_HEADER}: {seq}\r\n{SENT_HEADER}: {sent_ns}\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// An append-only log of `<seq> <code> <count>` lines, buffered.
///
/// Lines are flushed by [`LogWriter::flush`] and on drop; a crash may lose the
/// buffered tail (this is a measurement log, not a spool).
#[derive(Debug)]
pub struct LogWriter {
    out: BufWriter<File>,
}

impl LogWriter {
    /// Creates (truncates) the file.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, File::create(path)?),
        })
    }

    /// Appends one record.
    ///
    /// # Errors
    /// The write failed.
    pub fn record(&mut self, seq: Seq, code: u16, count: u32) -> io::Result<()> {
        writeln!(self.out, "{seq} {code} {count}")
    }

    /// Writes the buffer out.
    ///
    /// # Errors
    /// The write failed.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One line of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The message.
    pub seq: Seq,
    /// The reply code (0: none).
    pub code: u16,
    /// Recipients concerned.
    pub count: u32,
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        cause: io::Error,
    },
    /// A line is not `<seq> <code> <count>`.
    #[error("{path}:{line}: not a `<seq> <code> <count>` record")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

/// Reads a whole log.
///
/// # Errors
/// The file cannot be read, or a line is malformed (an empty last line, as a
/// crash may leave, is ignored).
pub fn read_log(path: &Path) -> Result<Vec<Record>, LogError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|cause| LogError::Io {
        path: name.clone(),
        cause,
    })?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|cause| LogError::Io {
            path: name.clone(),
            cause,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = || LogError::Syntax {
            path: name.clone(),
            line: i + 1,
        };
        let mut f = line.split_ascii_whitespace();
        let seq = f.next().and_then(Seq::parse).ok_or_else(bad)?;
        let code = f.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let count = f.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        records.push(Record { seq, code, count });
    }
    Ok(records)
}

/// How many seqs each verdict list keeps as examples.
const EXAMPLES: usize = 10;

/// The loss/duplicate verdict over one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Messages in the send log.
    pub sent: u64,
    /// Messages the target accepted (2yz with at least one recipient).
    pub accepted: u64,
    /// Messages the target refused (4yz/5yz) or never answered.
    pub not_accepted: u64,
    /// Accepted messages the sink received (`250`) for every accepted recipient.
    pub delivered: u64,
    /// Accepted messages the sink refused with a 5yz for at least one recipient
    /// and received for the others: the relay bounces them, nothing is lost.
    pub bounced: u64,
    /// Accepted messages missing at least one recipient at the sink.
    pub lost: u64,
    /// Messages received more often than they had recipients.
    pub duplicated: u64,
    /// Extra copies over all duplicated messages.
    pub duplicate_copies: u64,
    /// Received (`250`) although the target never said 2yz to the sender: the
    /// connection broke before the reply (`0` in the send log; legitimate), or
    /// the target refused it (a bug).
    pub received_unacknowledged: u64,
    /// Received although the target refused it with a 4yz/5yz.
    pub received_refused: u64,
    /// Examples of lost seqs.
    pub lost_examples: Vec<String>,
    /// Examples of duplicated seqs.
    pub duplicate_examples: Vec<String>,
}

impl Verdict {
    /// Nothing lost, nothing duplicated, nothing delivered that was refused.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.received_refused == 0
    }
}

#[derive(Default, Clone, Copy)]
struct Seen {
    delivered: u64,
    bounced: u64,
}

/// Compares the sender's records with the sink's. Only the runs present in
/// `sent` are considered (a sink log may hold several runs).
pub fn verify(sent: &[Record], received: &[Record]) -> Verdict {
    let runs: std::collections::HashSet<u64> = sent.iter().map(|r| r.seq.run).collect();
    let mut seen: HashMap<Seq, Seen> = HashMap::with_capacity(received.len());
    for r in received.iter().filter(|r| runs.contains(&r.seq.run)) {
        let e = seen.entry(r.seq).or_default();
        match r.code {
            200..=299 => e.delivered += u64::from(r.count),
            500..=599 => e.bounced += u64::from(r.count),
            _ => {}
        }
    }
    let mut v = Verdict::default();
    let mut sent_sorted: Vec<&Record> = sent.iter().collect();
    sent_sorted.sort_by_key(|r| r.seq);
    sent_sorted.dedup_by_key(|r| r.seq);
    let mut known = std::collections::HashSet::with_capacity(sent_sorted.len());
    for r in sent_sorted {
        known.insert(r.seq);
        v.sent += 1;
        let s = seen.get(&r.seq).copied().unwrap_or_default();
        let accepted = (200..300).contains(&r.code) && r.count > 0;
        if !accepted {
            v.not_accepted += 1;
            if s.delivered > 0 {
                if r.code == 0 {
                    v.received_unacknowledged += 1;
                } else {
                    v.received_refused += 1;
                }
            }
            continue;
        }
        v.accepted += 1;
        let expected = u64::from(r.count);
        let got = s.delivered + s.bounced;
        if got < expected {
            v.lost += 1;
            if v.lost_examples.len() < EXAMPLES {
                v.lost_examples.push(r.seq.to_string());
            }
        } else {
            if s.bounced > 0 {
                v.bounced += 1;
            } else {
                v.delivered += 1;
            }
            if got > expected {
                v.duplicated += 1;
                v.duplicate_copies += got - expected;
                if v.duplicate_examples.len() < EXAMPLES {
                    v.duplicate_examples.push(r.seq.to_string());
                }
            }
        }
    }
    // Delivered seqs of these runs that the send log does not know at all.
    v.received_unacknowledged += seen
        .iter()
        .filter(|(seq, s)| s.delivered > 0 && !known.contains(seq))
        .count() as u64;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_round_trip() {
        let s = Seq { run: 0xab, n: 42 };
        assert_eq!(s.to_string(), "00000000000000ab-42");
        assert_eq!(Seq::parse(&s.to_string()), Some(s));
        assert_eq!(Seq::parse("ab-42"), None);
        assert_eq!(Seq::parse("00000000000000ab-x"), None);
    }

    #[test]
    fn stamp_only_in_top_headers() {
        let mut body = b"Received: from x\r\n".to_vec();
        write_stamp(&mut body, Seq { run: 1, n: 7 }, 123);
        body.extend_from_slice(b"\r\nX-Estafette-Seq: 0000000000000001-99\r\n");
        let st = find_stamp(&body);
        assert_eq!(st.seq, Some(Seq { run: 1, n: 7 }));
        assert_eq!(st.sent_ns, Some(123));
        let dsn = b"From: MAILER-DAEMON\r\n\r\nX-Estafette-Seq: 0000000000000001-7\r\n";
        assert_eq!(find_stamp(dsn), Stamp::default());
    }
}
