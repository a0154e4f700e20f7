//! Reloading a running node without a restart: the real `estafette serve`
//! process, mail from swaks, two Postfix smtp-sinks as destinations. SIGHUP
//! moves a route and a limit; a broken file is refused as a whole and the
//! node keeps serving with the running configuration; `estafette reload`
//! (the admin API) says what reloaded and what needs a restart; the log
//! filter changes while the node runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::node::run;
use support::peers::{free_port, smtp_sink};

const READ: &str = "reload-read-token-0123456789";
const WRITE: &str = "reload-write-token-9876543210";

struct Serve {
    child: Child,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `n` lines containing `what`.
    async fn wait_log(&self, what: &str, n: usize) {
        let start = Instant::now();
        while self.log().matches(what).count() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {what:?} in:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn hangup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

fn config(smtp: u16, admin: u16, sink: std::net::SocketAddr, max_recipients: usize, retry_first: u64) -> String {
    format!(
        r#"
[node]
hostname = "relay.test"
node_id = 1
spool = "spool"

[[listener]]
name = "plain"
address = "127.0.0.1:{smtp}"
tls = "none"

[limits]
max_recipients = {max_recipients}

[[route]]
domain = "clinique.test"
host = "{sink}"
tls = "none"

[outbound]
poll_ms = 100
retry_first_secs = {retry_first}

[admin]
address = "127.0.0.1:{admin}"
token = "{READ}"
write_token = "{WRITE}"
"#
    )
}

async fn swaks(smtp: u16, to: &str) -> String {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{smtp}")])
        .args(["--from", "secretariat@ch.test", "--to", to])
        .args(["--helo", "dpi.test", "--data", "Subject: CR\r\n\r\nCompte rendu.\r\n"]);
    run(cmd).await.1
}

async fn cli(path: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.args(args).arg("--config").arg(path);
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes_and_limits_and_a_broken_file_changes_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (smtp_sink(&[]), smtp_sink(&[]));
    let (smtp, admin) = (free_port(), free_port());
    let path = dir.path().join("estafette.toml");
    std::fs::write(&path, config(smtp, admin, a.addr, 10, 60)).expect("config");
    let log = dir.path().join("serve.log");
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_estafette"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("estafette starts");
    let node = Serve { child, log };
    node.wait_log("admin HTTP listening", 1).await;

    // v1: clinique.test goes to sink A.
    let t = swaks(smtp, "dr.a@clinique.test").await;
    assert!(t.contains("250 2.0.0 queued as"), "{t}");
    assert_eq!(a.received(1).len(), 1, "{}", node.log());

    // v2 on SIGHUP: to sink B, one recipient per message.
    std::fs::write(&path, config(smtp, admin, b.addr, 1, 60)).expect("config");
    node.hangup();
    node.wait_log("configuration reloaded", 1).await;
    let t = swaks(smtp, "dr.b@clinique.test,dr.c@clinique.test").await;
    assert!(t.contains("452 4.5.3"), "the new limit: {t}");
    assert!(t.contains("250 2.0.0 queued as"), "{t}");
    let got = b.received(1);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("X-Rcpt-Args: <dr.b@clinique.test>"));
    assert_eq!(a.files().len(), 1, "nothing more went to the old route");

    // A broken file: refused as a whole, the node serves with v2.
    std::fs::write(&path, "[node\nhostname = ").expect("broken");
    node.hangup();
    node.wait_log("reload refused", 1).await;
    assert!(
        node.log().contains(&path.display().to_string()),
        "the error names the file"
    );
    let t = swaks(smtp, "dr.d@clinique.test,dr.e@clinique.test").await;
    assert!(
        t.contains("452 4.5.3") && t.contains("250 2.0.0 queued as"),
        "still v2: {t}"
    );
    assert_eq!(b.received(2).len(), 2);
    assert_eq!(a.files().len(), 1);

    // The API: the read token may not reload; a broken file is a 422.
    let url = format!("http://127.0.0.1:{admin}/api/reload");
    let http = reqwest::Client::new();
    let r = http.post(&url).bearer_auth(READ).send().await.expect("admin");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http.post(&url).bearer_auth(WRITE).send().await.expect("admin");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.expect("body");
    assert!(body.contains("estafette.toml"), "{body}");

    // v3 through `estafette reload`: routes back to A, and a change that
    // needs a restart is named as such.
    std::fs::write(&path, config(smtp, admin, a.addr, 1, 120)).expect("config");
    let (ok, said) = cli(&path, &["reload"]).await;
    assert!(ok, "{said}");
    let report: serde_json::Value = serde_json::from_str(said.trim()).expect("JSON report");
    assert!(
        report["reloaded"]
            .as_array()
            .expect("reloaded")
            .iter()
            .any(|r| r == "routes"),
        "{report}"
    );
    assert_eq!(report["needs_restart"], serde_json::json!(["outbound"]), "{report}");
    let t = swaks(smtp, "dr.f@clinique.test").await;
    assert!(t.contains("250 2.0.0 queued as"), "{t}");
    assert_eq!(a.received(2).len(), 2);

    // The log filter, read and changed while the node runs.
    let (ok, said) = cli(&path, &["log"]).await;
    assert!(ok && said.contains("\"info\""), "{said}");
    let (ok, said) = cli(&path, &["log", "info,[broken"]).await;
    assert!(!ok && said.contains("422"), "{said}");
    assert!(!node.log().contains(" DEBUG "), "info only so far");
    let (ok, said) = cli(&path, &["log", "debug"]).await;
    assert!(ok && said.contains("\"debug\""), "{said}");
    let t = swaks(smtp, "dr.g@clinique.test").await;
    assert!(t.contains("250 2.0.0 queued as"), "{t}");
    node.wait_log(" DEBUG ", 1).await;
    // Each session's lines carry its id, listener and peer.
    assert!(
        node.log()
            .lines()
            .any(|l| l.contains("session{session=") && l.contains("listener=plain") && l.contains("accepted")),
        "{}",
        node.log()
    );
}
