//! The Grafana dashboard (`k8s/grafana/estafette.json`) against a live
//! node's `/metrics`: every metric name a panel queries must be exposed.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Every `estafette_*` name in the dashboard's queries.
pub fn dashboard_metrics() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../k8s/components/grafana/estafette.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("estafette_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    assert!(names.len() > 10, "the dashboard queries {names:?}");
    names
}

/// The dashboard's names matching `keep` that `exposition` lacks.
pub fn missing(exposition: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    dashboard_metrics()
        .into_iter()
        .filter(|n| keep(n))
        .filter(|n| {
            !exposition
                .lines()
                .any(|l| l.strip_prefix(n.as_str()).is_some_and(|r| r.starts_with(['{', ' '])))
        })
        .collect()
}

/// Names only a cluster member exposes.
pub fn clustered(name: &str) -> bool {
    name.starts_with("estafette_cluster_") || name.starts_with("estafette_replication_")
}
