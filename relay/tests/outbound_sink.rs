//! Delivery to Postfix's smtp-sink over plain SMTP: connection reuse, pipelining
//! (smtp-sink offers PIPELINING), bodies arriving byte for byte.

mod support;

use proto::client::TlsPolicy;
use relay::outbound::{Connection, Destination, Pool, PoolConfig, Security, Target};
use support::peers::{body, message, settings, smtp_sink};

/// smtp-sink's dump: its own headers end with the 3-line Received header; the
/// message follows with LF line ends, then an empty line.
fn sink_body(dump: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(dump);
    let mut lines = text.split('\n');
    for line in lines.by_ref() {
        if line.starts_with("Received: ") {
            break;
        }
    }
    let rest: Vec<&str> = lines.skip(2).collect();
    rest.join("\n").into_bytes()
}

fn as_dump(body: &[u8]) -> Vec<u8> {
    // CRLF → LF, then the empty line smtp-sink appends.
    let mut s = String::from_utf8(body.to_vec()).unwrap().replace("\r\n", "\n");
    s.push('\n');
    s.into_bytes()
}

fn target(peer: &support::peers::Peer) -> Target {
    Target::pinned("localhost", peer.addr, Security::StartTls(TlsPolicy::Never))
}

#[tokio::test]
async fn three_messages_over_one_connection_arrive_intact() {
    let sink = smtp_sink(&[]);
    let s = settings(&support::peers::pki().ca);
    let mut conn = Connection::open(&target(&sink), &s, "T1").await.expect("connect");
    let bodies: Vec<Vec<u8>> = (0..3).map(body).collect();
    for (i, b) in bodies.iter().enumerate() {
        let outcome = conn
            .send(
                message(&["lab@clinique.test", "rad@clinique.test"], b),
                &format!("T1.{i}"),
            )
            .await
            .expect("send");
        assert!(outcome.recipient_reply(0).is_success(), "{outcome:?}");
        assert!(outcome.recipient_reply(1).is_success(), "{outcome:?}");
        assert!(conn.is_usable());
    }
    assert_eq!(conn.messages_sent(), 3);
    conn.quit().await;

    let got = sink.received(3);
    assert_eq!(got.len(), 3);
    let mut got: Vec<Vec<u8>> = got.iter().map(|d| sink_body(d)).collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = bodies.iter().map(|b| as_dump(b)).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn pool_reuses_its_connection() {
    let sink = smtp_sink(&[]);
    let pool = Pool::new(PoolConfig::default(), settings(&support::peers::pki().ca));
    let dest = Destination::new("clinique.test", vec![target(&sink)]);
    for i in 0..3 {
        let outcome = pool
            .send(&dest, message(&["lab@clinique.test"], &body(i)), "P")
            .await
            .expect("send");
        assert!(outcome.recipient_reply(0).is_success());
    }
    assert_eq!(pool.connections_opened(), 1);
    assert_eq!(pool.idle_connections("clinique.test"), 1);
    pool.close_idle(true).await;
    assert_eq!(pool.idle_connections("clinique.test"), 0);
    assert_eq!(sink.received(3).len(), 3);
}

#[tokio::test]
async fn messages_per_connection_limit_opens_new_connections() {
    let sink = smtp_sink(&[]);
    let config = PoolConfig {
        max_messages_per_connection: 2,
        ..PoolConfig::default()
    };
    let pool = Pool::new(config, settings(&support::peers::pki().ca));
    let dest = Destination::new("clinique.test", vec![target(&sink)]);
    for i in 0..5 {
        pool.send(&dest, message(&["lab@clinique.test"], &body(i)), "L")
            .await
            .expect("send");
    }
    assert_eq!(pool.connections_opened(), 3);
    assert_eq!(sink.received(5).len(), 5);
}

#[tokio::test]
async fn soft_rejected_rcpt_is_transient() {
    // smtp-sink -r RCPT: every RCPT gets "450 4.3.0 Error: command failed".
    let sink = smtp_sink(&["-r", "RCPT"]);
    let s = settings(&support::peers::pki().ca);
    let mut conn = Connection::open(&target(&sink), &s, "T4").await.expect("connect");
    let outcome = conn
        .send(message(&["lab@clinique.test"], &body(0)), "T4")
        .await
        .expect("send");
    let r = outcome.recipient_reply(0);
    assert_eq!(r.code / 100, 4, "{r:?}");
    assert!(conn.is_usable(), "the connection survives a refused message");
    conn.quit().await;
    assert!(sink.files().is_empty());
}
