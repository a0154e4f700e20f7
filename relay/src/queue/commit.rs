//! The one commit path: how a message becomes this node's responsibility.
//!
//! Every message the node takes on goes through [`Queue::commit`]: mail from a
//! client at the end of DATA/BDAT, and every message the node creates itself
//! (delay warnings, failure and success DSNs). Its id is allocated first
//! ([`Queue::next_id`]) so that it can be written into the `Received:` header
//! and, in a cluster, sent to the shadow peers in parallel with the local
//! write; this is the one place where replication hooks in.
//!
//! # Contract
//! `Ok(id)` means the envelope, body and due-index entry are on stable storage
//! (the spool's synced group commit returned), the message is handed to
//! delivery, and only then may the caller answer `250` (or, for a DSN, mark
//! the original as reported). `Err` means the caller MUST NOT acknowledge it;
//! [`CommitError::reply`] is the SMTP reply to give instead. A commit that
//! timed out may still reach the disk later: the client was told to retry, so
//! the worst case is a duplicate, never a loss.

use std::time::Duration;

use bytes::Bytes;
use proto::{EnhancedCode, Reply};
use storage::{Envelope, Event, MessageId};
use tracing::warn;

use super::Queue;
use crate::sync::lock;
use crate::trust::indicators;

/// A message ready to be made durable: everything [`Queue::commit`] writes,
/// built without I/O (see `inbound::accept::prepare` and the DSN builder).
#[derive(Debug)]
pub struct Prepared {
    /// Allocated by [`Queue::next_id`] before the body was finalised.
    pub id: MessageId,
    /// Sender, recipients with their first due time, DSN parameters, client.
    pub envelope: Envelope,
    /// The message as it will be delivered (trace headers included).
    pub body: Body,
    /// Monthly indicator counters to add once stored (buffered).
    pub counters: Vec<(String, u64)>,
    /// The trace event that records the acceptance (buffered).
    pub event: Option<Event>,
}

/// The body of a [`Prepared`] message.
#[derive(Debug)]
pub enum Body {
    /// Whole in memory (every message up to `limits.body_piece_size`).
    Whole(Bytes),
    /// Larger: written to the spool in pieces while it arrived
    /// (`storage::Spill`); `head` (the trace headers) goes before the
    /// pieces and `tail` (what arrived after the last piece) after them.
    Spilled {
        /// The trace headers.
        head: Bytes,
        /// The pieces already in the spool, under the message's id.
        spill: storage::Spill,
        /// The rest of the content.
        tail: Bytes,
    },
}

impl Body {
    /// Octets of the whole body.
    pub fn len(&self) -> u64 {
        match self {
            Self::Whole(b) => b.len() as u64,
            Self::Spilled { head, spill, tail } => head.len() as u64 + spill.len() + tail.len() as u64,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the cluster's copies are made of: the body itself, or a reader
    /// over the pieces already in the spool (never joined in memory).
    fn copy_body(&self) -> crate::cluster::CopyBody {
        match self {
            Self::Whole(b) => crate::cluster::CopyBody::Whole(b.clone()),
            Self::Spilled { head, spill, tail } => crate::cluster::CopyBody::Pieces {
                head: head.clone(),
                pieces: spill.reader(),
                tail: tail.clone(),
            },
        }
    }
}

/// Keeps a message out of delivery while its commit runs (see
/// `Queue::start`); it is let go when dropped, also when the commit future
/// itself is dropped, unless [`Committing::keep`] handed that to `forget`.
struct Committing<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<MessageId>>,
    id: MessageId,
    armed: bool,
}

impl<'a> Committing<'a> {
    fn new(set: &'a std::sync::Mutex<std::collections::HashSet<MessageId>>, id: MessageId) -> Self {
        lock(set).insert(id);
        Self { set, id, armed: true }
    }

    /// Leaves the id in the set: `forget` takes it out once the message is
    /// removed.
    fn keep(&mut self) {
        self.armed = false;
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.set).remove(&self.id);
        }
    }
}

/// Why a message was not committed. Carries the message id for the logs.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The spool refused or failed the write.
    #[error("message {id} not stored: {source}")]
    Spool {
        /// The id the message would have had.
        id: MessageId,
        /// The spool's error; its class decides the reply.
        #[source]
        source: storage::Error,
    },
    /// The cluster could not make the copies `min_copies` needs.
    #[error("message {id} not replicated: {source}")]
    Replication {
        /// The id the message would have had.
        id: MessageId,
        /// Why.
        #[source]
        source: proto::cluster::Unavailable,
    },
    /// The spool did not confirm within the accept deadline.
    #[error("message {id} not confirmed by the spool within {after:?}")]
    Timeout {
        /// The id the message would have had.
        id: MessageId,
        /// The deadline that passed.
        after: Duration,
    },
}

impl CommitError {
    /// The reply to give instead of `250`: the spool error's class
    /// ([`storage::Error::reply_code`]; a full disk is `452 4.3.1`, a closed
    /// spool `421 4.3.2`), `451 4.3.0` for a timeout.
    pub fn reply(&self) -> Reply {
        match self {
            Self::Spool { source, .. } => spool_reply(source),
            Self::Replication { source, .. } => source.reply(),
            Self::Timeout { .. } => Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "spool did not confirm in time, try again later",
            ),
        }
    }
}

impl CommitError {
    /// The error as the spool's own kind, for callers inside the queue whose
    /// errors are spool errors (a timeout is [`storage::Error::DeadlineExceeded`]).
    pub fn into_spool_error(self) -> storage::Error {
        match self {
            Self::Spool { source, .. } => source,
            Self::Timeout { after, .. } => storage::Error::DeadlineExceeded { waited: after },
            Self::Replication { .. } => storage::Error::Unhealthy {
                reason: "replication unavailable".into(),
            },
        }
    }
}

/// The SMTP reply for a spool error, from its class.
pub fn spool_reply(e: &storage::Error) -> Reply {
    let (code, enhanced) = e.reply_code();
    let mut parts = enhanced.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
    let class = u8::try_from(code / 100).unwrap_or(4);
    let _ = parts.next();
    let enhanced = EnhancedCode::new(class, parts.next().unwrap_or(3), parts.next().unwrap_or(0));
    let text = match e {
        storage::Error::NoSpace { .. } => "insufficient system storage",
        storage::Error::Closed => "service shutting down, try again later",
        storage::Error::DeadlineExceeded { .. } => "spool did not confirm in time, try again later",
        _ => "local error in processing, try again later",
    };
    Reply::new(code, enhanced, text)
}

impl Queue {
    /// A new message id, to build a message with before [`Queue::commit`].
    pub fn next_id(&self) -> MessageId {
        self.spool.next_id()
    }

    /// A new message whose body goes to the spool in pieces while it
    /// arrives; commit it as [`Body::Spilled`] (its id is the message's).
    pub fn spill(&self) -> storage::Spill {
        self.spool.spill(self.spool.next_id())
    }

    /// Makes `message` durable and hands it to delivery; see the module doc
    /// for the contract. `deadline` bounds the wait for the spool.
    ///
    /// # Errors
    /// [`CommitError`]: nothing may be acknowledged.
    pub async fn commit(&self, message: Prepared, deadline: Duration) -> Result<MessageId, CommitError> {
        let Prepared {
            id,
            envelope,
            body,
            counters,
            event,
        } = message;
        let received_ms = envelope.received_at_ms;
        // A large message's copies take the time its bytes need.
        let deadline = match &self.cluster {
            Some(c) if c.replicates() => deadline + c.copy_allowance(body.len()),
            _ => deadline,
        };
        // Copies on the peers and the local write run in parallel; 250 needs both.
        let sent = std::time::Instant::now();
        let replication = match &self.cluster {
            Some(c) if c.replicates() => {
                let bytes = envelope
                    .to_wire_bytes()
                    .map_err(|source| CommitError::Spool { id, source })?;
                match c.place(id, bytes, body.copy_body(), body.len()).await {
                    Ok(r) => Some(r),
                    Err(source) => return Err(CommitError::Replication { id, source }),
                }
            }
            _ => None,
        };
        let mut guard = Committing::new(&self.committing, id);
        let local = match (&replication, body) {
            (Some(r), Body::Whole(body)) => self.spool.accept_placed(id, envelope, body, r.placement.clone()),
            (None, Body::Whole(body)) => self.spool.accept_as(id, envelope, body),
            (Some(r), Body::Spilled { head, spill, tail }) => {
                self.spool
                    .accept_spilled_placed(envelope, head, spill, tail, r.placement.clone())
            }
            (None, Body::Spilled { head, spill, tail }) => self.spool.accept_spilled(envelope, head, spill, tail),
        };
        // Joined, not one after the other: the histogram sees the copies' own
        // time; each side's end is noted for what replication added.
        let replicates = replication.is_some();
        let local = async {
            let written = local.await;
            (written, std::time::Instant::now())
        };
        let copies = async {
            let outcome = match replication {
                Some(r) => {
                    let outcome = r.outcome().await;
                    if outcome.is_ok() {
                        self.metrics.replicated(sent.elapsed());
                    }
                    outcome
                }
                None => Ok(()),
            };
            (outcome, std::time::Instant::now())
        };
        let both = async { tokio::join!(local, copies) };
        match tokio::time::timeout(deadline, both).await {
            Ok(((Ok(_), written_at), (Ok(()), acked_at))) => {
                drop(guard);
                if replicates {
                    let added = acked_at.saturating_duration_since(written_at);
                    self.metrics.replication_added(added);
                    if let Some(c) = &self.cluster {
                        c.replication_added(added);
                    }
                }
            }
            Ok(((Ok(_), _), (Err(source), _))) => {
                // Not acknowledged: the local copy goes (the protocol released the shadows).
                guard.keep();
                self.forget(id);
                return Err(CommitError::Replication { id, source });
            }
            Ok(((Err(source), _), (copies, _))) => {
                drop(guard);
                if copies.is_ok() {
                    self.release_copies(id);
                }
                return Err(CommitError::Spool { id, source });
            }
            Err(_) => {
                guard.keep();
                self.forget(id);
                self.release_copies(id);
                return Err(CommitError::Timeout { id, after: deadline });
            }
        }
        self.submit(id);
        if !counters.is_empty() {
            indicators::add(&self.spool, &indicators::month_of(received_ms), &counters);
        }
        if let Some(event) = event {
            self.metrics.trace_event(event.kind);
            if let Err(e) = self.spool.record_event(id, &event) {
                warn!(%id, error = %e, "trace event not recorded");
            }
        }
        Ok(id)
    }

    /// Whether the spool can take new mail now; the reply to give at MAIL
    /// FROM when it cannot (a full disk answers `452 4.3.1` before the client
    /// sends a body).
    pub fn health(&self) -> Result<(), Reply> {
        self.spool.health().map_err(|e| spool_reply(&e))?;
        self.spool.room().map_err(|e| spool_reply(&e))?;
        match &self.cluster {
            Some(c) if c.replicates() && !c.can_accept() => Err(Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "Replication unavailable, try again later",
            )),
            _ => Ok(()),
        }
    }

    /// Removes a message that was not acknowledged, without waiting: after a
    /// timeout the writer may be stuck behind a stalled disk, and the client
    /// must get its 451 now. The removal is queued behind the write it undoes.
    /// It stays out of delivery until the removal is done.
    fn forget(&self, id: MessageId) {
        let removal = self.spool.remove(id, storage::Durability::Buffered);
        let committing = self.committing.clone();
        tokio::spawn(async move {
            let _ = removal.await;
            lock(&committing).remove(&id);
        });
    }

    /// The message left this node (final, or not accepted after all): its
    /// copies on the peers are released.
    pub(super) fn release_copies(&self, id: MessageId) {
        if let Some(c) = &self.cluster {
            c.finished(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_follow_the_spool_error_class() {
        let full = storage::Error::NoSpace {
            path: "/spool".into(),
            detail: "No space left on device".into(),
        };
        assert_eq!(spool_reply(&full).to_string(), "452 4.3.1 insufficient system storage");
        let closed = spool_reply(&storage::Error::Closed);
        assert_eq!((closed.code, closed.enhanced), (421, Some(EnhancedCode::new(4, 3, 2))));
        let sick = spool_reply(&storage::Error::Unhealthy { reason: "io".into() });
        assert_eq!((sick.code, sick.enhanced), (451, Some(EnhancedCode::new(4, 3, 0))));
        let timeout = CommitError::Timeout {
            id: MessageId::from_slice(&[0; 16]).expect("16 bytes"),
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.reply().code, 451);
    }
}
