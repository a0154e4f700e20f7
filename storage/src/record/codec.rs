//! The bytes of a stored envelope: `format version (1 byte) || rkyv bytes`, written in
//! the current format, read in either (see the module doc of `record`).

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::v1::{ArchivedEnvelopeV1, EnvelopeV1};
use super::{ArchivedEnvelope, Envelope, RecipientStatus, FORMAT_VERSION};
use crate::error::Error;

/// The format-1 version byte.
const V1: u8 = 1;

/// A stored envelope read for its schedule: the current format in place (no copy of
/// its strings), or a format-1 record converted.
pub(crate) enum Stored<'a> {
    /// Format 2, validated in place.
    Current(&'a ArchivedEnvelope),
    /// Format 1, converted.
    Converted(Envelope),
}

/// What the recovery scan needs of one recipient.
pub(crate) struct Pending<'a> {
    pub next_hop: &'a str,
    pub status: RecipientStatus,
    pub attempts: u32,
    pub next_attempt_ms: u64,
}

impl Stored<'_> {
    /// Same as [`Envelope::due_ms`].
    pub(crate) fn due_ms(&self) -> Option<u64> {
        let mut due: Option<u64> = None;
        self.for_each_recipient(|_, r| {
            if r.status.is_pending() {
                due = Some(due.map_or(r.next_attempt_ms, |d| d.min(r.next_attempt_ms)));
            }
        });
        due
    }

    /// Calls `f` with each recipient's index and schedule, in order.
    pub(crate) fn for_each_recipient(&self, mut f: impl FnMut(usize, Pending<'_>)) {
        match self {
            Self::Current(env) => {
                for (i, r) in env.recipients.iter().enumerate() {
                    f(
                        i,
                        Pending {
                            next_hop: r.next_hop.as_str(),
                            status: r.status.to_native(),
                            attempts: r.attempts.to_native(),
                            next_attempt_ms: r.next_attempt_ms.to_native(),
                        },
                    );
                }
            }
            Self::Converted(env) => {
                for (i, r) in env.recipients.iter().enumerate() {
                    f(
                        i,
                        Pending {
                            next_hop: &r.next_hop,
                            status: r.status,
                            attempts: r.attempts,
                            next_attempt_ms: r.next_attempt_ms,
                        },
                    );
                }
            }
        }
    }
}

/// Serialises an envelope into a stored value in the current format.
pub(crate) fn encode_envelope(env: &Envelope) -> Result<Vec<u8>, Error> {
    versioned(FORMAT_VERSION, rkyv::to_bytes::<rancor::Error>(env))
}

/// Serialises an envelope in format 1 (what a node of the previous release reads).
pub(crate) fn encode_v1(env: &Envelope) -> Result<Vec<u8>, Error> {
    versioned(V1, rkyv::to_bytes::<rancor::Error>(&EnvelopeV1::from(env)))
}

fn versioned(version: u8, bytes: Result<AlignedVec, rancor::Error>) -> Result<Vec<u8>, Error> {
    let bytes = bytes.map_err(|e| Error::InvalidArgument(format!("envelope does not serialise: {e}")))?;
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(version);
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// Reads stored envelope bytes, either format, validated. `cf` and `key` only name
/// the record in the error.
pub(crate) fn access_envelope<'a>(
    value: &[u8],
    scratch: &'a mut AlignedVec,
    cf: &'static str,
    key: &[u8],
) -> Result<Stored<'a>, Error> {
    let Some((&version, body)) = value.split_first() else {
        return Err(Error::corrupt(cf, key, "empty record"));
    };
    access_versioned(version, body, scratch, cf, key)
}

/// [`access_envelope`] for a version byte stored apart from the rkyv bytes (the
/// shadow record's layout).
fn access_versioned<'a>(
    version: u8,
    rkyv_bytes: &[u8],
    scratch: &'a mut AlignedVec,
    cf: &'static str,
    key: &[u8],
) -> Result<Stored<'a>, Error> {
    // Validation reads the bytes in place: they must be aligned, hence the copy
    // into `scratch` (reused across calls).
    scratch.clear();
    scratch.extend_from_slice(rkyv_bytes);
    let invalid = |e: rancor::Error| Error::corrupt(cf, key, format!("envelope fails validation: {e}"));
    match version {
        FORMAT_VERSION => rkyv::access::<ArchivedEnvelope, rancor::Error>(scratch)
            .map(Stored::Current)
            .map_err(invalid),
        V1 => {
            let old = rkyv::access::<ArchivedEnvelopeV1, rancor::Error>(scratch).map_err(invalid)?;
            rkyv::deserialize::<EnvelopeV1, rancor::Error>(old)
                .map(|e| Stored::Converted(e.into()))
                .map_err(|e| Error::corrupt(cf, key, format!("envelope does not deserialise: {e}")))
        }
        v => Err(Error::corrupt(cf, key, format!("unknown record format version {v}"))),
    }
}

/// Reads and fully deserialises an envelope of format `version` from its rkyv bytes.
pub(crate) fn decode_archived(
    version: u8,
    rkyv_bytes: &[u8],
    scratch: &mut AlignedVec,
    cf: &'static str,
    key: &[u8],
) -> Result<Envelope, Error> {
    match access_versioned(version, rkyv_bytes, scratch, cf, key)? {
        Stored::Current(archived) => rkyv::deserialize::<Envelope, rancor::Error>(archived)
            .map_err(|e| Error::corrupt(cf, key, format!("envelope does not deserialise: {e}"))),
        Stored::Converted(env) => Ok(env),
    }
}

/// Reads and fully deserialises stored envelope bytes, either format.
pub(crate) fn decode_envelope(value: &[u8], cf: &'static str, key: &[u8]) -> Result<Envelope, Error> {
    let Some((&version, body)) = value.split_first() else {
        return Err(Error::corrupt(cf, key, "empty record"));
    };
    decode_archived(version, body, &mut AlignedVec::new(), cf, key)
}

impl Envelope {
    /// The envelope as a copy sent to a peer carries it: a versioned record in
    /// format 1, which nodes of this release and of the previous one read (the
    /// cluster handshake does not negotiate a version yet).
    ///
    /// # Errors
    /// Serialisation failed (never for a well-formed envelope).
    pub fn to_wire_bytes(&self) -> Result<Vec<u8>, Error> {
        encode_v1(self)
    }

    /// An envelope from a versioned record of either format, validated; a
    /// peer's bytes are untrusted: a bad record is [`Error::Corrupt`].
    ///
    /// # Errors
    /// The bytes are not a valid envelope record.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode_envelope(bytes, "wire", b"")
    }
}
