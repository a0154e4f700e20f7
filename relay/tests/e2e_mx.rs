//! MX routing end to end: swaks → a node whose routes have no host → MX
//! lookup on a real DNS server (dnsmasq on 127.0.0.1) → the MX host
//! (127.0.0.1, at the peer's port through `[outbound] mx_port`) → aiosmtpd.
//! A null MX domain bounces with a DSN that itself travels by MX.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::dns::dnsmasq;
use support::node::{run, start_node_with};
use support::peers::{aiosmtpd, PyTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_by_mx_and_null_mx_bounce() {
    let peer = aiosmtpd(PyTls::None);
    let dns = dnsmasq(&[
        "--mx-host=clinique.test,mx.clinique.test,10",
        "--host-record=mx.clinique.test,127.0.0.1",
        "--mx-host=nullmx.test,.,0",
    ]);
    let tail = format!(
        r#"
[[route]]
domain = "clinique.test"
tls = "none"

[[route]]
domain = "nullmx.test"
tls = "none"

[outbound]
resolver = ["{dns}"]
resolver_timeout_secs = 2
mx_port = {port}
poll_ms = 100
"#,
        dns = dns.addr,
        port = peer.addr.port(),
    );
    let t = start_node_with("", "", &tail).await;
    let send = |from: &'static str, to: &'static str, data: &'static str| {
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
            .args(["--from", from, "--to", to, "--helo", "dpi.test", "--data", data]);
        cmd
    };

    // 1. By MX to the peer.
    let (ok, transcript) = run(send(
        "secretariat@clinique.test",
        "dr@clinique.test",
        "Subject: par MX\r\nMessage-ID: <mx-1@clinique>\r\n\r\nBonjour\r\n",
    ))
    .await;
    assert!(ok && transcript.contains("250 2.0.0 queued as"), "{transcript}");
    let got = tokio::task::block_in_place(|| peer.received(1));
    assert_eq!(got.len(), 1, "delivered by MX");
    assert!(String::from_utf8_lossy(&got[0]).contains("Message-ID: <mx-1@clinique>"));

    // 2. Null MX: failed at once (no retry), DSN to the sender, by MX too.
    let (ok, transcript) = run(send(
        "secretariat@clinique.test",
        "dr@nullmx.test",
        "Subject: vers null MX\r\nMessage-ID: <mx-2@clinique>\r\n\r\nBonjour\r\n",
    ))
    .await;
    assert!(ok, "{transcript}");
    let got = tokio::task::block_in_place(|| peer.received(2));
    assert_eq!(got.len(), 2, "the DSN arrived");
    let dsn = got
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .find(|m| m.contains("multipart/report"))
        .expect("a DSN");
    assert!(
        dsn.replace("; ", ";")
            .contains("Final-Recipient: rfc822;dr@nullmx.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.10"), "{dsn}");
    assert!(dsn.contains("556"), "{dsn}");
    assert!(dsn.contains("null MX"), "{dsn}");

    // Everything final: the spool is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = t.node.spool.due(u64::MAX, 1).map(|d| d.len()).unwrap_or(1);
        if pending == 0 && t.node.queue().in_flight() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "spool not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.node.shutdown().await;
}
