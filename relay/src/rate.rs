//! Rate limits by key (a client, a destination) on GCRA cells from the
//! `governor` crate: a default quota shared by every key without its own,
//! and keys with their own quota (or none: unlimited).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys tracked under the default quota before idle ones are forgotten.
const MAX_KEYS: usize = 100_000;

/// `rate` per second with `burst` at once (0: a second's worth, at least
/// 1); `None` (unlimited) when `rate` is 0.
pub fn per_second(rate: f64, burst: u32) -> Option<Quota> {
    if rate <= 0.0 || !rate.is_finite() {
        return None;
    }
    let burst = if burst == 0 { rate.ceil() as u32 } else { burst };
    let period = Duration::from_secs_f64(1.0 / rate);
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?))
}

/// `n` per minute, all of them allowed at once; `None` when `n` is 0.
pub fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_minute)
}

/// Rate limits by key.
pub struct RateLimits {
    default: Option<DefaultKeyedRateLimiter<String>>,
    own: HashMap<String, Option<DefaultDirectRateLimiter>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("default", &self.default.is_some())
            .field("own", &self.own.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RateLimits {
    /// `default` for every key not in `own`; each key of `own` with its
    /// quota (`None`: unlimited).
    pub fn new(default: Option<Quota>, own: impl IntoIterator<Item = (String, Option<Quota>)>) -> Self {
        Self {
            default: default.map(RateLimiter::keyed),
            own: own.into_iter().map(|(k, q)| (k, q.map(RateLimiter::direct))).collect(),
            clock: DefaultClock::default(),
        }
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.default.is_none() && self.own.values().all(Option::is_none)
    }

    /// Takes one cell for `key`: `Ok`, or how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        let verdict = match self.own.get(key) {
            Some(None) => return Ok(()),
            Some(Some(limiter)) => limiter.check(),
            None => match &self.default {
                None => return Ok(()),
                Some(keyed) => {
                    if keyed.len() > MAX_KEYS {
                        keyed.retain_recent();
                    }
                    keyed.check_key(&key.to_owned())
                }
            },
        };
        verdict.map_err(|not_until| not_until.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_each_key_on_its_own() {
        let limits = RateLimits::new(
            per_second(1.0, 3),
            [("vip".to_owned(), None), ("slow".to_owned(), per_second(0.5, 1))],
        );
        for _ in 0..3 {
            assert!(limits.check("a").is_ok());
        }
        let wait = limits.check("a").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check("b").is_ok(), "another key has its own cells");
        for _ in 0..100 {
            assert!(limits.check("vip").is_ok(), "unlimited");
        }
        assert!(limits.check("slow").is_ok());
        assert!(limits.check("slow").is_err());
        assert!(RateLimits::new(None, []).is_unlimited());
        assert!(per_second(0.0, 10).is_none() && per_minute(0).is_none());
    }
}
