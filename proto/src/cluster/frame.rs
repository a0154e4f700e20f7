//! The replication wire format: versioned rkyv records in length-prefixed frames.
//!
//! On the wire a frame is `length (u32, big-endian) || version (u8) || rkyv bytes`,
//! where `length` counts the version byte and the record.
//!
//! # Versions
//! A version is a set of [`Frame`] variants; each frame is written with the lowest
//! version that has it ([`Frame::version`]). Version 2 added [`Frame::Seen`] at the
//! end of the enum, which leaves every version-1 frame's bytes as they were (a test
//! checks them against a capture of the version-1 build). The relay negotiates the
//! version per connection with ALPN (`estafette-repl/2`, then `/1`) and tells the
//! [`Node`](super::Node), which sends a frame only on a link whose version has it:
//! nodes of both builds work together during a rolling upgrade. [`encode`] builds one;
//! [`FrameDecoder`] reads them back out of any split of the byte stream and validates
//! every record (bytecheck) before it is deserialised: no input makes it panic, and a
//! bad frame is a typed [`FrameError`] after which the connection is closed.
//!
//! [`Frame::Replicate`] is the data plane: the driver streams it (envelope and body
//! chunks, read from the spool) and writes what it receives into the shadow column
//! family; the protocol core never sees bodies. Every other frame is a control frame
//! for [`Node::handle_frame`](super::Node::handle_frame).

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::ids::{MessageId, NodeId};
use super::placement::Placement;

/// The highest version this build writes and reads.
pub const FRAME_VERSION: u8 = 2;

/// Default largest frame accepted by a [`FrameDecoder`] (length field), in bytes:
/// 4 MiB, room for a 1 MiB body chunk and a large envelope, and for a reconcile page.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// One replication frame (DESIGN §5).
///
/// Variants carry named records (tuple variants: rkyv's derived resolver for struct
/// variants has undocumented public fields).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Frame {
    /// First frame each side sends on a new connection.
    Hello(Hello),
    /// Liveness, every `heartbeat_interval` on every connection.
    Heartbeat(Heartbeat),
    /// A message copy, origin to holder (data plane, handled by the driver).
    Replicate(Replicate),
    /// Holder to origin: the copy of this message is on stable storage.
    Ack(MessageId),
    /// Holder to origin: the copy could not be stored.
    Nack(Nack),
    /// These messages are final (or were never accepted): drop your copies.
    Release(Vec<MessageId>),
    /// The sender took these messages over and delivers them now.
    Takeover(Takeover),
    /// Status exchange about copies both sides may hold (lost releases, restarts).
    Reconcile(Reconcile),
    /// Drain: the sender hands these messages over; promote your copies at once.
    Handoff(Vec<MessageId>),
    /// Version 2. The peers the sender heard directly, and how long ago: a
    /// peer whose link to it is cut is alive all the same (see `seen.rs`).
    /// Sent with each heartbeat. Keep new variants last and no larger than
    /// these: the archived enum's size is part of every version-1 frame.
    Seen(Vec<Sighting>),
}

impl Frame {
    /// The version [`Frame::Seen`] appeared in.
    pub const SEEN_SINCE: u8 = 2;

    /// The lowest version that has this frame: its version byte on the wire.
    pub fn version(&self) -> u8 {
        match self {
            Self::Seen(_) => Self::SEEN_SINCE,
            _ => 1,
        }
    }
}

/// One peer in a [`Frame::Seen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Sighting {
    /// The peer the sender heard.
    pub node: NodeId,
    /// The volume it announced to the sender.
    pub volume: u64,
    /// Milliseconds since the sender last received a frame from it, by the
    /// sender's clock (an age, so that clock offsets do not matter).
    pub age_ms: u32,
}

/// [`Frame::Hello`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Hello {
    /// The sender (the driver checks it against the peer's certificate).
    pub node: NodeId,
    /// The sender's name (`estafette-3`), for logs and `cluster status`.
    pub name: String,
    /// The sender's epoch: incremented and synced at each start.
    pub epoch: u64,
    /// The sender's volume id: the epoch in which its spool was created.
    pub volume: u64,
}

/// [`Frame::Heartbeat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Heartbeat {
    /// The sender.
    pub node: NodeId,
    /// The sender's epoch.
    pub epoch: u64,
    /// The sender's volume id (repeated so that a lost Hello costs nothing).
    pub volume: u64,
    /// Messages the sender has queued for delivery.
    pub queue_depth: u64,
    /// The sender is draining: do not place new copies on it.
    pub draining: bool,
}

/// [`Frame::Nack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Nack {
    /// The message.
    pub id: MessageId,
    /// Why the holder did not store it.
    pub reason: NackReason,
}

/// [`Frame::Takeover`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Takeover {
    /// The node that accepted the messages.
    pub origin: NodeId,
    /// The messages the sender now delivers.
    pub ids: Vec<MessageId>,
}

/// One piece of a message copy. A copy is one or more `Replicate` frames with the same
/// `id`, `offset` counting body bytes sent before this chunk, the envelope in the first
/// frame (offset 0) only, and `last` set on the final one.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Replicate {
    /// The message.
    pub id: MessageId,
    /// Its placement, as the origin chose it (the holder stores it with the copy and
    /// reports it in [`LocalEvent::ShadowStored`](super::LocalEvent::ShadowStored)).
    pub placement: Placement,
    /// Body bytes before this chunk.
    pub offset: u64,
    /// The rkyv envelope as the origin stored it; empty after the first frame.
    pub envelope: Vec<u8>,
    /// Body bytes from `offset`.
    pub chunk: Vec<u8>,
    /// This is the final chunk.
    pub last: bool,
}

/// Why a holder refused a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum NackReason {
    /// The holder's disk is full.
    NoSpace,
    /// The holder's spool failed the write.
    Storage,
    /// The holder is draining.
    Draining,
    /// The copy was malformed (chunks out of order, placement without the holder).
    Invalid,
}

/// A reconcile query (`reply == false`) or its answer. Each item gives the sender's
/// own status for the id; an answer has one item per queried id.
///
/// It names the sender's epoch and volume itself: an `Absent` means "final" only from
/// the volume recorded in the placement, and the receiver must not judge that from a
/// Hello it may not have read yet.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Reconcile {
    /// The sender's epoch.
    pub epoch: u64,
    /// The sender's volume id.
    pub volume: u64,
    /// This answers a query.
    pub reply: bool,
    /// The ids and the sender's status for each.
    pub items: Vec<Item>,
}

/// One id in a [`Reconcile`] frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Item {
    /// The message.
    pub id: MessageId,
    /// The sender's status for it.
    pub status: CopyStatus,
}

/// What a node has of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum CopyStatus {
    /// It holds a copy and delivers it (origin in charge, or it took it over).
    Active,
    /// It holds a copy and does not deliver it (a shadow, or held for a taker).
    Standby,
    /// It holds no copy. From a member whose volume is the one recorded in the
    /// placement this means the message is final or was never accepted: copies are
    /// deleted only once the message is final.
    Absent,
}

/// A frame that cannot be read. After one, the decoder returns the same error on
/// every call: close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is over the decoder's limit.
    #[error("frame of {len} bytes over the {max}-byte limit")]
    TooLong {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A frame of length 0 (no version byte).
    #[error("empty frame")]
    Empty,
    /// A version byte this build does not know.
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    /// The record fails validation.
    #[error("invalid frame record")]
    Invalid,
}

/// Appends `frame` to `out`, ready to send.
///
/// # Panics
/// If the record is 4 GiB or more; the driver sends bodies in chunks far below that.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    let bytes = match rkyv::to_bytes::<rancor::Panic>(frame) {
        Ok(b) => b,
        Err(never) => match never {},
    };
    let len = u32::try_from(bytes.len() + 1).unwrap_or_else(|_| panic!("cluster frame of {} bytes", bytes.len()));
    out.reserve(5 + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(frame.version());
    out.extend_from_slice(&bytes);
}

/// `frame` as bytes ready to send (see [`encode_into`]).
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(frame, &mut out);
    out
}

/// Reads frames out of a byte stream split anywhere.
///
/// Feed bytes with [`push`](Self::push), then call [`next_frame`](Self::next_frame)
/// until it returns `Ok(None)` (incomplete: wait for more bytes). Memory is bounded by
/// the frame limit: a length over it is an error as soon as its 4 bytes arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max: usize,
    max_version: u8,
    failed: Option<FrameError>,
    scratch: AlignedVec,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames whose length field exceeds `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max,
            max_version: FRAME_VERSION,
            failed: None,
            scratch: AlignedVec::new(),
        }
    }

    /// Refuses frames of a version above `version` (what the connection
    /// negotiated) as [`FrameError::UnknownVersion`]; the default is
    /// [`FRAME_VERSION`].
    #[must_use]
    pub fn with_max_version(mut self, version: u8) -> Self {
        self.max_version = version.min(FRAME_VERSION);
        self
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame: `Ok(Some)`, `Ok(None)` if more bytes are needed, or the
    /// error that ends this stream (returned again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.parse() {
            Ok(f) => Ok(f),
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some((len, rest)) = avail.split_first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*len);
        let len_usize = usize::try_from(len).map_err(|_| FrameError::TooLong {
            len: len.into(),
            max: self.max,
        })?;
        if len_usize > self.max {
            return Err(FrameError::TooLong {
                len: len.into(),
                max: self.max,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        let Some((&version, record)) = rest.split_first() else {
            return Ok(None);
        };
        if version == 0 || version > self.max_version {
            return Err(FrameError::UnknownVersion(version));
        }
        let Some(record) = record.get(..len_usize - 1) else {
            return Ok(None);
        };
        let frame = decode_record(record, &mut self.scratch)?;
        if frame.version() > version {
            // A variant its version byte does not have.
            return Err(FrameError::Invalid);
        }
        self.start += 4 + len_usize;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(frame))
    }
}

/// Validates and deserialises one rkyv record (the bytes after the version byte).
fn decode_record(record: &[u8], scratch: &mut AlignedVec) -> Result<Frame, FrameError> {
    scratch.clear();
    scratch.extend_from_slice(record);
    rkyv::from_bytes::<Frame, rancor::Error>(scratch).map_err(|_| FrameError::Invalid)
}

/// Decodes every frame in `bytes` (a whole captured stream), for tests and fuzzing:
/// the frames, then the error that stopped the stream if any. Trailing incomplete
/// bytes are ignored.
pub fn decode_stream(bytes: &[u8], max: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut d = FrameDecoder::new(max);
    d.push(bytes);
    let mut frames = Vec::new();
    loop {
        match d.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests;
