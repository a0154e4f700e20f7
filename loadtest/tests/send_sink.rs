//! estafette-load against its own sink over real sockets on 127.0.0.1:
//! every transport, trust and authentication mode, pacing shapes, and the
//! sink's reply mix as the sender sees it.

mod common;

use common::{assert_all_delivered, own_sink, run};
use estafette_load::conn::Security;
use estafette_load::seqlog::read_log;

#[test]
fn plain_many_messages_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = own_sink(dir.path(), 500, 8);
    let r = run(&s);
    assert_all_delivered(&r, 500);
    // 100 per connection: 5 connections carry the load (plus the probe and
    // sessions that found nothing left to send).
    assert!(r.counts.connections >= 5, "{}", r.summary());
    assert!(r.e2e_latency.as_ref().is_some_and(|l| l.count == 500));
    assert!(dir.path().join("report.json").exists());
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("clean"));
}

#[test]
fn starttls_one_connection_per_message_without_pipelining_or_chunking() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = own_sink(dir.path(), 60, 4);
    s.sink.tls = Security::Starttls;
    s.load.tls = Security::Starttls;
    s.load.insecure = true;
    s.load.per_connection = 1;
    s.load.pipelining = false;
    s.load.chunking = false;
    let r = run(&s);
    assert_all_delivered(&r, 60);
    assert!(r.counts.connections >= 60, "{}", r.summary());
}

#[test]
fn implicit_tls_verified_against_the_sinks_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ss = estafette_load::tls::self_signed(&["localhost"]).unwrap();
    let (cert, key) = (dir.path().join("sink.pem"), dir.path().join("sink.key"));
    std::fs::write(&cert, &ss.cert_pem).unwrap();
    std::fs::write(&key, &ss.key_pem).unwrap();
    let mut s = own_sink(dir.path(), 200, 4);
    s.sink.tls = Security::Implicit;
    s.sink.cert = Some(cert.clone());
    s.sink.key = Some(key);
    s.load.tls = Security::Implicit;
    s.load.tls_ca = Some(cert);
    s.load.tls_name = Some("localhost".into());
    let r = run(&s);
    assert_all_delivered(&r, 200);
}

#[test]
fn tls_with_an_untrusted_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let other = estafette_load::tls::self_signed(&["localhost"]).unwrap();
    let ca = dir.path().join("other.pem");
    std::fs::write(&ca, &other.cert_pem).unwrap();
    let mut s = own_sink(dir.path(), 10, 1);
    s.sink.tls = Security::Starttls;
    s.load.tls = Security::Starttls;
    s.load.tls_ca = Some(ca);
    s.load.tls_name = Some("localhost".into());
    let err = estafette_load::scenario::run(&s, true).unwrap_err().to_string();
    assert!(err.contains("TLS handshake") && err.contains("certificate"), "{err}");
}

#[test]
fn auth_plain_over_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = own_sink(dir.path(), 50, 2);
    s.sink.tls = Security::Starttls;
    s.sink.auth = Some("app:secret".into());
    s.load.tls = Security::Starttls;
    s.load.insecure = true;
    s.load.auth = Some("app:secret".into());
    assert_all_delivered(&run(&s), 50);

    s.load.auth = Some("app:wrong".into());
    let err = estafette_load::scenario::run(&s, true).unwrap_err().to_string();
    assert!(err.contains("AUTH") && err.contains("535"), "{err}");

    // Without AUTH the sink refuses MAIL: every message is a 5yz.
    s.load.auth = None;
    let r = run(&s);
    assert_eq!(r.counts.perm_failed, 50, "{}", r.summary());
}

#[test]
fn client_certificate_required_by_the_sink() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client.test".into()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(p("client.pem"), client.pem()).unwrap();
    std::fs::write(p("client.key"), client_key.serialize_pem()).unwrap();

    let mut s = own_sink(dir.path(), 40, 2);
    s.sink.tls = Security::Starttls;
    s.sink.client_ca = Some(p("ca.pem"));
    s.load.tls = Security::Starttls;
    s.load.insecure = true;
    s.load.client_cert = Some(p("client.pem"));
    s.load.client_key = Some(p("client.key"));
    assert_all_delivered(&run(&s), 40);

    s.load.client_cert = None;
    s.load.client_key = None;
    assert!(estafette_load::scenario::run(&s, true).is_err());
}

#[test]
fn size_mix_and_several_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = own_sink(dir.path(), 120, 4);
    s.load.size = "1k:50,10k:40,200k:10".into();
    s.load.recipients = 3;
    let r = run(&s);
    assert_all_delivered(&r, 120);
    let recv = read_log(&dir.path().join("received.log")).unwrap();
    assert!(recv.iter().all(|r| r.count == 3 && r.code == 250));
    let mean = r.inject_bytes_per_s / r.inject_msg_per_s;
    assert!(mean > 2_000.0 && mean < 60_000.0, "mean size {mean}");
}

#[test]
fn timed_run_with_rate_limit_in_open_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = own_sink(dir.path(), 0, 4);
    s.load.messages = None;
    s.load.duration = Some("1s".into());
    s.load.rate = Some(200.0);
    s.load.open_loop = true;
    let r = run(&s);
    // 200/s for 1 s: messages due before the end are sent, no more.
    assert!((150..=201).contains(&r.counts.sent), "{}", r.summary());
    assert_all_delivered(&r, r.counts.sent);
}

#[test]
fn reply_mix_all_451_all_550_and_disconnects() {
    for (mix, field) in [("451:100", "temp"), ("550:100", "perm"), ("disconnect:100", "unknown")] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = own_sink(dir.path(), 80, 4);
        s.sink.reply_mix = mix.into();
        let r = run(&s);
        let c = r.counts;
        let got = match field {
            "temp" => c.temp_failed,
            "perm" => c.perm_failed,
            _ => c.unknown,
        };
        assert_eq!(c.sent, 80, "{mix}: {}", r.summary());
        assert_eq!(got, 80, "{mix}: {}", r.summary());
        assert_eq!(c.accepted, 0, "{mix}");
        let v = r.verdict.expect("verdict");
        assert_eq!(
            (v.accepted, v.not_accepted, v.lost, v.duplicated),
            (0, 80, 0, 0),
            "{mix}"
        );
        // Every transaction reached the sink and was logged with its code.
        let recv = read_log(&dir.path().join("received.log")).unwrap();
        assert_eq!(recv.len(), 80, "{mix}");
        let want = match field {
            "temp" => 451,
            "perm" => 550,
            _ => 0,
        };
        assert!(recv.iter().all(|r| r.code == want), "{mix}");
    }
}

#[test]
fn reply_mix_partial_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = own_sink(dir.path(), 400, 4);
    s.sink.reply_mix = "451:20,550:10,delay=5ms:10".into();
    let r = run(&s);
    let c = r.counts;
    assert_eq!(c.accepted + c.temp_failed + c.perm_failed, 400, "{}", r.summary());
    assert!(c.temp_failed > 40 && c.temp_failed < 130, "{}", r.summary());
    assert!(c.perm_failed > 15 && c.perm_failed < 70, "{}", r.summary());
    let v = r.verdict.expect("verdict");
    assert_eq!(v.accepted, c.accepted);
    assert_eq!(v.delivered, c.accepted);
    assert!(v.is_clean());
}

#[test]
fn tlsdrop_closes_sessions_at_starttls_and_the_rest_deliver() {
    // The sink draws per session from its seed: about 30 % of the sessions are
    // closed at STARTTLS (the load tool's probe tries again if its own is).
    let dir = tempfile::tempdir().unwrap();
    let mut s = own_sink(dir.path(), 200, 4);
    s.sink.tls = Security::Starttls;
    s.sink.reply_mix = "tlsdrop:30".into();
    s.load.tls = Security::Starttls;
    s.load.insecure = true;
    s.load.per_connection = 1;
    let r = run(&s);
    assert!(r.counts.connect_errors > 20, "{}", r.summary());
    assert!(r.counts.accepted > 50, "{}", r.summary());
    assert!(r.verdict.expect("verdict").is_clean());
}
