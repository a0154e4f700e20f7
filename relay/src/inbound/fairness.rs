//! Fair sharing between clients (`[fairness]`): each client's messages per
//! second (with a burst) and its concurrent sessions, checked at MAIL FROM so
//! that a client over its share hears `451 4.7.1` before it sends a body,
//! and retries later. Nothing already accepted is touched.
//!
//! A client is its authenticated identity (AUTH account, or the listed
//! client certificate's subject), else its IP address. A session counts
//! against its client from its first MAIL FROM to its end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proto::{EnhancedCode, Reply};

use crate::config::FairnessConfig;
use crate::rate::{per_second, RateLimits};

/// The limits and the sessions open, node-wide.
#[derive(Debug)]
pub(crate) struct Fairness {
    rates: RateLimits,
    sessions_default: usize,
    sessions_own: HashMap<String, usize>,
    open: Mutex<HashMap<String, usize>>,
}

/// A session counted against its client; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    fairness: Arc<Fairness>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = crate::sync::lock(&self.fairness.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl Fairness {
    pub(crate) fn new(c: &FairnessConfig) -> Self {
        Self {
            rates: RateLimits::new(
                per_second(c.messages_per_second, c.burst),
                c.clients
                    .iter()
                    .map(|l| (l.identity.clone(), per_second(l.messages_per_second, l.burst))),
            ),
            sessions_default: c.sessions_per_client,
            sessions_own: c.clients.iter().map(|l| (l.identity.clone(), l.sessions)).collect(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// At MAIL FROM: counts the session against `client` (once per session,
    /// kept in `slot`), then takes one message from its rate. The refusal
    /// (`451 4.7.1`) and the reason for the metrics (`sessions`, `rate`).
    pub(crate) fn admit(self: &Arc<Self>, client: &str, slot: &mut Option<Slot>) -> Result<(), (Reply, &'static str)> {
        if slot.is_none() {
            let limit = self.sessions_own.get(client).copied().unwrap_or(self.sessions_default);
            let mut open = crate::sync::lock(&self.open);
            let n = open.entry(client.to_owned()).or_insert(0);
            if limit > 0 && *n >= limit {
                if *n == 0 {
                    open.remove(client);
                }
                return Err((
                    Reply::new(
                        451,
                        EnhancedCode::new(4, 7, 1),
                        format!("{client}: too many sessions at once ({limit}), try again later"),
                    ),
                    "sessions",
                ));
            }
            *n += 1;
            *slot = Some(Slot {
                fairness: self.clone(),
                key: client.to_owned(),
            });
        }
        self.rates.check(client).map_err(|wait| {
            (
                Reply::new(
                    451,
                    EnhancedCode::new(4, 7, 1),
                    format!(
                        "{client}: over its rate of messages, try again in {} s",
                        wait.as_secs().max(1)
                    ),
                ),
                "rate",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientLimits;

    #[test]
    fn sessions_and_rates_per_client() {
        let f = Arc::new(Fairness::new(&FairnessConfig {
            messages_per_second: 1.0,
            burst: 2,
            sessions_per_client: 1,
            clients: vec![ClientLimits {
                identity: "light".into(),
                messages_per_second: 0.0,
                burst: 0,
                sessions: 0,
            }],
            ..FairnessConfig::default()
        }));
        let mut first = None;
        assert!(f.admit("heavy", &mut first).is_ok());
        assert!(f.admit("heavy", &mut first).is_ok(), "the burst");
        let (reply, why) = f.admit("heavy", &mut first).expect_err("over the rate");
        assert_eq!((reply.code, why), (451, "rate"));
        let mut second = None;
        let (reply, why) = f.admit("heavy", &mut second).expect_err("one session only");
        assert_eq!((reply.code, why), (451, "sessions"));
        assert!(
            reply.to_string().starts_with("451 4.7.1 heavy: too many sessions"),
            "{reply}"
        );
        drop(first);
        let mut third = None;
        assert_eq!(
            f.admit("heavy", &mut third).map_err(|e| e.1),
            Err("rate"),
            "a slot again"
        );
        assert!(third.is_some());
        let mut light = (None, None);
        for _ in 0..50 {
            assert!(f.admit("light", &mut light.0).is_ok());
            assert!(f.admit("light", &mut light.1).is_ok(), "unlimited");
        }
    }
}
