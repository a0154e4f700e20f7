//! The next hop of a recipient domain: the configured routes first
//! ([`StaticRoutes`]: exact domain, `.parent`, `*`), then, where the matching
//! route has no host, MX lookup ([`MxResolver`]).

use super::error::DeliveryError;
use super::mx::MxResolver;
use super::route::{Destination, Route, StaticRoutes};

/// Routes plus the resolver for MX routes (absent when no route needs one).
#[derive(Debug)]
pub struct Router {
    routes: StaticRoutes,
    mx: Option<MxResolver>,
}

impl Router {
    /// A router over `routes`; `mx` serves the routes without a host.
    pub fn new(routes: StaticRoutes, mx: Option<MxResolver>) -> Self {
        Self { routes, mx }
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
    pub async fn route(&self, domain: &str) -> Result<Destination, DeliveryError> {
        match self.routes.lookup(domain) {
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
}
