//! Rough DATA decode/encode throughput without criterion (and without building
//! RocksDB): `cargo run --release -p estafette-proto --example data_throughput`.
//! The criterion figures come from `cargo bench -p estafette-bench --bench proto`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use proto::data::{encode_data, DataDecoder, DataLimits, DataStatus};

/// A realistic body of about `size` octets: headers, then base64-like lines of 76
/// characters, with a stuffed-dot line now and then.
fn body(size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 100);
    b.extend_from_slice(
        b"Received: from mx.example ([192.0.2.1]) by relay.example with ESMTPS id 1\r\n\
          From: Dr A <a@hopital.mssante.fr>\r\nTo: <b@cabinet.mssante.fr>\r\n\
          Subject: compte rendu\r\nMessage-ID: <x@hopital.mssante.fr>\r\n\
          MIME-Version: 1.0\r\nContent-Type: application/zip\r\n\
          Content-Transfer-Encoding: base64\r\n\r\n",
    );
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut n = 7u32;
    let mut line = 0;
    while b.len() < size {
        for i in 0..76 {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let c = ALPHABET[(n >> 16) as usize % 64];
            b.push(if i == 0 && line % 97 == 0 { b'.' } else { c });
        }
        b.extend_from_slice(b"\r\n");
        line += 1;
    }
    b
}

fn measure(name: &str, bytes: usize, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    let mut iters = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        f();
        iters += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let gbps = bytes as f64 * f64::from(iters) / secs / 1e9;
    println!("{name:<24} {gbps:6.2} GB/s ({iters} iterations)");
}

fn main() {
    for (label, size) in [("10 KB", 10_000), ("10 MB", 10_000_000)] {
        let body = body(size);
        let mut wire = Vec::new();
        encode_data(&body, &mut wire);
        let limits = DataLimits {
            max_message_size: 2 * size,
            ..DataLimits::default()
        };
        let mut out = Vec::with_capacity(body.len());
        measure(&format!("decode {label}"), wire.len(), || {
            out.clear();
            let mut d = DataDecoder::new(limits);
            let (n, status) = d.decode(black_box(&wire), &mut out);
            assert_eq!((n, status), (wire.len(), DataStatus::Done(Ok(body.len() as u64))));
        });
        assert_eq!(out, body);
        // As the relay feeds it: 16 KiB socket reads.
        measure(&format!("decode {label}, 16K reads"), wire.len(), || {
            out.clear();
            let mut d = DataDecoder::new(limits);
            let mut status = DataStatus::NeedMore;
            for chunk in black_box(&wire).chunks(16 * 1024) {
                status = d.decode(chunk, &mut out).1;
            }
            assert_eq!(status, DataStatus::Done(Ok(body.len() as u64)));
        });
        let mut enc = Vec::with_capacity(wire.len());
        measure(&format!("encode_data {label}"), body.len(), || {
            enc.clear();
            encode_data(black_box(&body), &mut enc);
        });
        assert_eq!(enc, wire);
    }
}
