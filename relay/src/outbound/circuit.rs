//! The circuit breaker of one destination, sans-io (time is passed in): after
//! `threshold` consecutive connection failures the destination is parked
//! (open) for a cool-down that doubles at each failed probe, up to a cap; then
//! one probe connection is allowed (half-open), and its success closes the
//! circuit again.
//!
//! Only connection attempts count (connect, TLS, greeting, EHLO): a recipient
//! refused on a working connection says nothing about the destination's health.

use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive connection failures that open the circuit. Default 5.
    pub threshold: u32,
    /// First parking time. Default 60 s.
    pub cool_down: Duration,
    /// Longest parking time (the cool-down doubles after each failed probe).
    /// Default 30 min.
    pub max_cool_down: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            cool_down: Duration::from_secs(60),
            max_cool_down: Duration::from_secs(30 * 60),
        }
    }
}

/// What the breaker says about a new connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: connect.
    Allowed,
    /// Half-open: this attempt is the probe. Report its result with
    /// [`Circuit::on_success`] or [`Circuit::on_failure`].
    Probe,
    /// Open (or a probe is in flight): do not connect; defer the destination's
    /// queue until `until` (when a probe is in flight: until the probe ends).
    Parked {
        /// When to ask again.
        until: Instant,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The probe was handed out, its result is awaited.
    Probing {
        since: Instant,
    },
}

/// One destination's breaker.
#[derive(Clone, Debug)]
pub struct Circuit {
    config: CircuitConfig,
    state: State,
    failures: u32,
    cool_down: Duration,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(config: CircuitConfig) -> Self {
        Self {
            config,
            state: State::Closed,
            failures: 0,
            cool_down: config.cool_down,
        }
    }

    /// May a connection be attempted now? Handing out [`Admission::Probe`]
    /// moves the circuit to half-open: every other caller is parked until the
    /// probe's result is reported (or, if it never is, for one cool-down).
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Allowed,
            State::Open { until } if now < until => Admission::Parked { until },
            State::Probing { since } if now < since + self.cool_down => Admission::Parked {
                until: since + self.cool_down,
            },
            // Cool-down over, or a probe whose result was lost: probe again.
            State::Open { .. } | State::Probing { .. } => {
                self.state = State::Probing { since: now };
                Admission::Probe
            }
        }
    }

    /// A connection succeeded: the circuit closes and forgets past failures.
    pub fn on_success(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.cool_down = self.config.cool_down;
    }

    /// A connection failed. The `threshold`-th consecutive failure opens the
    /// circuit for the base cool-down; a failed probe reopens it for twice the
    /// previous cool-down (capped).
    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        match self.state {
            State::Probing { .. } => {
                self.cool_down = (self.cool_down * 2).min(self.config.max_cool_down);
                self.state = State::Open {
                    until: now + self.cool_down,
                };
            }
            State::Closed if self.failures >= self.config.threshold => {
                self.state = State::Open {
                    until: now + self.cool_down,
                };
            }
            // Failures of attempts admitted before the circuit opened.
            State::Closed | State::Open { .. } => {}
        }
    }

    /// Whether new connections are refused at `now`.
    pub fn is_parked(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => false,
            State::Open { until } => now < until,
            State::Probing { .. } => true,
        }
    }

    /// Consecutive connection failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CircuitConfig {
        CircuitConfig {
            threshold: 3,
            cool_down: Duration::from_secs(10),
            max_cool_down: Duration::from_secs(25),
        }
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config());
        for _ in 0..2 {
            assert_eq!(c.admit(t0), Admission::Allowed);
            c.on_failure(t0);
        }
        assert!(!c.is_parked(t0));
        c.on_failure(t0);
        assert!(c.is_parked(t0));
        assert_eq!(
            c.admit(t0 + Duration::from_secs(9)),
            Admission::Parked {
                until: t0 + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config());
        c.on_failure(t0);
        c.on_failure(t0);
        c.on_success();
        c.on_failure(t0);
        c.on_failure(t0);
        assert!(!c.is_parked(t0));
        assert_eq!(c.failures(), 2);
    }

    #[test]
    fn one_probe_then_close_on_success() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config());
        for _ in 0..3 {
            c.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(c.admit(t1), Admission::Probe);
        // While the probe runs, others stay parked.
        assert!(matches!(c.admit(t1), Admission::Parked { .. }));
        c.on_success();
        assert_eq!(c.admit(t1), Admission::Allowed);
        assert!(!c.is_parked(t1));
    }

    #[test]
    fn failed_probes_double_the_cool_down_up_to_the_cap() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config());
        for _ in 0..3 {
            c.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(c.admit(t1), Admission::Probe);
        c.on_failure(t1);
        assert_eq!(
            c.admit(t1),
            Admission::Parked {
                until: t1 + Duration::from_secs(20)
            }
        );
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(c.admit(t2), Admission::Probe);
        c.on_failure(t2);
        // 40 s capped at 25 s.
        assert_eq!(
            c.admit(t2),
            Admission::Parked {
                until: t2 + Duration::from_secs(25)
            }
        );
        // After a success the base cool-down applies again.
        let t3 = t2 + Duration::from_secs(25);
        assert_eq!(c.admit(t3), Admission::Probe);
        c.on_success();
        for _ in 0..3 {
            c.on_failure(t3);
        }
        assert_eq!(
            c.admit(t3),
            Admission::Parked {
                until: t3 + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_cool_down() {
        let t0 = Instant::now();
        let mut c = Circuit::new(config());
        for _ in 0..3 {
            c.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(c.admit(t1), Admission::Probe);
        assert_eq!(c.admit(t1 + Duration::from_secs(10)), Admission::Probe);
    }
}
