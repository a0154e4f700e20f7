//! The trust-list parser and the DN parser on arbitrary bytes: never panic, and
//! what they accept is consistent — every entry's domain is its own lookup key,
//! every DN displays to a string that parses back to the same DN, and a list
//! accepted whole is still accepted (with the same entries) when re-serialised.
//!
//! Input layout (rustls' first-byte selector): byte 0 picks the mode, the rest
//! is the input.
//! - 0: raw list bytes (seeds: small lists, the head of ANS's real list).
//! - 1: one DN string (lossy UTF-8).
//! - 2: `<Nom>` and `<DNCertificatOperateur>` texts, split at the first
//!   newline, XML-escaped into a valid list: reaches the entry checks without
//!   the fuzzer having to find the XML structure.
//!
//! Run: `scripts/fuzz 60 trust_list`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::dn::Dn;
use proto::trustlist::{domain_key, parse, TrustList};

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\"><ListeDomaines>";

fn check_dn(dn: &Dn) {
    let text = dn.to_string();
    assert_eq!(Dn::parse(&text).as_ref(), Ok(dn), "{text}");
}

fn check_list(list: &TrustList) {
    for e in &list.entries {
        assert_eq!(domain_key(&e.domain).as_deref(), Ok(e.domain.as_str()));
        check_dn(&e.dn);
    }
    for p in &list.problems {
        assert!(p.line >= 1);
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(list) = parse(rest) {
                check_list(&list);
                // Re-serialised with canonical DNs, the list is accepted again
                // with the same domains and DNs.
                let mut again = String::from(HEAD);
                for e in &list.entries {
                    again.push_str(&format!(
                        "<Domaine><Nom>{}</Nom><DNCertificatOperateur>{}</DNCertificatOperateur></Domaine>",
                        escape(&e.domain),
                        escape(&e.dn.to_string())
                    ));
                }
                again.push_str("</ListeDomaines>");
                let reparsed = parse(again.as_bytes()).expect("re-serialised list parses");
                assert!(reparsed.problems.is_empty(), "{:?}", reparsed.problems);
                let pairs = |l: &TrustList| {
                    l.entries
                        .iter()
                        .map(|e| (e.domain.clone(), e.dn.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(pairs(&reparsed), pairs(&list));
            }
        }
        1 => {
            if let Ok(dn) = Dn::parse(&String::from_utf8_lossy(rest)) {
                check_dn(&dn);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let (name, dn) = text.split_once('\n').unwrap_or((&text, "CN=x"));
            // XML 1.0 forbids most control characters even as references.
            let clean = |s: &str| escape(&s.replace(|c: char| c.is_control() && c != '\t', " "));
            let xml = format!(
                "{HEAD}<Domaine><Nom>{}</Nom><DNCertificatOperateur>{}</DNCertificatOperateur></Domaine></ListeDomaines>",
                clean(name),
                clean(dn)
            );
            let list = parse(xml.as_bytes()).expect("a valid list shape");
            assert_eq!(list.entries.len() + list.problems.len(), 1);
            check_list(&list);
        }
    }
});
