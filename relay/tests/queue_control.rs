//! Queue control end to end: a real node on 127.0.0.1 ephemeral ports,
//! mail in with swaks, the `estafette queue …` verbs run as the real binary
//! against the node's admin API, and delivery to Postfix's smtp-sink once
//! the destination comes up. Checks that filters touch exactly the matching
//! messages, that a held message waits until released while others are
//! delivered, that bounce sends the DSN owed, that delete names who asked,
//! and that the read token cannot change the queue (403).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::node::{queued_id, run, start_node_full, Extra, TestNode};
use support::peers::{free_port, smtp_sink_on};

const READ_TOKEN: &str = "queue-read-token-0123456789";
const WRITE_TOKEN: &str = "queue-write-token-9876543210";
const SENDER: &str = "secretariat@hopital-dev.test";
const OTHER_SENDER: &str = "accueil@hopital-dev.test";

struct Setup {
    t: TestNode,
    config: PathBuf,
    /// Where `cabinet-dev.test` and `hopital-dev.test` are delivered; nothing
    /// listens there until the test starts smtp-sink.
    sink_port: u16,
    _secrets: tempfile::TempDir,
}

/// A node with the dev trust list, `cabinet-dev.test` and `hopital-dev.test`
/// (the senders' domain, for DSNs) routed to `sink_port` (down for now),
/// `cabinet.test` to a dead port, one attempt an hour, and `[admin]` with a
/// read token and a write token.
async fn setup() -> Setup {
    let secrets = tempfile::tempdir().expect("tempdir");
    let read = secrets.path().join("read.token");
    let write = secrets.path().join("write.token");
    std::fs::write(&read, format!("{READ_TOKEN}\n")).expect("token");
    std::fs::write(&write, format!("{WRITE_TOKEN}\n")).expect("token");
    let sink_port = free_port();
    let tail = format!(
        r#"
[[route]]
domain = "cabinet-dev.test"
host = "127.0.0.1:{sink_port}"
tls = "none"
internal = true

[[route]]
domain = "hopital-dev.test"
host = "127.0.0.1:{sink_port}"
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
circuit_threshold = 1000

[admin]
address = "127.0.0.1:0"
token_file = "{}"
write_token_file = "{}"
"#,
        read.display(),
        write.display()
    );
    let t = start_node_full(Extra {
        tail: &tail,
        ..Extra::default()
    })
    .await;
    // The CLI reads the same file, with the listener's real port.
    let admin = t.node.admin_addr().expect("admin listener");
    let config = t.dir.path().join("estafette.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "address = \"127.0.0.1:0\"\ntoken_file",
        &format!("address = \"{admin}\"\ntoken_file"),
    );
    let cli_config = t.dir.path().join("cli.toml");
    std::fs::write(&cli_config, text).expect("cli config");
    Setup {
        t,
        config: cli_config,
        sink_port,
        _secrets: secrets,
    }
}

async fn swaks(t: &TestNode, from: &str, to: &str) -> String {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
        .args(["--from", from, "--to", to])
        .args(["--helo", "dpi.test", "--data", "Subject: CR\r\n\r\nCompte rendu.\r\n"]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok && transcript.contains("250 2.0.0 queued as"), "{transcript}");
    queued_id(&transcript).expect("queue id")
}

/// `estafette queue ARGS --config CONFIG`: (exit code, stdout, stderr).
async fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
    cmd.arg("queue").args(args).arg("--config").arg(config);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("estafette runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_ok(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = cli(config, args).await;
    assert_eq!(code, 0, "queue {args:?}: {out}{err}");
    out
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The ids `queue ls --json ARGS` lists.
async fn ls(config: &Path, args: &[&str]) -> BTreeSet<String> {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let v = json(&cli_ok(config, &all).await);
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

/// Waits until every listed message has had an attempt (they are then
/// deferred: the destinations are down).
async fn wait_deferred(config: &Path, n: usize) {
    let start = Instant::now();
    loop {
        let v = json(&cli_ok(config, &["ls", "--json", "--state", "deferred"]).await);
        if v["messages"].as_array().map_or(0, Vec::len) >= n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never deferred: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(s: &Setup, path: &str, token: &str, body: &Value) -> (StatusCode, String) {
    let url = format!("http://{}{path}", s.t.node.admin_addr().expect("admin"));
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("admin answers");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

async fn trace(s: &Setup, id: &str) -> String {
    let url = format!("http://{}/api/trace/{id}", s.t.node.admin_addr().expect("admin"));
    reqwest::Client::new()
        .get(url)
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_show_summary_filter_exactly_and_tokens_guard_changes() {
    let s = setup().await;
    let c = &s.config;
    let m1 = swaks(&s.t, SENDER, "dr.a@cabinet-dev.test").await;
    let m2 = swaks(&s.t, SENDER, "dr.b@cabinet-dev.test").await;
    let m3 = swaks(&s.t, SENDER, "x@cabinet.test").await;
    let m4 = swaks(&s.t, OTHER_SENDER, "dr.c@cabinet-dev.test").await;
    wait_deferred(c, 4).await;

    assert_eq!(ls(c, &[]).await, set(&[&m1, &m2, &m3, &m4]));
    assert_eq!(
        ls(c, &["--destination", "CABINET-DEV.test"]).await,
        set(&[&m1, &m2, &m4])
    );
    assert_eq!(ls(c, &["--sender", "accueil@"]).await, set(&[&m4]));
    assert_eq!(ls(c, &["--recipient", "x@cabinet.test"]).await, set(&[&m3]));
    assert_eq!(
        ls(c, &["--destination", "cabinet-dev.test", "--sender", SENDER]).await,
        set(&[&m1, &m2])
    );
    assert_eq!(ls(c, &["--held"]).await, BTreeSet::new());
    assert_eq!(ls(c, &["--older-than", "1h"]).await, BTreeSet::new());
    assert_eq!(ls(c, &["--older-than", "0s"]).await.len(), 4);
    // The last reply is the connection failure; its text selects.
    let shown = json(&cli_ok(c, &["show", &m3, "--json"]).await);
    let reply = shown["recipients"][0]["last_reply"]
        .as_str()
        .expect("a last reply")
        .to_owned();
    assert_eq!(shown["recipients"][0]["status"], "deferred", "{shown}");
    assert!(ls(c, &["--error", &reply]).await.contains(&m3));
    assert_eq!(ls(c, &["--error", "no-reply-says-this"]).await, BTreeSet::new());
    let events: Vec<&str> = shown["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(events.first(), Some(&"Accepted"), "{shown}");
    assert!(events.contains(&"Deferred"), "{shown}");

    // The tables name what the JSON says.
    let table = cli_ok(c, &["ls", "--destination", "cabinet.test"]).await;
    assert!(
        table.contains(&m3) && table.contains("x@cabinet.test") && table.contains("-- 1 messages"),
        "{table}"
    );
    let text = cli_ok(c, &["show", &m1]).await;
    assert!(
        text.contains("dr.a@cabinet-dev.test") && text.contains("Accepted"),
        "{text}"
    );
    let summary = json(&cli_ok(c, &["summary", "--json"]).await);
    assert_eq!(summary["total"]["messages"], 4, "{summary}");
    assert_eq!(summary["rows"][0]["destination"], "cabinet-dev.test", "{summary}");
    assert_eq!(summary["rows"][0]["messages"], 3, "{summary}");
    assert_eq!(summary["rows"][0]["by_age"][0], 3, "{summary}");
    assert_eq!(summary["rows"][1]["destination"], "cabinet.test", "{summary}");
    let table = cli_ok(c, &["summary"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cabinet-dev.test") && l.contains(" 3 ")),
        "{table}"
    );

    // A filter over several messages without --yes: the count, nothing done.
    let (code, _, err) = cli(c, &["hold", "--destination", "cabinet-dev.test"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("3 messages match; nothing done"), "{err}");
    assert_eq!(ls(c, &["--held"]).await, BTreeSet::new());

    // The read token reads but cannot change; a wrong token gets 401.
    let by_id = serde_json::json!({"filter": {"ids": [m3.clone()]}});
    let (status, body) = post(&s, "/api/queue/delete", READ_TOKEN, &by_id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = post(&s, "/api/queue/delete", "not-a-token", &by_id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(ls(c, &[]).await.contains(&m3), "the read token deleted nothing");
    let (status, body) = post(&s, "/api/queue/explode", WRITE_TOKEN, &by_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let bad = serde_json::json!({"filter": {"ids": ["not-an-id"]}});
    let (status, body) = post(&s, "/api/queue/hold", WRITE_TOKEN, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Delete with a filter touches exactly the matching message, and says who.
    let out = cli_ok(c, &["delete", "--sender", "accueil@", "--as", "alice"]).await;
    assert!(out.contains("1 matched, 1 changed") && out.contains(&m4), "{out}");
    assert_eq!(ls(c, &[]).await, set(&[&m1, &m2, &m3]));
    let t4 = trace(&s, &m4).await;
    assert!(t4.contains("deleted by alice (admin API from 127.0.0.1)"), "{t4}");
    let (code, _, err) = cli(c, &["show", &m4]).await;
    assert_ne!(code, 0);
    assert!(err.contains("not in the queue any more"), "{err}");

    // The audit export, read from the spool while the node runs.
    let export = |format: &'static str| {
        let config = c.clone();
        async move {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_estafette"));
            cmd.args(["trace", "export", "--since", "1h", "--format", format, "--config"])
                .arg(&config);
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .expect("join")
                .expect("estafette runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    // Events are buffered writes: wait until the export shows the delete.
    let start = Instant::now();
    let mut jsonl = export("jsonl").await;
    while !jsonl.contains("deleted by alice") {
        assert!(start.elapsed() < Duration::from_secs(20), "{jsonl}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        jsonl = export("jsonl").await;
    }
    let lines: Vec<Value> = jsonl.lines().map(json).collect();
    for id in [&m1, &m2, &m3, &m4] {
        let accepted = lines
            .iter()
            .find(|l| l["id"] == id.as_str() && l["kind"] == "Accepted")
            .unwrap_or_else(|| panic!("no Accepted event for {id}: {jsonl}"));
        assert!(
            accepted["detail"]
                .as_str()
                .is_some_and(|d| d.contains("peer 127.0.0.1")),
            "{accepted}"
        );
    }
    let times: Vec<u64> = lines.iter().map(|l| l["at_ms"].as_u64().expect("at_ms")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    let csv = export("csv").await;
    assert!(csv.starts_with("at,at_ms,id,kind,detail\n"), "{csv}");
    assert!(csv.lines().count() > lines.len(), "one line per event and a header");
    s.t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_waits_until_released_retry_delivers_bounce_sends_the_dsn() {
    let s = setup().await;
    let c = &s.config;
    let m1 = swaks(&s.t, SENDER, "dr.a@cabinet-dev.test").await;
    let m2 = swaks(&s.t, SENDER, "dr.b@cabinet-dev.test").await;
    let m3 = swaks(&s.t, SENDER, "x@cabinet.test").await;
    wait_deferred(c, 3).await;

    let out = cli_ok(c, &["hold", &m2, "--as", "bob"]).await;
    assert!(out.contains("1 changed"), "{out}");
    assert_eq!(ls(c, &["--held"]).await, set(&[&m2]));
    let summary = json(&cli_ok(c, &["summary", "--json"]).await);
    assert_eq!(summary["rows"][0]["held"], 1, "{summary}");

    // The destination comes up; retry asks for every pending message of it
    // now (the held one is not pending: unchanged).
    let sink = smtp_sink_on(s.sink_port, &[]);
    let out = cli_ok(c, &["retry", "--destination", "cabinet-dev.test", "--yes"]).await;
    assert!(out.contains("2 matched, 1 changed, 1 unchanged"), "{out}");
    let got = sink.received(1);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("dr.a@cabinet-dev.test"));
    // Evidence that delivery ran: m1 is gone. The held m2 stayed.
    let start = Instant::now();
    while ls(c, &[]).await.contains(&m1) {
        assert!(start.elapsed() < Duration::from_secs(20), "m1 never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ls(c, &["--held"]).await, set(&[&m2]));
    assert_eq!(sink.files().len(), 1, "the held message was not delivered");

    let out = cli_ok(c, &["release", "--held", "--as", "bob"]).await;
    assert!(out.contains("1 matched, 1 changed"), "{out}");
    let got = sink.received(2);
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains("X-Rcpt-Args: <dr.b@cabinet-dev.test>")));
    let t2 = trace(&s, &m2).await;
    assert!(t2.contains("held by bob") && t2.contains("released by bob"), "{t2}");

    // Bounce: the recipient fails now and the sender gets the DSN, delivered
    // to hopital-dev.test (the sink).
    let out = cli_ok(c, &["bounce", &m3, "--as", "carol", "--json"]).await;
    let v = json(&out);
    assert_eq!(v["changed"], serde_json::json!([m3.clone()]), "{v}");
    let dsn = v["dsns"][0].as_str().expect("a DSN id").to_owned();
    let got = sink.received(3);
    assert_eq!(got.len(), 3);
    // smtp-sink's file names do not sort by arrival: find the report.
    let report = got
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .find(|m| m.contains("X-Mail-Args: <>"))
        .expect("a message with the null sender (the DSN)");
    assert!(report.contains(SENDER) && report.contains("x@cabinet.test"), "{report}");
    assert!(
        report.contains("returned to the sender by an operator (carol"),
        "{report}"
    );
    assert!(report.contains("Action: failed"), "{report}");
    let t3 = trace(&s, &m3).await;
    assert!(t3.contains("bounced by carol") && t3.contains(&dsn), "{t3}");
    let start = Instant::now();
    while !ls(c, &[]).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "the queue never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.t.node.shutdown().await;
}
