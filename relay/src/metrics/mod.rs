//! The node's Prometheus metrics (DESIGN §8), served by the admin listener
//! (`crate::ops::admin`) at `/metrics`. The lowest layer of the relay with
//! `config`: it holds counters and formats values it is given, and depends on
//! no other module of the relay.
//!
//! Two kinds:
//! - event counters kept in memory and bumped where things happen: messages
//!   and bytes accepted and sessions open (per listener), recipient delivery
//!   outcomes and DSNs queued (from the queue's trace events);
//! - values read at scrape time ([`Snapshot`]): the queue (in flight, waiting,
//!   due), the trust list (entries, domains, age, refresh failures, last
//!   success), so that they cannot drift from their source.
//!
//! [`Metrics::encode`] writes either the OpenMetrics 1.0 text (what Prometheus
//! asks for) or the classic Prometheus text format 0.0.4 (what `curl` and
//! `promtool check metrics` read), from the same registry.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use storage::EventKind;

mod recent;
mod snapshot;
pub use recent::{Recent, RecentEntry, RECENT_CAP};
pub use snapshot::{ClusterCounters, ClusterSnapshot, Destination, QueueCount, Snapshot, TrustSnapshot};

/// `/metrics` counts the due index up to this many entries per scrape (a
/// bounded key scan); beyond it `estafette_queue_messages` reads this value
/// and `/api/queue` says `"saturated": true`.
pub const QUEUE_COUNT_CAP: usize = 100_000;

type ListenerLabel = [(&'static str, String); 1];
type RefusalLabel = [(&'static str, String); 2];
type TlsLabel = [(&'static str, String); 3];

/// The in-memory counters of one node. Share it as `Arc<Metrics>`; every
/// update is one atomic operation (no lock), cheap enough for the SMTP path.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Per listener, created up front: the hot path does one map lookup by
    /// `&str`, no allocation and no family lock.
    listeners: HashMap<String, ListenerMetrics>,
    accepted: Family<ListenerLabel, Counter>,
    bytes: Family<ListenerLabel, Counter>,
    sessions: Family<ListenerLabel, Gauge>,
    delivered: Counter,
    deferred: Counter,
    failed: Counter,
    dsn: Counter,
    replication: Histogram,
    replication_added: Histogram,
    refusals: Family<RefusalLabel, Counter>,
    refused_total: Counter,
    recent_refusals: Recent,
    recent_errors: Recent,
    commit_batch: Histogram,
    commit_time: Histogram,
    accept_time: Histogram,
    delivery_time: Histogram,
    tls: Family<TlsLabel, Counter>,
}

/// The node's totals since it started, as plain values (the dashboard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Messages acknowledged with 250, every listener.
    pub accepted: u64,
    /// Bytes of those messages.
    pub bytes: u64,
    /// SMTP sessions open now.
    pub sessions: i64,
    /// Recipients delivered.
    pub delivered: u64,
    /// Recipient attempts deferred.
    pub deferred: u64,
    /// Recipients failed.
    pub failed: u64,
    /// DSNs queued.
    pub dsn: u64,
    /// Commands and messages refused.
    pub refused: u64,
}

#[derive(Debug, Clone)]
struct ListenerMetrics {
    accepted: Counter,
    bytes: Counter,
    sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(std::iter::empty::<String>())
    }
}

impl Metrics {
    /// Counters for a node with these listeners (by name); each listener's
    /// series exist from the start, at 0.
    pub fn new<S: Into<String>>(listeners: impl IntoIterator<Item = S>) -> Self {
        let mut registry = Registry::default();
        let accepted = Family::<ListenerLabel, Counter>::default();
        let bytes = Family::<ListenerLabel, Counter>::default();
        let sessions = Family::<ListenerLabel, Gauge>::default();
        let deliveries = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let dsn = Counter::default();
        registry.register(
            "estafette_messages_accepted",
            "Messages stored durably and acknowledged with 250, by listener",
            accepted.clone(),
        );
        registry.register(
            "estafette_bytes_accepted",
            "Bytes of the messages acknowledged with 250 (as stored, trace headers included), by listener",
            bytes.clone(),
        );
        registry.register(
            "estafette_sessions_active",
            "SMTP sessions open now, by listener",
            sessions.clone(),
        );
        registry.register(
            "estafette_deliveries",
            "Recipient delivery attempts by outcome: delivered (2yz), deferred (4yz or no connection; \
             retried), failed (5yz, DNS verdict or delivery time expired)",
            deliveries.clone(),
        );
        registry.register(
            "estafette_dsn_sent",
            "Delivery status notifications queued for senders (failure, success and delay warnings)",
            dsn.clone(),
        );
        let refusals = Family::<RefusalLabel, Counter>::default();
        registry.register(
            "estafette_smtp_refusals",
            "SMTP commands and messages refused, by reply code and reason (policy check, \
             spool or cluster unavailable, authentication, protocol error)",
            refusals.clone(),
        );
        // 0.25 ms to ~8 s: a healthy LAN round trip plus a group-commit fsync
        // is a few ms; the accept deadline (5 s) bounds the top.
        let replication = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register_with_unit(
            "estafette_replication",
            "Time from sending a message's copies to the last shadow's durable ack (accepted messages only)",
            Unit::Seconds,
            replication.clone(),
        );
        // 0.1 ms to ~3 s: zero (the copies were first) lands in the first bucket.
        let replication_added = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register_with_unit(
            "estafette_replication_added",
            "What replication added to an accept: time from the local synced write to the last shadow's \
             durable ack, zero when the acks came first (accepted messages only)",
            Unit::Seconds,
            replication_added.clone(),
        );
        // 1 to 2048 writes per group commit.
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "estafette_spool_commit_batch_writes",
            "Writes carried by one group commit of the spool (accepts, state changes, trace events)",
            commit_batch.clone(),
        );
        // 50 µs to ~1.6 s: a local NVMe fsync is ~0.1-2 ms.
        let commit_time = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register_with_unit(
            "estafette_spool_fsync",
            "Time of one synced group commit of the spool (the WAL write and its fsync)",
            Unit::Seconds,
            commit_time.clone(),
        );
        let accept_time = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register_with_unit(
            "estafette_accept",
            "Time from the end of a message's data to its 250 (local fsync, and the copies in a cluster)",
            Unit::Seconds,
            accept_time.clone(),
        );
        // 10 ms to ~12 h (retries).
        let delivery_time = Histogram::new(exponential_buckets(0.01, 4.0, 12));
        registry.register_with_unit(
            "estafette_delivery",
            "Time from acceptance to delivery, per recipient delivered",
            Unit::Seconds,
            delivery_time.clone(),
        );
        let tls = Family::<TlsLabel, Counter>::default();
        registry.register(
            "estafette_tls_sessions",
            "Inbound TLS sessions established, by protocol version, cipher suite and whether the session was resumed",
            tls.clone(),
        );
        registry.register(
            "estafette_build",
            "The running build",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let outcome = |o: &'static str| deliveries.get_or_create_owned(&[("outcome", o)]);
        let (delivered, deferred, failed) = (outcome("delivered"), outcome("deferred"), outcome("failed"));
        let listeners = listeners
            .into_iter()
            .map(|name| {
                let name = name.into();
                let label = [("listener", name.clone())];
                let m = ListenerMetrics {
                    accepted: accepted.get_or_create_owned(&label),
                    bytes: bytes.get_or_create_owned(&label),
                    sessions: sessions.get_or_create_owned(&label),
                };
                (name, m)
            })
            .collect();
        Self {
            registry,
            listeners,
            accepted,
            bytes,
            sessions,
            delivered,
            deferred,
            failed,
            dsn,
            replication,
            replication_added,
            refusals,
            refused_total: Counter::default(),
            recent_refusals: Recent::default(),
            recent_errors: Recent::default(),
            commit_batch,
            commit_time,
            accept_time,
            delivery_time,
            tls,
        }
    }

    /// What the spool's writer thread reports after each group commit.
    pub fn commit_observer(self: &std::sync::Arc<Self>) -> storage::CommitObserver {
        let metrics = std::sync::Arc::downgrade(self);
        storage::CommitObserver(std::sync::Arc::new(move |c: storage::Commit| {
            if let Some(m) = metrics.upgrade() {
                m.commit_batch.observe(c.writes as f64);
                if c.synced {
                    m.commit_time.observe(c.took.as_secs_f64());
                }
            }
        }))
    }

    /// A message was acknowledged `took` after its data ended.
    pub fn accepted_in(&self, took: Duration) {
        self.accept_time.observe(took.as_secs_f64());
    }

    /// A recipient was delivered `after` its message was accepted.
    pub fn delivered_after(&self, after: Duration) {
        self.delivery_time.observe(after.as_secs_f64());
    }

    /// An inbound TLS session was established (`resumed`: without a full handshake).
    pub fn tls_session(&self, version: &str, cipher: &str, resumed: bool) {
        self.tls
            .get_or_create(&[
                ("version", version.to_owned()),
                ("cipher", cipher.to_owned()),
                ("resumed", resumed.to_string()),
            ])
            .inc();
    }

    /// A client was refused with reply `code` for `reason` (a policy
    /// refusal's reason, or `unavailable`, `auth`, `commit`, `protocol`);
    /// `detail` (peer, command, reply) goes to the dashboard's recent list.
    pub fn refused(&self, code: u16, reason: &str, detail: String) {
        self.refusals
            .get_or_create(&[("code", code.to_string()), ("reason", reason.to_owned())])
            .inc();
        self.refused_total.inc();
        self.recent_refusals.push(RecentEntry {
            at_ms: storage::now_ms(),
            code,
            reason: reason.to_owned(),
            detail,
        });
    }

    /// A delivery attempt failed for a recipient (`failed`: for good);
    /// `detail` names the message, the recipient and the reply.
    pub fn delivery_error(&self, code: u16, failed: bool, detail: String) {
        self.recent_errors.push(RecentEntry {
            at_ms: storage::now_ms(),
            code,
            reason: if failed { "failed" } else { "deferred" }.to_owned(),
            detail,
        });
    }

    /// The last refusals, newest first.
    pub fn recent_refusals(&self) -> Vec<RecentEntry> {
        self.recent_refusals.newest_first()
    }

    /// The last delivery errors, newest first.
    pub fn recent_errors(&self) -> Vec<RecentEntry> {
        self.recent_errors.newest_first()
    }

    /// The totals now.
    pub fn totals(&self) -> Totals {
        let sum = |f: fn(&ListenerMetrics) -> u64| self.listeners.values().map(f).sum::<u64>();
        Totals {
            accepted: sum(|m| m.accepted.get()),
            bytes: sum(|m| m.bytes.get()),
            sessions: self.listeners.values().map(|m| m.sessions.get()).sum(),
            delivered: self.delivered.get(),
            deferred: self.deferred.get(),
            failed: self.failed.get(),
            dsn: self.dsn.get(),
            refused: self.refused_total.get(),
        }
    }

    /// A message's copies were all acknowledged by its shadows `took` after
    /// they were sent.
    pub fn replicated(&self, took: Duration) {
        self.replication.observe(took.as_secs_f64());
    }

    /// A message's last shadow acked `added` after its local write was
    /// synced (zero when the acks came first): what replication added to
    /// its `250`.
    pub fn replication_added(&self, added: Duration) {
        self.replication_added.observe(added.as_secs_f64());
    }

    fn listener(&self, name: &str) -> ListenerMetrics {
        match self.listeners.get(name) {
            Some(m) => m.clone(),
            // A listener not named at construction (tests): created on first use.
            None => {
                let label = [("listener", name.to_owned())];
                ListenerMetrics {
                    accepted: self.accepted.get_or_create_owned(&label),
                    bytes: self.bytes.get_or_create_owned(&label),
                    sessions: self.sessions.get_or_create_owned(&label),
                }
            }
        }
    }

    /// A message of `bytes` octets was stored and acknowledged on `listener`.
    pub fn message_accepted(&self, listener: &str, bytes: u64) {
        match self.listeners.get(listener) {
            Some(m) => {
                m.accepted.inc();
                m.bytes.inc_by(bytes);
            }
            None => {
                let m = self.listener(listener);
                m.accepted.inc();
                m.bytes.inc_by(bytes);
            }
        }
    }

    /// A session opened on `listener`; it counts as active until the guard
    /// is dropped.
    pub fn session_opened(&self, listener: &str) -> SessionGuard {
        let gauge = match self.listeners.get(listener) {
            Some(m) => m.sessions.clone(),
            None => self.listener(listener).sessions,
        };
        gauge.inc();
        SessionGuard(gauge)
    }

    /// Counts what a trace event says: `Delivered`, `Deferred`, `Failed`
    /// (one per recipient and attempt) and `DsnQueued`; other kinds are not
    /// counted here.
    pub fn trace_event(&self, kind: EventKind) {
        let counter = match kind {
            EventKind::Delivered => &self.delivered,
            EventKind::Deferred => &self.deferred,
            EventKind::Failed => &self.failed,
            EventKind::DsnQueued => &self.dsn,
            _ => return,
        };
        counter.inc();
    }

    /// The whole exposition: the counters, then `snapshot`'s values.
    ///
    /// # Errors
    /// Only if formatting fails (it writes to a `String`: never in practice).
    pub fn encode(&self, snapshot: &Snapshot, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        encode_registry(&mut out, &self.registry)?;
        encode_registry(&mut out, &snapshot.registry())?;
        match format {
            Format::OpenMetrics => {
                encode_eof(&mut out)?;
                Ok(out)
            }
            Format::PrometheusText => to_prometheus_text(&out),
        }
    }
}

/// Keeps a session counted in `estafette_sessions_active` while it lives.
#[derive(Debug)]
#[must_use = "the session counts as active only while the guard lives"]
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Which text exposition format `/metrics` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
    /// Prometheus text 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it, else the classic text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::PrometheusText,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as Prometheus text 0.0.4:
/// a counter family `x` (samples `x_total`) is declared as `x_total`, an info
/// family `x` (sample `x_info`) as the gauge `x_info`, `unknown` becomes
/// `untyped`; `# UNIT` and `# EOF` go. Sample lines are unchanged (this
/// module writes no exemplars and no `_created` samples).
fn to_prometheus_text(openmetrics: &str) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, which decides the 0.0.4 name.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "unknown" => (family.to_owned(), "untyped"),
                other => (family.to_owned(), other),
            };
            if let Some((_, text)) = help.take().filter(|(h, _)| *h == family) {
                writeln!(out, "# HELP {name} {text}")?;
            }
            writeln!(out, "# TYPE {name} {kind}")?;
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn counters_move_and_both_formats_carry_the_same_samples() {
        let m = Metrics::new(["mta", "operators"]);
        m.message_accepted("mta", 1200);
        m.message_accepted("mta", 300);
        m.message_accepted("unnamed", 5);
        m.trace_event(EventKind::Delivered);
        m.trace_event(EventKind::Deferred);
        m.trace_event(EventKind::Deferred);
        m.trace_event(EventKind::DsnQueued);
        m.trace_event(EventKind::Removed);
        let guard = m.session_opened("operators");
        let snapshot = Snapshot {
            in_flight: 2,
            queue: Some(QueueCount {
                waiting: 7,
                due: 3,
                saturated: false,
            }),
            trust: Some(TrustSnapshot {
                entries: 6554,
                domains: 5000,
                age: Duration::from_millis(1500),
                failures: 2,
                last_success: UNIX_EPOCH + Duration::from_secs(1_795_444_320),
            }),
            cluster: Some(ClusterSnapshot {
                peers: 2,
                peers_up: 1,
                accepting: true,
                counters: ClusterCounters {
                    takeovers: 1,
                    ..ClusterCounters::default()
                },
                ..ClusterSnapshot::default()
            }),
            spool_bytes: Some(4096),
            detached_dropped: 0,
            destinations: vec![Destination {
                name: "medecin.mssante.fr".into(),
                messages: 12,
                oldest_secs: 600,
            }],
        };
        m.accepted_in(Duration::from_millis(3));
        m.delivered_after(Duration::from_secs(2));
        m.tls_session("TLSv1.3", "TLS13_AES_256_GCM_SHA384", true);
        let om = m.encode(&snapshot, Format::OpenMetrics).unwrap();
        let text = m.encode(&snapshot, Format::PrometheusText).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert_eq!(samples(&om), samples(&text));
        for line in [
            "estafette_messages_accepted_total{listener=\"mta\"} 2",
            "estafette_messages_accepted_total{listener=\"operators\"} 0",
            "estafette_messages_accepted_total{listener=\"unnamed\"} 1",
            "estafette_bytes_accepted_total{listener=\"mta\"} 1500",
            "estafette_sessions_active{listener=\"operators\"} 1",
            "estafette_deliveries_total{outcome=\"delivered\"} 1",
            "estafette_deliveries_total{outcome=\"deferred\"} 2",
            "estafette_deliveries_total{outcome=\"failed\"} 0",
            "estafette_dsn_sent_total 1",
            "estafette_queue_in_flight 2",
            "estafette_queue_messages 7",
            "estafette_queue_due_messages 3",
            "estafette_trustlist_entries 6554",
            "estafette_cluster_peers 2",
            "estafette_cluster_peers_up 1",
            "estafette_cluster_accepting 1",
            "estafette_cluster_takeovers_total 1",
            "estafette_trustlist_domains 5000",
            "estafette_trustlist_age_seconds 1.5",
            "estafette_trustlist_refresh_failures_total 2",
            "estafette_trustlist_last_success_timestamp_seconds 1795444320.0",
            "estafette_spool_size_bytes 4096",
            "estafette_queue_destination_messages{destination=\"medecin.mssante.fr\"} 12",
            "estafette_queue_destination_oldest_seconds{destination=\"medecin.mssante.fr\"} 600",
            "estafette_accept_seconds_count 1",
            "estafette_delivery_seconds_count 1",
            "estafette_tls_sessions_total{version=\"TLSv1.3\",cipher=\"TLS13_AES_256_GCM_SHA384\",resumed=\"true\"} 1",
            &format!("estafette_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // 0.0.4 declares the sample names; OpenMetrics the family names.
        assert!(text.contains("# TYPE estafette_dsn_sent_total counter\n"), "{text}");
        assert!(text.contains("# TYPE estafette_build_info gauge\n"), "{text}");
        assert!(om.contains("# TYPE estafette_dsn_sent counter\n"), "{om}");
        assert!(om.contains("# UNIT estafette_trustlist_age_seconds seconds\n"), "{om}");
        drop(guard);
        let text = m.encode(&Snapshot::default(), Format::PrometheusText).unwrap();
        assert!(text.contains("estafette_sessions_active{listener=\"operators\"} 0\n"));
        assert!(!text.contains("estafette_trustlist"), "no trust list, no trust metrics");
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
