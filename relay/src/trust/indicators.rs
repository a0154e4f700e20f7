//! The operator's monthly indicators (DESIGN §7): counters per month in the
//! spool's `stats` column family, read with `estafette stats --month YYYY-MM`.
//!
//! Counted at acceptance, once per message: `messages`, `bytes`,
//! `sender_domain:D`, `rcpt_domain:D` (per recipient), `nil:V` (X-MSS-NIL,
//! the sending software), `codecda:C` (each code of X-MSS-CODECDA), `ins:O|N`
//! (X-MSS-INS), `size:B` (bucket). Counted as recipients become final:
//! `outcome:delivered`, `outcome:failed`, `outcome:expired`. A header that is
//! absent counts as `(none)`.
//!
//! Counters are buffered writes: a crash may lose the last increments, so
//! they are indicators, not accounting (the spool's trace is the audit).
//! Headers are read, never changed: the message is relayed byte for byte.

use chrono::{TimeZone, Utc};
use mail_parser::MessageParser;

/// Longest header value kept in a counter name; longer values are cut (a
/// sender must not be able to grow the stats without bound).
const MAX_VALUE: usize = 80;

/// Most X-MSS-CODECDA codes counted per message.
const MAX_CODES: usize = 16;

/// `YYYY-MM` (UTC) of a time in ms since the epoch.
pub fn month_of(ms: u64) -> String {
    let t = Utc
        .timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or_default();
    t.format("%Y-%m").to_string()
}

fn clean(value: &str) -> String {
    let v: String = value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE)
        .collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v
    }
}

fn size_bucket(size: usize) -> &'static str {
    match size {
        0..10_000 => "<10k",
        10_000..100_000 => "10k-100k",
        100_000..1_000_000 => "100k-1M",
        1_000_000..10_000_000 => "1M-10M",
        _ => ">=10M",
    }
}

fn domain(domain: &str) -> String {
    if domain.is_empty() {
        "(none)".into()
    } else {
        clean(&domain.to_lowercase())
    }
}

/// The counter increments for one accepted message: `sender` and
/// `recipients` are domains (empty: the null sender); `size` is the
/// client's content in octets, `start` its first octets (all of them, or
/// enough for the header section of a large message).
pub fn accepted(sender: &str, recipients: &[&str], size: u64, start: &[u8]) -> Vec<(String, u64)> {
    let body = start;
    let mut c: Vec<(String, u64)> = vec![
        ("messages".into(), 1),
        ("bytes".into(), size),
        (
            format!("size:{}", size_bucket(usize::try_from(size).unwrap_or(usize::MAX))),
            1,
        ),
        (format!("sender_domain:{}", domain(sender)), 1),
    ];
    for r in recipients {
        c.push((format!("rcpt_domain:{}", domain(r)), 1));
    }
    let headers = MessageParser::new().parse_headers(body);
    let header = |name: &'static str| headers.as_ref().and_then(|m| m.header_raw(name)).map(str::trim);
    c.push((format!("nil:{}", clean(header("X-MSS-NIL").unwrap_or(""))), 1));
    c.push((format!("ins:{}", clean(header("X-MSS-INS").unwrap_or(""))), 1));
    match header("X-MSS-CODECDA") {
        Some(codes) => {
            for code in codes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .take(MAX_CODES)
            {
                c.push((format!("codecda:{}", clean(code)), 1));
            }
        }
        None => c.push(("codecda:(none)".into(), 1)),
    }
    c
}

/// Adds `deltas` to `month`'s counters; a failure is logged, never passed on
/// (indicators must not stop mail).
pub fn add(spool: &storage::Spool, month: &str, deltas: &[(String, u64)]) {
    let refs: Vec<(&str, u64)> = deltas.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    if let Err(e) = spool.add_stats(month, &refs) {
        tracing::warn!(error = %e, month, "indicators not recorded");
    }
}

/// The counters of `month` as CSV (`counter,value`, sorted by name).
pub fn to_csv(month: &str, counters: &[(String, u64)]) -> String {
    let mut out = String::from("month,counter,value\n");
    for (name, value) in counters {
        let quoted = if name.contains([',', '"', '\n']) {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.clone()
        };
        out.push_str(&format!("{month},{quoted},{value}\n"));
    }
    out
}

/// The counters of `month` as JSON: `{"month": "...", "counters": {name: value}}`.
pub fn to_json(month: &str, counters: &[(String, u64)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = counters
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
        .collect();
    serde_json::json!({ "month": month, "counters": map }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &[(String, u64)], name: &str) -> u64 {
        c.iter().filter(|(k, _)| k == name).map(|(_, v)| v).sum()
    }

    #[test]
    fn mss_headers_are_counted() {
        let body = b"From: a@ch.test\r\nX-MSS-NIL:  DPI   EXEMPLE 4.2\r\nX-MSS-CODECDA: 11490-0, 34133-9\r\n\
                     X-MSS-INS: O\r\nSubject: x\r\n\r\nX-MSS-INS: N\r\n";
        let c = accepted("CH.test", &["cab.test", "cab.test", "ch.test"], body.len() as u64, body);
        assert_eq!(get(&c, "messages"), 1);
        assert_eq!(get(&c, "sender_domain:ch.test"), 1);
        assert_eq!(get(&c, "rcpt_domain:cab.test"), 2);
        assert_eq!(get(&c, "nil:DPI EXEMPLE 4.2"), 1);
        assert_eq!(get(&c, "codecda:11490-0"), 1);
        assert_eq!(get(&c, "codecda:34133-9"), 1);
        assert_eq!(get(&c, "ins:O"), 1, "the header, not the body line");
        assert_eq!(get(&c, "ins:N"), 0);
        assert_eq!(get(&c, "size:<10k"), 1);
        let bare = accepted("", &["y.test"], 21, b"Subject: none\r\n\r\nbody\r\n");
        for name in ["nil:(none)", "ins:(none)", "codecda:(none)", "sender_domain:(none)"] {
            assert_eq!(get(&bare, name), 1, "{name}");
        }
        let long = format!("X-MSS-NIL: {}\r\n\r\n", "x".repeat(10_000));
        let c = accepted("b.test", &[], long.len() as u64, long.as_bytes());
        assert!(c.iter().all(|(k, _)| k.len() <= 100), "values are capped");
    }

    #[test]
    fn exports() {
        let c = vec![("messages".to_string(), 3), ("nil:a,b".to_string(), 1)];
        assert_eq!(
            to_csv("2026-11", &c),
            "month,counter,value\n2026-11,messages,3\n2026-11,\"nil:a,b\",1\n"
        );
        let v: serde_json::Value = serde_json::from_str(&to_json("2026-11", &c)).unwrap();
        assert_eq!(v["counters"]["messages"], 3);
        assert_eq!(month_of(1_764_000_000_000), "2025-11");
    }
}
