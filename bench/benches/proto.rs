//! proto micro-benchmarks, no sockets: `cargo bench -p estafette-bench --bench proto`.
//!
//! - `data/decode/{10KB,10MB}`: DATA decoding throughput (bytes on the wire per
//!   second), the whole body in one call and in 16 KiB reads as the relay feeds it.
//! - `data/encode/{10KB,10MB}`: dot-stuffing of the same bodies.
//! - commands: parse/s (to come, marked below).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto::data::{encode_data, DataDecoder, DataLimits, DataStatus};

/// A realistic body of about `size` octets: trace and MIME headers, then base64
/// lines of 76 characters (an IHE_XDM.zip attachment), one line in 97 starting
/// with a dot so that unstuffing is exercised.
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

const SIZES: [(&str, usize); 2] = [("10KB", 10_000), ("10MB", 10_000_000)];

fn data_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("data/decode");
    for (label, size) in SIZES {
        let body = body(size);
        let mut wire = Vec::new();
        encode_data(&body, &mut wire);
        let limits = DataLimits {
            max_message_size: 2 * size,
            ..DataLimits::default()
        };
        let expected = DataStatus::Done(Ok(body.len() as u64));
        let mut out = Vec::with_capacity(body.len());
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(BenchmarkId::new("whole", label), |b| {
            b.iter(|| {
                out.clear();
                let mut d = DataDecoder::new(limits);
                let (n, status) = d.decode(black_box(&wire), &mut out);
                assert_eq!((n, &status), (wire.len(), &expected));
            });
        });
        group.bench_function(BenchmarkId::new("16KiB_reads", label), |b| {
            b.iter(|| {
                out.clear();
                let mut d = DataDecoder::new(limits);
                let mut status = DataStatus::NeedMore;
                for chunk in black_box(&wire).chunks(16 * 1024) {
                    status = d.decode(chunk, &mut out).1;
                }
                assert_eq!(status, expected);
            });
        });
    }
    group.finish();
}

fn data_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("data/encode");
    for (label, size) in SIZES {
        let body = body(size);
        let mut out = Vec::with_capacity(body.len() + body.len() / 50);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                encode_data(black_box(&body), &mut out);
            });
        });
    }
    group.finish();
}

// commands: parse/s
// (lead: add the command-parsing benches here and list them in `criterion_group!`.)

criterion_group!(benches, data_decode, data_encode);
criterion_main!(benches);
