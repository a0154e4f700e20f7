//! MX lookup against a real DNS server (dnsmasq on 127.0.0.1, ephemeral port):
//! preference order, implicit MX, null MX, NXDOMAIN, DNS failures, caching.

mod support;

use std::time::{Duration, Instant};

use proto::client::TlsPolicy;
use proto::EnhancedCode;
use relay::outbound::{DeliveryError, MxResolver, Nameservers, Security, Unroutable};
use support::dns::{dnsmasq, Dnsmasq};

const RECORDS: &[&str] = &[
    "--mx-host=clinique.test,mx2.clinique.test,20",
    "--mx-host=clinique.test,mx1.clinique.test,10",
    "--mx-host=clinique.test,mx3.clinique.test,30", // no address: skipped
    "--host-record=mx1.clinique.test,127.0.0.1",
    "--host-record=mx2.clinique.test,127.0.0.2",
    "--host-record=implicit.test,127.0.0.3",
    "--mx-host=null.test,.,0",
    "--txt-record=empty.test,nothing here",
    "--mx-host=dangling.test,ghost.test,10",
    // Forwarded to a server that is not there: dnsmasq answers SERVFAIL/REFUSED.
    "--server=/fail.test/127.0.0.1#9",
];

fn resolver(dns: &Dnsmasq) -> MxResolver {
    MxResolver::new(&Nameservers::Servers(vec![dns.addr]), 2525, Duration::from_secs(1)).expect("resolver")
}

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("socket address")
}

fn unroutable(e: DeliveryError) -> Unroutable {
    match e {
        DeliveryError::Unroutable { why, .. } => why,
        other => panic!("expected Unroutable, got {other}"),
    }
}

#[tokio::test]
async fn mx_hosts_in_preference_order_pinned_to_their_addresses() {
    let dns = dnsmasq(RECORDS);
    let mx = resolver(&dns);
    let sec = Security::StartTls(TlsPolicy::Opportunistic);
    let d = mx.resolve("Clinique.TEST", sec).await.expect("routed");
    assert_eq!(d.key, "clinique.test");
    let hosts: Vec<_> = d.targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(hosts, ["mx1.clinique.test", "mx2.clinique.test"], "mx3 has no address");
    assert_eq!(d.targets[0].addrs, [addr("127.0.0.1:2525")]);
    assert_eq!(d.targets[1].addrs, [addr("127.0.0.2:2525")]);
    assert!(d.targets.iter().all(|t| t.port == 2525 && t.security == sec));
}

#[tokio::test]
async fn no_mx_means_the_domain_itself() {
    let dns = dnsmasq(RECORDS);
    let d = resolver(&dns)
        .resolve("implicit.test", Security::default())
        .await
        .expect("routed");
    assert_eq!(d.key, "implicit.test");
    assert_eq!(d.targets.len(), 1);
    assert_eq!(d.targets[0].host, "implicit.test");
    assert_eq!(d.targets[0].addrs, [addr("127.0.0.3:2525")]);
}

#[tokio::test]
async fn dns_verdicts_are_permanent_with_their_codes() {
    let dns = dnsmasq(RECORDS);
    let mx = resolver(&dns);

    let e = mx.resolve("null.test", Security::default()).await.unwrap_err();
    assert!(!e.is_transient());
    let reply = e.reply();
    assert_eq!((reply.code, reply.enhanced), (556, Some(EnhancedCode::new(5, 1, 10))));
    assert!(reply.to_string().contains("null MX"), "{reply}");
    assert_eq!(unroutable(e), Unroutable::NullMx);

    let e = mx.resolve("nowhere.test", Security::default()).await.unwrap_err();
    assert!(!e.is_transient());
    let reply = e.reply();
    assert_eq!((reply.code, reply.enhanced), (550, Some(EnhancedCode::new(5, 1, 2))));
    assert!(reply.to_string().contains("NXDOMAIN"), "{reply}");
    assert_eq!(unroutable(e), Unroutable::NoSuchDomain);

    // Exists (a TXT record), but no MX and no address.
    let e = mx.resolve("empty.test", Security::default()).await.unwrap_err();
    assert_eq!(unroutable(e), Unroutable::NoAddress);

    let e = mx.resolve("not a domain", Security::default()).await.unwrap_err();
    assert_eq!(unroutable(e), Unroutable::BadName);
}

#[tokio::test]
async fn dns_failures_are_transient() {
    let dns = dnsmasq(RECORDS);
    let mx = resolver(&dns);
    // The only MX host does not resolve: maybe a DNS hiccup, retry later.
    let e = mx.resolve("dangling.test", Security::default()).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, DeliveryError::Resolve { .. }), "{e}");
    assert_eq!(e.reply().code, 451);
    // The upstream for fail.test is down: SERVFAIL (or REFUSED).
    let e = mx.resolve("x.fail.test", Security::default()).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, DeliveryError::Resolve { .. }), "{e}");
}

#[tokio::test]
async fn unreachable_nameserver_is_transient_and_bounded() {
    let dead = {
        let dns = dnsmasq(&[]);
        dns.addr
    }; // killed: nothing listens there any more
    let mx = MxResolver::new(&Nameservers::Servers(vec![dead]), 25, Duration::from_millis(500)).expect("resolver");
    let start = Instant::now();
    let e = mx.resolve("clinique.test", Security::default()).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, DeliveryError::Resolve { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let dns = dnsmasq(RECORDS);
    let mx = resolver(&dns);
    let first = mx.resolve("clinique.test", Security::default()).await.expect("routed");
    drop(dns); // the server is gone; the 300 s TTL keeps the answer
    let again = mx.resolve("clinique.test", Security::default()).await.expect("cached");
    assert_eq!(first, again);
}

#[test]
fn an_empty_server_list_is_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let e = MxResolver::new(&Nameservers::Servers(Vec::new()), 25, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("no nameserver"), "{e}");
}
