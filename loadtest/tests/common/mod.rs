//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use estafette_load::report::Report;
use estafette_load::scenario::{self, LoadSpec, ReportSpec, Scenario, SinkSpec};

/// A scenario sending `messages` over `sessions` to its own sink, logs in `dir`.
pub(crate) fn own_sink(dir: &Path, messages: u64, sessions: usize) -> Scenario {
    Scenario {
        name: Some("test".into()),
        load: LoadSpec {
            messages: Some(messages),
            sessions,
            threads: Some(2),
            ..LoadSpec::default()
        },
        sink: SinkSpec {
            threads: Some(2),
            ..SinkSpec::default()
        },
        report: ReportSpec {
            dir: Some(dir.to_path_buf()),
            drain_timeout: "20s".into(),
            ..ReportSpec::default()
        },
        ..Scenario::default()
    }
}

/// Runs a scenario, panicking with the error text on failure.
pub(crate) fn run(s: &Scenario) -> Report {
    match scenario::run(s, true) {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    }
}

/// Asserts that every message was accepted and delivered exactly once.
pub(crate) fn assert_all_delivered(r: &Report, n: u64) {
    assert_eq!(r.counts.sent, n, "{}", r.summary());
    assert_eq!(r.counts.accepted, n, "{}", r.summary());
    let v = r.verdict.as_ref().expect("verdict");
    assert_eq!(v.accepted, n, "{v:?}");
    assert_eq!(v.delivered, n, "{v:?}");
    assert_eq!(v.lost, 0, "{v:?}");
    assert_eq!(v.duplicated, 0, "{v:?}");
    assert!(v.is_clean());
    assert_eq!(r.drained, Some(true));
}
