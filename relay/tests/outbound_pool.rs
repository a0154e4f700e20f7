//! The pool under concurrency and the circuit breaker against a closed port.

mod support;

use std::time::Duration;

use relay::outbound::{CircuitConfig, DeliveryError, Destination, Pool, PoolConfig, Security, Target};
use support::peers::{aiosmtpd, body, free_port, message, pki, settings, PyTls, SERVER_NAME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_stay_within_max_connections() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let config = PoolConfig {
        max_connections: 2,
        ..PoolConfig::default()
    };
    let pool = Pool::new(config, settings(&pki.ca));
    let dest = Destination::new(
        "clinique.test",
        vec![Target::pinned(SERVER_NAME, server.addr, Security::default())],
    );
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (pool, dest) = (pool.clone(), dest.clone());
        tasks.push(tokio::spawn(async move {
            pool.send(&dest, message(&["lab@clinique.test"], &body(i)), &format!("C{i}"))
                .await
        }));
    }
    for t in tasks {
        let outcome = t.await.expect("task").expect("send");
        assert!(outcome.recipient_reply(0).is_success());
    }
    assert!(pool.connections_opened() <= 2, "{}", pool.connections_opened());
    assert!(pool.idle_connections("clinique.test") <= 2);
    assert_eq!(server.received(8).len(), 8);
    pool.close_idle(true).await;
}

#[tokio::test]
async fn closed_port_opens_the_circuit() {
    let port = free_port(); // nobody listens there
    let config = PoolConfig {
        circuit: CircuitConfig {
            threshold: 3,
            cool_down: Duration::from_secs(60),
            max_cool_down: Duration::from_secs(600),
        },
        ..PoolConfig::default()
    };
    let pool = Pool::new(config, settings(&pki().ca));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let dest = Destination::new(
        "down.test",
        vec![Target::pinned("mx.down.test", addr, Security::default())],
    );
    for i in 0..3 {
        assert!(!pool.is_parked("down.test") || i == 3);
        let err = pool
            .send(&dest, message(&["lab@down.test"], b"Subject: x\r\n\r\nx\r\n"), "CB")
            .await
            .expect_err("nobody listens");
        assert!(
            matches!(err, DeliveryError::Connect { peer, .. } if peer == addr),
            "{err}"
        );
        assert!(err.is_transient());
    }
    assert!(pool.is_parked("down.test"));
    let err = pool
        .send(&dest, message(&["lab@down.test"], b"Subject: x\r\n\r\nx\r\n"), "CB")
        .await
        .expect_err("parked");
    assert!(
        matches!(err, DeliveryError::Parked { ref destination, .. } if destination == "down.test"),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(pool.connections_opened(), 0);
}

#[tokio::test]
async fn next_target_is_tried_when_the_first_is_down() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let down = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pool = Pool::new(PoolConfig::default(), settings(&pki.ca));
    let dest = Destination::new(
        "clinique.test",
        vec![
            Target::pinned(SERVER_NAME, down, Security::default()),
            Target::pinned(SERVER_NAME, server.addr, Security::default()),
        ],
    );
    let outcome = pool
        .send(&dest, message(&["lab@clinique.test"], &body(1)), "MX2")
        .await
        .expect("second host");
    assert!(outcome.recipient_reply(0).is_success());
    assert!(!pool.is_parked("clinique.test"));
    pool.close_idle(true).await;
}

#[tokio::test]
async fn stale_idle_connection_is_replaced() {
    let pki = pki();
    let server = aiosmtpd(PyTls::StartTls(&pki));
    let pool = Pool::new(PoolConfig::default(), settings(&pki.ca));
    let dest = Destination::new(
        "clinique.test",
        vec![Target::pinned(SERVER_NAME, server.addr, Security::default())],
    );
    pool.send(&dest, message(&["lab@clinique.test"], &body(1)), "S1")
        .await
        .expect("first");
    assert_eq!(pool.idle_connections("clinique.test"), 1);
    // The server restarts: the idle connection is dead.
    let addr = server.addr;
    drop(server);
    let server2 = support::peers::aiosmtpd_on(PyTls::StartTls(&pki), addr.port());
    let outcome = pool
        .send(&dest, message(&["lab@clinique.test"], &body(2)), "S2")
        .await
        .expect("fresh connection");
    assert!(outcome.recipient_reply(0).is_success());
    assert_eq!(pool.connections_opened(), 2);
    assert_eq!(server2.received(1).len(), 1);
    pool.close_idle(true).await;
}
