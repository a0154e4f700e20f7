//! The CLI's side of the admin API: one blocking client built from the
//! node's configuration file (`[admin]` address and tokens), used by
//! `estafette drain`, `cluster status` and `queue …`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::ops::admin::OPERATOR_HEADER;
use crate::ops::node::DrainOutcome;

/// A client of one node's admin API.
pub struct AdminClient {
    scheme: &'static str,
    address: SocketAddr,
    read: Option<String>,
    write: Option<String>,
    operator: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// An answer: status code and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// The body when the status is 2xx, else an error naming the path and
    /// what the node said.
    ///
    /// # Errors
    /// A status other than 2xx.
    pub fn ok(self, path: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            (200..300).contains(&self.status),
            "{path}: {} {}",
            self.status,
            self.body.trim()
        );
        Ok(self.body)
    }
}

impl AdminClient {
    /// A client for the node configured in `config`, writing as `operator`
    /// (named in the trace of what it changes).
    ///
    /// # Errors
    /// The config cannot be loaded, has no `[admin]`, or a token file cannot be read.
    pub fn from_config(config: &Path, operator: &str) -> anyhow::Result<Self> {
        let config = Config::load(config)?;
        let admin = config.admin.as_ref().context("the config has no [admin] section")?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A listener on every address (0.0.0.0, in a pod) is asked on loopback.
        let mut address = admin.address;
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        // With admin.client_ca the port speaks HTTPS; the CLI calls it on
        // loopback, where no client certificate is asked for, and does not
        // check the node's own certificate (the name may not match 127.0.0.1).
        let https = admin.client_ca.is_some();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(https && address.ip().is_loopback())
            .build()?;
        Ok(Self {
            scheme: if https { "https" } else { "http" },
            address,
            read: admin.load_token()?,
            write: admin.load_write_token()?,
            operator: operator.to_owned(),
            client,
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        })
    }

    /// `GET path` with the read token (or the write token when only it is set).
    ///
    /// # Errors
    /// The node cannot be reached.
    pub fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let token = self.read.as_ref().or(self.write.as_ref());
        self.call(reqwest::Method::GET, path, token, None, None)
    }

    /// `POST path` with the read token (drain), waiting up to `wait` for
    /// the answer (the client's 60 s otherwise).
    ///
    /// # Errors
    /// The node cannot be reached, or did not answer within `wait`.
    pub fn post(&self, path: &str, wait: Option<Duration>) -> anyhow::Result<Answer> {
        let token = self.read.as_ref().or(self.write.as_ref());
        self.call(reqwest::Method::POST, path, token, None, wait)
    }

    /// `POST path` with a JSON body and the write token (queue changes; the
    /// read token when no write token is configured, which the node refuses
    /// with a 403 that says so).
    ///
    /// # Errors
    /// The node cannot be reached.
    pub fn write(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
        let token = self.write.as_ref().or(self.read.as_ref());
        self.call(reqwest::Method::POST, path, token, Some(body), None)
    }

    /// `PUT path` with a text body and the write token (the log filter).
    ///
    /// # Errors
    /// The node cannot be reached.
    pub fn put_text(&self, path: &str, body: &str) -> anyhow::Result<Answer> {
        let token = self.write.as_ref().or(self.read.as_ref());
        self.call(
            reqwest::Method::PUT,
            path,
            token,
            Some(&serde_json::Value::String(body.to_owned())),
            None,
        )
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&String>,
        json: Option<&serde_json::Value>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}://{}{path}", self.scheme, self.address);
        self.runtime.block_on(async {
            let mut req = self
                .client
                .request(method, &url)
                .header(OPERATOR_HEADER, &self.operator);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            match json {
                Some(serde_json::Value::String(text)) => {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, "text/plain")
                        .body(text.clone());
                }
                Some(body) => {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(serde_json::to_vec(body)?);
                }
                None => {}
            }
            let resp = req.send().await.with_context(|| format!("asking {url}"))?;
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            Ok(Answer { status, body })
        })
    }
}

/// `estafette drain`: asks the node of `config` to drain, prints the
/// outcome as soon as the node answers it, and waits until the node stops
/// answering, `wait` at most in all. The exit status: 0 when the node stopped with nothing left for it
/// to deliver (or a single node, whose queue waits on its volume by
/// design), [`DRAIN_LEFT_MAIL`] when mail it was to hand over stays on its
/// volume.
///
/// # Errors
/// The node cannot be reached, refuses, or still runs after `wait`.
pub fn drain(config: &Path, wait: Duration) -> anyhow::Result<i32> {
    let client = AdminClient::from_config(config, "")?;
    let started = std::time::Instant::now();
    println!("draining");
    let answer = client.post("/api/drain?wait=true", Some(wait))?;
    let outcome = match answer.status {
        200 => Some(serde_json::from_str::<DrainOutcome>(&answer.body).context("reading the drain's outcome")?),
        // An older node answers at once; one that stopped first says so.
        202 | 503 => None,
        _ => {
            answer.ok("/api/drain")?;
            None
        }
    };
    // Said before the node stops: in a container, this command (the
    // preStop hook, a `docker exec`) may end with the node.
    let code = match outcome {
        None => {
            println!("drain over (the node's log has the outcome)");
            0
        }
        Some(o) if !o.cluster => {
            println!("drain over: a single node's queue waits on its volume for its return");
            0
        }
        Some(o) if o.handed_over => {
            println!(
                "drained in {:.1} s: every queued message is with a peer ({} committed again with new copies first)",
                o.secs, o.copied_again
            );
            0
        }
        Some(o) => {
            let left = o.left.map_or_else(|| "some".to_owned(), |n| n.to_string());
            eprintln!(
                "drain deadline passed after {:.1} s: {left} messages were not handed over and stay on this \
                 node's volume; they are delivered when the node starts again with it (keep its volume)",
                o.secs
            );
            DRAIN_LEFT_MAIL
        }
    };
    while client.get("/healthz").is_ok() {
        anyhow::ensure!(
            started.elapsed() < wait,
            "the node still runs after {} s",
            wait.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("the node has stopped");
    Ok(code)
}

/// `estafette drain`'s exit status when the node stopped with mail that no
/// peer took over (see [`drain`]).
pub const DRAIN_LEFT_MAIL: i32 = 3;

/// Prints `GET /api/cluster` as `estafette cluster status` shows it.
pub fn print_cluster_status(s: &serde_json::Value) {
    println!(
        "epoch {}  accepting {}  shadows held {}  takeovers {}  taken over {}  duplicates possible {}",
        s["epoch"], s["accepting"], s["shadows_held"], s["takeovers"], s["taken_over"], s["duplicates_possible"]
    );
    let r = &s["replication"];
    println!(
        "replication: {} accepts, p50 {} ms, p99 {} ms, max {} ms; added to the accepts (after the local write): \
         p50 {} ms, p99 {} ms, max {} ms",
        r["count"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["added_p50_ms"], r["added_p99_ms"], r["added_max_ms"]
    );
    println!(
        "{:<16} {:>5} {:>5} {:>5} {:>5} {:>12} {:>12} {:>8} {:>14}  heard via",
        "peer", "id", "link", "wire", "live", "silent (s)", "queue", "epoch", "shadows held"
    );
    for p in s["peers"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        // A peer kept live by another member's word: its own link is cut.
        let via = match (p["vouched_by"].as_str(), p["vouched_secs"].as_f64()) {
            (Some(by), Some(secs)) => format!("{by} ({secs:.1} s ago)"),
            _ => "-".into(),
        };
        println!(
            "{:<16} {:>5} {:>5} {:>5} {:>5} {:>12.1} {:>12} {:>8} {:>14}  {via}",
            name,
            p["id"],
            p["link"],
            p["wire"],
            p["live"],
            p["silent_secs"].as_f64().unwrap_or(0.0),
            p["queue_depth"],
            p["epoch"],
            s["shadows_by_origin"][name].as_u64().unwrap_or(0)
        );
    }
}
