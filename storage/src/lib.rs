//! Estafette's spool: the durable message queue of one node, on RocksDB.
//!
//! A message is acknowledged (`250 2.0.0 queued as <id>`) only after [`Spool::accept`]
//! resolved `Ok`: its envelope and body are then in a write-ahead log that was fsynced.
//! Many concurrent accepts share one fsync (group commit), which is what lets a disk doing
//! ~1,000 fsyncs/s accept tens of thousands of messages per second. State changes after
//! acceptance may be buffered: losing them only causes a retry. On start the relay
//! rebuilds its queues with [`Spool::recover`].
//!
//! # Layout
//! - `spool.rs`: [`Spool`], [`SpoolDropGuard`]: open, accept, update, remove, hold,
//!   release, reads, health, repair.
//! - `writer.rs`: the group-commit writer thread and [`WriteFuture`].
//! - `recovery.rs`: the start-up scan ([`Entry`], [`QueuedMessage`]).
//! - `record/`: [`Envelope`], [`Recipient`] and their rkyv encoding, validated on read,
//!   in the current format and the previous one (`record/v1.rs`).
//! - `id.rs`: [`MessageId`], sortable, printable.
//! - `chunks.rs`: bodies written and read in pieces ([`Spill`], [`BodyReader`]): large
//!   messages never whole in memory.
//! - `shadow.rs`: copies held for peers ([`Shadow`]).
//! - `events.rs`: trace events ([`Event`]) and their retention sweep.
//! - `stats.rs`: monthly counters.
//! - `keys.rs`, `db.rs`: column families, key layouts, RocksDB options.
//! - `config.rs`: [`SpoolConfig`], [`Durability`]; `error.rs`: [`Error`].
//!
//! # Column families (keys big-endian: byte order = time order)
//! `msg` id → envelope · `body` id → bytes, or id‖n → piece n (blob files above
//! [`SpoolConfig::blob_threshold`]) · `chunks` id → pieces record · `sched` due‖id → () · `shadow` origin‖id → envelope +
//! body · `event` id‖time‖n → event · `event_by_time` time‖id‖n → () · `stats`
//! month‖name → u64.
//!
//! The crate knows nothing of sockets or async runtimes: writes return a plain
//! [`Future`](std::future::Future) woken by the writer thread.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chunks;
mod cluster;
mod config;
mod db;
mod error;
mod events;
mod id;
mod keys;
mod record;
mod recovery;
mod room;
mod shadow;
mod spool;
mod stats;
mod writer;

pub use chunks::{BodyLayout, BodyReader, Spill};
pub use cluster::ShadowKey;
pub use config::{Commit, CommitObserver, Durability, SpoolConfig};
pub use error::Error;
pub use events::{export_events, read_events, Event, EventKind};
pub use id::{now_ms, MessageId, ParseIdError, MESSAGE_ID_LEN};
pub use record::{BodyType, DsnRet, Enhanced, Envelope, Notify, Orcpt, Recipient, RecipientStatus, StoredReply};
pub use recovery::{Entry, PendingRecipient, QueuedMessage, Recovery};
pub use shadow::{Shadow, Shadows};
pub use spool::{Spool, SpoolDropGuard};
pub use stats::read_stats;
pub use writer::WriteFuture;
