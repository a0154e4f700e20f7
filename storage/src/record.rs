//! What is stored per message: the [`Envelope`] (rkyv, validated on read) and its
//! encoding in the `msg` column family.
//!
//! Stored value = `FORMAT_VERSION (1 byte) || rkyv bytes`. The version byte lets a later
//! release migrate records; the rkyv bytes are copied into an aligned buffer and checked
//! with bytecheck before any field is read, so a damaged record is an
//! [`Error::Corrupt`], never a panic or undefined behaviour.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::Error;

/// First byte of every `msg` (and `shadow`) value.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// The SMTP envelope of one accepted message, with per-recipient delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Envelope {
    /// MAIL FROM address without angle brackets; empty for the null reverse-path `<>`
    /// (bounces).
    pub sender: String,
    /// One entry per accepted RCPT TO, in order.
    pub recipients: Vec<Recipient>,
    /// DSN `RET=` parameter of MAIL FROM (RFC 3461); `None` when not given.
    pub dsn_ret: Option<DsnRet>,
    /// DSN `ENVID=` parameter of MAIL FROM (xtext decoded).
    pub envid: Option<String>,
    /// Who submitted it: the authenticated identity (client certificate subject or AUTH
    /// user), `None` for an anonymous peer.
    pub client_identity: Option<String>,
    /// The peer's `ip:port`.
    pub peer_addr: String,
    /// The EHLO/HELO name the peer gave.
    pub helo: String,
    /// TLS of the inbound session (`"TLSv1.3 TLS13_AES_256_GCM_SHA384"`), `None` if plain.
    pub tls: Option<String>,
    /// When the final DATA/BDAT LAST ended, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// Size of the stored body in bytes.
    pub body_size: u64,
    /// `BODY=` parameter of MAIL FROM.
    pub body_type: BodyType,
    /// `SMTPUTF8` was given on MAIL FROM.
    pub smtputf8: bool,
}

/// DSN `RET=` (RFC 3461 §4.3): what a failure DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DsnRet {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: headers only.
    Headers,
}

/// `BODY=` of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum BodyType {
    /// No parameter, or `BODY=7BIT`.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (BDAT only).
    BinaryMime,
}

/// One recipient and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Recipient {
    /// RCPT TO address without angle brackets.
    pub address: String,
    /// DSN `ORCPT=` (`"rfc822;user@example.org"`).
    pub orcpt: Option<String>,
    /// DSN `NOTIFY=` flags.
    pub notify: Notify,
    /// Route key: the queue this recipient waits in (destination domain or route name).
    pub next_hop: String,
    /// Where delivery stands.
    pub status: RecipientStatus,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, ms since the Unix epoch (meaningful for `Queued` and
    /// `Deferred`).
    pub next_attempt_ms: u64,
    /// The last reply from downstream (`"451 4.7.1 try later"`), for DSNs and `queue show`.
    pub last_reply: Option<String>,
}

/// DSN `NOTIFY=` flags as a bitset (RFC 3461 §4.1). `Notify::default()` is "not given"
/// (the relay then behaves as `FAILURE,DELAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Notify(pub u8);

impl Notify {
    /// `NOTIFY=SUCCESS`.
    pub const SUCCESS: u8 = 1;
    /// `NOTIFY=FAILURE`.
    pub const FAILURE: u8 = 2;
    /// `NOTIFY=DELAY`.
    pub const DELAY: u8 = 4;
    /// `NOTIFY=NEVER` (exclusive of the others).
    pub const NEVER: u8 = 8;
    /// Not a NOTIFY keyword: set by the relay once a delay warning (an
    /// `Action: delayed` DSN) went out for this recipient, so that it is sent
    /// once. Kept in the same byte so that the record format does not change;
    /// [`Notify::keywords`] masks it off.
    pub const DELAY_REPORTED: u8 = 0x10;

    /// The RFC 3461 keywords only (`DELAY_REPORTED` masked off).
    pub fn keywords(self) -> Self {
        Self(self.0 & 0x0f)
    }

    /// True if every bit of `flag` is set.
    pub fn contains(self, flag: u8) -> bool {
        self.0 & flag == flag && flag != 0
    }
}

/// Delivery state of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum RecipientStatus {
    /// Waiting in its next hop's ready queue (due at `next_attempt_ms`, usually now).
    #[default]
    Queued,
    /// A temporary failure; retried at `next_attempt_ms`.
    Deferred,
    /// Final: accepted downstream.
    Delivered,
    /// Final: permanently failed (a DSN is owed unless NOTIFY says otherwise).
    Failed,
    /// Parked by an operator (`estafette queue hold`); not delivered until released.
    Held,
}

impl RecipientStatus {
    /// `Delivered` or `Failed`: nothing more will happen for this recipient.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }

    /// `Queued` or `Deferred`: the relay will try it at `next_attempt_ms`.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::Deferred)
    }
}

impl ArchivedRecipientStatus {
    /// The native status.
    pub(crate) fn to_native(&self) -> RecipientStatus {
        match self {
            Self::Queued => RecipientStatus::Queued,
            Self::Deferred => RecipientStatus::Deferred,
            Self::Delivered => RecipientStatus::Delivered,
            Self::Failed => RecipientStatus::Failed,
            Self::Held => RecipientStatus::Held,
        }
    }
}

impl Envelope {
    /// When the message is next due: the earliest `next_attempt_ms` among `Queued` and
    /// `Deferred` recipients; `None` if none is pending (all final or held). This is the
    /// time under which the message sits in the `sched` column family.
    pub fn due_ms(&self) -> Option<u64> {
        self.recipients
            .iter()
            .filter(|r| r.status.is_pending())
            .map(|r| r.next_attempt_ms)
            .min()
    }

    /// True when every recipient is `Delivered` or `Failed`.
    pub fn is_complete(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_final())
    }
}

impl ArchivedEnvelope {
    /// Same as [`Envelope::due_ms`], on the archived form.
    pub(crate) fn due_ms(&self) -> Option<u64> {
        self.recipients
            .iter()
            .filter(|r| r.status.to_native().is_pending())
            .map(|r| r.next_attempt_ms.to_native())
            .min()
    }
}

/// Serialises an envelope into a stored value (`FORMAT_VERSION || rkyv`).
pub(crate) fn encode_envelope(env: &Envelope) -> Result<Vec<u8>, Error> {
    let bytes = rkyv::to_bytes::<rancor::Error>(env)
        .map_err(|e| Error::InvalidArgument(format!("envelope does not serialise: {e}")))?;
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// Reads stored envelope bytes: checks the version byte, then [`access_archived`].
///
/// `cf` and `key` only name the record in the error.
pub(crate) fn access_envelope<'a>(
    value: &[u8],
    scratch: &'a mut AlignedVec,
    cf: &'static str,
    key: &[u8],
) -> Result<&'a ArchivedEnvelope, Error> {
    let Some((&version, body)) = value.split_first() else {
        return Err(Error::corrupt(cf, key, "empty record"));
    };
    if version != FORMAT_VERSION {
        return Err(Error::corrupt(
            cf,
            key,
            format!("unknown record format version {version}"),
        ));
    }
    access_archived(body, scratch, cf, key)
}

/// Copies rkyv bytes into `scratch` (aligned; reused across calls to avoid an allocation
/// per record) and validates them as an envelope.
pub(crate) fn access_archived<'a>(
    rkyv_bytes: &[u8],
    scratch: &'a mut AlignedVec,
    cf: &'static str,
    key: &[u8],
) -> Result<&'a ArchivedEnvelope, Error> {
    scratch.clear();
    scratch.extend_from_slice(rkyv_bytes);
    rkyv::access::<ArchivedEnvelope, rancor::Error>(scratch)
        .map_err(|e| Error::corrupt(cf, key, format!("envelope fails validation: {e}")))
}

/// Deserialises a validated archived envelope.
pub(crate) fn deserialize_envelope(
    archived: &ArchivedEnvelope,
    cf: &'static str,
    key: &[u8],
) -> Result<Envelope, Error> {
    rkyv::deserialize::<Envelope, rancor::Error>(archived)
        .map_err(|e| Error::corrupt(cf, key, format!("envelope does not deserialise: {e}")))
}

/// Reads and fully deserialises stored envelope bytes.
pub(crate) fn decode_envelope(value: &[u8], cf: &'static str, key: &[u8]) -> Result<Envelope, Error> {
    let mut scratch = AlignedVec::new();
    let archived = access_envelope(value, &mut scratch, cf, key)?;
    deserialize_envelope(archived, cf, key)
}

impl Envelope {
    /// The envelope as the spool stores it (versioned rkyv record): what a
    /// replica carries on the wire.
    ///
    /// # Errors
    /// Serialisation failed (never for a well-formed envelope).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        encode_envelope(self)
    }

    /// An envelope from [`Envelope::to_bytes`], validated; a peer's bytes are
    /// untrusted: a bad record is [`Error::Corrupt`].
    ///
    /// # Errors
    /// The bytes are not a valid envelope record.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode_envelope(bytes, "wire", b"")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(n_rcpt: usize) -> Envelope {
        Envelope {
            sender: "medecin@hopital.mssante.fr".into(),
            recipients: (0..n_rcpt)
                .map(|i| Recipient {
                    address: format!("dest{i}@clinique.mssante.fr"),
                    orcpt: Some(format!("rfc822;dest{i}@clinique.mssante.fr")),
                    notify: Notify(Notify::FAILURE | Notify::DELAY),
                    next_hop: "clinique.mssante.fr".into(),
                    status: RecipientStatus::Queued,
                    attempts: 0,
                    next_attempt_ms: 1_000 + i as u64,
                    last_reply: None,
                })
                .collect(),
            dsn_ret: Some(DsnRet::Headers),
            envid: Some("ENV1".into()),
            client_identity: Some("CN=dpi.hopital".into()),
            peer_addr: "127.0.0.1:40000".into(),
            helo: "dpi.hopital.fr".into(),
            tls: Some("TLSv1.3".into()),
            received_at_ms: 999,
            body_size: 10,
            body_type: BodyType::EightBitMime,
            smtputf8: false,
        }
    }

    #[test]
    fn round_trip() {
        let env = sample(3);
        let bytes = encode_envelope(&env).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode_envelope(&bytes, "msg", b"k").unwrap(), env);
    }

    #[test]
    fn due_and_complete() {
        let mut env = sample(3);
        assert_eq!(env.due_ms(), Some(1_000));
        env.recipients[0].status = RecipientStatus::Delivered;
        env.recipients[1].status = RecipientStatus::Held;
        assert_eq!(env.due_ms(), Some(1_002));
        let bytes = encode_envelope(&env).unwrap();
        let mut scratch = AlignedVec::new();
        let a = access_envelope(&bytes, &mut scratch, "msg", b"k").unwrap();
        assert_eq!(a.due_ms(), Some(1_002));
        env.recipients[2].status = RecipientStatus::Failed;
        assert_eq!(env.due_ms(), None);
        assert!(!env.is_complete());
        env.recipients[1].status = RecipientStatus::Failed;
        assert!(env.is_complete());
    }

    #[test]
    fn damaged_records_are_typed_errors() {
        let bytes = encode_envelope(&sample(2)).unwrap();
        let key = crate::MessageId::from_parts(5, 1, 1);
        // Every truncation and every single-byte flip either decodes or is Corrupt:
        // never a panic.
        for cut in 0..bytes.len() {
            match decode_envelope(&bytes[..cut], "msg", key.as_bytes()) {
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            match decode_envelope(&b, "msg", key.as_bytes()) {
                Ok(_) => {}
                Err(Error::Corrupt { cf, key: k, .. }) => {
                    assert_eq!(cf, "msg");
                    assert_eq!(k, key.to_string());
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(matches!(decode_envelope(&[], "msg", b"k"), Err(Error::Corrupt { .. })));
        assert!(matches!(
            decode_envelope(&[9, 1, 2], "msg", b"k"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn notify_flags() {
        let n = Notify(Notify::SUCCESS | Notify::FAILURE);
        assert!(n.contains(Notify::SUCCESS));
        assert!(!n.contains(Notify::DELAY));
        assert!(!Notify::default().contains(0));
    }
}
