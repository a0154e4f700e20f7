//! The admin HTTP listener of a real node on 127.0.0.1 ephemeral ports, read
//! with a real HTTP client (reqwest): probes, the bearer token, `/metrics`
//! (checked by Prometheus's own `promtool check metrics`, and in both
//! exposition formats) moving with a real message sent by swaks and
//! delivered to a real SMTP sink, the trust list's gauges and its refresh
//! failure counter when the list file is corrupted, and the queue, trace and
//! trust-list JSON API.

mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use support::node::{queued_id, run, start_node_full, start_node_with, Extra, TestNode};

const TOKEN: &str = "admin-test-token-0123456789";

/// A node with the dev PKI's trust list (`hopital-dev.test`,
/// `cabinet-dev.test`; refreshed every second), `cabinet-dev.test` delivered
/// to a real SMTP sink, `cabinet.test` (outside the list) to a dead port, and
/// `[admin]` on an ephemeral port with `admin` (TOML lines) added.
async fn node(sink: SocketAddr, admin: &str) -> TestNode {
    let tail = format!(
        r#"
[[route]]
domain = "cabinet-dev.test"
host = "{sink}"
tls = "none"
internal = true

[trust]
outside = true

[trust.list]
source = "pki/trustlist.xml"
refresh_secs = 1
max_shrink_percent = 100

[outbound]
ca = "pki/ca.pem"
poll_ms = 100
retry_first_secs = 3600
retry_cap_secs = 3600
retry_jitter = 0.0

[admin]
address = "127.0.0.1:0"
{admin}
"#
    );
    start_node_full(Extra {
        tail: &tail,
        ..Extra::default()
    })
    .await
}

fn url(t: &TestNode, path: &str) -> String {
    format!("http://{}{path}", t.node.admin_addr().expect("admin listener"))
}

async fn get(t: &TestNode, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(url(t, path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("admin answers");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

async fn metrics(t: &TestNode) -> String {
    let (status, text) = get(t, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

/// The value of the sample `key` (`name` or `name{labels}`), if present.
fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// Scrapes until `done` holds for the exposition (at most `secs`); returns it.
async fn scrape_until(t: &TestNode, secs: u64, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = metrics(t).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never showed in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `promtool check metrics` on `text`: the real Prometheus parser and linter.
async fn promtool(text: &str) -> (bool, String) {
    let text = text.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs (scripts/deps installs it)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("promtool");
        let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
        said.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), said)
    })
    .await
    .expect("join")
}

async fn swaks(t: &TestNode, to: &str) -> String {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
        .args(["--from", "secretariat@hopital-dev.test", "--to", to])
        .args(["--helo", "dpi.test", "--data", "Subject: CR\r\n\r\nCompte rendu.\r\n"]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok && transcript.contains("250 2.0.0 queued as"), "{transcript}");
    queued_id(&transcript).expect("queue id")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn sink_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_probes_token_and_api_over_http() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let sink_dir = secrets.path().join("sink");
    let sink = relay::ops::sink::spawn("127.0.0.1:0".parse().expect("addr"), sink_dir.clone())
        .await
        .expect("sink");
    let t = node(sink, &format!("token_file = \"{}\"", token_file.display())).await;

    // Probes answer without a token.
    assert_eq!(get(&t, "/healthz", None).await, (StatusCode::OK, "ok\n".into()));
    assert_eq!(get(&t, "/readyz", None).await, (StatusCode::OK, "ready\n".into()));

    // Everything else needs the token: none, a wrong one, another scheme.
    for path in ["/metrics", "/api/queue", "/api/trustlist", "/api/trace/x"] {
        let resp = reqwest::Client::new().get(url(&t, path)).send().await.expect("answer");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenge = resp.headers().get(WWW_AUTHENTICATE).expect("challenge");
        assert!(challenge.to_str().unwrap_or("").starts_with("Bearer"), "{challenge:?}");
        let (status, _) = get(&t, path, Some("admin-test-token-012345678")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}, a prefix of the token");
        let (status, _) = get(&t, path, Some(&format!("{TOKEN}x"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}, token plus a byte");
        let resp = reqwest::Client::new()
            .get(url(&t, path))
            .basic_auth("admin", Some(TOKEN))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}, Basic");
    }

    // Before any mail: the trust list's real values, nothing accepted yet.
    let resp = reqwest::Client::new()
        .get(url(&t, "/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers().get(CONTENT_TYPE).expect("content type").clone();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let before = resp.text().await.expect("body");
    let (ok, said) = promtool(&before).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{before}");
    assert_eq!(sample(&before, "estafette_trustlist_entries"), Some(2.0));
    assert_eq!(sample(&before, "estafette_trustlist_domains"), Some(2.0));
    assert_eq!(sample(&before, "estafette_trustlist_refresh_failures_total"), Some(0.0));
    let age = sample(&before, "estafette_trustlist_age_seconds").expect("age");
    assert!(age >= 0.0, "{age}");
    let last = sample(&before, "estafette_trustlist_last_success_timestamp_seconds").expect("last success");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(last > now - 3600.0 && last <= now + 1.0, "{last} vs now {now}");
    assert_eq!(
        sample(&before, "estafette_messages_accepted_total{listener=\"plain\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "estafette_deliveries_total{outcome=\"delivered\"}"),
        Some(0.0)
    );
    let build = format!("estafette_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&before, &build), Some(1.0));

    // A real message in (swaks), out to the sink: the counters move.
    let id = swaks(&t, "dr.martin@cabinet-dev.test").await;
    let after = scrape_until(&t, 30, "the delivery", |m| {
        sample(m, "estafette_deliveries_total{outcome=\"delivered\"}") == Some(1.0)
            && sample(m, "estafette_queue_messages") == Some(0.0)
            && sample(m, "estafette_queue_in_flight") == Some(0.0)
    })
    .await;
    assert_eq!(sink_files(&sink_dir), 1, "the sink got the message");
    assert_eq!(
        sample(&after, "estafette_messages_accepted_total{listener=\"plain\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "estafette_messages_accepted_total{listener=\"mta\"}"),
        Some(0.0)
    );
    let bytes = sample(&after, "estafette_bytes_accepted_total{listener=\"plain\"}").expect("bytes");
    assert!(bytes > "Subject: CR\r\n\r\nCompte rendu.\r\n".len() as f64, "{bytes}");
    assert_eq!(
        sample(&after, "estafette_deliveries_total{outcome=\"failed\"}"),
        Some(0.0)
    );
    let (ok, said) = promtool(&after).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{after}");
    assert!(!after.contains("estafette_smtp_refusals_total{"), "nothing refused yet");

    // A recipient outside every route: refused, counted by code and reason.
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
        .args([
            "--from",
            "secretariat@hopital-dev.test",
            "--to",
            "someone@elsewhere.example",
        ])
        .args(["--helo", "dpi.test", "--quit-after", "RCPT"]);
    let (ok, transcript) = run(cmd).await;
    assert!(!ok && transcript.contains("<** 550"), "{transcript}");
    let refused = scrape_until(&t, 10, "the refusal", |m| {
        m.lines()
            .any(|l| l.starts_with("estafette_smtp_refusals_total{code=\"550\",reason=\"") && l.ends_with(" 1"))
    })
    .await;
    let line = refused
        .lines()
        .find(|l| l.starts_with("estafette_smtp_refusals_total{"))
        .unwrap_or_default();
    assert!(
        line.contains("reason=\"relay_denied\"") || line.contains("reason=\"not_in_trust_space\""),
        "{line}"
    );
    // The series compared with OpenMetrics below include the refusal's.
    let after = refused;

    // OpenMetrics when asked: same series, `# EOF` at the end.
    let resp = reqwest::Client::new()
        .get(url(&t, "/metrics"))
        .bearer_auth(TOKEN)
        .header(
            ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(
        resp.headers().get(CONTENT_TYPE).expect("content type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = resp.text().await.expect("body");
    assert!(om.ends_with("# EOF\n"), "{om}");
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_owned()))
            .collect()
    };
    assert_eq!(series(&om), series(&after));
    assert!(om.contains("# TYPE estafette_deliveries counter\n"), "{om}");

    // The trace of that message, as JSON.
    let (status, body) = get(&t, &format!("/api/trace/{id}"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let trace = json(&body);
    assert_eq!(trace["id"], id.as_str());
    let kinds: Vec<&str> = trace["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["Accepted", "Delivered", "Removed"], "{body}");
    assert!(trace["events"][1]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("dr.martin@cabinet-dev.test") && d.contains("250")));
    let (status, body) = get(&t, "/api/trace/not-an-id", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let unknown = t.node.spool.next_id();
    let (status, body) = get(&t, &format!("/api/trace/{unknown}"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A message to a dead next hop stays queued, deferred: /api/queue shows it.
    let stuck = swaks(&t, "x@cabinet.test").await;
    scrape_until(&t, 30, "the deferral", |m| {
        sample(m, "estafette_deliveries_total{outcome=\"deferred\"}") == Some(1.0)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let queue = loop {
        let (status, body) = get(&t, "/api/queue", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let queue = json(&body);
        // The deferral is counted before its envelope is written: wait for it.
        if queue["messages"][0]["recipients"][0]["status"] == "deferred" {
            break queue;
        }
        assert!(Instant::now() < deadline, "never deferred in the queue: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(queue["waiting"], 1, "{queue}");
    assert_eq!(queue["due_now"], 0, "retried in an hour: {queue}");
    assert_eq!(queue["saturated"], false);
    let m = &queue["messages"][0];
    assert_eq!(m["id"], stuck.as_str());
    assert_eq!(m["sender"], "secretariat@hopital-dev.test");
    let r = &m["recipients"][0];
    assert_eq!(r["address"], "x@cabinet.test");
    assert_eq!(r["attempts"], 1);
    assert!(r["last_reply"].as_str().is_some_and(|s| s.starts_with('4')), "{r}");
    let m = metrics(&t).await;
    assert_eq!(sample(&m, "estafette_queue_messages"), Some(1.0));
    assert_eq!(sample(&m, "estafette_queue_due_messages"), Some(0.0));
    // Per destination, and the histograms of what happened so far: two
    // accepts, one delivery, synced group commits; the spool's size.
    assert_eq!(
        sample(&m, "estafette_queue_destination_messages{destination=\"cabinet.test\"}"),
        Some(1.0)
    );
    assert!(sample(
        &m,
        "estafette_queue_destination_oldest_seconds{destination=\"cabinet.test\"}"
    )
    .is_some());
    assert_eq!(sample(&m, "estafette_accept_seconds_count"), Some(2.0));
    assert_eq!(sample(&m, "estafette_delivery_seconds_count"), Some(1.0));
    assert!(
        sample(&m, "estafette_spool_fsync_seconds_count").is_some_and(|n| n >= 2.0),
        "{m}"
    );
    assert!(sample(&m, "estafette_spool_commit_batch_writes_count").is_some_and(|n| n >= 2.0));
    assert!(sample(&m, "estafette_spool_size_bytes").is_some_and(|b| b > 0.0));
    // A STARTTLS session is counted by version and cipher.
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("mta")), "-tls"])
        .args(["--helo", "dpi.test", "--quit-after", "TLS"]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok, "{transcript}");
    let m = scrape_until(&t, 10, "the TLS session", |m| {
        m.lines()
            .any(|l| l.starts_with("estafette_tls_sessions_total{version=\"TLSv1.3\",cipher=\"TLS13_"))
    })
    .await;
    let (ok, said) = promtool(&m).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}");
    // Every metric the Grafana dashboard queries exists (the cluster's are
    // checked on a cluster member, in tests/cluster.rs).
    let missing = support::grafana::missing(&m, |n| !support::grafana::clustered(n));
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the node lacks: {missing:?}"
    );

    // The trust list's state, as JSON.
    let (status, body) = get(&t, "/api/trustlist", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = json(&body);
    assert_eq!((list["entries"].as_u64(), list["domains"].as_u64()), (Some(2), Some(2)));
    assert_eq!(list["refresh_failures"], 0);
    assert!(list["last_error"].is_null(), "{list}");
    assert!(list["source"].as_str().is_some_and(|s| s.ends_with("trustlist.xml")));
    assert_eq!(list["sha256"].as_str().map(str::len), Some(64));

    // A corrupt list: refreshes fail, the failure counter and the age say
    // so, the previous list stays in force and the node stays ready.
    let list_file = t.pki().join("trustlist.xml");
    let good = std::fs::read(&list_file).expect("list");
    std::fs::write(&list_file, &good[..good.len() / 2]).expect("corrupt list");
    let failing = scrape_until(&t, 30, "a refresh failure", |m| {
        sample(m, "estafette_trustlist_refresh_failures_total").is_some_and(|f| f >= 1.0)
    })
    .await;
    assert_eq!(sample(&failing, "estafette_trustlist_entries"), Some(2.0));
    assert_eq!(sample(&failing, "estafette_trustlist_domains"), Some(2.0));
    let (ok, said) = promtool(&failing).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}");
    let (status, body) = get(&t, "/api/trustlist", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let list = json(&body);
    assert!(list["refresh_failures"].as_u64().is_some_and(|f| f >= 1), "{list}");
    assert!(
        list["last_error"].as_str().is_some_and(|e| e.contains("trust list")),
        "{list}"
    );
    assert_eq!(list["entries"], 2);
    assert_eq!(get(&t, "/readyz", None).await.0, StatusCode::OK);
    // The good list again: the next refresh succeeds and clears the error.
    std::fs::write(&list_file, &good).expect("restore list");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = json(&get(&t, "/api/trustlist", Some(TOKEN)).await.1);
        if list["last_error"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "refresh never succeeded again: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Shutdown stops the admin listener with the rest.
    let admin = t.node.admin_addr().expect("admin");
    t.node.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "admin still listening after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_or_trust_list() {
    // No [admin]: no admin listener.
    let plain = start_node_with("", "", "").await;
    assert!(plain.node.admin_addr().is_none());
    plain.node.shutdown().await;

    // [admin] without a token (loopback): every route open; no [trust]:
    // no trust-list series, and /api/trustlist says there is none.
    let t = start_node_with("", "", "[admin]\naddress = \"127.0.0.1:0\"\n").await;
    let (status, text) = get(&t, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("estafette_trustlist"), "{text}");
    assert_eq!(sample(&text, "estafette_queue_messages"), Some(0.0));
    let (ok, said) = promtool(&text).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");
    let (status, body) = get(&t, "/api/trustlist", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&body)["error"].as_str().is_some_and(|e| e.contains("[trust]")));
    let (status, body) = get(&t, "/api/queue?limit=5", None).await;
    assert_eq!(status, StatusCode::OK);
    let queue = json(&body);
    assert_eq!(
        (queue["waiting"].as_u64(), queue["in_flight"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(queue["messages"].as_array().map(Vec::len), Some(0));
    let (status, _) = get(&t, "/api/queue?limit=many", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&t, "/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    t.node.shutdown().await;
}

/// `curl` against the admin port over HTTPS; (HTTP status or 0, body).
async fn curl(t: &TestNode, path: &str, args: &[&str]) -> (u16, String) {
    let addr = t.node.admin_addr().expect("admin");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
        .arg(t.pki().join("ca.pem"))
        .args(args)
        .arg(format!("https://{addr}{path}"));
    let (_, out) = run(cmd).await;
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `admin.client_ca`: HTTPS with the node's certificate; off loopback (here:
/// with `loopback_without_certificate = false`), every route but the probes
/// and the dashboard page needs a client certificate from the CA, and the
/// token still applies; plain HTTP is not served. With the loopback
/// exemption (the default) the CLI inside the pod works without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_on_the_admin_port() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = relay::ops::sink::spawn("127.0.0.1:0".parse().expect("addr"), sink_dir.path().join("sink"))
        .await
        .expect("sink");
    let strict = node(
        sink,
        &format!("token = \"{TOKEN}\"\nclient_ca = \"pki/ca.pem\"\nloopback_without_certificate = false"),
    )
    .await;
    let client = |t: &TestNode| {
        vec![
            "--cert".to_owned(),
            t.pki().join("client.pem").display().to_string(),
            "--key".to_owned(),
            t.pki().join("client.key").display().to_string(),
        ]
    };
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(curl(&strict, "/healthz", &[]).await, (200, "ok\n".into()));
    let (code, body) = curl(&strict, "/metrics", &["-H", &bearer]).await;
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("a client certificate from admin.client_ca is required"),
        "{body}"
    );
    let with_cert = client(&strict);
    let mut args: Vec<&str> = with_cert.iter().map(String::as_str).collect();
    let (code, body) = curl(&strict, "/metrics", &args).await;
    assert_eq!(code, 401, "the token still applies: {body}");
    args.extend(["-H", &bearer]);
    let (code, body) = curl(&strict, "/metrics", &args).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("estafette_build_info"), "{body}");
    let (code, _) = curl(&strict, "/dashboard", &[]).await;
    assert_eq!(code, 200, "the page itself is open");
    // Plain HTTP gets no answer from a TLS port.
    let plain = reqwest::get(format!("http://{}/healthz", strict.node.admin_addr().expect("admin"))).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    strict.node.shutdown().await;

    // The default: loopback callers (the pod's own CLI) need no certificate.
    let open = node(sink, &format!("token = \"{TOKEN}\"\nclient_ca = \"pki/ca.pem\"")).await;
    let (code, body) = curl(&open, "/api/queue/summary", &["-H", &bearer]).await;
    assert_eq!(code, 200, "{body}");
    let admin = open.node.admin_addr().expect("admin");
    let config = open.dir.path().join("estafette.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let cli_config = open.dir.path().join("cli.toml");
    std::fs::write(
        &cli_config,
        text.replace(
            "address = \"127.0.0.1:0\"\ntoken",
            &format!("address = \"{admin}\"\ntoken"),
        ),
    )
    .expect("cli config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.args(["queue", "summary", "--json", "--config"]).arg(&cli_config);
    let (ok, out) = run(cmd).await;
    assert!(ok && out.contains("\"total\""), "{out}");
    open.node.shutdown().await;
}
