//! Helpers shared by the storage integration tests.
#![allow(dead_code, unreachable_pub)]

use storage::{Envelope, MessageId, Notify, Recipient, RecipientStatus};

/// An envelope with one recipient per next hop in `hops`, all queued and due at `due`.
pub fn envelope(hops: &[&str], due: u64) -> Envelope {
    Envelope {
        sender: "medecin@hopital.mssante.fr".into(),
        recipients: hops
            .iter()
            .enumerate()
            .map(|(i, h)| Recipient {
                address: format!("r{i}@{h}"),
                orcpt: None,
                notify: Notify(Notify::FAILURE),
                next_hop: (*h).to_string(),
                status: RecipientStatus::Queued,
                attempts: 0,
                next_attempt_ms: due,
                last_reply: None,
            })
            .collect(),
        peer_addr: "127.0.0.1:2525".into(),
        helo: "client.example".into(),
        received_at_ms: due,
        ..Envelope::default()
    }
}

/// A deterministic body derived from `seed`, `len` bytes (xorshift stream).
pub fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The body a crash-test child stores for message number `n`: its length varies from
/// 1 KiB to 32 KiB, with an occasional 512 KiB one (above the blob threshold either way).
pub fn crash_body(n: u64) -> Vec<u8> {
    let len = if n.is_multiple_of(97) {
        512 << 10
    } else {
        1024 + (n as usize * 7919) % (31 << 10)
    };
    body(n.wrapping_mul(0x9E37_79B9_7F4A_7C15), len)
}

/// A cheap pseudo-random number from the clock (tests must not depend on its value).
pub fn clock_random() -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut x = n ^ 0x2545_F491_4F6C_DD1D;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

pub fn id_list(ids: &[MessageId]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}
