//! Trust list parsing: `cargo bench -p estafette-bench --bench trustlist`.
//!
//! - `trustlist/parse/generated-9000`: a generated list of 9,000 `<Domaine>`
//!   (7,000 domains, 400 operators, every field filled as ANS fills them, a
//!   quarter of the DNs with ANS's quoting and spacing quirks). The target is a
//!   load under 100 ms (ISSUE #7).
//! - `trustlist/parse/real-2025-03-13`: ANS's published list (6,554 entries),
//!   when `../shared/data/` is there.
//! - `dn/parse`: one DN in the list's spelling.
//!
//! The relay's index over the parsed list (`relay::trust::TrustIndex`) is not
//! measured here (bench depends on proto and storage only); `estafette
//! trustlist check FILE` prints both times for any list.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::dn::Dn;
use proto::trustlist;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A list of `n` entries in ANS's layout (without the root end tag, as ANS
/// publishes it).
fn generated_list(n: usize) -> String {
    let mut s = String::with_capacity(n * 620);
    s.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\">\n    \
         <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>\n    <ListeDomaines>\n",
    );
    for i in 0..n {
        let domain = i % (n * 7 / 9).max(1);
        let op = i % 400;
        let dn = match op % 4 {
            0 => format!("CN=mss.op{op}.fr,OU=1{op:09},O=\"CENTRE  HOSPITALIER {op}\",ST=Gironde (33),C=FR"),
            1 => format!("CN=smtp-{op}.santnet.com, OU=3{op:014}, O=GIP\u{a0} SESAN, ST=Paris(75), C=FR"),
            _ => format!("CN=medimail-{op}.mipih.fr,OU=3{op:014},O=GIP MIPIH {op},ST=Haute-Garonne (31),C=FR"),
        };
        s.push_str(&format!(
            "        <Domaine>\n            <Nom>etab-{domain}.mssante.fr</Nom>\n            \
             <Description>EHPAD DOMAINE DE LA CADENE {domain} &amp; SSIAD</Description>\n            \
             <DNCertificatOperateur>{dn}</DNCertificatOperateur>\n            \
             <ResponsableContact>08 10  61 50 50, medimail.diffusion@mipih.fr</ResponsableContact>\n            \
             <SupportContact>08 10  61 50 50,\n medimail.technique@mipih.fr</SupportContact>\n            \
             <DateMAJ>2025-03-13T14:54:10Z</DateMAJ>\n        </Domaine>\n"
        ));
    }
    s.push_str("    </ListeDomaines>\n");
    s
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("trustlist/parse");
    let list = generated_list(9000);
    let check = trustlist::parse(list.as_bytes()).expect("generated list parses");
    assert_eq!((check.entries.len(), check.problems.len()), (9000, 0));
    group.throughput(Throughput::Bytes(list.len() as u64));
    group.bench_function("generated-9000", |b| {
        b.iter(|| trustlist::parse(black_box(list.as_bytes())).map(|l| l.entries.len()))
    });
    let real = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../shared/data/listeblanchemssante-2025-03-13.xml");
    if let Ok(bytes) = std::fs::read(real) {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("real-2025-03-13", |b| {
            b.iter(|| trustlist::parse(black_box(&bytes)).map(|l| l.entries.len()))
        });
    }
    group.finish();

    let dn = "CN=mss.chu-limoges.fr,OU=1870000015,O=\"C H U  DE  LIMOGES\",ST=Haute-Vienne (87),C=FR";
    c.bench_function("dn/parse", |b| b.iter(|| Dn::parse(black_box(dn))));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = parse
}
criterion_main!(benches);
