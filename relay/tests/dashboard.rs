//! The admin dashboard in a real browser: a node on 127.0.0.1 ephemeral
//! ports takes mail from swaks (two delivered to Postfix's smtp-sink, one
//! stuck behind a dead port, one recipient refused), then headless Chromium
//! (Debian's `chromium`) loads `/dashboard` with the read token in its URL
//! fragment and runs the page's script; the rendered DOM must show the
//! node's own figures from `/api/dashboard`, `/api/trustlist` and
//! `/metrics`. The test also writes the screenshot the README shows when
//! `ESTAFETTE_SCREENSHOT` names a file.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::node::{queued_id, run, start_node_full, Extra, TestNode};
use support::peers::smtp_sink;

const TOKEN: &str = "dashboard-read-token-0123456789";

async fn swaks(t: &TestNode, to: &str, quit_after: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
        .args(["--from", "secretariat@hopital-dev.test", "--to", to])
        .args(["--helo", "dpi.test", "--data", "Subject: CR\r\n\r\nCompte rendu.\r\n"]);
    if let Some(q) = quit_after {
        cmd.args(["--quit-after", q]);
    }
    run(cmd).await
}

async fn get(t: &TestNode, path: &str) -> (StatusCode, String) {
    let url = format!("http://{}{path}", t.node.admin_addr().expect("admin"));
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

async fn api(t: &TestNode, path: &str) -> Value {
    let (status, body) = get(t, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
}

/// The page's DOM after its script ran, from headless Chromium; with
/// `screenshot`, also a PNG of it.
async fn chromium(url: String, screenshot: Option<String>) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args(["--no-first-run", "--disable-extensions", "--window-size=1280,620"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Virtual time runs the page's timers (two refreshes: rates need two
        // samples) and waits for its fetches.
        .arg("--virtual-time-budget=5000");
    match &screenshot {
        Some(path) => cmd.arg(format!("--screenshot={path}")),
        None => cmd.arg("--dump-dom"),
    };
    cmd.arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("chromium runs (scripts/deps installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text inside the element with `id` (no nested elements).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = at + dom[at..].find('>').expect("tag end") + 1;
    let end = start + dom[start..].find('<').expect("closing tag");
    &dom[start..end]
}

/// The inner HTML of the element with `id`, up to its closing `tag`.
fn block_of<'a>(dom: &'a str, id: &str, tag: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in the page"));
    let end = at + dom[at..].find(&format!("</{tag}>")).expect("closing tag");
    &dom[at..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_nodes_own_figures_in_chromium() {
    let sink = smtp_sink(&[]);
    let tail = format!(
        r#"
[[route]]
domain = "cabinet-dev.test"
host = "{}"
tls = "none"
internal = true

[trust]
outside = true

[trust.list]
source = "pki/trustlist.xml"

[outbound]
ca = "pki/ca.pem"
poll_ms = 100
retry_first_secs = 3600
retry_cap_secs = 3600
retry_jitter = 0.0

[admin]
address = "127.0.0.1:0"
token = "{TOKEN}"
"#,
        sink.addr
    );
    let t = start_node_full(Extra {
        tail: &tail,
        ..Extra::default()
    })
    .await;

    for to in [
        "dr.martin@cabinet-dev.test",
        "dr.durand@cabinet-dev.test",
        "x@cabinet.test",
    ] {
        let (ok, transcript) = swaks(&t, to, None).await;
        assert!(ok && queued_id(&transcript).is_some(), "{transcript}");
    }
    let (ok, transcript) = swaks(&t, "someone@elsewhere.example", Some("RCPT")).await;
    assert!(!ok && transcript.contains("<** 550"), "{transcript}");
    assert_eq!(sink.received(2).len(), 2);

    // Wait for the node's own figures to settle: two delivered, one deferred.
    let start = Instant::now();
    let figures = loop {
        let d = api(&t, "/api/dashboard").await;
        if d["totals"]["delivered"] == 2 && d["totals"]["deferred"] == 1 && d["waiting"] == 1 {
            break d;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never settled: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(figures["totals"]["accepted"], 3, "{figures}");
    assert_eq!(figures["totals"]["refused"], 1, "{figures}");
    assert_eq!(figures["destinations"][0]["destination"], "cabinet.test", "{figures}");
    let trust = api(&t, "/api/trustlist").await;
    let (_, metrics) = get(&t, "/metrics").await;
    let accepted_metric = support::node::metric_sum(&metrics, "estafette_messages_accepted_total{", &[]);
    assert_eq!(accepted_metric, 3, "{metrics}");

    // The page needs no token itself; its data does.
    let admin = t.node.admin_addr().expect("admin");
    let page = reqwest::get(format!("http://{admin}/dashboard")).await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let anonymous = reqwest::get(format!("http://{admin}/api/dashboard"))
        .await
        .expect("api");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let dom = chromium(format!("http://{admin}/dashboard#token={TOKEN}"), None).await;
    assert!(dom.contains("data-loaded=\""), "the script never rendered: {dom}");
    assert_eq!(text_of(&dom, "error"), "", "the page reports an error");
    assert_eq!(text_of(&dom, "accepted-total"), "3");
    assert_eq!(text_of(&dom, "delivered-total"), "2");
    assert_eq!(text_of(&dom, "refused-total"), "1");
    assert_eq!(text_of(&dom, "deferred-total"), "1");
    assert_eq!(text_of(&dom, "queue-waiting"), "1");
    assert_eq!(text_of(&dom, "trust-entries"), trust["entries"].to_string());
    assert_eq!(text_of(&dom, "trust-domains"), trust["domains"].to_string());
    // Rates come from two samples: nothing moved between them.
    assert_eq!(text_of(&dom, "rate-in"), "0.0");
    let destinations = block_of(&dom, "destinations", "tbody");
    assert!(
        destinations.contains("data-destination=\"cabinet.test\"") && destinations.contains(">1<"),
        "{destinations}"
    );
    let refusals = block_of(&dom, "refusals", "ol");
    assert!(
        refusals.contains("550") && refusals.contains("someone@elsewhere.example"),
        "{refusals}"
    );
    let errors = block_of(&dom, "errors", "ol");
    assert!(
        errors.contains("x@cabinet.test") && errors.contains("deferred"),
        "{errors}"
    );
    assert!(text_of(&dom, "cluster-none").contains("not in a cluster"));

    // Without the token the page asks for it instead of showing figures.
    let dom = chromium(format!("http://{admin}/dashboard"), None).await;
    assert_eq!(text_of(&dom, "error"), "a read token is needed");
    assert_eq!(text_of(&dom, "accepted-total"), "–");

    if let Ok(path) = std::env::var("ESTAFETTE_SCREENSHOT") {
        chromium(format!("http://{admin}/dashboard#token={TOKEN}"), Some(path.clone())).await;
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "no screenshot at {path}"
        );
    }
    t.node.shutdown().await;
}
