//! The next hop of a recipient domain: the configured routes first
//! ([`StaticRoutes`]: exact domain, `.parent`, `*`), then, where the matching
//! route has no host, MX lookup ([`MxResolver`]).
//!
//! In a trust space ([`Router::with_trust`]), a listed domain is reached by
//! its route or, without one, by MX; always over TLS (a route that allows
//! plaintext is upgraded to required TLS), and the destination carries the
//! DNs the server certificate must match ([`PeerDns`]). An unlisted domain is
//! reached only through an internal route or, with `outside`, any route;
//! otherwise it is deferred ([`DeliveryError::NotInTrustSpace`]).

use std::sync::Arc;

use proto::client::TlsPolicy;

use super::error::DeliveryError;
use super::mx::MxResolver;
use super::route::{Destination, PeerDns, Route, Security, StaticRoutes};
use crate::trust::TrustStore;

/// Routes plus the resolver for MX routes (absent when no route needs one).
#[derive(Debug)]
pub struct Router {
    routes: StaticRoutes,
    mx: Option<MxResolver>,
    trust: Option<(Arc<TrustStore>, bool)>,
}

impl Router {
    /// A router over `routes`; `mx` serves the routes without a host.
    pub fn new(routes: StaticRoutes, mx: Option<MxResolver>) -> Self {
        Self {
            routes,
            mx,
            trust: None,
        }
    }

    /// Applies the trust space's rules (see the module doc); `outside`
    /// allows unlisted domains that a route covers.
    #[must_use]
    pub fn with_trust(mut self, store: Arc<TrustStore>, outside: bool) -> Self {
        self.trust = Some((store, outside));
        self
    }

    /// Where mail to `domain` goes now. Static routes answer at once; MX
    /// routes ask DNS (cached for the records' TTL), the key being the
    /// lowercase recipient domain.
    ///
    /// # Errors
    /// - [`DeliveryError::Unroutable`] (permanent): DNS says the domain takes
    ///   no mail (NXDOMAIN, null MX, no address).
    /// - [`DeliveryError::Resolve`] (transient): no route matches (the
    ///   configuration may change), no resolver, or DNS failed.
    /// - [`DeliveryError::NotInTrustSpace`] (transient): trust space, the
    ///   domain is not listed and no route allows it.
    pub async fn route(&self, domain: &str) -> Result<Destination, DeliveryError> {
        let found = self.routes.lookup_internal(domain);
        let Some((store, outside)) = &self.trust else {
            return self.resolve(domain, found.map(|(r, _)| r)).await;
        };
        if let Some((route, true)) = found {
            return self.resolve(domain, Some(route)).await;
        }
        let index = store.current();
        let listed = index.dns_for(domain);
        if listed.is_empty() {
            return match found {
                Some((route, _)) if *outside => self.resolve(domain, Some(route)).await,
                _ => Err(DeliveryError::NotInTrustSpace {
                    domain: domain.to_ascii_lowercase(),
                }),
            };
        }
        let mut dest = match found {
            Some((route, _)) => self.resolve(domain, Some(route)).await?,
            None => self.resolve(domain, Some(&Route::Mx(Security::default()))).await?,
        };
        for t in &mut dest.targets {
            if let Security::StartTls(p) = &mut t.security {
                *p = TlsPolicy::Required;
            }
        }
        dest.peer_dns = Some(PeerDns {
            domain: domain.to_ascii_lowercase(),
            allowed: listed.to_vec(),
        });
        Ok(dest)
    }

    async fn resolve(&self, domain: &str, route: Option<&Route>) -> Result<Destination, DeliveryError> {
        match route {
            Some(Route::Static(dest)) => Ok(dest.clone()),
            Some(Route::Mx(security)) => match &self.mx {
                Some(mx) => mx.resolve(domain, *security).await,
                None => Err(DeliveryError::Resolve {
                    host: domain.to_ascii_lowercase(),
                    reason: "MX route but no resolver configured".into(),
                }),
            },
            None => Err(DeliveryError::Resolve {
                host: domain.to_ascii_lowercase(),
                reason: "no route for this domain".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{Security, Target};

    #[tokio::test]
    async fn static_first_and_missing_routes_are_transient() {
        let mut routes = StaticRoutes::new();
        routes.insert("chu.test", vec![Target::new("mx.chu.test", 25)]);
        routes.insert_mx(".mssante.test", Security::default());
        let router = Router::new(routes, None);
        assert_eq!(router.route("CHU.test").await.unwrap().targets[0].host, "mx.chu.test");
        let e = router.route("x.mssante.test").await.unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("no resolver"), "{e}");
        let e = router.route("other.test").await.unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("no route"), "{e}");
    }

    #[tokio::test]
    async fn trust_space_forces_tls_and_carries_the_listed_dns() {
        use proto::dn::Dn;
        let mut routes = StaticRoutes::new();
        routes.insert(".mssante.test", {
            let mut t = Target::new("mx.mssante.test", 25);
            t.security = Security::StartTls(TlsPolicy::Opportunistic);
            vec![t]
        });
        routes.insert("partner.test", vec![Target::new("mx.partner.test", 25)]);
        routes.insert("mailbox.internal.test", vec![Target::new("store.internal.test", 25)]);
        routes.set_internal("mailbox.internal.test");
        let dn = Dn::parse("CN=mx.ch-a.mssante.test, O=A").unwrap();
        let index = crate::trust::TrustIndex::from_entries([("ch-a.mssante.test", dn.clone())]).unwrap();
        let store = Arc::new(TrustStore::from_index(index));
        let strict = Router::new(routes.clone(), None).with_trust(store.clone(), false);
        let d = strict.route("CH-A.mssante.test").await.unwrap();
        assert_eq!(d.targets[0].security, Security::StartTls(TlsPolicy::Required));
        let peers = d.peer_dns.expect("DN check");
        assert_eq!(peers.domain, "ch-a.mssante.test");
        assert_eq!(*peers.allowed[0], dn);
        // Unlisted: routed outside only with `outside`; never a silent send.
        let e = strict.route("partner.test").await.unwrap_err();
        assert!(
            matches!(e, DeliveryError::NotInTrustSpace { .. }) && e.is_transient(),
            "{e}"
        );
        assert!(strict.route("ch-b.mssante.test").await.is_err());
        let open = Router::new(routes, None).with_trust(store, true);
        assert!(open.route("partner.test").await.unwrap().peer_dns.is_none());
        // Internal routes are this operator's own servers: no DN check.
        let own = strict.route("mailbox.internal.test").await.unwrap();
        assert!(own.peer_dns.is_none());
    }
}
