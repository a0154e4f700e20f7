//! Server-side TLS over real sockets: certificate renewal without restart, TLS
//! 1.2 limited to ECDHE-RSA + AES-GCM, TLS 1.1 and older refused.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use support::node::{run, start_node};
use tokio::net::TcpStream;

/// Handshakes on the implicit-TLS listener; returns the server's leaf certificate.
async fn leaf(port: u16, roots: rustls::RootCertStore) -> CertificateDer<'static> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates().expect("certificate")[0].clone().into_owned()
}

/// Replaces `to` with a copy of `from` whose access time lies before its
/// modification time, in one rename: the node's next read of `to` moves the
/// access time forward (relatime, the default mount option, and strictatime
/// both update it when it is older than the modification time).
fn replace_unread(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).expect("copy");
    let written = std::fs::metadata(&tmp).and_then(|m| m.modified()).expect("mtime");
    let f = std::fs::File::options().write(true).open(&tmp).expect("open");
    f.set_times(std::fs::FileTimes::new().set_accessed(written - Duration::from_secs(60)))
        .expect("set atime");
    drop(f);
    std::fs::rename(&tmp, to).expect("rename");
}

/// Waits (up to 20 s; the node checks its files every second) until `file`,
/// written by [`replace_unread`], has been read since.
async fn read_by_node(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = std::fs::metadata(file).expect("stat");
        if m.accessed().expect("atime") >= m.modified().expect("mtime") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node never read {} (access time unchanged: a noatime mount?)",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_is_served_without_restart() {
    let t = start_node("", "").await;
    let pki = t.pki();
    // A second PKI stands for the renewed certificate; the client trusts both CAs.
    let renewed = t.dir.path().join("renewed");
    relay::ops::dev::ensure_pki(&renewed).expect("pki");
    let mut roots = relay::inbound::tls::load_roots(&pki.join("ca.pem")).expect("roots");
    for c in relay::inbound::tls::load_certs(&renewed.join("ca.pem")).expect("ca") {
        roots.add(c).expect("add");
    }
    let port = t.port("smtps");
    let before = leaf(port, roots.clone()).await;
    // A broken renewal (key of another certificate) is refused: the old one
    // stays. Asked only once the node has read the new file.
    let cert = pki.join("server.pem");
    replace_unread(&renewed.join("server.pem"), &cert);
    read_by_node(&cert).await;
    assert_eq!(
        leaf(port, roots.clone()).await,
        before,
        "mismatched pair must not be served"
    );
    // The matching key arrives: the new pair is served, no restart.
    std::fs::copy(renewed.join("server.key"), pki.join("server.key")).expect("copy");
    let mut after = before.clone();
    for _ in 0..50 {
        after = leaf(port, roots.clone()).await;
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(after, before, "renewed certificate served");
    assert_eq!(
        after.as_ref(),
        relay::inbound::tls::load_certs(&renewed.join("server.pem")).expect("pem")[0].as_ref()
    );
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocols_and_weak_suites_are_refused() {
    let t = start_node("", "").await;
    let port = t.port("smtps").to_string();
    let ca = t.pki().join("ca.pem").display().to_string();
    let connect = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            &ca,
            "-brief",
        ])
        .args(extra)
        .stdin(std::process::Stdio::null());
        cmd
    };
    let (ok, out) = run(connect(&["-tls1_1"])).await;
    assert!(!ok || out.contains("alert"), "TLS 1.1 must fail: {out}");
    let (ok, out) = run(connect(&["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"])).await;
    assert!(!ok || out.contains("alert"), "CBC suite must fail: {out}");
    let (ok, out) = run(connect(&["-tls1_2", "-cipher", "AES256-GCM-SHA384"])).await;
    assert!(!ok || out.contains("alert"), "static RSA key exchange must fail: {out}");
    let (ok, out) = run(connect(&["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"])).await;
    assert!(ok && out.contains("ECDHE-RSA-AES256-GCM-SHA384"), "{out}");
    t.node.shutdown().await;
}

/// Inbound TLS sessions resume (tickets, rotated keys): estafette-load with
/// `--resume`, one message per connection over STARTTLS, resumes every
/// connection after the first; without it every handshake is full. The
/// node counts both in `estafette_tls_sessions_total{resumed}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_sessions_resume_when_the_client_keeps_them() {
    let sink = support::peers::smtp_sink(&[]);
    let tail = format!(
        "[[route]]\ndomain = \"clinique.test\"\nhost = \"{}\"\ntls = \"none\"\n",
        sink.addr
    );
    let t = support::node::start_node_with("", "", &tail).await;
    let load = |resume: bool, n: &str| {
        let mut cmd = std::process::Command::new(support::peers::estafette_load());
        cmd.args(["send", "--target", &format!("127.0.0.1:{}", t.port("mta"))])
            .args([
                "--tls",
                "starttls",
                "--insecure",
                "--per-connection",
                "1",
                "--sessions",
                "1",
            ])
            .args(["--messages", n, "--to-domain", "clinique.test", "--json", "--quiet"]);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let sessions = |resumed: bool| {
        let label = format!("resumed=\"{resumed}\"");
        support::node::metric_sum(
            &support::node::counters(&t.node),
            "estafette_tls_sessions_total{",
            &[&label],
        )
    };
    let accepted = |out: &str| -> u64 {
        let report: serde_json::Value = out
            .find('{')
            .and_then(|at| serde_json::from_str(&out[at..]).ok())
            .unwrap_or_else(|| panic!("no report in: {out}"));
        report["counts"]["accepted"].as_u64().unwrap_or(0)
    };
    let (ok, out) = run(load(true, "6")).await;
    assert!(ok && accepted(&out) == 6, "{out}");
    // Only the first handshake is full (the tool may open a connection more
    // than it has messages: that one resumes too).
    let (full, resumed) = (sessions(false), sessions(true));
    assert_eq!(full, 1, "the first full, then resumed");
    assert!(resumed >= 5, "{resumed} resumed");
    let (ok, out) = run(load(false, "3")).await;
    assert!(ok && accepted(&out) == 3, "{out}");
    assert!(sessions(false) >= 4, "without --resume: full handshakes");
    assert_eq!(sessions(true), resumed, "and none resumed");
    t.node.shutdown().await;
}
