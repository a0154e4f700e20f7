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

use proto::address::{ForwardPath, Mailbox, ReversePath};
use proto::server::Verdict;
use proto::{EnhancedCode, Reply};

use super::identity::{Identities, Identity};
use crate::config::RouteConfig;
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

/// Why a sender or a recipient is refused: one variant per rule, each with
/// its reply ([`Refusal::reply`]) and a short reason for logs and metrics
/// ([`Refusal::reason`]). The text names what failed, never echoes a parser.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// MAIL FROM an address the client's identity does not own.
    #[error("sender {sender} not allowed for identity {identity}")]
    SenderNotAllowed {
        /// The MAIL FROM address.
        sender: String,
        /// The AUTH account or certificate subject.
        identity: String,
    },
    /// No route covers the recipient's domain (no trust space).
    #[error("relay access denied for domain {0}")]
    RelayDenied(String),
    /// The recipient's domain is not in the trust list (nor an allowed outside route).
    #[error("recipient domain {0} is not in the MSSanté trust space")]
    NotInTrustSpace(String),
    /// The recipient is on the other side of the trust space from the earlier ones.
    #[error(
        "recipient {rcpt} is {side} the trust space but earlier recipients are {other}: \
         send them in separate messages"
    )]
    MixedSides {
        /// The recipient refused.
        rcpt: String,
        /// `inside` or `outside`.
        side: &'static str,
        /// The side of the earlier recipients.
        other: &'static str,
    },
    /// Operator listener: a domain this node does not serve.
    #[error("domain {0} is not served by this operator")]
    NotServed(String),
    /// `RCPT TO:<postmaster>` without `node.postmaster`.
    #[error("no postmaster address configured on this relay")]
    NoPostmaster,
    /// Operator listener: a check of the peer's TLS or certificate failed
    /// (see `super::operator::check_mail`); the text names it.
    #[error("{0}")]
    Operator(String),
    /// The SIZE declared at MAIL FROM is over the recipient's route limit.
    #[error("message size {size} exceeds the limit of {limit} octets for {domain}")]
    TooBig {
        /// The recipient's domain.
        domain: String,
        /// Its route's `max_message_size`.
        limit: usize,
        /// The SIZE declared.
        size: u64,
    },
}

impl Refusal {
    /// The SMTP reply: `552 5.3.4` for a message too big for the
    /// recipient's destination, `550 5.1.1` for an unknown postmaster, `550
    /// 5.7.1` (delivery not authorized) for every other rule.
    pub fn reply(&self) -> Reply {
        let (code, enhanced) = match self {
            Self::TooBig { .. } => (552, EnhancedCode::new(5, 3, 4)),
            Self::NoPostmaster => (550, EnhancedCode::new(5, 1, 1)),
            _ => (550, EnhancedCode::new(5, 7, 1)),
        };
        Reply::new(code, enhanced, self.to_string())
    }

    /// A short, fixed label (for metrics and log fields).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SenderNotAllowed { .. } => "sender_not_allowed",
            Self::RelayDenied(_) => "relay_denied",
            Self::NotInTrustSpace(_) => "not_in_trust_space",
            Self::MixedSides { .. } => "mixed_trust_sides",
            Self::NotServed(_) => "domain_not_served",
            Self::NoPostmaster => "no_postmaster",
            Self::Operator(_) => "operator_certificate",
            Self::TooBig { .. } => "size_limit",
        }
    }

    /// As the proto server's decision token.
    pub fn verdict(result: Result<(), Self>) -> Verdict {
        match result {
            Ok(()) => Verdict::Accept,
            Err(r) => Verdict::Reject(r.reply()),
        }
    }
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

/// The routes' own message size limits (`[[route]] max_message_size`).
#[derive(Debug, Default)]
pub struct SizeLimits(Vec<(Pattern, usize)>);

impl SizeLimits {
    /// The limit for recipient domain `domain` (lower case): an exact route
    /// first, then the longest subdomain route, then `*`; `None` when no
    /// route with a limit covers it.
    pub fn limit(&self, domain: &str) -> Option<usize> {
        let rank = |p: &Pattern| match p {
            Pattern::Exact(_) => usize::MAX,
            Pattern::Subdomains(s) => s.len(),
            Pattern::Any => 0,
        };
        self.0
            .iter()
            .filter(|(p, _)| p.matches(domain))
            .max_by_key(|(p, _)| rank(p))
            .map(|(_, limit)| *limit)
    }
}

/// The policy of one node.
#[derive(Debug)]
pub struct Policy {
    relay_for: Vec<Pattern>,
    size_limits: SizeLimits,
    identities: Identities,
    trust: Option<TrustPolicy>,
    postmaster: Option<Postmaster>,
}

/// Where the reserved mailbox `postmaster` of this node goes (RFC 5321 §4.5.1).
#[derive(Clone, Debug)]
pub struct Postmaster {
    /// This node's host name: `postmaster@` it is the postmaster too.
    pub hostname: String,
    /// The operator's address that receives the postmaster's mail.
    pub address: Mailbox,
}

impl Postmaster {
    /// Whether `to` names this node's postmaster: `<postmaster>` in any case,
    /// or `postmaster@` the node's host name (local part and domain in any case).
    pub fn is_postmaster(hostname: &str, to: &ForwardPath) -> bool {
        match to {
            ForwardPath::Postmaster => true,
            ForwardPath::Path(m) => {
                m.local.eq_ignore_ascii_case("postmaster") && m.domain.eq_ignore_ascii_case(hostname)
            }
        }
    }
}

impl Policy {
    /// The recipients the routes cover; the senders each identity may use;
    /// the trust space, if the node is in one.
    pub fn new(routes: &[RouteConfig], identities: Identities, trust: Option<TrustPolicy>) -> Self {
        let pattern = |r: &RouteConfig| {
            let d = r.domain.to_ascii_lowercase();
            if d == "*" {
                Pattern::Any
            } else if d.starts_with('.') {
                Pattern::Subdomains(d)
            } else {
                Pattern::Exact(d)
            }
        };
        let relay_for = routes.iter().map(pattern).collect();
        let size_limits = SizeLimits(
            routes
                .iter()
                .filter_map(|r| Some((pattern(r), r.max_message_size?)))
                .collect(),
        );
        Self {
            relay_for,
            size_limits,
            identities,
            trust,
            postmaster: None,
        }
    }

    /// Accepts mail for the reserved mailbox `postmaster` and sends it to
    /// `postmaster.address`.
    #[must_use]
    pub fn with_postmaster(mut self, postmaster: Option<Postmaster>) -> Self {
        self.postmaster = postmaster;
        self
    }

    /// The postmaster's delivery address, when `to` is this node's postmaster
    /// and one is configured.
    pub(crate) fn postmaster_for(&self, to: &ForwardPath) -> Option<&Mailbox> {
        let p = self.postmaster.as_ref()?;
        Postmaster::is_postmaster(&p.hostname, to).then_some(&p.address)
    }

    /// `RCPT TO:<postmaster>`: accepted when an address is configured (it
    /// does not count for the trust-space side of the transaction), else
    /// `550 5.1.1`. `None` when `to` is not the postmaster.
    fn check_postmaster(&self, to: &ForwardPath) -> Option<Result<(), Refusal>> {
        if self.postmaster_for(to).is_some() {
            return Some(Ok(()));
        }
        let hostname = self.postmaster.as_ref().map(|p| p.hostname.as_str()).unwrap_or("");
        (to.mailbox().is_none() || Postmaster::is_postmaster(hostname, to)).then_some(Err(Refusal::NoPostmaster))
    }

    /// The routes' own size limits.
    pub fn size_limits(&self) -> &SizeLimits {
        &self.size_limits
    }

    /// RCPT TO after MAIL FROM declared `size` (SIZE=): `552 5.3.4` when the
    /// recipient's destination takes less (RFC 1870 §6.1).
    pub(crate) fn check_size(&self, to: &ForwardPath, size: Option<u64>) -> Result<(), Refusal> {
        let (Some(size), Some(mailbox)) = (size, to.mailbox()) else {
            return Ok(());
        };
        let domain = mailbox.domain.to_lowercase();
        match self.size_limits.limit(&domain) {
            Some(limit) if size > limit as u64 => Err(Refusal::TooBig { domain, limit, size }),
            _ => Ok(()),
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
    pub(crate) fn check_mail(&self, from: &ReversePath, identity: Option<&Identity>) -> Result<(), Refusal> {
        let Some(mailbox) = from.mailbox() else {
            return Ok(());
        };
        let (who, senders) = match identity {
            None => return Ok(()),
            Some(Identity::Account(name)) => (name.clone(), self.identities.account_senders(name)),
            Some(Identity::Certificate(dn)) => (dn.to_string(), self.identities.certificate_senders(dn)),
        };
        let address = mailbox.to_string();
        if let Some(s) = senders.filter(|s| s.allows(&address)) {
            let kind = s.kind(&address).map_or("-", |k| k.code());
            tracing::debug!(identity = %who, sender = %address, kind, "sender allowed");
            Ok(())
        } else {
            Err(Refusal::SenderNotAllowed {
                sender: address,
                identity: who,
            })
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
    pub(crate) fn check_rcpt(&self, to: &ForwardPath, side: &mut Option<Side>) -> Result<(), Refusal> {
        if let Some(v) = self.check_postmaster(to) {
            return v;
        }
        let Some(mailbox) = to.mailbox() else {
            return Err(Refusal::NoPostmaster);
        };
        let domain = mailbox.domain.to_lowercase();
        let routed = self.relay_for.iter().any(|p| p.matches(&domain));
        let Some(trust) = &self.trust else {
            return if routed {
                Ok(())
            } else {
                Err(Refusal::RelayDenied(domain))
            };
        };
        let this = if trust.store.current().is_listed(&domain) {
            Side::Inside
        } else if trust.outside && routed {
            Side::Outside
        } else {
            return Err(Refusal::NotInTrustSpace(domain));
        };
        match *side {
            Some(before) if before != this => {
                let name = |s: Side| match s {
                    Side::Inside => "inside",
                    Side::Outside => "outside",
                };
                Err(Refusal::MixedSides {
                    rcpt: to.to_string(),
                    side: name(this),
                    other: name(before),
                })
            }
            _ => {
                *side = Some(this);
                Ok(())
            }
        }
    }

    /// RCPT TO on an operator listener: only the domains this node routes
    /// (its own mailboxes), never a relay onward.
    pub(crate) fn check_operator_rcpt(&self, to: &ForwardPath) -> Result<(), Refusal> {
        if let Some(v) = self.check_postmaster(to) {
            return v;
        }
        let Some(mailbox) = to.mailbox() else {
            return Err(Refusal::NoPostmaster);
        };
        let domain = mailbox.domain.to_lowercase();
        if self.relay_for.iter().any(|p| p.matches(&domain)) {
            Ok(())
        } else {
            Err(Refusal::NotServed(domain))
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
            tls: crate::config::RouteTls::default(),
            internal: false,
            max_message_size: None,
        }
    }

    #[test]
    fn the_most_specific_route_limit_applies_to_a_declared_size() {
        let limited = |d: &str, n: usize| RouteConfig {
            max_message_size: Some(n),
            ..route(d)
        };
        let p = Policy::new(
            &[
                limited("*", 5_000),
                limited(".mssante.fr", 3_000),
                limited("patient.mssante.fr", 1_000),
            ],
            Identities::default(),
            None,
        );
        let l = p.size_limits();
        assert_eq!(l.limit("patient.mssante.fr"), Some(1_000));
        assert_eq!(l.limit("ch.mssante.fr"), Some(3_000));
        assert_eq!(l.limit("example.org"), Some(5_000));
        assert_eq!(p.check_size(&rcpt("<dr@ch.mssante.fr>"), Some(3_000)), Ok(()));
        let e = p
            .check_size(&rcpt("<dr@Patient.mssante.fr>"), Some(1_001))
            .expect_err("too big");
        assert_eq!(
            e.reply().to_string(),
            "552 5.3.4 message size 1001 exceeds the limit of 1000 octets for patient.mssante.fr"
        );
        assert_eq!(
            p.check_size(&rcpt("<dr@patient.mssante.fr>"), None),
            Ok(()),
            "no SIZE: judged after DATA"
        );
        assert!(Policy::new(&[route("x.fr")], Identities::default(), None)
            .size_limits()
            .limit("x.fr")
            .is_none());
    }

    fn rcpt(s: &str) -> ForwardPath {
        ForwardPath::parse(s).unwrap()
    }

    fn check(p: &Policy, to: &str) -> Result<(), Refusal> {
        p.check_rcpt(&rcpt(to), &mut None)
    }

    #[test]
    fn routes_decide_relaying() {
        let p = Policy::new(
            &[route("Example.org"), route(".mssante.fr")],
            Identities::default(),
            None,
        );
        assert_eq!(check(&p, "<a@example.ORG>"), Ok(()));
        assert_eq!(check(&p, "<a@ch-x.mssante.fr>"), Ok(()));
        for refused in ["<a@mssante.fr>", "<a@sub.example.org>", "<a@evil.test>"] {
            let Err(r) = check(&p, refused).map_err(|r| r.reply()) else {
                panic!("{refused} accepted")
            };
            assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 7, 1))));
        }
        assert_eq!(
            p.check_rcpt(&ForwardPath::Postmaster, &mut None),
            Err(Refusal::NoPostmaster)
        );
        let any = Policy::new(&[route("*")], Identities::default(), None);
        assert_eq!(check(&any, "<a@anything.test>"), Ok(()));
    }

    #[test]
    fn postmaster_is_accepted_in_any_case_when_configured() {
        let pm = Postmaster {
            hostname: "relay.test".into(),
            address: Mailbox::parse("ops@operator.test").unwrap(),
        };
        let p = trust_policy(false).with_postmaster(Some(pm));
        let mut side = None;
        for to in [
            "<postmaster>",
            "<PostMaster>",
            "<postmaster@relay.test>",
            "<POSTMASTER@Relay.Test>",
        ] {
            assert_eq!(p.check_rcpt(&rcpt(to), &mut side), Ok(()), "{to}");
            assert_eq!(p.check_operator_rcpt(&rcpt(to)), Ok(()), "{to}");
            assert_eq!(
                p.postmaster_for(&rcpt(to)).map(ToString::to_string).as_deref(),
                Some("ops@operator.test")
            );
        }
        assert_eq!(side, None, "the postmaster takes no side of the trust space");
        // postmaster of another domain is an ordinary recipient.
        assert!(p.postmaster_for(&rcpt("<postmaster@a.test>")).is_none());
        assert_eq!(p.check_rcpt(&rcpt("<postmaster@a.test>"), &mut None), Ok(()));
        // Not configured: 550 5.1.1.
        let Err(r) = trust_policy(false).check_rcpt(&ForwardPath::Postmaster, &mut None) else {
            panic!("accepted without a postmaster address");
        };
        let r = r.reply();
        assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 1, 1))));
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

    fn reason(v: Result<(), Refusal>) -> String {
        match v {
            Err(r) => {
                let r = r.reply();
                assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 7, 1))), "{r}");
                r.to_string()
            }
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn trust_space_recipients_never_mix_with_outside_ones() {
        let p = trust_policy(true);
        let mut side = None;
        assert_eq!(p.check_rcpt(&rcpt("<dr@A.test>"), &mut side), Ok(()));
        assert_eq!(p.check_rcpt(&rcpt("<dr@b.test>"), &mut side), Ok(()));
        let e = reason(p.check_rcpt(&rcpt("<x@partner.test>"), &mut side));
        assert!(e.contains("inside") || e.contains("outside"), "{e}");
        assert_eq!(side, Some(Side::Inside), "earlier recipients stay valid");
        // The other way round.
        let mut side = None;
        assert_eq!(p.check_rcpt(&rcpt("<x@partner.test>"), &mut side), Ok(()));
        assert!(reason(p.check_rcpt(&rcpt("<dr@a.test>"), &mut side)).contains("separate messages"));
        // Unlisted and unrouted: refused either way.
        assert!(reason(p.check_rcpt(&rcpt("<x@else.test>"), &mut None)).contains("not in the MSSanté trust space"));
        // Without `outside`, a routed outside domain is refused too.
        let strict = trust_policy(false);
        assert!(reason(strict.check_rcpt(&rcpt("<x@partner.test>"), &mut None)).contains("trust space"));
        assert_eq!(strict.check_rcpt(&rcpt("<dr@a.test>"), &mut None), Ok(()));
        // Operators may only send to this node's own (routed) domains.
        assert_eq!(strict.check_operator_rcpt(&rcpt("<x@partner.test>")), Ok(()));
        assert!(reason(strict.check_operator_rcpt(&rcpt("<dr@a.test>"))).contains("not served"));
    }
}
