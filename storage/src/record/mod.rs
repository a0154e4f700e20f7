//! What is stored per message: the [`Envelope`] (rkyv, validated on read) and its
//! encoding in the `msg` column family.
//!
//! Stored value = `format version (1 byte) || rkyv bytes`. The rkyv bytes are copied
//! into an aligned buffer and checked with bytecheck before any field is read, so a
//! damaged record is an [`Error::Corrupt`], never a panic or undefined behaviour.
//!
//! # Versions
//! A versioned record, not a migration on open: every read takes format 1 and
//! format 2, every write is format 2.
//! - **2** (current): `orcpt` is a typed [`Orcpt`], `last_reply` a typed
//!   [`StoredReply`] (code, enhanced code, text).
//! - **1**: both were strings (`"rfc822;a@b"`, `"451 4.7.1 later"`), parsed once
//!   when read (`v1.rs`). A format-1 record becomes format 2 the next time the
//!   relay updates it (every delivery attempt does), so an old spool needs no
//!   conversion step and read-only admin commands work on it as they are.
//!
//! The cluster's wire keeps format 1 ([`Envelope::to_wire_bytes`]) until the
//! cluster handshake carries a version: a node of the previous release rejects
//! format 2, and during a rolling upgrade it still receives copies.

mod codec;
mod v1;

pub(crate) use codec::{access_envelope, decode_archived, decode_envelope, encode_envelope};

/// First byte of every `msg` (and `shadow`) value written now.
pub(crate) const FORMAT_VERSION: u8 = 2;

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
    /// DSN `ORCPT=`, kept as the client gave it (RFC 3461 §4.2).
    pub orcpt: Option<Orcpt>,
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
    /// The last reply from downstream (or the relay's own reason when it failed the
    /// recipient itself), for DSNs and `queue show`.
    pub last_reply: Option<StoredReply>,
}

/// DSN `ORCPT=addr-type;address` (RFC 3461 §4.2), the address xtext-decoded.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Orcpt {
    /// `rfc822`, `utf-8`, … as given.
    pub addr_type: String,
    /// The original recipient.
    pub address: String,
}

/// An enhanced status code `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Enhanced {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject (0 to 999).
    pub subject: u16,
    /// The detail (0 to 999).
    pub detail: u16,
}

/// An SMTP reply as stored: code, enhanced code, and the text of its lines joined
/// by spaces. It displays as one line, `451 4.7.1 try later`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredReply {
    /// The three-digit code; 0 only for a format-1 text that was not a reply.
    pub code: u16,
    /// The enhanced status code, when the reply had one.
    pub enhanced: Option<Enhanced>,
    /// The text after the codes.
    pub text: String,
}

impl std::fmt::Display for Enhanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl std::fmt::Display for StoredReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code != 0 {
            write!(f, "{:03} ", self.code)?;
        }
        if let Some(e) = self.enhanced {
            write!(f, "{e} ")?;
        }
        f.write_str(&self.text)
    }
}

impl std::fmt::Display for Orcpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{};{}", self.addr_type, self.address)
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use rkyv::util::AlignedVec;

    use super::*;
    use crate::error::Error;

    pub(crate) fn sample(n_rcpt: usize) -> Envelope {
        Envelope {
            sender: "medecin@hopital.mssante.fr".into(),
            recipients: (0..n_rcpt)
                .map(|i| Recipient {
                    address: format!("dest{i}@clinique.mssante.fr"),
                    orcpt: Some(Orcpt {
                        addr_type: "rfc822".into(),
                        address: format!("dest{i}@clinique.mssante.fr"),
                    }),
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
    fn format_1_records_read_as_format_2() {
        let mut env = sample(2);
        env.recipients[1].last_reply = Some(StoredReply {
            code: 451,
            enhanced: Some(Enhanced {
                class: 4,
                subject: 7,
                detail: 1,
            }),
            text: "greylisted".into(),
        });
        env.recipients[1].status = RecipientStatus::Deferred;
        let old = codec::encode_v1(&env).unwrap();
        assert_eq!(old[0], 1);
        assert_ne!(old, encode_envelope(&env).unwrap());
        assert_eq!(decode_envelope(&old, "msg", b"k").unwrap(), env);
        let mut scratch = AlignedVec::new();
        let stored = access_envelope(&old, &mut scratch, "msg", b"k").unwrap();
        assert!(matches!(stored, codec::Stored::Converted(_)));
        assert_eq!(stored.due_ms(), env.due_ms());
        // The wire carries format 1; a peer of this release reads it back whole.
        let wire = env.to_wire_bytes().unwrap();
        assert_eq!(wire, old);
        assert_eq!(Envelope::from_bytes(&wire).unwrap(), env);
    }

    /// A format-1 record written by the previous release's code (its
    /// `encode_envelope`), kept as bytes: this release reads it, and writes the
    /// same bytes for a peer of that release.
    #[test]
    fn a_record_written_by_the_previous_release_reads_typed() {
        let hex = [
            "016d65646563696e40686f706974616c2e6d7373616e74652e66726140636c696e697175652e6d7373616e74",
            "652e66727266633832323b4140436c696e697175652e6d7373616e74652e6672636c696e697175652e6d7373",
            "616e74652e667234353120342e372e3120677265796c69737465642c20747279206c61746572624063616269",
            "6e65742e6d7373616e74652e6672636162696e65742e6d7373616e74652e6672353530206e6f207375636820",
            "7573657200000000009500000062ffffff010000009c0000006bffffff06000000930000007bffffff010000",
            "00030000007b68e5cf8b010000010000009f00000072ffffff000000009400000085ffffff00000000000000",
            "0000000000000000009200000081ffffff03000000010000000500000000000000010000009000000077ffff",
            "ff00000000434e3d6470692e686f706974616c3132372e302e302e313a34303030306470692e686f70697461",
            "6c2e6672544c5376312e3320544c5331335f4145535f3235365f47434d5f53484133383400000000009a0000",
            "0078feffff28ffffff020000000101000001000000454e5631ffffffff010000008e0000008cffffff8f0000",
            "0092ffffff8e00000099ffffff01000000a00000009bffffff1864e5cf8b0100000028000000000000010100",
            "0000000000",
        ]
        .concat();
        let old: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let env = decode_envelope(&old, "msg", b"k").unwrap();
        let r = &env.recipients[0];
        assert_eq!(
            r.orcpt,
            Some(Orcpt {
                addr_type: "rfc822".into(),
                address: "A@Clinique.mssante.fr".into(),
            })
        );
        assert_eq!(
            r.last_reply,
            Some(StoredReply {
                code: 451,
                enhanced: Some(Enhanced {
                    class: 4,
                    subject: 7,
                    detail: 1,
                }),
                text: "greylisted, try later".into(),
            })
        );
        assert_eq!(
            (r.status, r.attempts, r.next_attempt_ms),
            (RecipientStatus::Deferred, 3, 1_700_000_000_123)
        );
        let r = &env.recipients[1];
        assert_eq!(r.orcpt, None);
        let reply = r.last_reply.as_ref().unwrap();
        assert_eq!(
            (reply.code, reply.enhanced, reply.text.as_str()),
            (550, None, "no such user")
        );
        assert_eq!(r.status, RecipientStatus::Failed);
        assert_eq!(env.tls.as_deref(), Some("TLSv1.3 TLS13_AES_256_GCM_SHA384"));
        assert_eq!((env.body_size, env.smtputf8), (10_240, true));
        assert_eq!(
            env.to_wire_bytes().unwrap(),
            old,
            "a peer of that release reads it back"
        );
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
