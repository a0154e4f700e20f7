//! Message ids: 16 bytes whose byte order is time order.
//!
//! Layout (big-endian): `ms since the Unix epoch (u64) || node id (u16) || sequence (48 bits)`.
//! The printable form is 26 characters of Crockford base32 (as ULID), fixed length, so that
//! sorting the strings sorts the ids.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A message id: `time_ms (8 bytes) || node (2) || sequence (6)`, big-endian.
///
/// Byte order, [`Ord`] and the order of the printable form are all the same and follow
/// the acceptance time. Ids are made by the spool ([`crate::Spool::accept`]), never by hand
/// except in tests ([`MessageId::from_parts`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 16]);

const SEQ_MASK: u64 = (1 << 48) - 1;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of the printable form.
pub const MESSAGE_ID_LEN: usize = 26;

impl MessageId {
    /// Builds an id from its parts; `seq` is truncated to 48 bits.
    pub fn from_parts(time_ms: u64, node: u16, seq: u64) -> Self {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&time_ms.to_be_bytes());
        b[8..10].copy_from_slice(&node.to_be_bytes());
        b[10..].copy_from_slice(&(seq & SEQ_MASK).to_be_bytes()[2..]);
        Self(b)
    }

    /// The id from its 16 stored bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id from a key slice; `None` unless it is exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 16 stored bytes (the key in the `msg` and `body` column families).
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Acceptance time, ms since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(t)
    }

    /// The node that assigned the id.
    pub fn node(&self) -> u16 {
        u16::from_be_bytes([self.0[8], self.0[9]])
    }

    /// The 48-bit sequence number.
    pub fn seq(&self) -> u64 {
        let mut s = [0u8; 8];
        s[2..].copy_from_slice(&self.0[10..]);
        u64::from_be_bytes(s)
    }

    fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for MessageId {
    /// 26 Crockford base32 characters, upper case, most significant first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.to_u128();
        let mut out = [0u8; MESSAGE_ID_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (MESSAGE_ID_LEN - 1 - i);
            *c = ALPHABET[((v >> shift) & 0x1f) as usize];
        }
        // ALPHABET is ASCII, so this cannot fail; avoid unwrap anyway.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Why a string is not a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// Not 26 characters long.
    #[error("a message id is {MESSAGE_ID_LEN} characters, got {0}")]
    Length(usize),
    /// A character outside Crockford base32.
    #[error("invalid character {0:?} in message id")]
    Char(char),
    /// The first character is above `7` (the value would exceed 128 bits).
    #[error("message id out of range")]
    Overflow,
}

impl FromStr for MessageId {
    type Err = ParseIdError;

    /// Parses the printable form; case-insensitive, and `I`/`L` read as `1`, `O` as `0`
    /// (Crockford's decoding rules).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != MESSAGE_ID_LEN {
            return Err(ParseIdError::Length(s.len()));
        }
        let mut v: u128 = 0;
        for (i, ch) in s.chars().enumerate() {
            let d = decode_char(ch).ok_or(ParseIdError::Char(ch))?;
            if i == 0 && d > 7 {
                return Err(ParseIdError::Overflow);
            }
            v = (v << 5) | u128::from(d);
        }
        Ok(Self(v.to_be_bytes()))
    }
}

fn decode_char(ch: char) -> Option<u8> {
    let c = ch.to_ascii_uppercase();
    let c = match c {
        'I' | 'L' => '1',
        'O' => '0',
        c => c,
    };
    ALPHABET.iter().position(|&a| char::from(a) == c).map(|p| p as u8)
}

/// Wall-clock ms since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Assigns ids for one node: strictly increasing within a process, and unique across
/// restarts.
///
/// The time part never goes below the newest id found in the spool at open nor below the
/// last id given out (a clock stepping back does not reorder ids). The 48-bit sequence
/// does not reset each millisecond: it starts at a value derived from the clock's
/// nanoseconds and the process id, and counts up, so a restart within the same
/// millisecond as a previous run's last id still gives a different id (a clash would
/// need the same ms and the same 48-bit sequence).
#[derive(Debug)]
pub(crate) struct IdGenerator {
    node: u16,
    state: Mutex<(u64, u64)>,
}

impl IdGenerator {
    /// `floor_ms`: the newest time already used by this node's ids (from the spool).
    pub(crate) fn new(node: u16, floor_ms: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
        // Keep the top of the 48-bit range free so that wrap-around is rare.
        let seq = (seed & SEQ_MASK) >> 1;
        Self {
            node,
            state: Mutex::new((floor_ms, seq)),
        }
    }

    /// The next id, strictly greater than every id this generator gave before.
    pub(crate) fn next(&self, now_ms: u64) -> MessageId {
        // A poisoned lock only means another thread panicked mid-update of two integers;
        // the values are still usable.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (ref mut last_ms, ref mut seq) = *st;
        *seq = (*seq + 1) & SEQ_MASK;
        if now_ms > *last_ms {
            *last_ms = now_ms;
        } else if *seq == 0 {
            // Sequence wrapped inside one millisecond: move time forward to stay ordered.
            *last_ms += 1;
        }
        MessageId::from_parts(*last_ms, self.node, *seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let id = MessageId::from_parts(1_700_000_000_123, 7, 0xABCDEF);
        assert_eq!(id.time_ms(), 1_700_000_000_123);
        assert_eq!(id.node(), 7);
        assert_eq!(id.seq(), 0xABCDEF);
    }

    #[test]
    fn display_parse_round_trip_and_order() {
        let ids = [
            MessageId::from_parts(0, 0, 0),
            MessageId::from_parts(1, 0, 0),
            MessageId::from_parts(1_700_000_000_000, 3, 5),
            MessageId::from_parts(1_700_000_000_000, 3, 6),
            MessageId::from_parts(1_700_000_000_001, 0, 0),
            MessageId::from_bytes([0xff; 16]),
        ];
        let strings: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        for (id, s) in ids.iter().zip(&strings) {
            assert_eq!(s.len(), MESSAGE_ID_LEN);
            assert_eq!(&s.parse::<MessageId>().unwrap(), id);
            assert_eq!(&s.to_lowercase().parse::<MessageId>().unwrap(), id);
        }
        let mut sorted = strings.clone();
        sorted.sort();
        assert_eq!(sorted, strings);
    }

    #[test]
    fn parse_errors() {
        assert_eq!("abc".parse::<MessageId>(), Err(ParseIdError::Length(3)));
        let bad = "U".repeat(MESSAGE_ID_LEN);
        assert_eq!(bad.parse::<MessageId>(), Err(ParseIdError::Char('U')));
        let over = "8".repeat(MESSAGE_ID_LEN);
        assert_eq!(over.parse::<MessageId>(), Err(ParseIdError::Overflow));
    }

    #[test]
    fn generator_is_monotonic_even_if_clock_goes_back() {
        let g = IdGenerator::new(9, 1000);
        let mut prev = g.next(500);
        assert!(prev.time_ms() >= 1000);
        for now in [2000, 2000, 1500, 2001, 0] {
            let id = g.next(now);
            assert!(id > prev, "{id:?} <= {prev:?}");
            assert_eq!(id.node(), 9);
            prev = id;
        }
    }

    #[test]
    fn generator_wrap_moves_time_forward() {
        let g = IdGenerator::new(1, 10);
        *g.state.lock().unwrap() = (10, SEQ_MASK - 1);
        let a = g.next(10);
        let b = g.next(10);
        assert!(b > a);
        assert_eq!(b.time_ms(), 11);
    }
}
