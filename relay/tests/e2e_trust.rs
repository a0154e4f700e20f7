//! The trust space end to end: three Estafette operators with certificates
//! from one IGC-Santé-shaped test PKI (RSA 2048). A and B are listed in the
//! trust list and exchange mail both ways; C has a valid chain but is not
//! listed: refused inbound, never delivered to. Also: plaintext and TLS 1.1
//! peers refused, a list refresh that adds a domain takes effect without a
//! restart, a corrupt list keeps the previous one, no mixed recipients, and
//! X-MSS-* headers and attachments relayed byte for byte.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use relay::config::Config;
use relay::ops::pki::{trust_list_xml, ListEntry, Subject, TestPki, Usage};
use relay::Node;
use support::node::{queued_id, run};
use support::peers::{aiosmtpd, free_port, Peer, PyTls};

struct Operator {
    node: Node,
    sink: Peer,
    ops_port: u16,
}

impl Operator {
    fn clients(&self) -> u16 {
        self.node.addr("clients").expect("clients listener").port()
    }
}

fn subject(cn: &str, unit: &str, org: &str) -> Subject {
    Subject {
        common_name: cn.into(),
        unit: unit.into(),
        organisation: org.into(),
        state: "Paris (75)".into(),
    }
}

/// The files every operator needs, in one directory: `ca.pem` (root),
/// `<op>.pem/.key` for a, b, c, and `other.pem/.key` from an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
    dn: [String; 3],
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate().expect("pki");
    std::fs::write(dir.path().join("ca.pem"), pki.root_pem()).expect("ca");
    let mut dn = Vec::new();
    for (name, s) in [
        ("a", subject("mx.a.test", "1750000018", "GCS OPERATEUR A")),
        ("b", subject("mx.b.test", "1690000026", "GIP OPERATEUR B")),
        ("c", subject("mx.c.test", "31234567800017", "OPERATEUR C NON LISTE")),
    ] {
        let issued = pki
            .issue(&s, &["127.0.0.1", "localhost"], Usage::Server)
            .expect("issue");
        std::fs::write(dir.path().join(format!("{name}.pem")), &issued.chain_pem).expect("pem");
        std::fs::write(dir.path().join(format!("{name}.key")), &issued.key_pem).expect("key");
        dn.push(issued.list_dn);
    }
    // Same shape of subject, but from another CA: a valid-looking stranger.
    let other = TestPki::generate().expect("other pki");
    let issued = other
        .issue(
            &subject("mx.b.test", "1690000026", "GIP OPERATEUR B"),
            &["127.0.0.1"],
            Usage::Server,
        )
        .expect("issue");
    std::fs::write(dir.path().join("other.pem"), &issued.chain_pem).expect("pem");
    std::fs::write(dir.path().join("other.key"), &issued.key_pem).expect("key");
    let dn = [dn[0].clone(), dn[1].clone(), dn[2].clone()];
    Pki { dir, dn }
}

fn list(entries: &[(&str, &str)]) -> String {
    let entries: Vec<ListEntry> = entries
        .iter()
        .map(|(domain, dn)| ListEntry {
            domain: (*domain).into(),
            dn: (*dn).into(),
            description: "test".into(),
        })
        .collect();
    trust_list_xml(&entries, "2026-11-23T00:00:00Z")
}

/// Starts operator `name` (a, b or c) with its own list file `list-<name>.xml`
/// and `routes` (TOML) appended.
async fn operator(pki: &Pki, name: &str, ops_port: u16, list_xml: &str, routes: &str, outside: bool) -> Operator {
    let sink = aiosmtpd(PyTls::None);
    let dir = pki.dir.path();
    std::fs::write(dir.join(format!("list-{name}.xml")), list_xml).expect("list");
    let toml = format!(
        r#"
[node]
hostname = "mx.{name}.test"
spool = "spool-{name}"
accept_timeout_secs = 10

[tls]
cert = "{name}.pem"
key = "{name}.key"
client_ca = "ca.pem"

[[listener]]
name = "clients"
address = "127.0.0.1:0"
tls = "none"

[[listener]]
name = "operators"
address = "127.0.0.1:{ops_port}"
tls = "starttls"
operators = true

[trust]
outside = {outside}

[trust.list]
source = "list-{name}.xml"
refresh_secs = 1
max_shrink_percent = 100

[[route]]
domain = "{name}.test"
host = "{sink}"
tls = "none"
internal = true

[[route]]
domain = "new-{name}.test"
host = "{sink}"
tls = "none"
internal = true

{routes}

[outbound]
ca = "ca.pem"
client_cert = "{name}.pem"
client_key = "{name}.key"
retry_first_secs = 1
retry_cap_secs = 1
retry_jitter = 0.0
poll_ms = 100

[admin]
address = "127.0.0.1:0"
"#,
        sink = sink.addr
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("config");
    let config = Config::load(&path).expect("config loads");
    let node = Node::start(config).await.expect("node starts");
    Operator { node, sink, ops_port }
}

/// Failed trust-list refreshes of `op` since it started, from its admin API.
async fn refresh_failures(op: &Operator) -> u64 {
    let addr = op.node.admin_addr().expect("admin listener");
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/api/trustlist"))
        .send()
        .await
        .expect("admin answers");
    let body = resp.text().await.expect("body");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    view["refresh_failures"]
        .as_u64()
        .unwrap_or_else(|| panic!("no refresh_failures in {body}"))
}

async fn swaks(port: u16, from: &str, to: &str, data: &str) -> (bool, String) {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", from, "--to", to, "--helo", "dpi.test", "--data", data]);
    run(cmd).await
}

/// MAIL FROM over STARTTLS to an operator listener with smtplib, presenting
/// `cert` (or none); prints the MAIL reply, or `TLS-FAILED ...`.
const PROBE: &str = r#"
import smtplib, ssl, sys
port, cert, key, ca, sender, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
s = smtplib.SMTP('127.0.0.1', port, timeout=20)
s.ehlo('probe.test')
if tls == 'yes':
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if cert != '-':
        ctx.load_cert_chain(cert, key)
    try:
        s.starttls(context=ctx)
    except Exception as e:
        print('TLS-FAILED', e)
        sys.exit(0)
    s.ehlo('probe.test')
code, msg = s.mail(sender)
print(code, msg.decode())
s.quit()
"#;

async fn probe(port: u16, dir: &Path, cert: Option<&str>, sender: &str, tls: bool) -> String {
    let file = |f: &str| dir.join(f).display().to_string();
    let (cert, key) = match cert {
        Some(c) => (file(&format!("{c}.pem")), file(&format!("{c}.key"))),
        None => ("-".into(), "-".into()),
    };
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PROBE, &port.to_string(), &cert, &key, &file("ca.pem"), sender])
        .arg(if tls { "yes" } else { "no" });
    let (ok, out) = run(cmd).await;
    assert!(ok, "probe ran: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_exchange_mail_and_strangers_are_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let [dn_a, dn_b, dn_c] = pki.dn.clone();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // A and B list each other; `b2.test` is B's too, but A's route for it
    // leads to C (a valid chain with an unlisted DN): an impersonation.
    let ab = list(&[("a.test", &dn_a), ("b.test", &dn_b), ("b2.test", &dn_b)]);
    let a = operator(
        &pki,
        "a",
        pa,
        &ab,
        &format!(
            "[[route]]\ndomain = \"b.test\"\nhost = \"127.0.0.1:{pb}\"\n\n\
             [[route]]\ndomain = \"b2.test\"\nhost = \"127.0.0.1:{pc}\"\n\n\
             [[route]]\ndomain = \"partner.test\"\nhost = \"127.0.0.1:1\"\ntls = \"none\"\n"
        ),
        true,
    )
    .await;
    let b = operator(
        &pki,
        "b",
        pb,
        &ab,
        &format!(
            "[[route]]\ndomain = \"a.test\"\nhost = \"127.0.0.1:{pa}\"\n\n\
             [[route]]\ndomain = \"new-a.test\"\nhost = \"127.0.0.1:{pa}\"\n"
        ),
        false,
    )
    .await;
    let c = operator(
        &pki,
        "c",
        pc,
        &list(&[("c.test", &dn_c), ("b.test", &dn_b), ("b2.test", &dn_c)]),
        "",
        false,
    )
    .await;
    let dir = pki.dir.path();

    // A → B, with the MSSanté headers and an attachment, byte for byte.
    let message = "From: dr.martin@a.test\r\nTo: secretariat@b.test\r\nSubject: CR operatoire\r\n\
                   Message-ID: <cr-1@a.test>\r\nX-MSS-NIL: DPI-EXEMPLE 4.2\r\nX-MSS-CODECDA: 11490-0,34133-9\r\n\
                   X-MSS-INS: O\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
                   --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu.\r\n\
                   --b1\r\nContent-Type: application/zip; name=\"IHE_XDM.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                   UEsDBBQAAAAIAAAAIQBkYXRhCg==\r\n--b1--\r\n";
    // swaks ends the data with CRLF.CRLF itself: hand it the message without its last CRLF.
    let data = message.strip_suffix("\r\n").expect("CRLF");
    let (ok, out) = swaks(a.clients(), "dr.martin@a.test", "secretariat@b.test", data).await;
    assert!(ok && out.contains("250 2.0.0 queued as"), "{out}");
    let got = tokio::task::block_in_place(|| b.sink.received(1));
    assert_eq!(got.len(), 1, "A → B delivered");
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.ends_with(message),
        "relayed byte for byte below the trace headers:\n{text}"
    );
    assert_eq!(
        text.matches("Received: ").count(),
        2,
        "one Received per operator:\n{text}"
    );

    // The operator's indicators, read from A's spool while A runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let stats = loop {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
        cmd.args(["stats", "--month", &month, "--format", "json", "--spool"])
            .arg(dir.join("spool-a"));
        let (ok, out) = run(cmd).await;
        assert!(ok, "{out}");
        if out.contains("outcome:delivered") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for counter in [
        "\"messages\":1",
        "\"nil:DPI-EXEMPLE 4.2\":1",
        "\"codecda:11490-0\":1",
        "\"codecda:34133-9\":1",
        "\"ins:O\":1",
        "\"sender_domain:a.test\":1",
        "\"rcpt_domain:b.test\":1",
        "\"outcome:delivered\":1",
    ] {
        assert!(stats.contains(counter), "{counter} in {stats}");
    }

    // B → A.
    let (ok, out) = swaks(
        b.clients(),
        "secretariat@b.test",
        "dr.martin@a.test",
        "Subject: re\r\n\r\nmerci\r\n",
    )
    .await;
    assert!(ok, "{out}");
    let got = tokio::task::block_in_place(|| a.sink.received(1));
    assert!(String::from_utf8_lossy(&got[0]).contains("merci"), "B → A delivered");

    // A → b2.test: the server at the route is C, whose DN is not listed for
    // b2.test. Deferred with 4.7.5, visible in the queue; C gets nothing.
    let (ok, out) = swaks(
        a.clients(),
        "dr.martin@a.test",
        "x@b2.test",
        "Subject: no\r\n\r\nno\r\n",
    )
    .await;
    assert!(ok, "{out}");
    let id: storage::MessageId = queued_id(&out).expect("queue id").parse().expect("id");
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let env = a.node.spool.envelope(id).expect("read").expect("still queued");
        if let Some(r) = &env.recipients[0].last_reply {
            break r.to_string();
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        reply.contains("4.7.5") && reply.contains("not listed for b2.test"),
        "{reply}"
    );
    assert!(c.sink.files().is_empty(), "nothing delivered to the unlisted operator");

    // Inbound at B's operator listener: each failed check is named.
    let cases = [
        (
            Some("c"),
            "x@c.test",
            "550 5.7.1 sender domain c.test is not in the trust list",
        ),
        (Some("c"), "x@a.test", "is not listed for sender domain a.test"),
        (None, "x@a.test", "550 5.7.1 no client certificate"),
        (Some("other"), "x@b.test", "does not chain to the trust anchors"),
        (Some("a"), "x@b.test", "is not listed for sender domain b.test"),
        (Some("a"), "x@a.test", "250"),
    ];
    for (cert, from, expect) in cases {
        let out = probe(b.ops_port, dir, cert, from, true).await;
        assert!(out.contains(expect), "{cert:?} {from}: expected {expect:?}, got {out}");
    }
    // Plaintext: MAIL refused before TLS.
    let out = probe(b.ops_port, dir, Some("a"), "x@a.test", false).await;
    assert!(out.starts_with("530"), "plaintext operator refused: {out}");
    // TLS 1.1 (offered for real: OpenSSL's security level lowered) refused.
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{}", b.ops_port)])
        .args(["-starttls", "smtp", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        .args(["-cert", &dir.join("a.pem").display().to_string()])
        .args(["-key", &dir.join("a.key").display().to_string(), "-brief"])
        .stdin(std::process::Stdio::null());
    let (ok, out) = run(cmd).await;
    assert!(!ok && out.contains("alert"), "TLS 1.1 refused: {out}");

    // No mixing: a trust-space and an outside recipient in one transaction.
    let (ok, out) = swaks(
        a.clients(),
        "dr.martin@a.test",
        "secretariat@b.test,ext@partner.test",
        "Subject: mix\r\n\r\nmix\r\n",
    )
    .await;
    assert!(
        out.contains("550 5.7.1 recipient <ext@partner.test> is outside"),
        "{out}"
    );
    assert!(ok || out.contains("queued as"), "{out}");
    let got = tokio::task::block_in_place(|| b.sink.received(2));
    assert_eq!(got.len(), 2, "the accepted recipient still got it");

    // A list refresh on B adds new-a.test (A's): accepted and delivered
    // without restart.
    let send_new = || {
        swaks(
            b.clients(),
            "secretariat@b.test",
            "x@new-a.test",
            "Subject: new\r\n\r\nnew\r\n",
        )
    };
    let (_, out) = send_new().await;
    assert!(out.contains("550 5.7.1 recipient domain new-a.test is not in"), "{out}");
    let grown = list(&[
        ("a.test", &dn_a),
        ("b.test", &dn_b),
        ("b2.test", &dn_b),
        ("new-a.test", &dn_a),
    ]);
    std::fs::write(dir.join("list-b.xml"), &grown).expect("rewrite list");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, out) = send_new().await;
        if out.contains("queued as") {
            break;
        }
        assert!(Instant::now() < deadline, "refresh not applied: {out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let got = tokio::task::block_in_place(|| a.sink.received(2));
    assert!(
        got.iter()
            .any(|m| String::from_utf8_lossy(m).contains("for <x@new-a.test>")),
        "delivered to A"
    );

    // A corrupt list keeps the previous one: new-a.test still goes. Asked
    // once B has read the corrupt file (and counted the failed refresh).
    let failures = refresh_failures(&b).await;
    std::fs::write(dir.join("list-b.xml"), &grown[..grown.len() / 2]).expect("corrupt list");
    let deadline = Instant::now() + Duration::from_secs(15);
    while refresh_failures(&b).await == failures {
        assert!(Instant::now() < deadline, "the corrupt list was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = send_new().await;
    assert!(ok && out.contains("queued as"), "previous list kept: {out}");

    for op in [a, b, c] {
        op.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_dev_writes_a_list_the_checker_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.args(["pki", "dev"]).arg(dir.path());
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "sink.pem",
        "client.pem",
        "trustlist.xml",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.args(["trustlist", "check", "--strict"])
        .arg(dir.path().join("trustlist.xml"));
    let (ok, out) = run(cmd).await;
    assert!(ok && out.contains("2 usable, 0 skipped"), "{out}");
    // The server certificate's DN (read from the certificate) is the one listed.
    let pem = std::fs::read(dir.path().join("server.pem")).expect("pem");
    let der = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
        .next()
        .map(|c: Result<rustls::pki_types::CertificateDer<'static>, _>| c.expect("cert"))
        .expect("one cert");
    let dn = relay::trust::subject_dn(&der).expect("dn");
    let xml = std::fs::read(dir.path().join("trustlist.xml")).expect("list");
    let list = proto::trustlist::parse(&xml).expect("parses");
    assert!(list
        .entries
        .iter()
        .any(|e| e.domain == "hopital-dev.test" && e.dn == dn));
}
