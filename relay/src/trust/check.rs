//! `estafette trustlist check FILE`: what an operator wants to know about a
//! list before deploying it — would the relay take it, what it holds, and
//! which entries it would skip.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::time::Instant;

use proto::trustlist::{self, domain_key, ProblemKind};

use super::fetch::sha256_hex;
use super::list::TrustIndex;

/// The outcome of a check: the text to print, and whether the relay would
/// load the list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct CheckReport {
    /// Human-readable summary then problems, one per line.
    pub text: String,
    /// The list would be loaded (it may still have skipped entries).
    pub loadable: bool,
    /// Entries that would be skipped.
    pub problems: usize,
}

/// Checks a list's bytes as the relay would load them (`name` is used in the
/// text only). `expected_sha256`: the hex digest from ANS's checksum file, if
/// the caller has one.
pub fn check(name: &str, bytes: &[u8], expected_sha256: Option<&str>) -> CheckReport {
    let mut text = String::new();
    let sha256 = sha256_hex(bytes);
    let _ = writeln!(text, "{name}: {} bytes, SHA-256 {sha256}", bytes.len());
    if let Some(expected) = expected_sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            let _ = writeln!(text, "REFUSED: the checksum file says {expected}");
            return CheckReport {
                text,
                loadable: false,
                problems: 0,
            };
        }
        let _ = writeln!(text, "checksum: OK");
    }
    let started = Instant::now();
    let list = match trustlist::parse(bytes) {
        Ok(list) => list,
        Err(e) => {
            let _ = writeln!(text, "REFUSED: {e}");
            return CheckReport {
                text,
                loadable: false,
                problems: 0,
            };
        }
    };
    let parsed = started.elapsed();
    let spellings: HashSet<&str> = list.entries.iter().map(|e| e.dn_text.as_str()).collect();
    let spellings = spellings.len();
    let problems = list.problems.clone();
    let warnings: Vec<String> = list.warnings.iter().map(ToString::to_string).collect();
    let root_end_missing = list.root_end_missing;
    let started = Instant::now();
    let index = TrustIndex::from_list(list);
    let indexed = started.elapsed();

    let _ = writeln!(
        text,
        "generated: {}",
        index.generated().unwrap_or("(no <DateDeGeneration>)")
    );
    let _ = writeln!(text, "entries: {} usable, {} skipped", index.entries(), problems.len());
    let _ = writeln!(
        text,
        "domains: {}; operator DNs: {} distinct ({spellings} spellings)",
        index.domains(),
        index.distinct_dns()
    );
    if root_end_missing {
        let _ = writeln!(
            text,
            "note: no </ListeBlancheMSSante> end tag (as ANS publishes it): accepted"
        );
    }
    let _ = writeln!(
        text,
        "parsed in {:.1} ms, indexed in {:.1} ms",
        parsed.as_secs_f64() * 1e3,
        indexed.as_secs_f64() * 1e3
    );
    if index.entries() == 0 {
        let _ = writeln!(text, "REFUSED: no usable entry");
    }
    let mut kinds: HashMap<&'static str, usize> = HashMap::new();
    for p in &problems {
        *kinds.entry(kind_name(&p.kind)).or_default() += 1;
    }
    if !problems.is_empty() {
        let mut kinds: Vec<_> = kinds.into_iter().map(|(k, n)| format!("{n} {k}")).collect();
        kinds.sort();
        let _ = writeln!(text, "skipped entries ({}):", kinds.join(", "));
        for p in &problems {
            let _ = writeln!(text, "  {p}");
        }
    }
    // Entries kept, but read leniently (a bare quote inside a DN value, as
    // ANS publishes some): the operator should know and may ask ANS to fix them.
    if !warnings.is_empty() {
        let _ = writeln!(text, "read leniently ({}):", warnings.len());
        for w in &warnings {
            let _ = writeln!(text, "  {w}");
        }
    }
    // A domain whose every entry is skipped drops out of the trust space.
    let lost: BTreeSet<String> = problems
        .iter()
        .filter_map(|p| p.domain.as_deref())
        .filter(|d| !index.is_listed(d))
        .map(|d| domain_key(d).map_or_else(|_| d.to_owned(), |k| k.into_owned()))
        .collect();
    if !lost.is_empty() {
        let _ = writeln!(
            text,
            "domains left out of the trust space (no usable entry): {}",
            lost.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    CheckReport {
        text,
        loadable: index.entries() > 0,
        problems: problems.len(),
    }
}

fn kind_name(kind: &ProblemKind) -> &'static str {
    match kind {
        ProblemKind::MissingName => "missing name",
        ProblemKind::BadDomain(_) => "bad domain",
        ProblemKind::MissingDn => "missing DN",
        ProblemKind::BadDn { .. } => "bad DN",
        ProblemKind::RepeatedField(_) => "repeated field",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "<?xml version=\"1.0\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\">\
        <ListeDomaines>\
        <Domaine><Nom>a.fr</Nom><DNCertificatOperateur>CN=a</DNCertificatOperateur></Domaine>\
        <Domaine><Nom>b.fr</Nom><DNCertificatOperateur>CN=\"b</DNCertificatOperateur></Domaine>\
        </ListeDomaines>";

    #[test]
    fn report() {
        let r = check("l.xml", LIST.as_bytes(), None);
        assert!(r.loadable);
        assert_eq!(r.problems, 1);
        assert!(r.text.contains("entries: 1 usable, 1 skipped"), "{}", r.text);
        assert!(r.text.contains("line 1: b.fr: invalid certificate DN"), "{}", r.text);
        assert!(r.text.contains("no usable entry): b.fr"), "{}", r.text);

        // A bare quote inside a value is read as a literal and reported.
        let lenient = LIST.replace("CN=a</DN", "CN=a,O=CRLCC \"PAUL STRAUSS\"</DN");
        let r = check("l.xml", lenient.as_bytes(), None);
        assert!(
            r.text.contains("entries: 2 usable") || r.text.contains("entries: 1 usable"),
            "{}",
            r.text
        );
        assert!(r.text.contains("read leniently (1):"), "{}", r.text);
        assert!(r.text.contains("a.fr"), "{}", r.text);

        let r = check("l.xml", &LIST.as_bytes()[..LIST.len() - 3], None);
        assert!(!r.loadable);
        assert!(r.text.contains("REFUSED"), "{}", r.text);

        let r = check("l.xml", LIST.as_bytes(), Some(&"0".repeat(64)));
        assert!(!r.loadable && r.text.contains("checksum file says"), "{}", r.text);
        let r = check("l.xml", LIST.as_bytes(), Some(&sha256_hex(LIST.as_bytes())));
        assert!(r.loadable && r.text.contains("checksum: OK"), "{}", r.text);
    }
}
