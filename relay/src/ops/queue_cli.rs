//! `estafette queue …`: the operator's queue verbs, asking the node's admin
//! API (see [`crate::ops::admin::queue`] for what each does).
//!
//! Exit status: 0 done; 1 refused or failed (a filter matching several
//! messages without `--yes` prints the count it would touch and exits 1,
//! changing nothing); 2 bad arguments (clap's).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::AdminClient;
use crate::queue::control::{Filter, State};

/// The queue verbs.
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// List queued messages (held ones too) matching the filter, oldest first.
    Ls {
        /// Which node.
        #[command(flatten)]
        node: NodeArgs,
        /// Which messages.
        #[command(flatten)]
        filter: FilterArgs,
        /// Most messages listed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// One message: envelope, recipients with their state, attempts and
    /// last reply, and its trace.
    Show {
        /// Which node.
        #[command(flatten)]
        node: NodeArgs,
        /// The queue id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Messages waiting per destination and age (minutes), like qshape.
    Summary {
        /// Which node.
        #[command(flatten)]
        node: NodeArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Park matching recipients: not delivered until released.
    Hold(ChangeArgs),
    /// Release held recipients: tried at once.
    Release(ChangeArgs),
    /// Try pending recipients now instead of at their retry time.
    Retry(ChangeArgs),
    /// Fail matching recipients now; the sender gets the DSN owed.
    Bounce(ChangeArgs),
    /// Remove whole messages, without DSN (a trace event names who asked).
    Delete(ChangeArgs),
}

/// Which node.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's configuration file (its `[admin]` address and tokens).
    #[arg(long, short)]
    config: PathBuf,
}

/// The filter; criteria combine with AND.
#[derive(Args, Debug, Default)]
pub struct FilterArgs {
    /// A recipient's next hop (domain or route name), whole, any case.
    #[arg(long)]
    destination: Option<String>,
    /// Part of the sender address (`<>`: bounces).
    #[arg(long)]
    sender: Option<String>,
    /// Part of a recipient address.
    #[arg(long)]
    recipient: Option<String>,
    /// A recipient's state.
    #[arg(long, value_enum)]
    state: Option<State>,
    /// Same as `--state held`.
    #[arg(long, conflicts_with = "state")]
    held: bool,
    /// Received at least this long ago (`90s`, `10m`, `2h`, `3d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Part of a recipient's last reply (`4.7.1`, `timed out`).
    #[arg(long)]
    error: Option<String>,
}

/// The arguments of a change.
#[derive(Args, Debug)]
pub struct ChangeArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Queue ids (with a filter too: those of them that match).
    ids: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Act on every matching message when there are several.
    #[arg(long)]
    yes: bool,
    /// Your name, for the trace (default: $USER).
    #[arg(long = "as")]
    operator: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

impl FilterArgs {
    fn filter(&self, ids: Vec<String>) -> Filter {
        Filter {
            ids,
            destination: self.destination.clone(),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            state: if self.held { Some(State::Held) } else { self.state },
            older_than_secs: self.older_than.map(|d| d.as_secs()),
            error: self.error.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.filter(Vec::new()) == Filter::default()
    }
}

/// Runs one verb; the process's exit status.
///
/// # Errors
/// The node cannot be reached or answers an error.
pub fn run(cmd: QueueCmd) -> anyhow::Result<i32> {
    match cmd {
        QueueCmd::Ls {
            node,
            filter,
            limit,
            json,
        } => {
            let client = AdminClient::from_config(&node.config, "")?;
            let f = filter.filter(Vec::new());
            let mut query = vec![("limit".to_owned(), limit.to_string())];
            for (k, v) in [
                ("destination", f.destination),
                ("sender", f.sender),
                ("recipient", f.recipient),
                ("state", f.state.map(|s| state_name(s).to_owned())),
                ("older_than_secs", f.older_than_secs.map(|s| s.to_string())),
                ("error", f.error),
            ] {
                if let Some(v) = v {
                    query.push((k.to_owned(), v));
                }
            }
            let path = format!("/api/queue/messages?{}", encode(&query));
            let body = client.get(&path)?.ok("/api/queue/messages")?;
            if json {
                println!("{body}");
            } else {
                print_list(&serde_json::from_str(&body)?);
            }
            Ok(0)
        }
        QueueCmd::Show { node, id, json } => {
            let client = AdminClient::from_config(&node.config, "")?;
            let path = format!("/api/queue/messages/{}", encode_part(&id));
            let body = client.get(&path)?.ok(&path)?;
            if json {
                println!("{body}");
            } else {
                print_show(&serde_json::from_str(&body)?);
            }
            Ok(0)
        }
        QueueCmd::Summary { node, json } => {
            let client = AdminClient::from_config(&node.config, "")?;
            let body = client.get("/api/queue/summary")?.ok("/api/queue/summary")?;
            if json {
                println!("{body}");
            } else {
                print_summary(&serde_json::from_str(&body)?);
            }
            Ok(0)
        }
        QueueCmd::Hold(a) => change("hold", a),
        QueueCmd::Release(a) => change("release", a),
        QueueCmd::Retry(a) => change("retry", a),
        QueueCmd::Bounce(a) => change("bounce", a),
        QueueCmd::Delete(a) => change("delete", a),
    }
}

fn change(action: &str, a: ChangeArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        !a.ids.is_empty() || !a.filter.is_empty(),
        "name queue ids or give a filter (--destination, --sender, ...); to act on every message, say --sender ''"
    );
    let operator: String = a
        .operator
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect();
    let client = AdminClient::from_config(&a.node.config, &operator)?;
    let request = serde_json::json!({ "filter": a.filter.filter(a.ids), "confirm": a.yes });
    let path = format!("/api/queue/{action}");
    let answer = client.write(&path, &request)?;
    if answer.status == 409 {
        let v: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        let n = v["would_touch"].as_u64().unwrap_or(0);
        eprintln!("{n} messages match; nothing done. Add --yes to {action} them all.");
        for id in v["ids"].as_array().into_iter().flatten() {
            eprintln!("  {}", id.as_str().unwrap_or("?"));
        }
        return Ok(1);
    }
    let body = answer.ok(&path)?;
    if a.json {
        println!("{body}");
        return Ok(0);
    }
    let v: Value = serde_json::from_str(&body).context("the node's answer is not JSON")?;
    let count = |k: &str| v[k].as_array().map_or(0, Vec::len);
    println!(
        "{action}: {} matched, {} changed, {} unchanged, {} busy (being tried; ask again)",
        v["matched"].as_u64().unwrap_or(0),
        count("changed"),
        count("unchanged"),
        count("busy")
    );
    for id in v["changed"].as_array().into_iter().flatten() {
        println!("  {}", id.as_str().unwrap_or("?"));
    }
    for dsn in v["dsns"].as_array().into_iter().flatten() {
        println!("  DSN queued: {}", dsn.as_str().unwrap_or("?"));
    }
    Ok(i32::from(count("busy") > 0))
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Queued => "queued",
        State::Deferred => "deferred",
        State::Held => "held",
        State::Delivered => "delivered",
        State::Failed => "failed",
    }
}

fn encode(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_part(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn encode_part(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn age(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn print_recipients(m: &Value) {
    for r in m["recipients"].as_array().into_iter().flatten() {
        println!(
            "    {:<40} {:<9} {:>3}  {}",
            text(r, "address"),
            text(r, "status"),
            r["attempts"].as_u64().unwrap_or(0),
            text(r, "last_reply")
        );
    }
}

fn print_list(v: &Value) {
    let messages = v["messages"].as_array().map_or(&[][..], Vec::as_slice);
    println!("{:<28} {:>10} {:>9}  SENDER", "ID", "AGE", "SIZE");
    println!("    {:<40} {:<9} {:>3}  LAST REPLY", "RECIPIENT", "STATE", "TRY");
    for m in messages {
        let sender = match text(m, "sender") {
            "" => "<>",
            s => s,
        };
        println!(
            "{:<28} {:>10} {:>9}  {sender}",
            text(m, "id"),
            age(m["age_secs"].as_u64().unwrap_or(0)),
            m["size"].as_u64().unwrap_or(0)
        );
        print_recipients(m);
    }
    let more = if v["truncated"].as_bool() == Some(true) {
        " (the scan stopped at admin.queue_scan_limit: there may be more)"
    } else {
        ""
    };
    println!("-- {} messages{more}", messages.len());
}

fn print_show(m: &Value) {
    for (label, key) in [
        ("id", "id"),
        ("received", "received"),
        ("sender", "sender"),
        ("identity", "client_identity"),
        ("peer", "peer"),
        ("tls", "tls"),
    ] {
        println!("{label:<10} {}", text(m, key));
    }
    println!("{:<10} {}", "size", m["size"].as_u64().unwrap_or(0));
    println!("recipients:");
    print_recipients(m);
    println!("trace:");
    for e in m["events"].as_array().into_iter().flatten() {
        match e["damaged"].as_str() {
            Some(d) => println!("  (damaged: {d})"),
            None => println!("  {}  {:<10} {}", text(e, "at"), text(e, "kind"), text(e, "detail")),
        }
    }
}

fn print_summary(v: &Value) {
    let bounds = crate::queue::AGE_BUCKETS_MIN;
    let mut header = format!("{:<32} {:>6} {:>6}", "DESTINATION", "T", "HELD");
    for b in bounds {
        header.push_str(&format!(" {b:>5}"));
    }
    header.push_str(&format!(" {:>5}+  OLDEST", bounds[bounds.len() - 1]));
    println!("{header}");
    let row = |r: &Value| {
        let mut line = format!(
            "{:<32} {:>6} {:>6}",
            text(r, "destination"),
            r["messages"].as_u64().unwrap_or(0),
            r["held"].as_u64().unwrap_or(0)
        );
        for n in r["by_age"].as_array().into_iter().flatten() {
            line.push_str(&format!(" {:>5}", n.as_u64().unwrap_or(0)));
        }
        line.push_str(&format!("   {}", age(r["oldest_age_secs"].as_u64().unwrap_or(0))));
        println!("{line}");
    };
    row(&v["total"]);
    for r in v["rows"].as_array().into_iter().flatten() {
        row(r);
    }
    if v["truncated"].as_bool() == Some(true) {
        println!("-- the scan stopped at admin.queue_scan_limit: counts are lower bounds");
    }
}
