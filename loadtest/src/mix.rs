//! Weighted mixes: message sizes (`"1k:50,10k:40,1m:10"`) for the sender and
//! reply outcomes (`"451:2,550:1,delay=200ms:5,disconnect:1"`) for the sink,
//! which may also break STARTTLS in a share of sessions (`"tlsdrop:10"`).
//!
//! Syntax, shared by both: comma-separated `item[:weight]` entries. A size mix
//! entry without weight counts 1 (so `"10k"` is a fixed size); weights are
//! relative. A reply mix's weights are percentages of messages, and whatever
//! they leave up to 100 % is answered `250`. Parsing never panics: bad input is
//! a [`MixError`] naming the entry.

use std::time::Duration;

use rand::Rng;

/// Why a size, a mix or a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// The mix has no entry.
    #[error("empty mix")]
    Empty,
    /// A size is not `<number>[k|m]` (binary multiples: 1k = 1024).
    #[error("bad size {0:?}: expected e.g. 512, 1k, 10k or 1m")]
    Size(String),
    /// A weight is not a non-negative number.
    #[error("bad weight in {0:?}")]
    Weight(String),
    /// All weights are zero.
    #[error("weights add up to zero")]
    ZeroWeights,
    /// A reply mix entry is not a 4yz/5yz code, `disconnect`, `delay=<duration>`
    /// or `tlsdrop`.
    #[error("bad reply entry {0:?}: expected a 4yz/5yz code, disconnect, delay=<duration> or tlsdrop")]
    Reply(String),
    /// Reply mix percentages above 100.
    #[error("reply mix adds up to {0} %, more than 100 %")]
    Over100(String),
    /// A duration humantime does not understand.
    #[error("bad duration {0:?}: expected e.g. 200ms, 30s or 2m")]
    Duration(String),
}

/// Largest message size accepted in a mix: 64 MiB (above any relay's limit).
pub const MAX_SIZE: usize = 64 << 20;

/// Parses `512`, `1k`, `10K`, `1m`, `1.5k`: octets, binary multiples.
///
/// # Errors
/// [`MixError::Size`] for anything else, zero, or above [`MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<usize, MixError> {
    let t = s.trim();
    let bad = || MixError::Size(s.to_string());
    let (num, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1024.0),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1024.0 * 1024.0),
        _ => (t, 1.0),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bytes = (n * mult).round();
    if !bytes.is_finite() || bytes < 1.0 || bytes > MAX_SIZE as f64 {
        return Err(bad());
    }
    Ok(bytes as usize)
}

/// Parses a duration such as `200ms`, `30s`, `2m` (humantime syntax).
///
/// # Errors
/// [`MixError::Duration`].
pub fn parse_duration(s: &str) -> Result<Duration, MixError> {
    humantime::parse_duration(s.trim()).map_err(|_| MixError::Duration(s.to_string()))
}

fn split_entries(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.rsplit_once(':') {
            Some((item, w)) => (item.trim(), Some(w.trim())),
            None => (e, None),
        })
}

fn parse_weight(entry: &str, w: Option<&str>) -> Result<f64, MixError> {
    match w {
        None => Ok(1.0),
        Some(w) => match w.trim_end_matches('%').parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(MixError::Weight(entry.to_string())),
        },
    }
}

/// A weighted choice of message sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeMix {
    /// (size in octets, cumulative weight).
    entries: Vec<(usize, f64)>,
    total: f64,
}

impl SizeMix {
    /// Every message has `size` octets.
    pub fn fixed(size: usize) -> Self {
        Self {
            entries: vec![(size, 1.0)],
            total: 1.0,
        }
    }

    /// Parses `"10k"` or `"1k:50,10k:40,1m:10"`.
    ///
    /// # Errors
    /// A [`MixError`] naming the bad entry.
    pub fn parse(s: &str) -> Result<Self, MixError> {
        let mut entries = Vec::new();
        let mut total = 0.0;
        for (item, w) in split_entries(s) {
            let size = parse_size(item)?;
            total += parse_weight(item, w)?;
            entries.push((size, total));
        }
        if entries.is_empty() {
            return Err(MixError::Empty);
        }
        if total <= 0.0 {
            return Err(MixError::ZeroWeights);
        }
        Ok(Self { entries, total })
    }

    /// Draws a size.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        if self.entries.len() == 1 {
            return self.entries[0].0;
        }
        let x = rng.random::<f64>() * self.total;
        self.entries
            .iter()
            .find(|(_, cum)| x < *cum)
            .or(self.entries.last())
            .map_or(0, |(s, _)| *s)
    }

    /// The weighted mean size, in octets.
    pub fn mean(&self) -> f64 {
        let mut prev = 0.0;
        let mut sum = 0.0;
        for (size, cum) in &self.entries {
            sum += *size as f64 * (cum - prev);
            prev = *cum;
        }
        sum / self.total
    }

    /// Each size with its share of messages (the shares add up to 1), in the
    /// order written: what the capacity model (`plan`) averages costs over.
    pub fn shares(&self) -> Vec<(usize, f64)> {
        let mut prev = 0.0;
        self.entries
            .iter()
            .map(|(size, cum)| {
                let share = (cum - prev) / self.total;
                prev = *cum;
                (*size, share)
            })
            .collect()
    }

    /// The largest size in the mix.
    pub fn max(&self) -> usize {
        self.entries.iter().map(|(s, _)| *s).max().unwrap_or(0)
    }
}

/// What the sink does with one message once its content has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `250`: recorded as received.
    Accept,
    /// Answer this 4yz or 5yz code (recorded, not received).
    Reply(u16),
    /// Wait, then `250`.
    Delay(Duration),
    /// Close the connection without a final reply: the client cannot know
    /// whether the message arrived (it did not: it is not recorded as received).
    Disconnect,
}

/// A reply mix: percentages of messages per [`Outcome`]; the rest get `250`.
/// Apart from those, `tlsdrop:P` closes the connection, without a reply,
/// when the client sends STARTTLS in P % of sessions: a TLS negotiation that
/// fails before any transaction, as a broken middlebox or an overloaded
/// server does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplyMix {
    /// (outcome, cumulative percentage).
    entries: Vec<(Outcome, f64)>,
    /// Percentage of STARTTLS commands answered by closing the connection.
    tls_drop: f64,
}

impl ReplyMix {
    /// Every message gets `250`.
    pub fn accept_all() -> Self {
        Self::default()
    }

    /// Parses `"451:2,550:1,delay=200ms:5,disconnect:1"` (weights in percent;
    /// an entry without weight is 100 %). The empty string accepts everything.
    ///
    /// # Errors
    /// A [`MixError`] naming the bad entry, or percentages above 100.
    pub fn parse(s: &str) -> Result<Self, MixError> {
        let mut entries = Vec::new();
        let mut total = 0.0;
        let mut tls_drop = 0.0;
        for (item, w) in split_entries(s) {
            if item.eq_ignore_ascii_case("tlsdrop") {
                tls_drop = match w {
                    None => 100.0,
                    Some(_) => parse_weight(item, w)?,
                };
                if tls_drop > 100.0 {
                    return Err(MixError::Over100(format!("{tls_drop}")));
                }
                continue;
            }
            let outcome = if item.eq_ignore_ascii_case("disconnect") {
                Outcome::Disconnect
            } else if let Some(d) = item.strip_prefix("delay=") {
                Outcome::Delay(parse_duration(d)?)
            } else {
                match item.parse::<u16>() {
                    Ok(250) => Outcome::Accept,
                    Ok(c @ 400..=599) => Outcome::Reply(c),
                    _ => return Err(MixError::Reply(item.to_string())),
                }
            };
            let pct = match w {
                None => 100.0,
                Some(_) => parse_weight(item, w)?,
            };
            total += pct;
            entries.push((outcome, total));
        }
        if total > 100.0 + 1e-9 {
            return Err(MixError::Over100(format!("{total}")));
        }
        Ok(Self { entries, tls_drop })
    }

    /// Whether to close this session's connection at its STARTTLS.
    pub fn drop_starttls(&self, rng: &mut impl Rng) -> bool {
        self.tls_drop > 0.0 && rng.random::<f64>() * 100.0 < self.tls_drop
    }

    /// Draws the outcome for one message.
    pub fn sample(&self, rng: &mut impl Rng) -> Outcome {
        if self.entries.is_empty() {
            return Outcome::Accept;
        }
        let x = rng.random::<f64>() * 100.0;
        self.entries
            .iter()
            .find(|(_, cum)| x < *cum)
            .map_or(Outcome::Accept, |(o, _)| *o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("10K"), Ok(10240));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("1g").is_err());
        assert!(parse_size("100m").is_err());
    }

    #[test]
    fn reply_mix_draws_in_proportion() {
        let mix = ReplyMix::parse("451:20,550:10").unwrap_or_default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let n = 100_000;
        let mut c451 = 0;
        let mut c550 = 0;
        for _ in 0..n {
            match mix.sample(&mut rng) {
                Outcome::Reply(451) => c451 += 1,
                Outcome::Reply(550) => c550 += 1,
                _ => {}
            }
        }
        assert!((19_000..21_000).contains(&c451), "{c451}");
        assert!((9_000..11_000).contains(&c550), "{c550}");
    }

    #[test]
    fn reply_mix_errors() {
        assert!(matches!(ReplyMix::parse("251:1"), Err(MixError::Reply(_))));
        assert!(matches!(ReplyMix::parse("451:80,550:30"), Err(MixError::Over100(_))));
        assert!(matches!(ReplyMix::parse("delay=abc:1"), Err(MixError::Duration(_))));
        assert_eq!(ReplyMix::parse(""), Ok(ReplyMix::accept_all()));
        assert_eq!(
            ReplyMix::parse("delay=10ms:5"),
            Ok(ReplyMix {
                entries: vec![(Outcome::Delay(Duration::from_millis(10)), 5.0)],
                tls_drop: 0.0,
            })
        );
        assert!(matches!(ReplyMix::parse("tlsdrop:101"), Err(MixError::Over100(_))));
    }

    #[test]
    fn tls_drops_are_drawn_per_session_apart_from_the_messages() {
        let mix = ReplyMix::parse("451:100,tlsdrop:25").unwrap_or_default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        let dropped = (0..100_000).filter(|_| mix.drop_starttls(&mut rng)).count();
        assert!((24_000..26_000).contains(&dropped), "{dropped}");
        assert_eq!(mix.sample(&mut rng), Outcome::Reply(451));
        assert!(!ReplyMix::parse("451:10").unwrap_or_default().drop_starttls(&mut rng));
    }
}
