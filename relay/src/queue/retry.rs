//! The retry schedule of a deferred message, a pure function of the attempt
//! count and times (milliseconds since the Unix epoch, passed in).

use std::time::Duration;

use rand::Rng;

/// Backoff settings. The DESIGN's defaults: first retry 1 min after the first
/// failure, doubling, capped at 1 h, ±20 % jitter, give up after 5 days.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt. Default 1 min.
    pub first: Duration,
    /// Growth factor per further failure. Default 2.
    pub factor: u32,
    /// Longest delay between attempts (before jitter). Default 1 h.
    pub cap: Duration,
    /// Relative jitter, applied as a uniform factor in `[1 - jitter, 1 +
    /// jitter]` so that messages deferred together spread out. Default 0.2.
    pub jitter: f64,
    /// Age (since first receipt) after which the message fails with a DSN.
    /// Default 5 days.
    pub max_age: Duration,
    /// Age after which a still-deferred recipient's sender gets one delay
    /// warning (an `Action: delayed` DSN, if NOTIFY asks for DELAY or is
    /// absent). `None`: never. Default 4 h.
    pub warn_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(60),
            factor: 2,
            cap: Duration::from_secs(3600),
            jitter: 0.2,
            max_age: Duration::from_secs(5 * 24 * 3600),
            warn_after: Some(Duration::from_secs(4 * 3600)),
        }
    }
}

/// What to do with a message whose attempt just failed transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time (ms since the epoch).
    At(u64),
    /// Too old: fail the remaining recipients (status 4.4.7, failure DSN).
    GiveUp,
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`, without jitter:
    /// `first * factor^(attempts - 1)`, capped.
    pub fn base_delay(&self, attempts: u32) -> Duration {
        let mut d = self.first;
        for _ in 1..attempts.max(1) {
            d = d.saturating_mul(self.factor);
            if d >= self.cap {
                return self.cap;
            }
        }
        d.min(self.cap)
    }

    /// After `attempts` failed attempts (1 for the first), when to try again.
    ///
    /// Gives up when the message, first received at `first_received_ms`, is
    /// `max_age` old at `now_ms`. Otherwise the next attempt is the jittered
    /// delay from now, but never after the expiry: a last attempt is made
    /// right at `max_age`.
    pub fn next_attempt(&self, attempts: u32, first_received_ms: u64, now_ms: u64, rng: &mut impl Rng) -> Retry {
        let expiry = first_received_ms.saturating_add(self.max_age.as_millis() as u64);
        if now_ms >= expiry {
            return Retry::GiveUp;
        }
        let base = self.base_delay(attempts).as_millis() as f64;
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            rng.random_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        let delay = (base * factor).max(0.0) as u64;
        Retry::At(now_ms.saturating_add(delay).min(expiry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const MIN: u64 = 60_000;

    #[test]
    fn doubling_from_one_minute_capped_at_one_hour() {
        let p = RetryPolicy::default();
        let mins: Vec<u64> = (1..=9).map(|a| p.base_delay(a).as_secs() / 60).collect();
        assert_eq!(mins, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.base_delay(1000), p.cap);
        assert_eq!(p.base_delay(0), p.first);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let now = 1_000 * MIN;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let Retry::At(t) = p.next_attempt(3, now - MIN, now, &mut rng) else {
                panic!()
            };
            let d = t - now;
            assert!((4 * MIN * 8 / 10..=4 * MIN * 12 / 10).contains(&d), "{d}");
            seen.insert(d);
        }
        assert!(seen.len() > 100, "jitter spreads retries");
    }

    #[test]
    fn gives_up_at_max_age_with_a_last_attempt_at_expiry() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let first = 10 * MIN;
        let expiry = first + p.max_age.as_millis() as u64;
        assert_eq!(p.next_attempt(50, first, expiry - MIN, &mut rng), Retry::At(expiry));
        assert_eq!(p.next_attempt(51, first, expiry, &mut rng), Retry::GiveUp);
        assert_eq!(p.next_attempt(1, first, first, &mut rng), Retry::At(first + MIN));
    }

    #[test]
    fn compressed_schedule_for_tests() {
        let p = RetryPolicy {
            first: Duration::from_millis(100),
            factor: 3,
            cap: Duration::from_millis(500),
            jitter: 0.0,
            max_age: Duration::from_secs(2),
            warn_after: None,
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(p.next_attempt(2, 0, 1000, &mut rng), Retry::At(1300));
        assert_eq!(p.next_attempt(5, 0, 1000, &mut rng), Retry::At(1500));
        assert_eq!(p.next_attempt(6, 0, 2000, &mut rng), Retry::GiveUp);
    }
}
