//! One delivery attempt of one message: send its due recipients, grouped by
//! next hop; record each recipient's fate (2yz delivered, 5yz failed, 4yz or a
//! connection failure deferred with backoff); once every recipient is final,
//! queue the DSN that is owed and remove the message.
//!
//! State changes after acceptance are buffered writes (DESIGN §3): a crash
//! before they reach the disk means the message is tried again — a duplicate
//! delivery at worst, never a loss. The DSN is accepted (synced) before the
//! original is removed, for the same reason.

use std::collections::BTreeMap;

use chrono::Utc;
use proto::client::MessageOutcome;
use proto::{EnhancedCode, Reply, Severity};
use storage::{BodyLayout, Durability, Envelope, Event, EventKind, MessageId, RecipientStatus};
use tracing::{info, warn};

use super::content::SpoolContent;
use super::retry::Retry;
use super::{Body, CommitError, Prepared, Queue};
use crate::outbound::dsn::Action;
use crate::outbound::{envelope, DeliveryError};
use crate::trust::indicators;

/// How long a DSN's commit may wait for the spool (and peers) before the
/// attempt is given up and retried later; the DSN is then built again.
const DSN_COMMIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// How much of a large message (stored in pieces) a report reads: enough for
/// its header section.
const DSN_ORIGINAL_MAX: usize = 256 << 10;

impl Queue {
    /// Tries the due recipients of `id` once. Never panics; errors are logged
    /// and the message is pushed back so that a broken record cannot spin.
    pub(super) async fn attempt(&self, id: MessageId) {
        if let Err(e) = self.try_attempt(id).await {
            warn!(%id, error = %e, "delivery attempt failed locally; retrying later");
            let later = storage::now_ms() + self.retry.first.as_millis() as u64;
            if let Ok(Some(env)) = self.spool.envelope(id) {
                let _ = self
                    .spool
                    .reschedule(id, env.due_ms(), Some(later), Durability::Buffered)
                    .await;
            }
        }
    }

    async fn try_attempt(&self, id: MessageId) -> Result<(), storage::Error> {
        let Some(mut env) = self.spool.envelope(id)? else {
            return Ok(()); // removed meanwhile
        };
        // A large message streams from the spool; `body` is then only its
        // start, for the reports (which quote its headers).
        let (streamed, body) = match self.spool.body_layout(id)? {
            BodyLayout::Whole => (false, self.spool.body(id)?),
            BodyLayout::Pieces { .. } => (true, self.spool.body_prefix(id, DSN_ORIGINAL_MAX)?),
        };
        let Some(body) = body else {
            return Err(storage::Error::Corrupt {
                cf: "body",
                key: id.to_string(),
                error: "envelope without body".into(),
            });
        };
        let now = storage::now_ms();
        // Due pending recipients by next hop; BTreeMap keeps hops in a stable order.
        // `Queued` (never tried) is due whatever its date: that date is only
        // when a lost in-memory handoff would be noticed (see `Queue::submit`).
        let mut hops: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in env.recipients.iter().enumerate() {
            let due = r.status == RecipientStatus::Queued || r.next_attempt_ms <= now;
            if r.status.is_pending() && due {
                hops.entry(r.next_hop.clone()).or_default().push(i);
            }
        }
        let router = self.router.load_full();
        let throttle = self.throttle.load_full();
        for (hop, indexes) in hops {
            // Over the destination's rate: wait, no attempt counted.
            if let Err(wait) = throttle.check(&hop) {
                let at = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
                for &i in &indexes {
                    if let Some(r) = env.recipients.get_mut(i) {
                        r.next_attempt_ms = at;
                    }
                }
                tracing::debug!(%id, destination = %hop, wait_ms = at - now, "destination over its rate; waiting");
                continue;
            }
            // Static route or MX lookup; a DNS verdict (NXDOMAIN, null MX) is
            // permanent and fails these recipients, anything else defers them.
            let result = match router.route(&hop).await {
                Ok(dest) if streamed => {
                    let mut msg = envelope::outgoing(&env, &indexes, &[]);
                    msg.streamed = Some(env.body_size);
                    let mut content = SpoolContent::open(&self.spool, id)?;
                    self.pool.send_streamed(&dest, msg, &mut content, &id.to_string()).await
                }
                Ok(dest) => {
                    let msg = envelope::outgoing(&env, &indexes, &body);
                    self.pool.send(&dest, msg, &id.to_string()).await
                }
                Err(e) => Err(e),
            };
            self.record(id, &mut env, &indexes, &result, now);
        }
        if env.is_complete() {
            self.finish(id, &env, &body).await?;
        } else {
            self.warn_delayed(id, &mut env, &body, now).await?;
            self.spool.update(id, &env, Durability::Buffered).await?;
        }
        Ok(())
    }

    /// What a report may quote of message `id`: the whole body when it is
    /// stored whole, the first [`DSN_ORIGINAL_MAX`] octets of a large one
    /// stored in pieces (the report then quotes its headers only, see
    /// `envelope::owed_dsn`). `None` when there is no body.
    pub(super) fn dsn_original(&self, id: MessageId) -> Result<Option<Vec<u8>>, storage::Error> {
        match self.spool.body_layout(id)? {
            BodyLayout::Whole => self.spool.body(id),
            BodyLayout::Pieces { .. } => self.spool.body_prefix(id, DSN_ORIGINAL_MAX),
        }
    }

    /// Sends one delay warning for the deferred recipients that have waited
    /// longer than [`super::RetryPolicy::warn_after`] and want one
    /// (NOTIFY=DELAY or no NOTIFY), then marks them so that it is sent once.
    /// The warning is accepted (synced) before the mark is written: a crash
    /// in between repeats the warning, never loses it.
    async fn warn_delayed(
        &self,
        id: MessageId,
        env: &mut Envelope,
        body: &[u8],
        now: u64,
    ) -> Result<(), storage::Error> {
        let Some(after) = self.retry.warn_after else {
            return Ok(());
        };
        if now.saturating_sub(env.received_at_ms) < after.as_millis() as u64 {
            return Ok(());
        }
        let due = |r: &storage::Recipient| {
            r.status == RecipientStatus::Deferred && !r.notify.contains(storage::Notify::DELAY_REPORTED)
        };
        if !env.recipients.iter().any(due) {
            return Ok(());
        }
        let pick = |r: &storage::Recipient| due(r).then_some(Action::Delayed);
        if let Some(dsn) = self.build_dsn(id, env, body, pick) {
            let dsn_id = self.commit_dsn(dsn).await?;
            info!(%id, dsn = %dsn_id, "delay warning queued");
            self.event(id, EventKind::DsnQueued, format!("delay warning {dsn_id}"));
        }
        for r in env.recipients.iter_mut().filter(|r| due(r)) {
            r.notify = storage::Notify(r.notify.0 | storage::Notify::DELAY_REPORTED);
        }
        Ok(())
    }

    /// Writes each recipient's fate into the envelope.
    fn record(
        &self,
        id: MessageId,
        env: &mut Envelope,
        indexes: &[usize],
        result: &Result<MessageOutcome, DeliveryError>,
        now: u64,
    ) {
        let received = env.received_at_ms;
        let mut finals: Vec<(String, u64)> = Vec::new();
        let mut events: Vec<(EventKind, String)> = Vec::new();
        let mut count = |name: &str| match finals.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v += 1,
            None => finals.push((name.to_owned(), 1)),
        };
        for (k, &i) in indexes.iter().enumerate() {
            let reply = match result {
                Ok(outcome) => outcome.recipient_reply(k).clone(),
                // The error's reply carries its class: 4yz defers, 5yz fails.
                Err(e) => e.reply(),
            };
            let Some(r) = env.recipients.get_mut(i) else { continue };
            r.attempts += 1;
            r.last_reply = Some(envelope::reply_to_spool(&reply));
            match reply.severity() {
                Severity::Success => {
                    r.status = RecipientStatus::Delivered;
                    self.metrics
                        .delivered_after(std::time::Duration::from_millis(now.saturating_sub(received)));
                    count("outcome:delivered");
                    events.push((EventKind::Delivered, format!("{} {reply}", r.address)));
                    info!(%id, rcpt = %r.address, reply = %reply, "delivered");
                }
                Severity::Permanent => {
                    r.status = RecipientStatus::Failed;
                    count("outcome:failed");
                    events.push((EventKind::Failed, format!("{} {reply}", r.address)));
                    info!(%id, rcpt = %r.address, reply = %reply, "failed");
                }
                Severity::Transient | Severity::Intermediate => {
                    match self.retry.next_attempt(r.attempts, received, now, &mut rand::rng()) {
                        Retry::At(at) => {
                            r.status = RecipientStatus::Deferred;
                            r.next_attempt_ms = at;
                            events.push((EventKind::Deferred, format!("{} {reply}", r.address)));
                            info!(%id, rcpt = %r.address, reply = %reply, retry_in_ms = at.saturating_sub(now), "deferred");
                        }
                        Retry::GiveUp => {
                            r.status = RecipientStatus::Failed;
                            let why = Reply::new(
                                554,
                                EnhancedCode::new(5, 4, 7),
                                format!("delivery time expired; last reply: {reply}"),
                            );
                            r.last_reply = Some(envelope::reply_to_spool(&why));
                            count("outcome:expired");
                            events.push((EventKind::Failed, format!("{} {why}", r.address)));
                            info!(%id, rcpt = %r.address, "gave up");
                        }
                    }
                }
            }
        }
        if !finals.is_empty() {
            indicators::add(&self.spool, &indicators::month_of(now), &finals);
        }
        for (kind, detail) in events {
            self.event(id, kind, detail);
        }
    }

    /// Every recipient is final: queue the DSN owed, then remove the message.
    /// The DSN's id, if one was owed.
    pub(super) async fn finish(
        &self,
        id: MessageId,
        env: &Envelope,
        body: &[u8],
    ) -> Result<Option<MessageId>, storage::Error> {
        let pick = |r: &storage::Recipient| match r.status {
            RecipientStatus::Failed => Some(Action::Failed),
            RecipientStatus::Delivered => Some(Action::Delivered),
            _ => None,
        };
        let mut dsn_id = None;
        if let Some(dsn) = self.build_dsn(id, env, body, pick) {
            let committed = self.commit_dsn(dsn).await?;
            info!(%id, dsn = %committed, "delivery status notification queued");
            self.event(id, EventKind::DsnQueued, committed.to_string());
            dsn_id = Some(committed);
        }
        self.spool.remove(id, Durability::Buffered).await?;
        self.release_copies(id);
        self.event(id, EventKind::Removed, "all recipients final".into());
        info!(%id, "done");
        Ok(dsn_id)
    }

    /// Appends a trace event (buffered; a failure is logged, never passed on:
    /// the trace must not stop delivery).
    pub(super) fn event(&self, id: MessageId, kind: EventKind, detail: String) {
        self.metrics.trace_event(kind);
        if matches!(kind, EventKind::Deferred | EventKind::Failed) {
            // "rcpt 451 4.4.1 ...": the reply code follows the address.
            let code = detail
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            self.metrics
                .delivery_error(code, kind == EventKind::Failed, format!("{id} {detail}"));
        }
        let event = Event {
            at_ms: storage::now_ms(),
            kind,
            detail,
        };
        if let Err(e) = self.spool.record_event(id, &event) {
            warn!(%id, error = %e, "trace event not recorded");
        }
    }

    /// Commits a DSN through the node's one commit path (synced, and
    /// replicated where the cluster requires it) before the caller marks the
    /// original as reported.
    async fn commit_dsn(&self, dsn: Prepared) -> Result<MessageId, storage::Error> {
        self.commit(dsn, DSN_COMMIT_DEADLINE)
            .await
            .map_err(CommitError::into_spool_error)
    }

    /// The DSN owed for `env` (message `id`), ready to commit: see
    /// [`envelope::owed_dsn`].
    fn build_dsn(
        &self,
        id: MessageId,
        env: &Envelope,
        body: &[u8],
        pick: impl Fn(&storage::Recipient) -> Option<Action>,
    ) -> Option<Prepared> {
        let now = storage::now_ms();
        let owed = envelope::owed_dsn(&self.hostname, env, body, pick, self.first_due(now), Utc::now())?;
        Some(Prepared {
            id: self.next_id(),
            event: Some(Event {
                at_ms: now,
                kind: EventKind::Accepted,
                detail: format!("delivery status notification for {id} to <{}>", owed.to),
            }),
            envelope: owed.envelope,
            body: Body::Whole(owed.body.into()),
            counters: Vec::new(),
        })
    }
}
