//! What standards-following peers send, accepted: the reserved `postmaster`
//! mailbox (RFC 5321 §4.5.1) from swaks, EXPN answered 502, the queue id in
//! the `Received:` header; and `estafette config check` naming a bad key once
//! with exit code 2.

mod support;

use std::process::Command;

use support::node::{queued_id, run, start_node_full, Extra};
use support::peers::{aiosmtpd, PyTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_is_accepted_and_delivered_to_the_configured_address() {
    let peer = aiosmtpd(PyTls::None);
    let tail = format!(
        "[[route]]\ndomain = \"operator.test\"\nhost = \"{}\"\ntls = \"none\"\n\n[outbound]\npoll_ms = 100\n",
        peer.addr
    );
    let t = start_node_full(Extra {
        node: "postmaster = \"ops@operator.test\"",
        tail: &tail,
        ..Extra::default()
    })
    .await;
    for to in ["postmaster", "PostMaster@relay.test"] {
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
            .args(["--from", "dr@cabinet.test", "--to", to, "--helo", "client.test"])
            .args(["--data", "Subject: question\r\n\r\nBonjour\r\n"]);
        let (ok, transcript) = run(cmd).await;
        assert!(ok, "{transcript}");
        let id = queued_id(&transcript).expect("queued");
        // The copy that arrives carries the queue id in Estafette's Received.
        let got = tokio::task::block_in_place(|| peer.received(if to == "postmaster" { 1 } else { 2 }));
        let text = String::from_utf8_lossy(got.last().expect("a message")).into_owned();
        assert!(text.contains(&format!("\r\n\tid {id}")), "{text}");
    }
    // The node's own hostname is the only domain whose postmaster it takes;
    // EXPN is known but not implemented.
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('client.test')
print(s.docmd('EXPN', 'staff'))
s.mail('dr@cabinet.test')
print(s.rcpt('<postmaster@elsewhere.example>'))
s.quit()
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &t.port("plain").to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    assert!(out.contains("(502, b'5.5.1"), "{out}");
    assert!(out.contains("(550, b'5.7.1 relay access denied"), "{out}");
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_postmaster_address_rcpt_is_refused_and_config_check_warns() {
    let t = start_node_full(Extra::default()).await;
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))]).args([
        "--from",
        "dr@cabinet.test",
        "--to",
        "postmaster",
        "--helo",
        "client.test",
    ]);
    let (ok, transcript) = run(cmd).await;
    assert!(!ok, "{transcript}");
    assert!(
        transcript.contains("550 5.1.1 no postmaster address configured"),
        "{transcript}"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.args([
        "config",
        "check",
        &t.dir.path().join("estafette.toml").display().to_string(),
    ]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    assert!(out.contains("warning: node.postmaster is not set"), "{out}");
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_names_the_problem_once_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_estafette");
    // A TOML error: the parser's message (line, column, key) once.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\nhostname = \"relay.test\"\nspool = \"s\"\nnode_id = \"seven\"\n",
    )
    .expect("write");
    let out = Command::new(bin)
        .args(["config", "check", &bad.display().to_string()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("node_id"), "{err}");
    assert_eq!(err.matches("invalid type").count(), 1, "printed more than once:\n{err}");
    assert!(!err.contains("Caused by"), "{err}");
    // A value that parses but cannot work: the key is named.
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(
        &invalid,
        "[node]\nhostname = \"relay.test\"\nspool = \"s\"\npostmaster = \"not a mailbox\"\n\n\
         [[listener]]\nname = \"p\"\naddress = \"127.0.0.1:0\"\ntls = \"none\"\n",
    )
    .expect("write");
    let out = Command::new(bin)
        .args(["config", "check", &invalid.display().to_string()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("node.postmaster"), "{err}");
    // A missing file: exit 2 too, the file named.
    let out = Command::new(bin)
        .args(["config", "check", "/nonexistent/estafette.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/estafette.toml"));
}
