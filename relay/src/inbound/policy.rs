//! Acceptance policy at MAIL and RCPT: which recipients this node relays for.
//! Every refusal is an SMTP reply with an enhanced status code.
//!
//! Without a trust space, the routes decide: a recipient is accepted when a
//! route covers its domain. In a trust space ([`TrustPolicy`]), a recipient
//! is accepted when its domain is in the trust list, or (with `outside`) when
//! a route covers it; one transaction never mixes the two sides. On an
//! operator listener, recipients are the domains this node routes (its own),
//! and the sender is checked by [`super::operator::check_mail`].

use std::sync::Arc;

use proto::address::{ForwardPath, ReversePath};
use proto::server::Verdict;
use proto::{EnhancedCode, Reply};

use super::identity::Identities;
use super::session::{Identity, Session};
use crate::ops::config::RouteConfig;
use crate::trust::TrustStore;

/// The trust-space rules of a node.
#[derive(Debug)]
pub struct TrustPolicy {
    /// The list in force (refreshed in the background).
    pub store: Arc<TrustStore>,
    /// Whether recipients outside the trust space are accepted (where a route
    /// covers them).
    pub outside: bool,
}

/// Which side of the trust space a recipient is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Its domain is in the trust list.
    Inside,
    /// Outside, accepted because a route covers it.
    Outside,
}

fn refuse(code: u16, enhanced: (u8, u16, u16), text: String) -> Verdict {
    Verdict::Reject(Reply::new(
        code,
        EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2),
        text,
    ))
}

/// A domain pattern from a route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Subdomains(String),
    Any,
}

impl Pattern {
    fn matches(&self, domain: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(d) => domain == d,
            Self::Subdomains(suffix) => domain.len() > suffix.len() && domain.ends_with(suffix.as_str()),
        }
    }
}

/// The policy of one node.
#[derive(Debug)]
pub struct Policy {
    relay_for: Vec<Pattern>,
    identities: Identities,
    trust: Option<TrustPolicy>,
}

impl Policy {
    /// The recipients the routes cover; the senders each identity may use;
    /// the trust space, if the node is in one.
    pub fn new(routes: &[RouteConfig], identities: Identities, trust: Option<TrustPolicy>) -> Self {
        let relay_for = routes
            .iter()
            .map(|r| {
                let d = r.domain.to_ascii_lowercase();
                if d == "*" {
                    Pattern::Any
                } else if d.starts_with('.') {
                    Pattern::Subdomains(d)
                } else {
                    Pattern::Exact(d)
                }
            })
            .collect();
        Self {
            relay_for,
            identities,
            trust,
        }
    }

    /// The trust space, if any.
    pub fn trust(&self) -> Option<&TrustPolicy> {
        self.trust.as_ref()
    }

    /// The identities (AUTH accounts, certificate subjects).
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// MAIL FROM: an identified client (AUTH account or listed certificate)
    /// may use only its own addresses and domains (`550 5.7.1` otherwise). An
    /// anonymous client is judged by the listener (`require_auth`), and the
    /// null sender (bounces) is always allowed.
    pub(crate) fn check_mail(&self, from: &ReversePath, session: &Session) -> Verdict {
        let Some(mailbox) = from.mailbox() else {
            return Verdict::Accept;
        };
        let (who, senders) = match &session.identity {
            None => return Verdict::Accept,
            Some(Identity::Account(name)) => (name.clone(), self.identities.account_senders(name)),
            Some(Identity::Certificate(dn)) => (dn.to_string(), self.identities.certificate_senders(dn)),
        };
        let address = mailbox.to_string();
        if let Some(s) = senders.filter(|s| s.allows(&address)) {
            let kind = s.kind(&address).map_or("-", |k| k.code());
            tracing::debug!(identity = %who, sender = %address, kind, "sender allowed");
            Verdict::Accept
        } else {
            Verdict::Reject(Reply::new(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("sender {mailbox} not allowed for identity {who}"),
            ))
        }
    }

    /// RCPT TO on a listener for clients (not operators). `side` is the side
    /// of the transaction's recipients accepted so far; an accepted recipient
    /// sets it.
    ///
    /// - no trust space: relay only to domains a route covers (`550 5.7.1`);
    /// - trust space: the domain must be listed, or outside and routed when
    ///   `outside` is allowed (`550 5.7.1`), and on the same side as the
    ///   recipients before it (`550 5.7.1`; those stay accepted).
    pub(crate) fn check_rcpt(&self, to: &ForwardPath, side: &mut Option<Side>) -> Verdict {
        let Some(mailbox) = to.mailbox() else {
            return refuse(550, (5, 1, 1), "no local postmaster here: this node only relays".into());
        };
        let domain = mailbox.domain.to_lowercase();
        let routed = self.relay_for.iter().any(|p| p.matches(&domain));
        let Some(trust) = &self.trust else {
            return if routed {
                Verdict::Accept
            } else {
                refuse(550, (5, 7, 1), format!("relay access denied for domain {domain}"))
            };
        };
        let this = if trust.store.current().is_listed(&domain) {
            Side::Inside
        } else if trust.outside && routed {
            Side::Outside
        } else {
            return refuse(
                550,
                (5, 7, 1),
                format!("recipient domain {domain} is not in the MSSanté trust space"),
            );
        };
        match *side {
            Some(before) if before != this => {
                let (now, then) = match this {
                    Side::Inside => ("inside", "outside"),
                    Side::Outside => ("outside", "inside"),
                };
                refuse(
                    550,
                    (5, 7, 1),
                    format!(
                        "recipient {to} is {now} the trust space but earlier recipients are {then}: \
                         send them in separate messages"
                    ),
                )
            }
            _ => {
                *side = Some(this);
                Verdict::Accept
            }
        }
    }

    /// RCPT TO on an operator listener: only the domains this node routes
    /// (its own mailboxes), never a relay onward.
    pub(crate) fn check_operator_rcpt(&self, to: &ForwardPath) -> Verdict {
        let Some(mailbox) = to.mailbox() else {
            return refuse(550, (5, 1, 1), "no local postmaster here: this node only relays".into());
        };
        let domain = mailbox.domain.to_lowercase();
        if self.relay_for.iter().any(|p| p.matches(&domain)) {
            Verdict::Accept
        } else {
            refuse(
                550,
                (5, 7, 1),
                format!("domain {domain} is not served by this operator"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(d: &str) -> RouteConfig {
        RouteConfig {
            domain: d.into(),
            host: None,
            tls: crate::ops::config::RouteTls::default(),
            internal: false,
        }
    }

    fn rcpt(s: &str) -> ForwardPath {
        ForwardPath::parse(s).unwrap()
    }

    fn check(p: &Policy, to: &str) -> Verdict {
        p.check_rcpt(&rcpt(to), &mut None)
    }

    #[test]
    fn routes_decide_relaying() {
        let p = Policy::new(
            &[route("Example.org"), route(".mssante.fr")],
            Identities::default(),
            None,
        );
        assert_eq!(check(&p, "<a@example.ORG>"), Verdict::Accept);
        assert_eq!(check(&p, "<a@ch-x.mssante.fr>"), Verdict::Accept);
        for refused in ["<a@mssante.fr>", "<a@sub.example.org>", "<a@evil.test>"] {
            let Verdict::Reject(r) = check(&p, refused) else {
                panic!("{refused} accepted")
            };
            assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 7, 1))));
        }
        assert!(matches!(
            p.check_rcpt(&ForwardPath::Postmaster, &mut None),
            Verdict::Reject(_)
        ));
        let any = Policy::new(&[route("*")], Identities::default(), None);
        assert_eq!(check(&any, "<a@anything.test>"), Verdict::Accept);
    }

    fn trust_policy(outside: bool) -> Policy {
        let dn = proto::dn::Dn::parse("CN=mx.a.test, O=A").unwrap();
        let index = crate::trust::TrustIndex::from_entries([("a.test", dn.clone()), ("b.test", dn)]).unwrap();
        let trust = TrustPolicy {
            store: Arc::new(TrustStore::from_index(index)),
            outside,
        };
        Policy::new(&[route("partner.test")], Identities::default(), Some(trust))
    }

    fn reason(v: Verdict) -> String {
        match v {
            Verdict::Reject(r) => {
                assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 7, 1))), "{r}");
                r.to_string()
            }
            Verdict::Accept => panic!("accepted"),
        }
    }

    #[test]
    fn trust_space_recipients_never_mix_with_outside_ones() {
        let p = trust_policy(true);
        let mut side = None;
        assert_eq!(p.check_rcpt(&rcpt("<dr@A.test>"), &mut side), Verdict::Accept);
        assert_eq!(p.check_rcpt(&rcpt("<dr@b.test>"), &mut side), Verdict::Accept);
        let e = reason(p.check_rcpt(&rcpt("<x@partner.test>"), &mut side));
        assert!(e.contains("inside") || e.contains("outside"), "{e}");
        assert_eq!(side, Some(Side::Inside), "earlier recipients stay valid");
        // The other way round.
        let mut side = None;
        assert_eq!(p.check_rcpt(&rcpt("<x@partner.test>"), &mut side), Verdict::Accept);
        assert!(reason(p.check_rcpt(&rcpt("<dr@a.test>"), &mut side)).contains("separate messages"));
        // Unlisted and unrouted: refused either way.
        assert!(reason(p.check_rcpt(&rcpt("<x@else.test>"), &mut None)).contains("not in the MSSanté trust space"));
        // Without `outside`, a routed outside domain is refused too.
        let strict = trust_policy(false);
        assert!(reason(strict.check_rcpt(&rcpt("<x@partner.test>"), &mut None)).contains("trust space"));
        assert_eq!(strict.check_rcpt(&rcpt("<dr@a.test>"), &mut None), Verdict::Accept);
        // Operators may only send to this node's own (routed) domains.
        assert_eq!(strict.check_operator_rcpt(&rcpt("<x@partner.test>")), Verdict::Accept);
        assert!(reason(strict.check_operator_rcpt(&rcpt("<dr@a.test>"))).contains("not served"));
    }
}
