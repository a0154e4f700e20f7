//! The `estafette-load` binary: scenario runs end to end, and bad input is a
//! clear message with exit status 2, never a panic.

use std::process::{Command, Output};

use estafette_load::scenario::Scenario;

const BIN: &str = env!("CARGO_BIN_EXE_estafette-load");

fn example() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("scenario.example.toml")
}

fn load(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn example_scenario_parses_with_its_documented_values() {
    let s = Scenario::load(&example()).unwrap();
    assert_eq!(s.name.as_deref(), Some("example"));
    assert_eq!(s.load.sessions, 20);
    assert_eq!(s.load.messages, Some(2000));
    assert_eq!(s.load.per_connection, 100);
    assert!(s.load.pipelining && s.load.chunking);
    assert!(s.sink.enabled);
    assert!(s.target.is_none());
}

#[test]
fn shipped_scenarios_parse() {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn run_example_scenario_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = load(&[
        "run",
        example().to_str().unwrap(),
        "--report",
        out.to_str().unwrap(),
        "-q",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["counts"]["accepted"], 2000);
    assert_eq!(report["verdict"]["delivered"], 2000);
    assert_eq!(report["verdict"]["lost"], 0);
    assert_eq!(report["drained"], true);
    assert!(report["inject_msg_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["accept_latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(report["e2e_latency"]["p999_ms"].as_f64().unwrap() > 0.0);
    assert!(report["tool_cpu"]["seconds"].as_f64().is_some());
    for f in ["report.json", "report.html", "send.log", "received.log"] {
        assert!(out.join(f).exists(), "{f}");
    }
    // verify on the logs the run left agrees.
    let o = load(&[
        "verify",
        "--sent",
        out.join("send.log").to_str().unwrap(),
        "--received",
        out.join("received.log").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn send_and_separate_sink_processes_with_target_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let port = low_port();
    let addr = format!("127.0.0.1:{port}");
    let recv = dir.path().join("received.log");
    let sent = dir.path().join("send.log");
    let mut sink = Command::new(BIN)
        .args(["sink", "--listen", &addr, "-q", "--duration", "20s", "--received-log"])
        .arg(&recv)
        .arg("--verify")
        .arg(&sent)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(start.elapsed().as_secs() < 10);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = load(&[
        "send",
        "--target",
        &addr,
        "--messages",
        "300",
        "--sessions",
        "3",
        "--target-pid",
        &sink.id().to_string(),
        "--send-log",
        sent.to_str().unwrap(),
        "-q",
        "--json",
    ]);
    let _ = Command::new("kill").arg("-TERM").arg(sink.id().to_string()).status();
    let status = sink.wait().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["counts"]["accepted"], 300);
    assert!(report["target_cpu"]["seconds"].as_f64().is_some());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut sink.stdout.take().unwrap(), &mut text).unwrap();
    assert!(status.success(), "sink: {text}");
    assert!(text.contains("received 300"), "{text}");
    assert!(text.contains("\"lost\": 0"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let cases: Vec<(String, &str)> = vec![
        ("[load]\nsesions = 3\n".into(), "sesions"),
        ("[load]\nsize = \"10q\"\n".into(), "load.size"),
        ("[sink]\nreply_mix = \"451:80,550:30\"\n".into(), "100 %"),
        ("[load]\nmessages = 1\nduration = \"1s\"\n".into(), "not both"),
        ("target = \n".into(), "bad.toml"),
    ];
    for (text, want) in cases {
        std::fs::write(&bad, &text).unwrap();
        let o = load(&["run", bad.to_str().unwrap(), "-q"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = load(&["run", dir.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"));
}

#[test]
fn unreachable_target_is_a_clear_error() {
    let port = low_port();
    let o = load(&[
        "send",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--messages",
        "5",
        "-q",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unusable") && err.contains("connect"), "{err}");
    let o = load(&["send", "--target", "no-such-host.invalid:25", "--messages", "5", "-q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-such-host.invalid"));
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
