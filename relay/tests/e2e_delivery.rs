//! A message's whole way through one node: a real client (swaks) in, the
//! spool, the queue, delivery to a real downstream server; retries after 4yz,
//! a DSN after 5yz. Retry delays are compressed to one second.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::node::{run, start_node_with, TestNode};
use support::peers::{aiosmtpd, smtp_sink, Peer, PyTls};

/// A node whose `clinique.test` and `ch.mssante.test` mail goes to `peer`
/// in clear, with retries after 1 s (no jitter).
async fn node_to(peer: &Peer) -> TestNode {
    node_to_with(peer, "").await
}

/// [`node_to`] with more `[outbound]` lines.
async fn node_to_with(peer: &Peer, outbound: &str) -> TestNode {
    let tail = format!(
        r#"
[[route]]
domain = "clinique.test"
host = "{addr}"
tls = "none"

[[route]]
domain = "ch.mssante.test"
host = "{addr}"
tls = "none"

[outbound]
retry_first_secs = 1
retry_cap_secs = 1
retry_jitter = 0.0
poll_ms = 100
{outbound}
"#,
        addr = peer.addr
    );
    start_node_with("", "", &tail).await
}

async fn swaks(t: &TestNode, from: &str, to: &str, body: &str) -> String {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
        .args(["--from", from, "--to", to, "--helo", "dpi.test", "--data", body]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("250 2.0.0 queued as"), "{transcript}");
    transcript
}

/// Waits (up to `secs`) until the spool is empty: every message finished.
async fn drained(t: &TestNode, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let pending = t.node.spool.due(u64::MAX, 1).map(|d| d.len()).unwrap_or(1);
        if pending == 0 && t.node.queue().in_flight() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn wait_received(peer: &Peer, n: usize) -> Vec<Vec<u8>> {
    tokio::task::block_in_place(|| peer.received(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_to_smtp_sink_through_the_node() {
    let sink = smtp_sink(&[]);
    let t = node_to(&sink).await;
    let body = "From: secretariat@ch.mssante.test\r\nTo: dr@clinique.test\r\nSubject: lettre de liaison\r\nMessage-ID: <ll-1@ch>\r\nX-MSS-NIL: DPI 1.0\r\n\r\nBonjour,\r\n.point\r\n";
    swaks(&t, "secretariat@ch.mssante.test", "dr@clinique.test", body).await;
    // Drained means smtp-sink answered 250, so its dump file is complete.
    assert!(drained(&t, 10).await, "the message left the spool");
    let got = wait_received(&sink, 1);
    assert_eq!(got.len(), 1, "delivered once");
    // smtp-sink stores LF line ends after its own headers: compare the text.
    let text = String::from_utf8_lossy(&got[0]).replace("\r\n", "\n");
    assert!(text.contains("by relay.test (Estafette) with ESMTP"), "{text}");
    let original = body.replace("\r\n", "\n");
    assert!(text.contains(&original), "original bytes kept:\n{text}");
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_twice_then_delivered() {
    let peer = aiosmtpd(PyTls::None);
    let t = node_to(&peer).await;
    swaks(
        &t,
        "secretariat@ch.mssante.test",
        "flaky-1@clinique.test",
        "Subject: retry\r\n\r\nbody\r\n",
    )
    .await;
    // Attempt 1 and 2 get 451; attempt 3 (about 2 s later) is accepted.
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.files().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = wait_received(&peer, 1);
    assert_eq!(got.len(), 1, "delivered after two deferrals");
    assert!(String::from_utf8_lossy(&got[0]).contains("Subject: retry"));
    assert!(drained(&t, 10).await);
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_sends_a_dsn_to_the_sender() {
    let peer = aiosmtpd(PyTls::None);
    let t = node_to(&peer).await;
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
        .args([
            "--from",
            "secretariat@ch.mssante.test",
            "--to",
            "reject-me@clinique.test",
        ])
        .args([
            "--helo",
            "dpi.test",
            "--data",
            "Subject: will bounce\r\nMessage-ID: <b-1@ch>\r\n\r\nbody\r\n",
        ]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok, "{transcript}");
    // The DSN goes back through the same route to the sender's domain.
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.files().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = wait_received(&peer, 1);
    assert_eq!(got.len(), 1, "one DSN");
    let dsn = String::from_utf8_lossy(&got[0]);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(
        dsn.contains("report-type=delivery-status") || dsn.contains("report-type=\"delivery-status\""),
        "{dsn}"
    );
    assert!(
        dsn.replace("; ", ";")
            .contains("Final-Recipient: rfc822;reject-me@clinique.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("Message-ID: <b-1@ch>"), "original headers returned: {dsn}");
    assert!(drained(&t, 10).await, "both the message and its DSN finished");
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delay_warning_while_still_deferred_and_a_trace() {
    let peer = aiosmtpd(PyTls::None);
    let t = node_to_with(&peer, "delay_warning_secs = 2").await;
    // defer-*: always 451. NOTIFY absent = FAILURE,DELAY (RFC 3461).
    let transcript = swaks(
        &t,
        "secretariat@ch.mssante.test",
        "defer-1@clinique.test",
        "Subject: slow\r\nMessage-ID: <slow-1@ch>\r\n\r\nbody\r\n",
    )
    .await;
    let got = wait_received(&peer, 1);
    assert_eq!(got.len(), 1, "a delay warning");
    let dsn = String::from_utf8_lossy(&got[0]);
    assert!(dsn.contains("Action: delayed"), "{dsn}");
    assert!(dsn.contains("Status: 4.3.0"), "{dsn}");
    // Still retrying, but warned once only: counted once two more attempts
    // (each one that could queue another warning) have run.
    let id = support::node::queued_id(&transcript).expect("id");
    let attempts = || {
        let env = t.node.spool.envelope(id.parse().expect("id")).expect("read");
        env.expect("queued").recipients[0].attempts
    };
    let want = (attempts() + 2).max(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while attempts() < want {
        assert!(Instant::now() < deadline, "no retry after the warning");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peer.files().len(), 1, "one warning, not one per attempt");
    let env = t
        .node
        .spool
        .envelope(id.parse().expect("id"))
        .expect("read")
        .expect("queued");
    assert!(env.recipients[0].attempts >= 3, "still retried");
    // The trace, read by the CLI while the node runs.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.args(["trace", &id, "--spool"]).arg(t.dir.path().join("spool"));
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    for expect in [
        "Accepted from <secretariat@ch.mssante.test>",
        "Deferred defer-1@clinique.test 451",
        "DsnQueued delay warning",
    ] {
        assert!(out.contains(expect), "{expect} in\n{out}");
    }
    t.node.shutdown().await;
}
