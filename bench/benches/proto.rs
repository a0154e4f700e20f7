//! proto micro-benchmarks, no sockets: `cargo bench -p estafette-bench --bench proto`.
//!
//! - `data/decode/{10KB,10MB}`: DATA decoding throughput (bytes on the wire per
//!   second), the whole body in one call and in 16 KiB reads as the relay feeds it.
//! - `data/encode/{10KB,10MB}`: dot-stuffing of the same bodies.
//! - commands: parse/s for a typical pipelined envelope, and a whole server
//!   transaction (EHLO, MAIL, RCPT, DATA 10 KB, QUIT) through `Server` with no sockets.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use std::time::Instant;

use proto::command::Command;
use proto::data::{encode_data, DataDecoder, DataLimits, DataStatus};
use proto::server::{PeerInfo, Server, ServerConfig, ServerEvent, Verdict};

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

const COMMANDS: [&[u8]; 6] = [
    b"EHLO dpi.ch-exemple.mssante.fr",
    b"MAIL FROM:<secretariat.cardio@ch-exemple.mssante.fr> SIZE=10240 BODY=8BITMIME RET=HDRS ENVID=QQ314159",
    b"RCPT TO:<dr.martin@medecin.mssante.fr> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;dr.martin@medecin.mssante.fr",
    b"RCPT TO:<1234567890123@patient.mssante.fr>",
    b"DATA",
    b"QUIT",
];

fn command_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("command_parse");
    g.throughput(Throughput::Elements(COMMANDS.len() as u64));
    g.bench_function("envelope", |b| {
        b.iter(|| {
            for line in COMMANDS {
                let _ = black_box(Command::parse(black_box(line)));
            }
        })
    });
    g.finish();
}

fn server_transaction(c: &mut Criterion) {
    let config = Arc::new(ServerConfig::default());
    let mut session = Vec::new();
    for line in &COMMANDS[..5] {
        session.extend_from_slice(line);
        session.extend_from_slice(b"\r\n");
    }
    encode_data(&body(10 * 1024), &mut session);
    session.extend_from_slice(b"QUIT\r\n");
    let mut g = c.benchmark_group("server_transaction");
    g.throughput(Throughput::Elements(1));
    g.bench_function("10KB", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            let now = Instant::now();
            let peer = PeerInfo {
                remote: "127.0.0.1:1".into(),
                tls: None,
            };
            let mut server = Server::new(config.clone(), peer, now);
            let mut input: &[u8] = &session;
            loop {
                let used = server.handle_input(now, input);
                input = &input[used..];
                let mut any = false;
                while let Some(ev) = server.poll_event() {
                    any = true;
                    match ev {
                        ServerEvent::Mail(r) => server.answer_mail(r, Verdict::Accept),
                        ServerEvent::Rcpt(r) => server.answer_rcpt(r, Verdict::Accept),
                        ServerEvent::Message(d) => server.message_stored(d, Ok("ID")),
                        ServerEvent::Auth(r) => server.answer_auth(r, Verdict::Accept),
                        _ => {}
                    }
                }
                if used == 0 && !any {
                    break;
                }
            }
            out.clear();
            server.poll_transmit(&mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, data_decode, data_encode, command_parse, server_transaction);
criterion_main!(benches);
