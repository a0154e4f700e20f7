//! Fair sharing (`[fairness]`) on a real node: two authenticated clients
//! send at once through estafette-load (STARTTLS, AUTH PLAIN), one far over
//! its share; the light one keeps its rate, the heavy one hears `451 4.7.1`
//! and is held to its quota, and nothing refused is lost (it was never
//! accepted). A destination over its deliveries per minute waits without an
//! attempt being counted, and its mail goes out once the rate allows.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::node::{counters, metric_sum, run, start_node_full, Extra, TestNode};
use support::peers::{estafette_load, smtp_sink};

fn identities(dir: &std::path::Path) -> PathBuf {
    let hash = relay::inbound::identity::hash_password("secret").expect("hash");
    let file = dir.join("identities.toml");
    let accounts: String = ["heavy", "light"]
        .iter()
        .map(|name| format!("[[account]]\nname = \"{name}\"\npassword = \"{hash}\"\nsenders = [\"@ch.test\"]\n\n"))
        .collect();
    std::fs::write(&file, accounts).expect("identities");
    file
}

/// One estafette-load run as `user` at `rate` messages per second for
/// `secs`; its report.
fn load(t: &TestNode, user: &str, rate: &str, sessions: &str, secs: u64) -> Command {
    let mut cmd = Command::new(estafette_load());
    cmd.args(["send", "--target", &format!("127.0.0.1:{}", t.port("mta"))])
        .args(["--tls", "starttls", "--insecure", "--auth", &format!("{user}:secret")])
        .args(["--from", &format!("{user}@ch.test"), "--to-domain", "clinique.test"])
        .args(["--rate", rate, "--open-loop", "--duration", &format!("{secs}s")])
        .args(["--sessions", sessions, "--size", "1k", "--json", "--quiet"]);
    cmd
}

fn report(out: &str) -> Value {
    let start = out.find('{').unwrap_or_else(|| panic!("no JSON report in: {out}"));
    serde_json::from_str(&out[start..]).unwrap_or_else(|e| panic!("not a report ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_light_client_keeps_its_rate_while_the_heavy_one_is_held_back() {
    let sink = smtp_sink(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = identities(dir.path());
    let node = format!("identities = \"{}\"", ids.display());
    let tail = format!(
        r#"
[[route]]
domain = "clinique.test"
host = "{}"
tls = "none"

[fairness]
messages_per_second = 10.0
# Above all the light client sends (15): argon2 AUTH of five sessions on two
# cores can hold its session back for seconds, and its backlog then comes at
# once (seen: 2 s, 11 messages in 25 ms).
burst = 20
"#,
        sink.addr
    );
    let t = start_node_full(Extra {
        node: &node,
        mta: "auth = true\nrequire_auth = true",
        tail: &tail,
        ..Extra::default()
    })
    .await;
    let secs = 3;
    // Both at once: the heavy client asks for 10x its share, the light one
    // for half of it.
    let (heavy, light) = tokio::join!(
        run(load(&t, "heavy", "100", "4", secs)),
        run(load(&t, "light", "5", "1", secs))
    );
    let (heavy, light) = (report(&heavy.1), report(&light.1));
    let (h, l) = (&heavy["counts"], &light["counts"]);
    eprintln!("heavy: {h}\nlight: {l}");
    assert!(l["sent"].as_u64().is_some_and(|n| n >= 10), "{light}");
    assert_eq!(l["accepted"], l["sent"], "the light client keeps its rate: {l}");
    assert_eq!(l["temp_failed"], 0, "{l}");
    let accepted = h["accepted"].as_u64().expect("accepted");
    let refused = h["temp_failed"].as_u64().expect("temp_failed");
    assert!(refused > 0, "the heavy client was held back: {h}");
    assert_eq!(h["perm_failed"], 0, "only 451s, never a 5yz: {h}");
    // Its quota: the burst, then 10 a second while it sent (and a second of slack).
    let elapsed = heavy["inject_seconds"].as_f64().expect("inject_seconds");
    let quota = 20.0 + 10.0 * (elapsed + 1.0);
    assert!(
        (accepted as f64) <= quota,
        "{accepted} accepted over a quota of {quota}: {h}"
    );
    assert!(accepted >= 20, "at least its burst: {h}");

    // The node's own count of those refusals, by reason.
    let text = counters(&t.node);
    let rate_refusals = metric_sum(
        &text,
        "estafette_smtp_refusals_total{code=\"451\",reason=\"rate\"}",
        &[],
    );
    assert_eq!(rate_refusals, refused, "{text}");
    // Everything accepted is delivered; nothing refused was.
    let total = (accepted + l["accepted"].as_u64().expect("accepted")) as usize;
    assert_eq!(sink.received(total).len(), total);
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_over_its_rate_waits_without_an_attempt_counted() {
    let sink = smtp_sink(&[]);
    // 6 a minute: a burst of 6, then one every 10 s.
    let tail = format!(
        r#"
[[route]]
domain = "clinique.test"
host = "{}"
tls = "none"

[outbound]
poll_ms = 100

[[fairness.destination]]
destination = "clinique.test"
deliveries_per_minute = 6
"#,
        sink.addr
    );
    let t = start_node_full(Extra {
        tail: &tail,
        ..Extra::default()
    })
    .await;
    for i in 0..7 {
        let mut cmd = Command::new("swaks");
        cmd.args(["--server", &format!("127.0.0.1:{}", t.port("plain"))])
            .args(["--from", "dpi@ch.test", "--to", &format!("dr.{i}@clinique.test")])
            .args(["--helo", "dpi.test", "--data", "Subject: CR\r\n\r\nCompte rendu.\r\n"]);
        let (ok, out) = run(cmd).await;
        assert!(ok, "{out}");
    }
    assert_eq!(sink.received(6).len(), 6);
    // The seventh waits in the queue, never tried: its rate is spent.
    let start = Instant::now();
    let waiting = loop {
        let due = t.node.spool.due(u64::MAX, 10).expect("due index");
        if let [(_, id)] = due.as_slice() {
            break *id;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{due:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let env = t.node.spool.envelope(waiting).expect("read").expect("queued");
    assert_eq!(env.recipients[0].attempts, 0, "waiting for the rate is not an attempt");
    assert!(env.recipients[0].next_attempt_ms > storage::now_ms(), "{env:?}");
    assert_eq!(sink.files().len(), 6);
    // Once the rate allows (10 s), it goes.
    let start = Instant::now();
    while sink.files().len() < 7 {
        assert!(start.elapsed() < Duration::from_secs(20), "the seventh never went");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t.node.shutdown().await;
}
