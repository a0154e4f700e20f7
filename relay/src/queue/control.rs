//! Operator control of the queue (`estafette queue …`, `/api/queue/…`):
//! choose messages with a [`Filter`], then hold, release, retry, bounce or
//! delete them ([`Action`]).
//!
//! # Contract
//! - A change is made under the rule delivery follows (one owner per
//!   message): the message is claimed as an attempt would claim it. A message
//!   being tried at that moment is reported [`Report::busy`] and left as it
//!   is; the operator repeats the command a moment later.
//! - Changes are synced writes: once the API answers, a crash does not undo
//!   them.
//! - Hold, release, retry and bounce act on the recipients that match the
//!   filter's recipient criteria (all of the message's recipients when the
//!   filter has none); delete acts on whole messages, like `postsuper -d`.
//! - Every change writes a trace event naming who asked.
//! - In a cluster, delete and a bounce that completes a message release the
//!   copies the peers hold; a hold is local to this node (a peer that takes
//!   the queue over after this node died delivers held messages).

use serde::{Deserialize, Serialize};
use storage::{Durability, Envelope, EventKind, MessageId, Recipient, RecipientStatus};
use tracing::info;

use super::Queue;

/// Which messages (and which of their recipients) an operator means.
///
/// Message criteria: `ids`, `sender`, `older_than_secs`. Recipient criteria:
/// `destination`, `recipient`, `state`, `error`; a message matches when at
/// least one of its recipients meets all of them. Text matches ignore case;
/// `sender`, `recipient` and `error` match a part, `destination` the whole
/// next hop (domain or route name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Only these queue ids (empty: any).
    pub ids: Vec<String>,
    /// Next hop of a recipient (`medecin.mssante.fr`).
    pub destination: Option<String>,
    /// Part of the envelope sender (`<>` for bounces matches the empty one).
    pub sender: Option<String>,
    /// Part of a recipient's address.
    pub recipient: Option<String>,
    /// A recipient's state.
    pub state: Option<State>,
    /// Received at least this many seconds ago.
    pub older_than_secs: Option<u64>,
    /// Part of a recipient's last reply (`4.7.1`, `timed out`).
    pub error: Option<String>,
}

/// A recipient's delivery state, as operators name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not tried yet.
    Queued,
    /// Failed temporarily, waiting for its retry.
    Deferred,
    /// Parked by an operator.
    Held,
    /// Delivered (the message waits for its other recipients).
    Delivered,
    /// Failed for good (the message waits for its other recipients).
    Failed,
}

impl State {
    /// The operator's name of a stored status.
    pub fn of(status: RecipientStatus) -> Self {
        match status {
            RecipientStatus::Queued => Self::Queued,
            RecipientStatus::Deferred => Self::Deferred,
            RecipientStatus::Held => Self::Held,
            RecipientStatus::Delivered => Self::Delivered,
            RecipientStatus::Failed => Self::Failed,
        }
    }
}

impl Filter {
    /// The ids named, parsed; the first bad one is the error.
    ///
    /// # Errors
    /// A text that is not a queue id (the API answers 400 with it).
    pub fn parsed_ids(&self) -> Result<Vec<MessageId>, String> {
        self.ids
            .iter()
            .map(|s| s.parse::<MessageId>().map_err(|_| format!("{s:?} is not a queue id")))
            .collect()
    }

    fn has_recipient_criteria(&self) -> bool {
        self.destination.is_some() || self.recipient.is_some() || self.state.is_some() || self.error.is_some()
    }

    /// Whether recipient `r` meets the recipient criteria.
    pub fn recipient_matches(&self, r: &Recipient) -> bool {
        self.destination
            .as_ref()
            .is_none_or(|d| r.next_hop.eq_ignore_ascii_case(d))
            && self.recipient.as_ref().is_none_or(|p| contains(&r.address, p))
            && self.state.is_none_or(|s| State::of(r.status) == s)
            && self
                .error
                .as_ref()
                .is_none_or(|p| r.last_reply.as_ref().is_some_and(|l| contains(&l.to_string(), p)))
    }

    /// Whether message `id` with `env` matches, at `now_ms`.
    pub fn matches(&self, id: MessageId, env: &Envelope, now_ms: u64) -> bool {
        let sender_ok = self.sender.as_ref().is_none_or(|p| {
            if p == "<>" {
                env.sender.is_empty()
            } else {
                contains(&env.sender, p)
            }
        });
        sender_ok
            && (self.ids.is_empty() || self.ids.iter().any(|s| s.parse::<MessageId>() == Ok(id)))
            && self
                .older_than_secs
                .is_none_or(|s| now_ms.saturating_sub(env.received_at_ms) >= s.saturating_mul(1000))
            && (!self.has_recipient_criteria() || env.recipients.iter().any(|r| self.recipient_matches(r)))
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// What an operator can do to matching messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pending recipients wait, undelivered, until released.
    Hold,
    /// Held recipients are tried again now.
    Release,
    /// Pending recipients are tried now instead of at their retry time.
    Retry,
    /// Pending and held recipients fail now; the sender gets the DSN owed.
    Bounce,
    /// The whole message is removed, no DSN.
    Delete,
}

impl Action {
    /// Its name in the API's path and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Release => "release",
            Self::Retry => "retry",
            Self::Bounce => "bounce",
            Self::Delete => "delete",
        }
    }
}

/// What an action did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Messages changed.
    pub changed: Vec<String>,
    /// Messages that matched but had nothing to change (no recipient in a
    /// state the action applies to), or were gone meanwhile.
    pub unchanged: Vec<String>,
    /// Messages being tried at that moment: left alone, ask again.
    pub busy: Vec<String>,
    /// DSNs queued for the senders (bounce).
    pub dsns: Vec<String>,
}

/// Releases the claim a control action took on a message.
struct Claim<'a> {
    queue: &'a Queue,
    id: MessageId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.queue.release(self.id);
    }
}

impl Queue {
    /// Messages matching `filter`, in acceptance order, at most `limit`, after
    /// reading at most `scan_limit` records; the `bool` is true when the scan
    /// stopped at `scan_limit` (the answer may be incomplete). Reads the spool
    /// on the calling thread: call it off the async threads.
    ///
    /// # Errors
    /// The spool's read error; a damaged record is skipped (and logged), not an error.
    pub fn select(
        &self,
        filter: &Filter,
        limit: usize,
        scan_limit: usize,
    ) -> Result<(Vec<(MessageId, Envelope)>, bool), storage::Error> {
        let now = storage::now_ms();
        let mut out = Vec::new();
        if !filter.ids.is_empty() {
            for id in filter.parsed_ids().map_err(storage::Error::InvalidArgument)? {
                if let Some(env) = self.spool.envelope(id)? {
                    if filter.matches(id, &env, now) && out.len() < limit {
                        out.push((id, env));
                    }
                }
            }
            return Ok((out, false));
        }
        let truncated = self.scan(scan_limit, |id, env| {
            if filter.matches(id, &env, now) {
                out.push((id, env));
            }
            out.len() < limit
        })?;
        Ok((out, truncated))
    }

    /// Gives `f` every stored message in acceptance order, page by page,
    /// until it returns `false` or `scan_limit` records were read; whether
    /// the scan stopped at the limit. A damaged record is logged and skipped.
    pub(super) fn scan(
        &self,
        scan_limit: usize,
        mut f: impl FnMut(MessageId, Envelope) -> bool,
    ) -> Result<bool, storage::Error> {
        let mut after = None;
        let mut scanned = 0;
        while scanned < scan_limit {
            let page = self.spool.envelopes(after, 1000.min(scan_limit - scanned))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            scanned += page.len();
            for (id, env) in page {
                match env {
                    Ok(env) => {
                        if !f(id, env) {
                            return Ok(false);
                        }
                    }
                    Err(e) => tracing::warn!(%id, error = %e, "damaged record skipped by a queue scan"),
                }
            }
        }
        Ok(scanned >= scan_limit)
    }

    /// Applies `action` to each of `ids` whose stored state still matches
    /// `filter`, on behalf of `who` (named in each trace event). See the
    /// module doc for the contract.
    ///
    /// # Errors
    /// A spool error stops the run; what was changed before it stays changed.
    pub async fn control(
        &self,
        action: Action,
        ids: &[MessageId],
        filter: &Filter,
        who: &str,
    ) -> Result<Report, storage::Error> {
        let mut report = Report::default();
        for &id in ids {
            if !self.claim(id) {
                report.busy.push(id.to_string());
                continue;
            }
            let _claim = Claim { queue: self, id };
            let now = storage::now_ms();
            let Some(mut env) = self.spool.envelope(id)? else {
                report.unchanged.push(id.to_string());
                continue;
            };
            if !filter.matches(id, &env, now) {
                report.unchanged.push(id.to_string());
                continue;
            }
            let changed = match action {
                Action::Delete => {
                    self.spool.remove(id, Durability::Synced).await?;
                    self.release_copies(id);
                    self.event(id, EventKind::Removed, format!("deleted by {who}"));
                    true
                }
                _ => {
                    self.change_recipients(action, id, &mut env, filter, who, now, &mut report)
                        .await?
                }
            };
            if changed {
                info!(%id, action = action.name(), %who, "queue control");
                report.changed.push(id.to_string());
            } else {
                report.unchanged.push(id.to_string());
            }
        }
        // A message the scheduler met while it was claimed here was skipped;
        // the next scan looks ahead for it (see the module doc of `queue`).
        self.look_ahead.store(true, std::sync::atomic::Ordering::Release);
        // Released and retried messages start now, once no longer claimed.
        if matches!(action, Action::Release | Action::Retry) {
            for id in &report.changed {
                if let Ok(id) = id.parse() {
                    self.submit(id);
                }
            }
        }
        Ok(report)
    }

    /// Hold, release, retry or bounce the matching recipients of one claimed
    /// message; `false` when none was in a state the action applies to.
    #[allow(clippy::too_many_arguments)]
    async fn change_recipients(
        &self,
        action: Action,
        id: MessageId,
        env: &mut Envelope,
        filter: &Filter,
        who: &str,
        now: u64,
        report: &mut Report,
    ) -> Result<bool, storage::Error> {
        let mut touched = Vec::new();
        for r in env.recipients.iter_mut().filter(|r| filter.recipient_matches(r)) {
            let applies = match action {
                Action::Hold => r.status.is_pending(),
                Action::Release => r.status == RecipientStatus::Held,
                Action::Retry => r.status.is_pending(),
                Action::Bounce => r.status.is_pending() || r.status == RecipientStatus::Held,
                Action::Delete => false,
            };
            if !applies {
                continue;
            }
            match action {
                Action::Hold => r.status = RecipientStatus::Held,
                Action::Release => {
                    r.status = RecipientStatus::Queued;
                    r.next_attempt_ms = now;
                }
                Action::Retry => r.next_attempt_ms = now,
                Action::Bounce => {
                    r.status = RecipientStatus::Failed;
                    r.last_reply = Some(storage::StoredReply {
                        code: 554,
                        enhanced: Some(storage::Enhanced {
                            class: 5,
                            subject: 0,
                            detail: 0,
                        }),
                        text: format!("returned to the sender by an operator ({who})"),
                    });
                }
                Action::Delete => {}
            }
            touched.push(r.address.clone());
        }
        if touched.is_empty() {
            return Ok(false);
        }
        let (kind, verb) = match action {
            Action::Hold => (EventKind::Held, "held"),
            Action::Release => (EventKind::Released, "released"),
            Action::Retry => (EventKind::Note, "retry now asked"),
            Action::Bounce => (EventKind::Failed, "bounced"),
            Action::Delete => (EventKind::Removed, "deleted"),
        };
        self.event(id, kind, format!("{verb} by {who}: {}", touched.join(", ")));
        if action == Action::Bounce && env.is_complete() {
            let body = self.dsn_original(id)?.unwrap_or_default();
            if let Some(dsn) = self.finish(id, env, &body).await? {
                report.dsns.push(dsn.to_string());
            }
        } else {
            self.spool.update(id, env, Durability::Synced).await?;
        }
        Ok(true)
    }
}
