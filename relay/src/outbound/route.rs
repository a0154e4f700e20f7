//! Where a domain's mail goes: static routes (domain → host:port, TLS mode)
//! give a [`Destination`], a list of [`Target`] hosts tried in order.
//!
//! MX lookup (hickory-resolver) is not here yet: a domain without a static
//! route has no destination (`None`), and the caller defers or refuses it.

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
}

/// Static routes: lowercase domain → destination. A route named `*` matches
/// any domain that has no route of its own (a smarthost).
#[derive(Clone, Debug, Default)]
pub struct StaticRoutes {
    routes: HashMap<String, Destination>,
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
        self.routes.insert(key.clone(), Destination { key, targets });
        self
    }

    /// The destination for mail to `domain`, if routed.
    ///
    /// Order: the exact domain, then `.parent` routes from the closest parent
    /// up (`.mssante.fr` routes every subdomain of mssante.fr), then `*`.
    pub fn lookup(&self, domain: &str) -> Option<&Destination> {
        let key = domain.to_ascii_lowercase();
        if let Some(d) = self.routes.get(&key) {
            return Some(d);
        }
        let mut rest = key.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(d) = self.routes.get(&format!(".{parent}")) {
                return Some(d);
            }
            rest = parent;
        }
        self.routes.get("*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_with_wildcard() {
        let mut r = StaticRoutes::new();
        r.insert("CHU.test", vec![Target::new("mx.chu.test", 25)]);
        assert_eq!(r.lookup("chu.TEST").unwrap().targets[0].host, "mx.chu.test");
        assert!(r.lookup("other.test").is_none());
        r.insert(".mssante.test", vec![Target::new("mx.mss.test", 25)]);
        assert_eq!(r.lookup("ch-x.MSSANTE.test").unwrap().key, ".mssante.test");
        assert!(r.lookup("mssante.test").is_none());
        r.insert("*", vec![Target::new("smarthost.test", 587)]);
        assert_eq!(r.lookup("other.test").unwrap().key, "*");
        assert_eq!(Target::new("a", 25).security, Security::StartTls(TlsPolicy::Required));
    }
}
