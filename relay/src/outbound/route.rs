//! Where a domain's mail goes: the configured routes. A [`Route`] is either
//! static (domain → host:port, TLS mode: a [`Destination`], a list of
//! [`Target`] hosts tried in order) or "look up the MX" with a TLS mode
//! (done by [`super::mx::MxResolver`]; [`super::router::Router`] puts both
//! together). A domain no route matches has no destination (`None`), and the
//! caller defers or refuses it.

use std::collections::HashMap;
use std::net::SocketAddr;

use proto::client::TlsPolicy;

/// How a connection to a target is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP first, then STARTTLS as the policy says
    /// ([`TlsPolicy::Required`] by default: never a plaintext fallback).
    StartTls(TlsPolicy),
    /// TLS from the first byte (port 465 style).
    Implicit,
}

impl Default for Security {
    fn default() -> Self {
        Self::StartTls(TlsPolicy::Required)
    }
}

/// One host to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host name: the TLS server name (the certificate must be valid for
    /// it) and, when `addrs` is empty, the name resolved to connect.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Addresses to connect to instead of resolving `host`, tried in order
    /// (static routes pinned to an address; tests on 127.0.0.1).
    pub addrs: Vec<SocketAddr>,
    /// TLS mode.
    pub security: Security,
}

impl Target {
    /// A target resolved by name, STARTTLS required.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            addrs: Vec::new(),
            security: Security::default(),
        }
    }

    /// Connects to `addr` and uses `host` as the TLS server name.
    pub fn pinned(host: impl Into<String>, addr: SocketAddr, security: Security) -> Self {
        Self {
            host: host.into(),
            port: addr.port(),
            addrs: vec![addr],
            security,
        }
    }
}

/// A next hop: the key shared by all mail going there (the pool, the circuit
/// breaker and the ready queue are per key) and its hosts in preference order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The pool/circuit key: the route name or the recipient domain.
    pub key: String,
    /// Hosts, tried in order when connecting fails.
    pub targets: Vec<Target>,
    /// Trust space: the server certificate's DN must be one of these before
    /// anything is sent (set by the router for listed domains).
    pub peer_dns: Option<PeerDns>,
}

impl Destination {
    /// A destination without trust-space check.
    pub fn new(key: impl Into<String>, targets: Vec<Target>) -> Self {
        Self {
            key: key.into(),
            targets,
            peer_dns: None,
        }
    }
}

/// The operator DNs the trust list holds for a recipient domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDns {
    /// The recipient domain (for messages).
    pub domain: String,
    /// The DNs listed for it.
    pub allowed: Vec<std::sync::Arc<proto::dn::Dn>>,
}

/// What a configured route says to do with a domain's mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send it to these hosts.
    Static(Destination),
    /// Look up the recipient domain's MX records and connect to them with
    /// this TLS mode; the destination key is the recipient domain.
    Mx(Security),
}

/// The configured routes: lowercase domain → [`Route`]. A route named `*`
/// matches any domain that has no route of its own (a smarthost, or MX for
/// everything).
#[derive(Clone, Debug, Default)]
pub struct StaticRoutes {
    routes: HashMap<String, Route>,
    /// Keys of routes to this operator's own servers (no trust-list check).
    internal: std::collections::HashSet<String>,
}

impl StaticRoutes {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `domain` (case-insensitive) to `targets`; the destination key is
    /// the domain, so that each routed domain has its own pool.
    pub fn insert(&mut self, domain: &str, targets: Vec<Target>) -> &mut Self {
        let key = domain.to_ascii_lowercase();
        self.routes
            .insert(key.clone(), Route::Static(Destination::new(key, targets)));
        self
    }

    /// Marks the route of `domain` (as inserted) as internal: it leads to
    /// this operator's own servers, so trust-space checks do not apply.
    pub fn set_internal(&mut self, domain: &str) -> &mut Self {
        self.internal.insert(domain.to_ascii_lowercase());
        self
    }

    /// Routes `domain` (case-insensitive) by MX lookup, connecting with `security`.
    pub fn insert_mx(&mut self, domain: &str, security: Security) -> &mut Self {
        self.routes.insert(domain.to_ascii_lowercase(), Route::Mx(security));
        self
    }

    /// Whether some route says "MX lookup" (a resolver is needed).
    pub fn needs_mx(&self) -> bool {
        self.routes.values().any(|r| matches!(r, Route::Mx(_)))
    }

    /// The route for mail to `domain`, if any.
    ///
    /// Order: the exact domain, then `.parent` routes from the closest parent
    /// up (`.mssante.fr` routes every subdomain of mssante.fr), then `*`.
    pub fn lookup(&self, domain: &str) -> Option<&Route> {
        self.lookup_key(domain).map(|(_, r)| r)
    }

    /// [`Self::lookup`], and whether the matching route is internal.
    pub fn lookup_internal(&self, domain: &str) -> Option<(&Route, bool)> {
        self.lookup_key(domain).map(|(key, r)| (r, self.internal.contains(key)))
    }

    fn lookup_key(&self, domain: &str) -> Option<(&str, &Route)> {
        let key = domain.to_ascii_lowercase();
        if let Some((k, d)) = self.routes.get_key_value(&key) {
            return Some((k, d));
        }
        let mut rest = key.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some((k, d)) = self.routes.get_key_value(&format!(".{parent}")) {
                return Some((k, d));
            }
            rest = parent;
        }
        self.routes.get_key_value("*").map(|(k, d)| (k.as_str(), d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest<'a>(r: &'a StaticRoutes, domain: &str) -> &'a Destination {
        match r.lookup(domain) {
            Some(Route::Static(d)) => d,
            other => panic!("{domain}: {other:?}"),
        }
    }

    #[test]
    fn lookup_is_case_insensitive_with_wildcard() {
        let mut r = StaticRoutes::new();
        r.insert("CHU.test", vec![Target::new("mx.chu.test", 25)]);
        assert_eq!(dest(&r, "chu.TEST").targets[0].host, "mx.chu.test");
        assert!(r.lookup("other.test").is_none());
        r.insert(".mssante.test", vec![Target::new("mx.mss.test", 25)]);
        assert_eq!(dest(&r, "ch-x.MSSANTE.test").key, ".mssante.test");
        assert!(r.lookup("mssante.test").is_none());
        r.insert("*", vec![Target::new("smarthost.test", 587)]);
        assert_eq!(dest(&r, "other.test").key, "*");
        assert_eq!(Target::new("a", 25).security, Security::StartTls(TlsPolicy::Required));
    }

    #[test]
    fn mx_routes_share_the_lookup_order() {
        let mut r = StaticRoutes::new();
        assert!(!r.needs_mx());
        r.insert("*", vec![Target::new("smarthost.test", 587)]);
        r.insert_mx(".MSSANTE.test", Security::Implicit);
        assert!(r.needs_mx());
        assert_eq!(r.lookup("ch-x.mssante.test"), Some(&Route::Mx(Security::Implicit)));
        assert_eq!(dest(&r, "elsewhere.test").key, "*");
    }
}
