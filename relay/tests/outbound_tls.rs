//! STARTTLS and implicit TLS against Python's aiosmtpd with a certificate from
//! a test CA: verified delivery, untrusted certificate, no STARTTLS offered,
//! per-recipient 4xx/5xx replies over TLS.

mod support;

use proto::client::TlsPolicy;
use relay::outbound::{Connection, DeliveryError, Security, Target};
use support::peers::{aiosmtpd, body, message, pki, settings, PyTls, SERVER_NAME};

fn starttls(peer: &support::peers::Peer, policy: TlsPolicy) -> Target {
    Target::pinned(SERVER_NAME, peer.addr, Security::StartTls(policy))
}

#[tokio::test]
async fn starttls_with_verified_certificate_delivers() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let s = settings(&pki.ca);
    let mut conn = Connection::open(&starttls(&server, TlsPolicy::Required), &s, "TLS1")
        .await
        .expect("connect");
    let (version, cipher) = conn.tls_info().expect("encrypted");
    assert!(version.starts_with("TLSv1_"), "{version}");
    assert!(cipher.contains("GCM") || cipher.contains("CHACHA"), "{cipher}");
    assert!(conn.peer_certificates().is_some_and(|c| !c.is_empty()));
    let b = body(1);
    let outcome = conn
        .send(message(&["lab@clinique.test"], &b), "TLS1")
        .await
        .expect("send");
    assert!(outcome.recipient_reply(0).is_success(), "{outcome:?}");
    conn.quit().await;
    assert_eq!(server.received(1), vec![b]);
}

#[tokio::test]
async fn untrusted_certificate_fails_and_nothing_is_sent() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let s = settings(&pki.other_ca);
    let err = Connection::open(&starttls(&server, TlsPolicy::Required), &s, "TLS2")
        .await
        .err()
        .expect("must fail");
    match &err {
        DeliveryError::Tls { peer, reason } => {
            assert_eq!(*peer, server.addr);
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("expected a TLS error, got {other}"),
    }
    assert!(err.is_transient());
    // Opportunistic does not mean "fall back when verification fails" either.
    let err = Connection::open(&starttls(&server, TlsPolicy::Opportunistic), &s, "TLS2b")
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, DeliveryError::Tls { .. }), "{err}");
    // Both sessions over at the peer: whatever they carried is on disk.
    server.wait_sessions(2);
    assert!(server.files().is_empty());
}

#[tokio::test]
async fn wrong_host_name_fails_verification() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let s = settings(&pki.ca);
    let target = Target::pinned("other.clinique.test", server.addr, Security::default());
    let err = Connection::open(&target, &s, "TLS3").await.err().expect("must fail");
    assert!(
        matches!(&err, DeliveryError::Tls { reason, .. } if reason.contains("not valid for name")),
        "{err}"
    );
}

#[tokio::test]
async fn required_tls_against_a_server_without_starttls_fails() {
    let pki = pki();
    let server = aiosmtpd(PyTls::None);
    let s = settings(&pki.ca);
    let err = Connection::open(&starttls(&server, TlsPolicy::Required), &s, "TLS4")
        .await
        .err()
        .expect("must fail");
    assert!(
        matches!(err, DeliveryError::TlsNotOffered { peer } if peer == server.addr),
        "{err}"
    );
    // The same server is fine where a route says opportunistic.
    let mut conn = Connection::open(&starttls(&server, TlsPolicy::Opportunistic), &s, "TLS4b")
        .await
        .expect("plaintext allowed by route");
    assert!(conn.tls_info().is_none());
    let outcome = conn
        .send(message(&["lab@clinique.test"], &body(4)), "TLS4b")
        .await
        .expect("send");
    assert!(outcome.recipient_reply(0).is_success());
    conn.quit().await;
    assert_eq!(server.received(1).len(), 1);
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let pki = pki();
    let server = aiosmtpd(PyTls::Implicit(&pki));
    let s = settings(&pki.ca);
    let target = Target::pinned(SERVER_NAME, server.addr, Security::Implicit);
    let mut conn = Connection::open(&target, &s, "TLS5").await.expect("connect");
    assert!(conn.tls_info().is_some());
    let b = body(5);
    let outcome = conn
        .send(message(&["lab@clinique.test"], &b), "TLS5")
        .await
        .expect("send");
    assert!(outcome.recipient_reply(0).is_success());
    conn.quit().await;
    assert_eq!(server.received(1), vec![b]);
}

#[tokio::test]
async fn per_recipient_replies_decide_transient_and_permanent() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let s = settings(&pki.ca);
    let mut conn = Connection::open(&starttls(&server, TlsPolicy::Required), &s, "R1")
        .await
        .expect("connect");
    let b = body(6);
    let rcpts = ["ok@clinique.test", "defer@clinique.test", "reject@clinique.test"];
    let outcome = conn.send(message(&rcpts, &b), "R1").await.expect("send");
    let codes: Vec<(u16, String)> = (0..3)
        .map(|i| {
            let r = outcome.recipient_reply(i);
            (r.code, r.enhanced.map(|e| e.to_string()).unwrap_or_default())
        })
        .collect();
    assert_eq!(
        codes,
        [(250, "2.0.0".into()), (451, "4.3.0".into()), (550, "5.1.1".into())]
    );
    // Only refused recipients: no content is sent, the connection stays usable.
    let outcome = conn
        .send(message(&["defer@clinique.test", "reject@clinique.test"], &b), "R2")
        .await
        .expect("send");
    assert_eq!(outcome.recipient_reply(0).code, 451);
    assert_eq!(outcome.recipient_reply(1).code, 550);
    assert!(conn.is_usable());
    conn.quit().await;
    assert_eq!(server.received(1), vec![b]);
    // The session is over at the peer: a second body would be on disk.
    server.wait_sessions(1);
    assert_eq!(server.files().len(), 1);
}

#[tokio::test]
async fn client_certificate_is_presented_when_configured() {
    let pki = pki();
    let server = aiosmtpd(PyTls::Mutual(&pki));
    let target = starttls(&server, TlsPolicy::Required);
    // Without a client certificate the server refuses the session.
    let s = settings(&pki.ca);
    let result = match Connection::open(&target, &s, "M1").await {
        Ok(mut conn) => conn
            .send(message(&["lab@clinique.test"], &body(7)), "M1")
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "a server requiring a client certificate must refuse");
    // With one, delivery works.
    let s = support::peers::settings_with(&pki.ca, Some((&pki.client_cert, &pki.client_key)));
    let mut conn = Connection::open(&target, &s, "M2")
        .await
        .expect("connect with client cert");
    let b = body(8);
    let outcome = conn
        .send(message(&["lab@clinique.test"], &b), "M2")
        .await
        .expect("send");
    assert!(outcome.recipient_reply(0).is_success());
    conn.quit().await;
    assert_eq!(server.received(1), vec![b]);
}
