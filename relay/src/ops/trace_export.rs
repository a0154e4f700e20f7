//! `estafette trace export`: every trace event in a time window, for an
//! audit or a SIEM, read from the spool read-only while the node runs.
//!
//! One record per event, in time order: `at` (RFC 3339 UTC, ms), `at_ms`,
//! `id` (queue id), `kind` (`Accepted`, `Replicated`, `Delivered`,
//! `Deferred`, `Failed`, `DsnQueued`, `Held`, `Released`, `TakenOver`,
//! `Removed`, `Note`) and `detail`. A message's way reads from its events:
//! `Accepted` names the sender, the peer, the listener, the TLS version and
//! cipher and the client identity; `Delivered`/`Deferred`/`Failed` name the
//! recipient and the reply; `Removed` ends it; operator actions name who
//! asked. Events are kept `node.trace_retention_days`.
//!
//! Formats: `jsonl` (one JSON object per line) and `csv` (RFC 4180: a
//! header line, fields quoted when they hold a comma, a quote or a line
//! break).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

/// A time bound as the operator writes it: RFC 3339 (`2026-12-01T08:00:00Z`),
/// a UTC date (`2026-12-01`, its midnight), or a duration before now
/// (`24h`, `7d`); in ms since the Unix epoch.
///
/// # Errors
/// None of those forms.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> anyhow::Result<u64> {
    let at = if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.with_timezone(&Utc)
    } else if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).context("midnight")?.and_utc()
    } else if let Ok(ago) = humantime::parse_duration(text) {
        now - chrono::Duration::from_std(ago).context("duration too long")?
    } else {
        anyhow::bail!(
            "{text:?}: expected RFC 3339 (2026-12-01T08:00:00Z), a date (2026-12-01) or a duration ago (24h)"
        );
    };
    Ok(u64::try_from(at.timestamp_millis()).unwrap_or(0))
}

/// Writes the events of the spool at `spool` with `since_ms <= at < until_ms`
/// to `out`; returns how many. A damaged event is written as kind `Damaged`
/// with the error as detail, so that an audit sees the gap.
///
/// # Errors
/// The spool cannot be opened or read, or `out` fails.
pub fn export(
    spool: &Path,
    since_ms: u64,
    until_ms: u64,
    format: ExportFormat,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    if format == ExportFormat::Csv {
        writeln!(out, "at,at_ms,id,kind,detail")?;
    }
    let mut failed = None;
    let n = storage::export_events(spool, since_ms, until_ms, |id, event| {
        let (at_ms, kind, detail) = match event {
            Ok(e) => (e.at_ms, format!("{:?}", e.kind), e.detail),
            Err(e) => (0, "Damaged".to_owned(), e.to_string()),
        };
        let at = DateTime::from_timestamp_millis(i64::try_from(at_ms).unwrap_or(0))
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let line = match format {
            ExportFormat::Jsonl => serde_json::json!({
                "at": at, "at_ms": at_ms, "id": id.to_string(), "kind": kind, "detail": detail,
            })
            .to_string(),
            ExportFormat::Csv => [at, at_ms.to_string(), id.to_string(), kind, detail]
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        };
        match writeln!(out, "{line}") {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .with_context(|| format!("reading the trace in {}", spool.display()))?;
    if let Some(e) = failed {
        return Err(e).context("writing the export");
    }
    out.flush()?;
    Ok(n)
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_three_forms() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let noon = 1_796_212_800_000;
        assert_eq!(parse_time("2026-12-02T12:00:00Z", now).expect("rfc3339"), noon);
        assert_eq!(parse_time("2026-12-02", now).expect("date"), noon - 12 * 3_600_000);
        assert_eq!(parse_time("2h", now).expect("ago"), noon - 2 * 3_600_000);
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
