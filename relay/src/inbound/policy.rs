//! Acceptance policy at MAIL and RCPT: which recipients this node relays for.
//! Every refusal is an SMTP reply with an enhanced status code.

use proto::address::{ForwardPath, ReversePath};
use proto::server::Verdict;
use proto::{EnhancedCode, Reply};

use super::identity::Identities;
use super::session::{Identity, Session};
use crate::ops::config::RouteConfig;

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
}

impl Policy {
    /// The recipients the routes cover; the senders each identity may use.
    pub fn new(routes: &[RouteConfig], identities: Identities) -> Self {
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
        Self { relay_for, identities }
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
            Some(Identity::Account(name)) => (name.as_str(), self.identities.account_senders(name)),
            Some(Identity::Certificate(dn)) => (dn.as_str(), self.identities.certificate_senders(dn)),
        };
        if senders.is_some_and(|s| s.allows(&mailbox.to_string())) {
            Verdict::Accept
        } else {
            Verdict::Reject(Reply::new(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("sender {mailbox} not allowed for identity {who}"),
            ))
        }
    }

    /// RCPT TO: relay only to domains a route covers (`550 5.7.1` otherwise).
    pub fn check_rcpt(&self, to: &ForwardPath) -> Verdict {
        let Some(mailbox) = to.mailbox() else {
            return Verdict::Reject(Reply::new(
                550,
                EnhancedCode::new(5, 1, 1),
                "no local postmaster here: this node only relays",
            ));
        };
        let domain = mailbox.domain.to_lowercase();
        if self.relay_for.iter().any(|p| p.matches(&domain)) {
            Verdict::Accept
        } else {
            Verdict::Reject(Reply::new(
                550,
                EnhancedCode::new(5, 7, 1),
                format!("relay access denied for domain {domain}"),
            ))
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
        }
    }

    fn rcpt(s: &str) -> ForwardPath {
        ForwardPath::parse(s).unwrap()
    }

    #[test]
    fn routes_decide_relaying() {
        let p = Policy::new(&[route("Example.org"), route(".mssante.fr")], Identities::default());
        assert_eq!(p.check_rcpt(&rcpt("<a@example.ORG>")), Verdict::Accept);
        assert_eq!(p.check_rcpt(&rcpt("<a@ch-x.mssante.fr>")), Verdict::Accept);
        for refused in ["<a@mssante.fr>", "<a@sub.example.org>", "<a@evil.test>"] {
            let Verdict::Reject(r) = p.check_rcpt(&rcpt(refused)) else {
                panic!("{refused} accepted")
            };
            assert_eq!((r.code, r.enhanced), (550, Some(EnhancedCode::new(5, 7, 1))));
        }
        assert!(matches!(p.check_rcpt(&ForwardPath::Postmaster), Verdict::Reject(_)));
        let any = Policy::new(&[route("*")], Identities::default());
        assert_eq!(any.check_rcpt(&rcpt("<a@anything.test>")), Verdict::Accept);
    }
}
