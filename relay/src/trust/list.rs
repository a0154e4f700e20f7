//! The loaded trust list ([`TrustIndex`]) and its keeper ([`TrustStore`]):
//! first load, timed refresh, atomic swap, last good list kept on any failure.
//!
//! # Refresh contract
//! [`TrustStore::refresh`] fetches the list (and the checksum file when one is
//! configured), verifies the SHA-256, parses it and builds a new index. The new
//! index replaces the current one — in one atomic pointer swap, readers never
//! wait and never see a half-built list — only if every step succeeded and the
//! list did not shrink by more than `max_shrink_percent` (a truncated or
//! half-published list would otherwise drop operators from the trust space).
//! On any failure the current index stays, [`TrustStore::failures`] grows, a
//! `warn!` names the source and the reason, and [`TrustStore::age`] keeps
//! growing: that is the alarm.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use proto::dn::Dn;
use proto::trustlist::{self, domain_key, DomainError, ParseError, Problem, TrustList};
use tracing::{info, warn};

use super::fetch::{sha256_hex, FetchError, Fetcher, Location};
use crate::config::ConfigError;
pub use crate::config::TrustListConfig;
use crate::lifecycle::{Phase, PhaseWatch};

/// After a failed refresh, the next try comes after this long (or after
/// `refresh_secs` if shorter), not a whole refresh period later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);

/// Why a list was not loaded. Each names the list's source.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The configuration cannot work (see [`TrustListConfig::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading or downloading the list or its checksum failed.
    #[error("trust list: {0}")]
    Fetch(#[from] FetchError),
    /// The list's SHA-256 is not the one in the checksum file.
    #[error("trust list {location}: SHA-256 {actual} does not match the checksum file ({expected})")]
    Checksum {
        /// The list's source.
        location: String,
        /// Digest in the checksum file.
        expected: String,
        /// Digest of what was fetched.
        actual: String,
    },
    /// The list is refused as a whole.
    #[error("trust list {location}: {error}")]
    Parse {
        /// The list's source.
        location: String,
        /// Why.
        error: ParseError,
    },
    /// The list parses but has no usable entry.
    #[error("trust list {location}: no usable entry")]
    Empty {
        /// The list's source.
        location: String,
    },
    /// The new list is much smaller than the current one.
    #[error("trust list {location}: {what} would drop from {before} to {after} (more than {max_percent} %); keeping the current list")]
    Shrunk {
        /// The list's source.
        location: String,
        /// `"domains"` or `"entries"`.
        what: &'static str,
        /// Count in the current list.
        before: usize,
        /// Count in the new list.
        after: usize,
        /// `max_shrink_percent`.
        max_percent: u8,
    },
    /// The runtime shut down while the list was being parsed.
    #[error("trust list: parsing interrupted by shutdown")]
    Interrupted,
    /// [`TrustStore::refresh`] on a store built with [`TrustStore::from_index`].
    #[error("trust list: no source configured")]
    NoSource,
}

/// The trust list as the relay uses it: domain → operator DNs. Immutable;
/// [`TrustStore`] replaces it as a whole.
#[derive(Debug)]
pub struct TrustIndex {
    by_domain: HashMap<Box<str>, Box<[Arc<Dn>]>>,
    /// Every listed DN, once.
    all_dns: HashSet<Arc<Dn>>,
    entries: usize,
    problems: Vec<Problem>,
    generated: Option<String>,
    loaded_at: SystemTime,
    sha256: Option<String>,
}

impl TrustIndex {
    /// Indexes a parsed list. Repeated (domain, DN) pairs count once per
    /// domain; equal DNs are shared.
    pub fn from_list(list: TrustList) -> Self {
        let entries = list.entries.len();
        let mut index = Self::build(list.entries.into_iter().map(|e| (e.domain, e.dn)));
        index.entries = entries;
        index.problems = list.problems;
        index.generated = list.generated;
        index
    }

    /// An index from `(domain, DN)` pairs, for dev mode and tests. Domains are
    /// normalised as the list's are ([`domain_key`]).
    ///
    /// # Errors
    /// The first invalid domain.
    pub fn from_entries<D: AsRef<str>>(pairs: impl IntoIterator<Item = (D, Dn)>) -> Result<Self, DomainError> {
        let pairs = pairs
            .into_iter()
            .map(|(d, dn)| domain_key(d.as_ref()).map(|k| (k.into_owned(), dn)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::build(pairs.into_iter()))
    }

    fn build(pairs: impl Iterator<Item = (String, Dn)>) -> Self {
        let mut interned: HashMap<Dn, Arc<Dn>> = HashMap::new();
        let mut by_domain: HashMap<Box<str>, Vec<Arc<Dn>>> = HashMap::new();
        let mut entries = 0;
        for (domain, dn) in pairs {
            entries += 1;
            let dn = interned.entry(dn).or_insert_with_key(|dn| Arc::new(dn.clone())).clone();
            let dns = by_domain.entry(domain.into_boxed_str()).or_default();
            if !dns.contains(&dn) {
                dns.push(dn);
            }
        }
        Self {
            by_domain: by_domain.into_iter().map(|(d, v)| (d, v.into_boxed_slice())).collect(),
            entries,
            all_dns: interned.into_values().collect(),
            problems: Vec::new(),
            generated: None,
            loaded_at: SystemTime::now(),
            sha256: None,
        }
    }

    /// Whether `domain` is in the trust space. Case-insensitive; U-labels and
    /// A-labels alike; a trailing dot is ignored. Exact match: a subdomain of a
    /// listed domain is not listed. No allocation for a lower-case ASCII name.
    pub fn is_listed(&self, domain: &str) -> bool {
        !self.dns_for(domain).is_empty()
    }

    /// Whether a peer whose certificate has subject `dn` may speak for `domain`
    /// (inbound: the MAIL FROM domain; outbound: the recipient domain).
    pub fn dn_allowed(&self, domain: &str, dn: &Dn) -> bool {
        self.dns_for(domain).iter().any(|listed| **listed == *dn)
    }

    /// Whether `dn` is listed for any domain (an operator of the trust space):
    /// the check for the null sender, which names no domain. One hash lookup.
    pub fn dn_listed(&self, dn: &Dn) -> bool {
        self.all_dns.contains(dn)
    }

    /// The operator DNs listed for `domain` (empty if it is not listed): for
    /// log lines that say what was expected.
    pub fn dns_for(&self, domain: &str) -> &[Arc<Dn>] {
        match domain_key(domain) {
            Ok(key) => self.by_domain.get(&*key).map_or(&[], |v| v),
            Err(_) => &[],
        }
    }

    /// Number of distinct listed domains.
    pub fn domains(&self) -> usize {
        self.by_domain.len()
    }

    /// Number of usable entries, as in the list (repeats included).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Number of distinct (canonical) operator DNs.
    pub fn distinct_dns(&self) -> usize {
        self.all_dns.len()
    }

    /// The entries that were skipped when the list was parsed.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// `<DateDeGeneration>` as written in the list.
    pub fn generated(&self) -> Option<&str> {
        self.generated.as_deref()
    }

    /// When this index was built.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Hex SHA-256 of the list this index was built from (`None` for
    /// [`TrustIndex::from_entries`]).
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }
}

/// What a successful [`TrustStore::refresh`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum RefreshOutcome {
    /// The list is byte for byte the current one: nothing swapped.
    Unchanged,
    /// A new index is in place.
    Updated {
        /// Distinct domains.
        domains: usize,
        /// Usable entries.
        entries: usize,
        /// Skipped entries.
        problems: usize,
    },
}

/// Holds the current [`TrustIndex`] and replaces it when the list changes.
/// Share it as `Arc<TrustStore>`; [`TrustStore::current`] is lock-free.
#[derive(Debug)]
pub struct TrustStore {
    config: Option<TrustListConfig>,
    current: ArcSwap<TrustIndex>,
    /// One refresh at a time: the shrink check compares with what is current.
    refreshing: tokio::sync::Mutex<()>,
    last_good: Mutex<Instant>,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl TrustStore {
    /// Loads the list for the first time. Unlike a refresh, failure is an
    /// error: a node must not start with no trust list.
    ///
    /// # Errors
    /// [`TrustError`] naming the source (file or URL) and the reason.
    pub async fn load(config: TrustListConfig) -> Result<Self, TrustError> {
        config.validate()?;
        let index = fetch_index(&config).await?;
        log_loaded(&config, &index, "trust list loaded");
        Ok(Self {
            config: Some(config),
            current: ArcSwap::from_pointee(index),
            refreshing: tokio::sync::Mutex::new(()),
            last_good: Mutex::new(Instant::now()),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// A store around a fixed index (dev mode, tests): never refreshed.
    pub fn from_index(index: TrustIndex) -> Self {
        Self {
            config: None,
            current: ArcSwap::from_pointee(index),
            refreshing: tokio::sync::Mutex::new(()),
            last_good: Mutex::new(Instant::now()),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The index in force. Lock-free; the `Arc` stays valid (and unchanged)
    /// however many refreshes happen while it is held.
    pub fn current(&self) -> Arc<TrustIndex> {
        self.current.load_full()
    }

    /// Fetches, verifies and parses the list again; swaps it in if it changed
    /// and passes the checks (see the module doc). Keeps the current list on
    /// any failure.
    ///
    /// # Errors
    /// [`TrustError`]; the failure is also counted and logged.
    pub async fn refresh(&self) -> Result<RefreshOutcome, TrustError> {
        let Some(config) = &self.config else {
            return Err(TrustError::NoSource);
        };
        let _one_at_a_time = self.refreshing.lock().await;
        let result = self.try_refresh(config).await;
        match &result {
            Ok(outcome) => {
                *crate::sync::lock(&self.last_good) = Instant::now();
                *crate::sync::lock(&self.last_error) = None;
                if *outcome == RefreshOutcome::Unchanged {
                    tracing::debug!(source = %config.source, "trust list unchanged");
                }
            }
            Err(e) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                *crate::sync::lock(&self.last_error) = Some(e.to_string());
                warn!(
                    source = %config.source,
                    error = %e,
                    failures,
                    age_secs = self.age().as_secs(),
                    "trust list refresh failed; keeping the current list"
                );
            }
        }
        result
    }

    async fn try_refresh(&self, config: &TrustListConfig) -> Result<RefreshOutcome, TrustError> {
        let old = self.current();
        let location = config.source.clone();
        let (bytes, sha256) = fetch_verified(config).await?;
        if old.sha256() == Some(sha256.as_str()) {
            return Ok(RefreshOutcome::Unchanged);
        }
        let new = build_index(bytes, sha256, &location).await?;
        let pct = u64::from(config.max_shrink_percent);
        for (what, before, after) in [
            ("domains", old.domains(), new.domains()),
            ("entries", old.entries(), new.entries()),
        ] {
            // after < before × (100 − pct) / 100, in integers
            if (after as u64) * 100 < (before as u64) * (100 - pct.min(100)) {
                return Err(TrustError::Shrunk {
                    location,
                    what,
                    before,
                    after,
                    max_percent: config.max_shrink_percent,
                });
            }
        }
        log_loaded(config, &new, "trust list updated");
        let outcome = RefreshOutcome::Updated {
            domains: new.domains(),
            entries: new.entries(),
            problems: new.problems().len(),
        };
        self.current.store(Arc::new(new));
        Ok(outcome)
    }

    /// Refreshes every `refresh_secs` (after a failure, within 5 minutes) until
    /// `shutdown` changes or its sender is dropped. Does nothing for a store
    /// without a source.
    pub fn spawn_refresher(self: Arc<Self>, mut shutdown: PhaseWatch) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(every) = self.config.as_ref().map(|c| Duration::from_secs(c.refresh_secs)) else {
                return;
            };
            let mut wait = every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    () = shutdown.reached(Phase::Stopping) => return,
                }
                // refresh() logs and counts its failures.
                wait = match self.refresh().await {
                    Ok(_) => every,
                    Err(_) => every.min(RETRY_AFTER_FAILURE),
                };
            }
        })
    }

    /// Time since the list was last loaded or confirmed unchanged by a
    /// successful refresh. Grows while refreshes fail: export it and alert on it.
    pub fn age(&self) -> Duration {
        crate::sync::lock(&self.last_good).elapsed()
    }

    /// Failed refreshes since start (a counter for the metrics).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Why the last refresh failed; `None` once a refresh succeeds (for the
    /// admin API and `/readyz` details).
    pub fn last_error(&self) -> Option<String> {
        crate::sync::lock(&self.last_error).clone()
    }

    /// The configuration, if the store has a source.
    pub fn config(&self) -> Option<&TrustListConfig> {
        self.config.as_ref()
    }
}

/// Fetches the list and, when configured, its checksum; verifies it.
async fn fetch_verified(config: &TrustListConfig) -> Result<(Vec<u8>, String), TrustError> {
    let fetcher = fetcher(config);
    let source = Location::parse(&config.source).ok_or_else(|| ConfigError::Invalid {
        field: "trust.source".into(),
        reason: "plain http:// is refused".into(),
    })?;
    let bytes = fetcher.fetch(&source).await?;
    let actual = sha256_hex(&bytes);
    if let Some(checksum) = &config.checksum {
        let location = Location::parse(checksum).ok_or_else(|| ConfigError::Invalid {
            field: "trust.checksum".into(),
            reason: "plain http:// is refused".into(),
        })?;
        let expected = fetcher.fetch_checksum(&location).await?;
        if expected != actual {
            return Err(TrustError::Checksum {
                location: config.source.clone(),
                expected,
                actual,
            });
        }
    }
    Ok((bytes, actual))
}

/// Parses and indexes off the async threads (a few ms for ANS's list).
async fn build_index(bytes: Vec<u8>, sha256: String, location: &str) -> Result<TrustIndex, TrustError> {
    let parsed = match tokio::task::spawn_blocking(move || trustlist::parse(&bytes).map(TrustIndex::from_list)).await {
        Ok(parsed) => parsed,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => return Err(TrustError::Interrupted),
    };
    let mut index = parsed.map_err(|error| TrustError::Parse {
        location: location.to_owned(),
        error,
    })?;
    if index.entries() == 0 {
        return Err(TrustError::Empty {
            location: location.to_owned(),
        });
    }
    index.sha256 = Some(sha256);
    Ok(index)
}

async fn fetch_index(config: &TrustListConfig) -> Result<TrustIndex, TrustError> {
    let (bytes, sha256) = fetch_verified(config).await?;
    build_index(bytes, sha256, &config.source).await
}

fn log_loaded(config: &TrustListConfig, index: &TrustIndex, what: &str) {
    info!(
        source = %config.source,
        generated = index.generated().unwrap_or("?"),
        domains = index.domains(),
        entries = index.entries(),
        dns = index.distinct_dns(),
        skipped = index.problems().len(),
        "{what}"
    );
    for p in index.problems() {
        warn!(source = %config.source, "trust list entry skipped: {p}");
    }
}

/// The downloader for `config`'s limits and CA.
fn fetcher(config: &TrustListConfig) -> Fetcher {
    Fetcher {
        max_bytes: config.max_bytes,
        timeout: Duration::from_secs(config.timeout_secs),
        ca_file: config.ca_file.clone(),
    }
}

#[cfg(test)]
mod tests;
