//! The DNS resolver the node builds once from `[outbound] resolver`: MX
//! lookups (`outbound::mx`) and the cluster's member discovery
//! (`cluster::discover`) ask the same servers. Bottom layer: uses no other
//! module of the relay.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// Most DNS responses kept in the resolver's cache (positive answers for
/// their TTL, negative ones for the SOA's negative TTL).
pub const CACHE_SIZE: u64 = 4096;

/// Which nameservers the resolver asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nameservers {
    /// The system's: `/etc/resolv.conf` (and `/etc/hosts`).
    System,
    /// Exactly these servers, over UDP (TCP when a reply is truncated);
    /// `/etc/hosts` is not read. Tests point this at a local DNS server.
    Servers(Vec<SocketAddr>),
}

/// The resolver could not be set up (unreadable `/etc/resolv.conf`, no server).
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver setup: {0}")]
pub struct ResolverSetupError(String);

/// A caching resolver asking `nameservers`, each query timing out after
/// `timeout` (hickory retries once). Must be called inside a Tokio runtime.
///
/// # Errors
/// [`ResolverSetupError`]: the system configuration is unreadable, or the
/// server list is empty.
pub fn resolver(nameservers: &Nameservers, timeout: Duration) -> Result<TokioResolver, ResolverSetupError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match nameservers {
        Nameservers::System => {
            TokioResolver::builder(provider).map_err(|e| ResolverSetupError(format!("/etc/resolv.conf: {e}")))?
        }
        Nameservers::Servers(addrs) => {
            if addrs.is_empty() {
                return Err(ResolverSetupError("no nameserver given".into()));
            }
            let servers = addrs
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut b = TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider);
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
    };
    let opts = builder.options_mut();
    opts.timeout = timeout;
    opts.cache_size = CACHE_SIZE;
    builder.build().map_err(|e| ResolverSetupError(e.to_string()))
}
