//! The configuration loader (`relay/src/config`, compiled in here from its
//! source: it needs neither RocksDB nor the rest of the relay) on arbitrary
//! text: the TOML, then `ESTAFETTE_*` overrides, then the checks. It never
//! panics; a refusal always says what is wrong; a configuration it accepts
//! passes its own checks again.
//!
//! Input: the TOML text, then optionally a NUL byte and override lines
//! `ESTAFETTE_SECTION__KEY=value` (seeds: the example file, the Kubernetes
//! one, a cluster with overrides).
//!
//! Run: `scripts/fuzz 60 config`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports, missing_docs, unreachable_pub, clippy::all)]
#[path = "../../relay/src/config/mod.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, overrides) = input.split_once('\0').unwrap_or((input, ""));
    let vars: Vec<(String, String)> = overrides
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match config::Config::parse_with(Path::new("/fuzz/estafette.toml"), text, vars) {
        Ok(c) => {
            let _ = c.warnings();
            assert!(c.validate().is_ok(), "accepted, then refused by its own checks");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
