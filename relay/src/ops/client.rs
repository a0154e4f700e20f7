//! The CLI's side of the admin API: one blocking client built from the
//! node's configuration file (`[admin]` address and tokens), used by
//! `estafette drain`, `cluster status` and `queue …`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::ops::admin::OPERATOR_HEADER;

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
        self.call(reqwest::Method::GET, path, token, None)
    }

    /// `POST path` with the read token (drain).
    ///
    /// # Errors
    /// The node cannot be reached.
    pub fn post(&self, path: &str) -> anyhow::Result<Answer> {
        let token = self.read.as_ref().or(self.write.as_ref());
        self.call(reqwest::Method::POST, path, token, None)
    }

    /// `POST path` with a JSON body and the write token (queue changes; the
    /// read token when no write token is configured, which the node refuses
    /// with a 403 that says so).
    ///
    /// # Errors
    /// The node cannot be reached.
    pub fn write(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
        let token = self.write.as_ref().or(self.read.as_ref());
        self.call(reqwest::Method::POST, path, token, Some(body))
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
        )
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&String>,
        json: Option<&serde_json::Value>,
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

/// Prints `GET /api/cluster` as `estafette cluster status` shows it.
pub fn print_cluster_status(s: &serde_json::Value) {
    println!(
        "epoch {}  accepting {}  shadows held {}  takeovers {}  taken over {}  duplicates possible {}",
        s["epoch"], s["accepting"], s["shadows_held"], s["takeovers"], s["taken_over"], s["duplicates_possible"]
    );
    let r = &s["replication"];
    println!(
        "replication: {} accepts, p50 {} ms, p99 {} ms, max {} ms",
        r["count"], r["p50_ms"], r["p99_ms"], r["max_ms"]
    );
    println!(
        "{:<16} {:>5} {:>5} {:>5} {:>12} {:>12} {:>8} {:>14}",
        "peer", "id", "link", "live", "silent (s)", "queue", "epoch", "shadows held"
    );
    for p in s["peers"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        println!(
            "{:<16} {:>5} {:>5} {:>5} {:>12.1} {:>12} {:>8} {:>14}",
            name,
            p["id"],
            p["link"],
            p["live"],
            p["silent_secs"].as_f64().unwrap_or(0.0),
            p["queue_depth"],
            p["epoch"],
            s["shadows_by_origin"][name].as_u64().unwrap_or(0)
        );
    }
}
