//! `estafette-load plan` on every shipped profile with the shipped costs
//! (`costs-incompressible.json`): the
//! outputs exist and parse, bigger volumes need more nodes, the HTML has its
//! charts, and bad files are a clear message with exit status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_estafette-load");

fn capacity() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/capacity")
}

fn plan(profile: &str, out: &Path, extra: &[&str]) -> Output {
    let dir = capacity();
    Command::new(BIN)
        .arg("plan")
        .arg("--costs")
        // The costs to plan with (docs/capacity.md): measured, with attachments that
        // do not compress.
        .arg(dir.join("costs-incompressible.json"))
        .arg("--profile")
        .arg(dir.join(profile))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn run_ok(profile: &str, dir: &Path, extra: &[&str]) -> (Value, String, String) {
    let out = dir.join(profile);
    let measured = capacity().join("measured.json");
    let mut args = vec!["--measured", measured.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = plan(profile, &out, &args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{profile}: {stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let html = std::fs::read_to_string(out.join("plan.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(
        !html.contains("<script"),
        "{profile}: the page must be self-contained, without script"
    );
    assert!(!html.contains("Chart could not be drawn"), "{profile}");
    (json, stdout, html)
}

fn nodes(v: &Value) -> u64 {
    v["total_nodes"].as_u64().unwrap()
}

#[test]
fn every_shipped_profile_plans_and_bigger_volumes_need_more_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (regional, text, html) = run_ok("regional.toml", dir.path(), &["--volumes", "300k,3m,30m,300m"]);
    let (national, _, _) = run_ok("national.toml", dir.path(), &[]);
    let (x10, _, _) = run_ok("national-x10.toml", dir.path(), &[]);
    let (federation, fed_text, fed_html) = run_ok("federation.toml", dir.path(), &[]);

    assert!(
        nodes(&x10) > nodes(&national),
        "{} vs {}",
        nodes(&x10),
        nodes(&national)
    );
    assert!(nodes(&national) >= nodes(&regional));
    // One node lost must not stop acceptance: min_copies + 1 at least.
    assert!(nodes(&regional) >= 3);

    // Standard scenarios with their figures.
    let k = &regional["clusters"][0];
    let ids: Vec<&str> = k["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"]["id"].as_str().unwrap())
        .collect();
    for id in [
        "baseline",
        "destination-down-1h",
        "destination-down-1d",
        "node-loss",
        "zone-loss",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let run = |id: &str| {
        k["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"]["id"] == id)
            .unwrap()["result"]
            .clone()
    };
    assert!(
        run("destination-down-1d")["peak_queue"].as_f64().unwrap() > run("baseline")["peak_queue"].as_f64().unwrap()
    );
    assert!(run("destination-down-1d")["drains"][0]["drain_secs"].as_f64().is_some());
    assert!(run("node-loss")["refused"].as_f64().unwrap() == 0.0);

    // A federation: one cluster per region, the totals add up.
    let clusters = federation["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 13);
    let sum: u64 = clusters.iter().map(|c| c["nodes"].as_u64().unwrap()).sum();
    assert_eq!(sum, nodes(&federation));
    let months: f64 = clusters.iter().map(|c| c["messages_per_month"].as_f64().unwrap()).sum();
    assert!((months - 280e6).abs() < 1e6, "{months}");
    assert!(fed_text.contains("total") && fed_text.contains("Île-de-France"));

    // The sweep: nodes needed never fall as the volume grows, and grow in the end.
    let sweep: Vec<u64> = regional["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["nodes"].as_u64().unwrap())
        .collect();
    assert_eq!(sweep.len(), 4);
    assert!(
        sweep.windows(2).all(|w| w[0] <= w[1]) && sweep[3] > sweep[0],
        "{sweep:?}"
    );
    assert!(text.contains("nodes needed by volume") && html.contains("Nodes needed by volume"));

    // Validation: predicted beside measured with the error.
    let rows = regional["validation"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        let (p, m, e) = (
            r["predicted"].as_f64().unwrap(),
            r["measured"].as_f64().unwrap(),
            r["error_pct"].as_f64().unwrap(),
        );
        assert!((e - (p - m) / m * 100.0).abs() < 1e-6);
    }
    assert!(text.contains("validation") && text.contains("predicted") && text.contains("measured"));

    // Charts: queue (1 h, 1 day), disk, CPU and the search per cluster, and the validation.
    assert!(
        html.matches("<svg").count() >= 6,
        "{} charts",
        html.matches("<svg").count()
    );
    assert!(fed_html.matches("<svg").count() >= 13 * 5);
    for needle in [
        "down for 1 hour",
        "down for 1 day",
        "Disk",
        "CPU per live node",
        "Nodes tried",
        "predicted and measured",
    ] {
        assert!(html.contains(needle), "{needle} missing from the page");
    }
}

#[test]
fn bad_files_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(capacity().join("regional.toml")).unwrap();
    std::fs::write(&bad, good.replace("min_copies = 2", "min_copies = 2\nreplicas = 3")).unwrap();
    let o = plan(bad.to_str().unwrap(), &dir.path().join("out"), &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.toml") && e.contains("replicas"), "{e}");
    assert!(!dir.path().join("out").exists());

    let o = plan("regional.toml", &dir.path().join("out"), &["--volumes", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lots"));

    std::fs::write(&bad, good.replace("share = 0.33", "share = 0.5")).unwrap();
    let o = plan(bad.to_str().unwrap(), &dir.path().join("out"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("destination.share"));

    let costs = dir.path().join("costs.json");
    std::fs::write(&costs, "{\"schema\": 1}").unwrap();
    let o = Command::new(BIN)
        .args(["plan", "--costs", costs.to_str().unwrap(), "--profile"])
        .arg(capacity().join("regional.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("costs.json"));
}
