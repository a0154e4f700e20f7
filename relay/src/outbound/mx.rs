//! MX lookup (RFC 5321 §5.1) over hickory-resolver: a recipient domain → a
//! [`Destination`] keyed by the domain, whose targets are its mail exchangers
//! in preference order, each pinned to the addresses the same resolver gave
//! (so that a configured resolver is the only source of DNS truth).
//!
//! What [`MxResolver::resolve`] returns:
//! - MX records: the exchangers sorted by preference, ties shuffled (RFC 5321
//!   §5.1), each on the configured port (25; other values are for tests and
//!   labs) with the route's TLS mode. The TLS server name is the exchanger's
//!   name. An exchanger without an address is skipped; if none has one, the
//!   failure is transient.
//! - No MX record (NOERROR, no data): the domain itself, as the implicit MX;
//!   no address for it either is permanent ([`Unroutable::NoAddress`]).
//! - A null MX (`0 .`, RFC 7505): [`Unroutable::NullMx`], permanent (`556 5.1.10`).
//! - NXDOMAIN: [`Unroutable::NoSuchDomain`], permanent (`550 5.1.2`).
//! - SERVFAIL, REFUSED, timeouts, unreachable nameservers:
//!   [`DeliveryError::Resolve`], transient (`451 4.4.3`).
//!
//! Caching is hickory's response cache: every answer (negative ones with the
//! SOA's negative TTL) is kept for its TTL, at most [`CACHE_SIZE`] responses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;
use rand::Rng;
use tracing::{debug, warn};

use super::error::{DeliveryError, Unroutable};
use super::route::{Destination, Security, Target};

/// Most exchangers of one domain that are tried (and resolved).
pub const MAX_EXCHANGERS: usize = 10;

pub use crate::dns::{Nameservers, ResolverSetupError, CACHE_SIZE};

/// A domain's MX answer, interpreted (see [`order_exchangers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchangers {
    /// A null MX (RFC 7505): the domain accepts no mail.
    Null,
    /// Exchangers in the order to try them (empty: no MX record).
    Hosts(Vec<Name>),
}

/// Interprets MX records `(preference, exchange)`: a null MX when every
/// exchange is the root (`.`, RFC 7505); otherwise the non-root exchanges by
/// increasing preference, equal preferences in random order (RFC 5321 §5.1),
/// duplicates removed, at most [`MAX_EXCHANGERS`].
pub fn order_exchangers(records: Vec<(u16, Name)>, rng: &mut impl Rng) -> Exchangers {
    if !records.is_empty() && records.iter().all(|(_, n)| n.is_root()) {
        return Exchangers::Null;
    }
    let mut records: Vec<(u16, Name)> = records.into_iter().filter(|(_, n)| !n.is_root()).collect();
    records.sort_by_key(|(pref, _)| *pref);
    for group in records.chunk_by_mut(|a, b| a.0 == b.0) {
        group.shuffle(rng);
    }
    let mut hosts: Vec<Name> = Vec::with_capacity(records.len());
    for (_, name) in records {
        let name = name.to_lowercase();
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    hosts.truncate(MAX_EXCHANGERS);
    Exchangers::Hosts(hosts)
}

/// How a failed lookup reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR without records of the type asked.
    NoData,
    /// Anything else (SERVFAIL, REFUSED, timeout, network): may heal.
    Other,
}

fn classify(e: &NetError) -> Failure {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) if nr.response_code == ResponseCode::NXDomain => Failure::NxDomain,
        NetError::Dns(DnsError::NoRecordsFound(_)) => Failure::NoData,
        _ => Failure::Other,
    }
}

/// The host name as a TLS server name: ASCII (punycode), lowercase, no final dot.
fn host_name(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').map(str::to_owned).unwrap_or(s)
}

/// MX resolution for routes without a host. Cheap to share (`&self`).
pub struct MxResolver {
    resolver: TokioResolver,
    port: u16,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl MxResolver {
    /// A resolver asking `nameservers`, each query timing out after
    /// `timeout` (hickory retries once); exchangers are reached on `port`
    /// (25 in production). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ResolverSetupError`]: the system configuration is unreadable, or the
    /// server list is empty.
    pub fn new(nameservers: &Nameservers, port: u16, timeout: Duration) -> Result<Self, ResolverSetupError> {
        let resolver = crate::dns::resolver(nameservers, timeout)?;
        Ok(Self { resolver, port })
    }

    /// The destination for mail to `domain` (module docs: MX, implicit MX,
    /// null MX, NXDOMAIN, failures). The key is the lowercase domain; every
    /// target uses `security`.
    ///
    /// # Errors
    /// [`DeliveryError::Unroutable`] (permanent) when DNS says the domain
    /// cannot receive mail; [`DeliveryError::Resolve`] (transient) otherwise.
    pub async fn resolve(&self, domain: &str, security: Security) -> Result<Destination, DeliveryError> {
        let key = domain.to_ascii_lowercase();
        let unroutable = |why| DeliveryError::Unroutable {
            domain: key.clone(),
            why,
        };
        let transient = |what: &str, e: &NetError| DeliveryError::Resolve {
            host: key.clone(),
            reason: format!("{what}: {e}"),
        };
        let mut name = Name::from_utf8(&key).map_err(|_| unroutable(Unroutable::BadName))?;
        name.set_fqdn(true); // never append search domains
        let exchangers = match self.resolver.mx_lookup(name.clone()).await {
            Ok(lookup) => {
                let records = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                        _ => None,
                    })
                    .collect();
                match order_exchangers(records, &mut rand::rng()) {
                    Exchangers::Null => return Err(unroutable(Unroutable::NullMx)),
                    Exchangers::Hosts(hosts) => hosts,
                }
            }
            Err(e) => match classify(&e) {
                Failure::NxDomain => return Err(unroutable(Unroutable::NoSuchDomain)),
                Failure::NoData => Vec::new(),
                Failure::Other => return Err(transient("MX lookup", &e)),
            },
        };
        if exchangers.is_empty() {
            // RFC 5321 §5.1: no MX, the domain is its own (implicit) MX.
            debug!(domain = %key, "no MX record; trying the domain itself");
            return match self.addresses(&name).await {
                Ok(addrs) if !addrs.is_empty() => Ok(Destination::new(key, vec![self.target(&name, addrs, security)])),
                Ok(_) => Err(unroutable(Unroutable::NoAddress)),
                Err(e) => match classify(&e) {
                    Failure::NxDomain | Failure::NoData => Err(unroutable(Unroutable::NoAddress)),
                    Failure::Other => Err(transient("address lookup", &e)),
                },
            };
        }
        let mut targets = Vec::with_capacity(exchangers.len());
        let mut last = String::from("no address");
        for host in &exchangers {
            match self.addresses(host).await {
                Ok(addrs) if !addrs.is_empty() => targets.push(self.target(host, addrs, security)),
                Ok(_) => last = format!("{}: no address", host_name(host)),
                Err(e) => {
                    warn!(domain = %key, exchanger = %host, error = %e, "MX host does not resolve; skipped");
                    last = format!("{}: {e}", host_name(host));
                }
            }
        }
        if targets.is_empty() {
            return Err(DeliveryError::Resolve {
                host: key,
                reason: format!("no MX host has an address (last: {last})"),
            });
        }
        Ok(Destination::new(key, targets))
    }

    /// The addresses of `host` (A and AAAA).
    async fn addresses(&self, host: &Name) -> Result<Vec<IpAddr>, NetError> {
        let mut host = host.clone();
        host.set_fqdn(true);
        Ok(self.resolver.lookup_ip(host).await?.iter().collect())
    }

    fn target(&self, host: &Name, addrs: Vec<IpAddr>, security: Security) -> Target {
        Target {
            host: host_name(host),
            port: self.port,
            addrs: addrs.into_iter().map(|ip| SocketAddr::new(ip, self.port)).collect(),
            security,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn hosts(e: Exchangers) -> Vec<String> {
        match e {
            Exchangers::Hosts(h) => h.iter().map(host_name).collect(),
            Exchangers::Null => panic!("null MX"),
        }
    }

    #[test]
    fn exchangers_sorted_by_preference_ties_shuffled() {
        let records = vec![
            (20, name("c.test.")),
            (10, name("A.test.")),
            (10, name("b.test.")),
            (30, name("d.test.")),
            (20, name("c.test.")),
        ];
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..64 {
            let h = hosts(order_exchangers(records.clone(), &mut rand::rng()));
            assert_eq!(h.len(), 4, "duplicates removed: {h:?}");
            assert_eq!(&h[2..], ["c.test", "d.test"]);
            seen_first.insert(h[0].clone());
        }
        // Both preference-10 hosts come first in some order (2^-63 flake odds).
        assert_eq!(seen_first.len(), 2, "{seen_first:?}");
    }

    #[test]
    fn null_mx_only_when_every_exchange_is_the_root() {
        let root = Name::root();
        assert_eq!(
            order_exchangers(vec![(0, root.clone())], &mut rand::rng()),
            Exchangers::Null
        );
        // Mixed with real hosts (a misconfiguration): the root is ignored.
        let h = hosts(order_exchangers(
            vec![(0, root), (10, name("mx.test."))],
            &mut rand::rng(),
        ));
        assert_eq!(h, ["mx.test"]);
        assert_eq!(
            order_exchangers(Vec::new(), &mut rand::rng()),
            Exchangers::Hosts(Vec::new())
        );
    }

    #[test]
    fn many_exchangers_are_capped() {
        let records = (0..50).map(|i| (i, name(&format!("mx{i}.test.")))).collect();
        assert_eq!(hosts(order_exchangers(records, &mut rand::rng())).len(), MAX_EXCHANGERS);
    }
}
