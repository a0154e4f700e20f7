//! estafette-load against a peer no one here wrote: Postfix's smtp-sink
//! (installed by scripts/deps, required).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use estafette_load::scenario::{self, LoadSpec, ReportSpec, Scenario, SinkSpec};

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_smtp_sink() -> (Kill, String) {
    assert!(
        std::path::Path::new(SMTP_SINK).exists(),
        "{SMTP_SINK} missing: run scripts/deps (Debian package postfix)"
    );
    let port = low_port();
    let addr = format!("127.0.0.1:{port}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut cmd = Command::new(SMTP_SINK);
    if root {
        cmd.args(["-u", "root"]);
    }
    let child = cmd
        .args([addr.as_str(), "256"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "smtp-sink did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Kill(child), addr)
}

fn scenario(target: &str, dir: &std::path::Path) -> Scenario {
    Scenario {
        name: Some("smtp-sink".into()),
        target: Some(target.into()),
        load: LoadSpec {
            messages: Some(300),
            sessions: 5,
            size: "1k:70,20k:30".into(),
            recipients: 2,
            threads: Some(2),
            ..LoadSpec::default()
        },
        sink: SinkSpec {
            enabled: false,
            ..SinkSpec::default()
        },
        report: ReportSpec {
            dir: Some(dir.to_path_buf()),
            ..ReportSpec::default()
        },
        ..Scenario::default()
    }
}

#[test]
fn sends_to_postfix_smtp_sink_pipelined_and_not() {
    let (_sink, addr) = start_smtp_sink();
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario(&addr, dir.path());
    for (pipelining, per_connection) in [(true, 100), (false, 1)] {
        s.load.pipelining = pipelining;
        s.load.per_connection = per_connection;
        let r = scenario::run(&s, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.counts.sent, 300, "{}", r.summary());
        assert_eq!(r.counts.accepted, 300, "{}", r.summary());
        assert!(r.verdict.is_none(), "no sink of ours: no verdict");
        let log = estafette_load::seqlog::read_log(&dir.path().join("send.log")).unwrap();
        assert_eq!(log.len(), 300);
        assert!(log.iter().all(|r| r.code == 250 && r.count == 2));
    }
}

#[test]
fn starttls_to_a_server_without_it_is_a_clear_error() {
    let (_sink, addr) = start_smtp_sink();
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario(&addr, dir.path());
    s.load.tls = estafette_load::conn::Security::Starttls;
    s.load.insecure = true;
    let err = scenario::run(&s, true).unwrap_err().to_string();
    assert!(err.contains("STARTTLS"), "{err}");
}

/// A free port below the kernel's ephemeral range (32768+), so that nothing
/// else takes it between this check and the test's own bind.
fn low_port() -> u16 {
    loop {
        let port: u16 = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
