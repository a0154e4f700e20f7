//! A route's own message size limit (`[[route]] max_message_size`), with
//! Python's smtplib as the client and Postfix's smtp-sink as every
//! destination: a SIZE declared over a recipient's limit gets `552 5.3.4`
//! at that RCPT while the other recipients stay valid; without SIZE, the
//! recipient fails at once and its sender gets a DSN that names the limit,
//! while the others are delivered.

mod support;

use std::process::Command;

use support::node::{run, start_node_full, Extra};
use support::peers::smtp_sink;

const SCRIPT: &str = r#"
import smtplib, sys
port, size_option = int(sys.argv[1]), sys.argv[2] == "size"
body = "Subject: imagerie\r\n\r\n" + ("x" * 76 + "\r\n") * 60   # ~4.7 kB
s = smtplib.SMTP("127.0.0.1", port)
s.ehlo("dpi.test")
# Low-level: sendmail() would always add SIZE when the server offers it.
opts = ["SIZE=%d" % len(body)] if size_option else []
code, _ = s.mail("dpi@ch.test", opts)
assert code == 250, code
refused = {}
for rcpt in ["dr@patient.test", "dr@clinique.test"]:
    code, text = s.rcpt(rcpt)
    if code != 250:
        refused[rcpt] = (code, text)
print("REFUSED", refused)
code, text = s.data(body)
print("DATA", code, text)
s.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_takes_no_more_than_its_size_limit() {
    let sink = smtp_sink(&[]);
    let tail = format!(
        r#"
[[route]]
domain = "patient.test"
host = "{addr}"
tls = "none"
max_message_size = 2000

[[route]]
domain = "clinique.test"
host = "{addr}"
tls = "none"

[[route]]
domain = "ch.test"
host = "{addr}"
tls = "none"

[outbound]
poll_ms = 100
"#,
        addr = sink.addr
    );
    let t = start_node_full(Extra {
        tail: &tail,
        ..Extra::default()
    })
    .await;
    let port = t.port("plain").to_string();

    // SIZE declared: the too-big recipient is refused at RCPT, the other is delivered.
    let (ok, out) = run({
        let mut c = Command::new("python3");
        c.args(["-c", SCRIPT, &port, "size"]);
        c
    })
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("dr@patient.test") && out.contains("552") && out.contains("5.3.4"),
        "{out}"
    );
    assert!(
        out.contains("exceeds the limit of 2000 octets for patient.test"),
        "{out}"
    );
    let got = sink.received(1);
    assert_eq!(got.len(), 1);
    let first = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(
        first.contains("X-Rcpt-Args: <dr@clinique.test>") && !first.contains("dr@patient.test"),
        "{first}"
    );

    // No SIZE: accepted for both; the too-big recipient fails at once and
    // the sender gets a DSN naming the limit; the other is delivered.
    let (ok, out) = run({
        let mut c = Command::new("python3");
        c.args(["-c", SCRIPT, &port, "none"]);
        c
    })
    .await;
    assert!(ok && out.contains("REFUSED {}") && out.contains("DATA 250"), "{out}");
    let got: Vec<String> = sink
        .received(3)
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    let delivered = got
        .iter()
        .filter(|m| m.contains("X-Rcpt-Args: <dr@clinique.test>"))
        .count();
    assert_eq!(delivered, 2, "both messages reached clinique.test");
    assert!(
        !got.iter().any(|m| m.contains("X-Rcpt-Args: <dr@patient.test>")),
        "never sent to patient.test"
    );
    let dsn = got
        .iter()
        .find(|m| m.contains("X-Mail-Args: <>"))
        .expect("a DSN to the sender");
    assert!(dsn.contains("X-Rcpt-Args: <dpi@ch.test>"), "{dsn}");
    assert!(dsn.contains("Action: failed") && dsn.contains("Status: 5.3.4"), "{dsn}");
    assert!(
        dsn.contains("exceeds the limit of 2000 octets for patient.test"),
        "{dsn}"
    );
    t.node.shutdown().await;
}
