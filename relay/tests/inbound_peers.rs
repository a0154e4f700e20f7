//! Real clients into a real node: swaks over STARTTLS, Python smtplib over
//! implicit TLS with a client certificate; the spool holds what was accepted,
//! byte for byte apart from the prepended trace headers.

mod support;

use std::process::Command;

use support::node::{file, queued_id, run, start_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_message_is_queued_byte_for_byte() {
    let t = start_node("", "").await;
    let body = "From: secretariat@ch-exemple.mssante.test\r\nTo: dr.martin@cabinet.test\r\nSubject: CR consultation\r\nMessage-ID: <cr-1@ch-exemple>\r\nX-MSS-NIL: DPI-X 4.2\r\nX-MSS-CODECDA: 11490-0,34133-9\r\n\r\n..leading dot stays one dot\r\nline two\r\n";
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("mta"))])
        .args(["--tls", "--tls-verify", "--tls-ca-path", &file(&t.pki().join("ca.pem"))])
        .args([
            "--from",
            "secretariat@ch-exemple.mssante.test",
            "--to",
            "dr.martin@cabinet.test",
        ])
        .args(["--helo", "client.test", "--data", body]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("STARTTLS"), "{transcript}");
    let id = queued_id(&transcript).expect("queue id in transcript");
    let id: storage::MessageId = id.parse().expect("printable id parses");
    let stored = t.node.spool.body(id).expect("spool read").expect("message present");
    let stored = String::from_utf8(stored).expect("utf8");
    assert!(
        stored.starts_with(
            "Received: from client.test (127.0.0.1)\r\n\tby relay.test (Estafette) with ESMTPS\r\n\t(version=TLSv1.3"
        ),
        "{stored}"
    );
    // swaks dot-stuffs what it sends and ends the data with CRLF; the server
    // unstuffs: after the Received header, the stored bytes are exactly the
    // message swaks was given (X-MSS-* headers included) plus that CRLF.
    let original = stored.find("From: secretariat").expect("original message kept");
    assert!(
        stored[..original].ends_with("+0000\r\n"),
        "only the Received header precedes it: {stored}"
    );
    assert_eq!(&stored[original..], format!("{body}\r\n"));
    let env = t.node.spool.envelope(id).expect("read").expect("present");
    assert_eq!(env.sender, "secretariat@ch-exemple.mssante.test");
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(env.recipients[0].address, "dr.martin@cabinet.test");
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_implicit_tls_with_client_certificate() {
    let t = start_node("", "").await;
    let pki = t.pki();
    let script = r#"
import smtplib, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
msg = b"From: app@ch-exemple.mssante.test\r\nTo: a@cabinet.test\r\nSubject: lab\r\n\r\nresult\r\n"
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx) as s:
    s.ehlo("dpi.test")
    code, resp = s.mail("app@ch-exemple.mssante.test")
    assert code == 250, (code, resp)
    code, resp = s.rcpt("a@cabinet.test")
    assert code == 250, (code, resp)
    code, resp = s.rcpt("b@elsewhere.test")
    print("outside", code, resp.decode())
    code, resp = s.data(msg)
    print("data", code, resp.decode())
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &t.port("smtps").to_string()]).args([
        file(&pki.join("ca.pem")),
        file(&pki.join("client.pem")),
        file(&pki.join("client.key")),
    ]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("outside 550 5.7.1 relay access denied for domain elsewhere.test"),
        "{out}"
    );
    assert!(out.contains("data 250 2.0.0 queued as"), "{out}");
    let id: storage::MessageId = queued_id(&out).expect("id").parse().expect("parses");
    let env = t.node.spool.envelope(id).expect("read").expect("present");
    let who = env.client_identity.clone().unwrap_or_default();
    assert!(
        who.contains("dpi.hopital-dev.test"),
        "identity from the client certificate: {who:?}"
    );
    assert!(
        env.tls.as_deref().is_some_and(|t| t.starts_with("TLSv1.3")),
        "{:?}",
        env.tls
    );
    let body = String::from_utf8(t.node.spool.body(id).expect("read").expect("present")).expect("utf8");
    assert!(body.contains("with ESMTPS"), "{body}");
    assert_eq!(
        body.matches("Message-ID: <").count(),
        1,
        "a Message-ID was added: {body}"
    );
    t.node.shutdown().await;
}
