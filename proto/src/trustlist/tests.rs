use super::*;
use crate::dn::{DnError, Leniency};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
    <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>
    <ListeDomaines>
"#;
const TAIL: &str = "    </ListeDomaines>\n";

fn domaine(nom: &str, dn: &str) -> String {
    format!(
        "        <Domaine>
            <Nom>{nom}</Nom>
            <Description>HOPITAL &amp; CO</Description>
            <DNCertificatOperateur>{dn}</DNCertificatOperateur>
            <ResponsableContact>01 02 03 04 05,
 a@b.fr</ResponsableContact>
            <SupportContact>01 02 03 04 05, support@b.fr</SupportContact>
            <DateMAJ>2024-01-02T03:04:05Z</DateMAJ>
        </Domaine>\n"
    )
}

fn list(entries: &[(&str, &str)], close_root: bool) -> String {
    let mut s = HEAD.to_owned();
    for (nom, dn) in entries {
        s.push_str(&domaine(nom, dn));
    }
    s.push_str(TAIL);
    if close_root {
        s.push_str("</ListeBlancheMSSante>\n");
    }
    s
}

const DN1: &str = "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR";
const DN2: &str = "CN=mss.chu-limoges.fr,OU=1870000015,O=\"C H U  DE  LIMOGES\",ST=Haute-Vienne (87),C=FR";

#[test]
fn small_list_with_and_without_root_end_tag() {
    for close in [true, false] {
        let text = list(
            &[("a.mssante.fr", DN1), ("UC-CMP.mssante.fr", DN2), ("a.mssante.fr", DN2)],
            close,
        );
        let l = parse(text.as_bytes()).unwrap();
        assert_eq!(l.root_end_missing, !close);
        assert_eq!(l.generated.as_deref(), Some("2025-03-13T14:54:10Z"));
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let domains: Vec<_> = l.entries.iter().map(|e| e.domain.as_str()).collect();
        assert_eq!(domains, ["a.mssante.fr", "uc-cmp.mssante.fr", "a.mssante.fr"]);
        let e = &l.entries[1];
        assert_eq!(
            e.dn,
            Dn::parse("CN=mss.chu-limoges.fr,OU=1870000015,O=C H U DE LIMOGES,ST=Haute-Vienne (87),C=FR").unwrap()
        );
        assert_eq!(e.dn_text, DN2);
        assert_eq!(e.description, "HOPITAL & CO");
        assert_eq!(e.updated.as_deref(), Some("2024-01-02T03:04:05Z"));
    }
}

#[test]
fn bad_entries_are_skipped_and_reported() {
    let text = list(
        &[
            ("a.mssante.fr", DN1),
            ("b.mssante.fr", "CN=x,OU=1670000033,O=CRLCC \"PAUL,STRAUSS\",C=FR"),
            ("", DN1),
            ("c.mssante.fr", ""),
            ("bad domain.fr", DN1),
            ("d.mssante.fr", DN1),
        ],
        false,
    );
    let l = parse(text.as_bytes()).unwrap();
    assert_eq!(l.entries.len(), 2);
    assert!(l.warnings.is_empty());
    let kinds: Vec<_> = l.problems.iter().map(|p| (p.domain.as_deref(), &p.kind)).collect();
    // `O=CRLCC "PAUL` and `STRAUSS"`, or one value holding a comma? Refused.
    assert!(matches!(
        kinds[0],
        (
            Some("b.mssante.fr"),
            ProblemKind::BadDn {
                error: DnError::AmbiguousQuote { at: 27 },
                ..
            }
        )
    ));
    assert_eq!(kinds[1], (None, &ProblemKind::MissingName));
    assert_eq!(kinds[2], (Some("c.mssante.fr"), &ProblemKind::MissingDn));
    assert!(matches!(kinds[3], (Some("bad domain.fr"), ProblemKind::BadDomain(_))));
    // lines point at each <Domaine>: HEAD has 3 lines, each entry 9
    let lines: Vec<_> = l.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [13, 22, 31, 40]);
    assert_eq!(l.problems[1].to_string(), "line 22: no domain name (<Nom>)");
}

#[test]
fn bare_quotes_are_read_kept_and_warned_about() {
    let strauss = r#"CN=x,OU=1670000033,O=CRLCC "PAUL STRAUSS",C=FR"#;
    let text = list(
        &[
            ("a.mssante.fr", DN1),
            (" B.mssante.fr ", strauss),
            ("c.mssante.fr", r#"CN=y,O="CRLCC" PAUL"#),
        ],
        true,
    );
    let l = parse(text.as_bytes()).unwrap();
    let domains: Vec<_> = l.entries.iter().map(|e| e.domain.as_str()).collect();
    assert_eq!(domains, ["a.mssante.fr", "b.mssante.fr"]);
    let e = &l.entries[1];
    assert_eq!(e.dn_text, strauss);
    assert_eq!(e.dn.get("O"), Some(r#"crlcc "paul strauss""#));
    // A certificate whose O is the string `CRLCC "PAUL STRAUSS"` is this DN.
    let cert = [
        ("2.5.4.6", "FR"),
        ("2.5.4.10", r#"CRLCC "PAUL STRAUSS""#),
        ("2.5.4.11", "1670000033"),
        ("2.5.4.3", "x"),
    ];
    assert_eq!(e.dn, Dn::from_attributes(cert).unwrap());
    assert_eq!(
        l.warnings,
        [Warning {
            line: 13,
            offset: text.find("<Domaine>\n            <Nom> B").unwrap() as u64,
            domain: "B.mssante.fr".into(),
            kind: WarningKind::LenientDn {
                text: strauss.into(),
                leniencies: vec![Leniency::BareQuotes { at: 27 }],
            },
        }]
    );
    assert_eq!(
        l.warnings[0].to_string(),
        r#"line 13: B.mssante.fr: certificate DN "CN=x,OU=1670000033,O=CRLCC \"PAUL STRAUSS\",C=FR" read leniently: bare '"' at offset 27 read as a literal character (RFC 4514 wants it escaped)"#
    );
    // A quote opening a value and followed by more text has two readings: skipped.
    assert!(matches!(
        &l.problems[..],
        [Problem {
            line: 22,
            kind: ProblemKind::BadDn {
                error: DnError::UnexpectedChar { found: 'P', .. },
                ..
            },
            ..
        }]
    ));
}

#[test]
fn repeated_field_is_a_problem_and_unknown_fields_are_ignored() {
    let text = HEAD.to_owned()
        + "<Domaine><Nom>a.fr</Nom><Nom>b.fr</Nom><DNCertificatOperateur>CN=a</DNCertificatOperateur></Domaine>\n"
        + "<Domaine><Nom>c.fr</Nom><Nouveau a='1'><x>y</x></Nouveau><DNCertificatOperateur>CN=c</DNCertificatOperateur></Domaine>\n"
        + "<Domaine><Nom/><DNCertificatOperateur>CN=d</DNCertificatOperateur></Domaine>\n"
        + "<Autre xmlns='urn:x'>text</Autre>"
        + TAIL;
    let l = parse(text.as_bytes()).unwrap();
    assert_eq!(l.entries.len(), 1);
    assert_eq!(l.entries[0].domain, "c.fr");
    assert_eq!(l.entries[0].description, "");
    assert_eq!(l.entries[0].updated, None);
    assert_eq!(l.problems[0].kind, ProblemKind::RepeatedField("Nom"));
    assert_eq!(l.problems[1].kind, ProblemKind::MissingName);
}

#[test]
fn idn_domains_become_a_labels() {
    let text = list(
        &[("Hôpital-Été.MSSante.fr", DN1), ("XN--HPITAL-T-H1AB6I.mssante.fr", DN1)],
        true,
    );
    let l = parse(text.as_bytes()).unwrap();
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    assert_eq!(l.entries[0].domain, "xn--hpital-t-h1ab6i.mssante.fr");
    assert_eq!(l.entries[1].domain, "xn--hpital-t-h1ab6i.mssante.fr");
    assert_eq!(domain_key("hôpital-été.mssante.fr").unwrap(), l.entries[0].domain);
}

#[test]
fn domain_keys() {
    assert!(matches!(domain_key("a.mssante.fr"), Ok(Cow::Borrowed("a.mssante.fr"))));
    assert_eq!(domain_key(" UC-CMP.mssante.fr. ").unwrap(), "uc-cmp.mssante.fr");
    assert_eq!(domain_key("bücher.de").unwrap(), "xn--bcher-kva.de");
    assert_eq!(domain_key("XN--BCHER-KVA.de").unwrap(), "xn--bcher-kva.de");
    // one name, one key, whatever the case
    assert_eq!(domain_key("A.xn--zz.fr").unwrap(), domain_key("a.xn--zz.fr").unwrap());
    for bad in [
        "",
        ".",
        "a..b",
        "-a.fr",
        "a-.fr",
        "a_b.fr",
        "a b.fr",
        "a@b.fr",
        &"a".repeat(64),
        &format!("{}.fr", "a.".repeat(130)),
    ] {
        assert!(domain_key(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn cut_anywhere_but_the_root_end_is_refused() {
    let full = list(&[("a.mssante.fr", DN1), ("b.mssante.fr", DN2)], true);
    let root_end = full.find("</ListeBlancheMSSante>").unwrap();
    let domains_end = full.find("</ListeDomaines>").unwrap() + "</ListeDomaines>".len();
    for cut in 0..full.len() {
        if !full.is_char_boundary(cut) {
            continue;
        }
        let r = parse(&full.as_bytes()[..cut]);
        // after </ListeDomaines> up to the root end tag, or the whole end tag
        let accepted = (domains_end..=root_end).contains(&cut) || cut >= root_end + "</ListeBlancheMSSante>".len();
        assert_eq!(r.is_ok(), accepted, "cut at {cut}: {r:?}");
        if let Ok(l) = r {
            assert_eq!(l.entries.len(), 2);
            assert_eq!(l.root_end_missing, cut <= root_end);
        }
    }
    // cut between two entries: well-formed so far, but refused
    let between = full.find("        <Domaine>\n            <Nom>b").unwrap();
    assert!(matches!(
        parse(&full.as_bytes()[..between]),
        Err(ParseError::Truncated {
            inside: "ListeDomaines",
            ..
        })
    ));
    assert!(parse(full.as_bytes()).is_ok());
}

#[test]
fn structural_errors() {
    let ok = list(&[("a.mssante.fr", DN1)], true);
    type Check = fn(&ParseError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (
            ok.replacen(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]>",
                1,
            ),
            |e| matches!(e, ParseError::Doctype { line: 1 }),
        ),
        (
            ok.replace("https://listeblanche.mssante.fr/schema", "urn:other"),
            |e| matches!(e, ParseError::Root { namespace: Some(n), .. } if n == "urn:other"),
        ),
        (ok.replace("ListeBlancheMSSante", "Liste"), |e| {
            matches!(e, ParseError::Root { .. })
        }),
        (ok.replace("UTF-8", "ISO-8859-1"), |e| {
            matches!(e, ParseError::Encoding(_))
        }),
        (
            ok.replace("HOPITAL &amp; CO", "&foo;"),
            |e| matches!(e, ParseError::Entity { name, .. } if name == "foo"),
        ),
        (ok.replace("<DateDeGeneration>", "oops<DateDeGeneration>"), |e| {
            matches!(e, ParseError::Text { parent: ROOT, .. })
        }),
        (ok.replace("</Nom>", "</Nam>"), |e| matches!(e, ParseError::Xml { .. })),
        (
            ok.replace("<Nom>a", "<Domaine>a"),
            |e| matches!(e, ParseError::Element { found, parent: "Domaine", .. } if found == "Domaine"),
        ),
        (
            ok.clone() + "<ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\"/>",
            |e| matches!(e, ParseError::Root { .. }),
        ),
        (String::new(), |e| matches!(e, ParseError::NoRoot)),
        ("   \n".into(), |e| matches!(e, ParseError::NoRoot)),
        ("not xml".into(), |e| matches!(e, ParseError::Text { .. })),
    ];
    for (text, check) in cases {
        let r = parse(text.as_bytes());
        assert!(matches!(&r, Err(e) if check(e)), "{text}\n=> {r:?}");
    }
    let mut bad_utf8 = ok.into_bytes();
    let at = bad_utf8.windows(7).position(|w| w == b"HOPITAL").unwrap();
    bad_utf8[at] = 0xff;
    assert!(matches!(parse(&bad_utf8), Err(ParseError::Xml { .. })));
}

#[test]
fn entities_bom_and_cdata() {
    let text = "\u{feff}".to_owned()
        + &list(
            &[("a.mssante.fr", r"CN=a\,b,O=&quot;&lt;x&gt; &amp; &#x41;&quot;")],
            false,
        )
        .replace(
            "<Description>HOPITAL &amp; CO</Description>",
            "<Description><![CDATA[a <b>]]></Description>",
        );
    let l = parse(text.as_bytes()).unwrap();
    let e = &l.entries[0];
    assert_eq!(e.description, "a <b>");
    assert_eq!(e.dn_text, r#"CN=a\,b,O="<x> & A""#);
    assert_eq!(e.dn.get("CN"), Some("a,b"));
    assert_eq!(e.dn.get("O"), Some("<x> & a"));
}

/// The real list ANS published on 2025-03-13 (see notes/mssante.md).
#[test]
fn real_list() {
    let path = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../shared/data/listeblanchemssante-2025-03-13.xml");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipped: {} not found", path.display());
        return;
    };
    let l = parse(&bytes).unwrap();
    assert!(l.root_end_missing);
    assert_eq!(l.generated.as_deref(), Some("2025-03-13T14:54:10Z"));
    // 6,554 <Domaine>: two carry a DN with bare quotes (not RFC 4514, read
    // leniently and warned about), one a mailbox in place of a domain name
    // (`sessad@ase.ditepbeziers.mssante.fr`, skipped).
    assert_eq!(l.entries.len(), 6553);
    let kinds: Vec<String> = l.problems.iter().map(|p| format!("{}: {:?}", p.line, p.kind)).collect();
    assert_eq!(l.problems.len(), 1, "{kinds:#?}");
    assert!(matches!(&l.problems[0].kind, ProblemKind::BadDomain(e) if e.name == "sessad@ase.ditepbeziers.mssante.fr"));
    let warned: Vec<_> = l.warnings.iter().map(|w| (w.line, w.domain.as_str())).collect();
    assert_eq!(
        warned,
        [
            (14394, "ch-ouestguyane.mssante.fr"),
            (50066, "strasbourg.unicancer.mssante.fr")
        ]
    );
    assert!(l.warnings.iter().all(|w| matches!(
        &w.kind,
        WarningKind::LenientDn { leniencies, .. } if matches!(leniencies[..], [Leniency::BareQuotes { .. }])
    )));
    let domains: HashSet<_> = l.entries.iter().map(|e| e.domain.as_str()).collect();
    // 5,002 names in the file, one of them not a domain.
    assert_eq!(domains.len(), 5001);
    // strasbourg.unicancer.mssante.fr (a cancer centre) is in the trust space,
    // with its only DN, which equals its certificate's subject.
    let strasbourg: Vec<_> = l
        .entries
        .iter()
        .filter(|e| e.domain == "strasbourg.unicancer.mssante.fr")
        .collect();
    assert_eq!(strasbourg.len(), 1);
    assert_eq!(
        strasbourg[0].dn_text,
        r#"CN=mss.strasbourg.unicancer.fr,OU=1670000033,O=CRLCC "PAUL STRAUSS",ST=Bas-Rhin (67),C=FR"#
    );
    let cert = [
        ("2.5.4.6", "FR"),
        ("2.5.4.8", "Bas-Rhin (67)"),
        ("2.5.4.10", r#"CRLCC "PAUL STRAUSS""#),
        ("2.5.4.11", "1670000033"),
        ("2.5.4.3", "mss.strasbourg.unicancer.fr"),
    ];
    assert_eq!(strasbourg[0].dn, Dn::from_attributes(cert).unwrap());
    // ch-ouestguyane.mssante.fr has its three entries, two DNs: the quotes are
    // part of the value, so `"FRANCK-JOLY"` is not `FRANCK-JOLY`.
    let guyane: HashSet<_> = l
        .entries
        .iter()
        .filter(|e| e.domain == "ch-ouestguyane.mssante.fr")
        .map(|e| e.dn.get("O"))
        .collect();
    assert_eq!(
        guyane,
        HashSet::from([
            Some(r#"centre hospitalier "franck-joly""#),
            Some("centre hospitalier franck-joly")
        ])
    );
    let raw_dns: HashSet<_> = l.entries.iter().map(|e| e.dn_text.as_str()).collect();
    let dns: HashSet<_> = l.entries.iter().map(|e| &e.dn).collect();
    // 392 DN spellings in the file; quoting, NBSP and spacing variants of one
    // DN fold together.
    assert_eq!(raw_dns.len(), 392);
    assert_eq!(dns.len(), 384);
    let mut per_domain: HashMap<&str, usize> = HashMap::new();
    for e in &l.entries {
        *per_domain.entry(&e.domain).or_default() += 1;
    }
    assert_eq!(per_domain.values().max(), Some(&5));
    assert!(domains.contains("uc-cmp.mssante.fr"));
    assert!(l
        .entries
        .iter()
        .all(|e| e.domain.bytes().all(|b| !b.is_ascii_uppercase())));
    // ST=Paris(75) and ST=Paris (75) are both there, and stay apart
    let st: HashSet<_> = l.entries.iter().filter_map(|e| e.dn.get("ST")).collect();
    assert!(st.contains("paris(75)") && st.contains("paris (75)"));
    assert!(l.entries.iter().any(|e| e.dn.get("L") == Some("paris (75)")));
}
