use super::*;

const DN_A: &str = "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR";
const DN_B: &str = "CN=mss.chu-limoges.fr,OU=1870000015,O=\"C H U  DE  LIMOGES\",ST=Haute-Vienne (87),C=FR";

fn dn(s: &str) -> Dn {
    Dn::parse(s).unwrap()
}

/// A list in ANS's shape (no root end tag), one `<Domaine>` per pair.
fn xml(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\">\n\
         <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>\n<ListeDomaines>\n",
    );
    for (nom, dn) in pairs {
        s.push_str(&format!(
            "<Domaine><Nom>{nom}</Nom><Description>x</Description>\
             <DNCertificatOperateur>{dn}</DNCertificatOperateur></Domaine>\n"
        ));
    }
    s + "</ListeDomaines>\n"
}

/// `n` domains `d0.mssante.fr`… with DN_A.
fn many(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("d{i}.mssante.fr")).collect();
    xml(&names.iter().map(|n| (n.as_str(), DN_A)).collect::<Vec<_>>())
}

#[test]
fn index_lookups() {
    let list = trustlist::parse(
        xml(&[
            ("a.mssante.fr", DN_A),
            ("A.mssante.fr", DN_B),
            ("a.mssante.fr", DN_A),
            ("hôpital.mssante.fr", DN_B),
            ("b.mssante.fr", DN_A),
        ])
        .as_bytes(),
    )
    .unwrap();
    let idx = TrustIndex::from_list(list);
    assert_eq!((idx.domains(), idx.entries(), idx.distinct_dns()), (3, 5, 2));
    assert_eq!(idx.generated(), Some("2025-03-13T14:54:10Z"));
    assert_eq!(idx.dns_for("a.mssante.fr").len(), 2);
    for name in [
        "a.mssante.fr",
        "A.MSSANTE.FR",
        "a.mssante.fr.",
        "HÔPITAL.mssante.fr",
        "xn--hpital-ixa.mssante.fr",
    ] {
        assert!(idx.is_listed(name), "{name}");
    }
    for name in ["x.a.mssante.fr", "mssante.fr", "", "a b", "c.mssante.fr"] {
        assert!(!idx.is_listed(name), "{name}");
    }
    // the certificate's spelling of DN_B: other order, single spaces, case
    let cert = dn("C=FR,ST=Haute-Vienne (87),O=C H U DE LIMOGES,OU=1870000015,CN=MSS.chu-limoges.fr");
    assert!(idx.dn_allowed("a.mssante.fr", &cert));
    assert!(idx.dn_allowed("hôpital.mssante.fr", &cert));
    assert!(!idx.dn_allowed("b.mssante.fr", &cert));
    assert!(!idx.dn_allowed("nope.fr", &cert));
    assert!(idx.dn_listed(&cert));
    assert!(!idx.dn_listed(&dn("CN=other")));
    // equal DNs are shared between domains
    assert!(Arc::ptr_eq(
        &idx.dns_for("b.mssante.fr")[0],
        &idx.dns_for("a.mssante.fr")[0]
    ));
}

#[test]
fn from_entries() {
    let idx = TrustIndex::from_entries([("Demo.MSSante.fr", dn(DN_A))]).unwrap();
    assert!(idx.dn_allowed("demo.mssante.fr", &dn(DN_A)));
    assert!(TrustIndex::from_entries([("bad domain", dn(DN_A))]).is_err());
}

#[test]
fn config_defaults_and_validation() {
    let c: TrustListConfig = toml::from_str("source = \"/etc/estafette/liste.xml\"").unwrap();
    assert_eq!(c, TrustListConfig::new("/etc/estafette/liste.xml"));
    assert_eq!(
        (c.refresh_secs, c.max_shrink_percent, c.max_bytes),
        (3600, 10, 64 << 20)
    );
    c.validate().unwrap();
    assert!(toml::from_str::<TrustListConfig>("source = \"x\"\nrefresh = 1").is_err());
    let bad = |f: fn(&mut TrustListConfig)| {
        let mut c = TrustListConfig::new("x.xml");
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(bad(|c| c.source = "http://h/l.xml".into()).contains("trust.source"));
    assert!(bad(|c| c.source = "https://h/l.xml".into()).contains("trust.ca_file"));
    assert!(bad(|c| c.checksum = Some("http://h/c".into())).contains("trust.checksum"));
    assert!(bad(|c| c.source = String::new()).contains("trust.source"));
    assert!(bad(|c| c.refresh_secs = 0).contains("refresh_secs"));
    assert!(bad(|c| c.max_shrink_percent = 101).contains("max_shrink_percent"));
    let mut ok = TrustListConfig::new("https://h/l.xml");
    ok.ca_file = Some("ca.pem".into());
    ok.validate().unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    config: TrustListConfig,
}

impl Fixture {
    fn new(list: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liste.xml");
        std::fs::write(&path, list).unwrap();
        let config = TrustListConfig::new(path.to_str().unwrap());
        Self { dir, config }
    }

    /// Replaces the list the way an operator's cron would: write then rename.
    fn replace(&self, list: &str) {
        let tmp = self.dir.path().join("liste.xml.tmp");
        std::fs::write(&tmp, list).unwrap();
        std::fs::rename(tmp, self.dir.path().join("liste.xml")).unwrap();
    }

    fn checksum(&self, hex: &str) -> String {
        let path = self.dir.path().join("checksum");
        std::fs::write(&path, format!("{hex}  liste.xml\n")).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn first_load_errors_name_the_source() {
    let f = Fixture::new("<not a list/>");
    let err = TrustStore::load(f.config.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("liste.xml") && err.contains("expected <ListeBlancheMSSante"),
        "{err}"
    );
    let missing = TrustListConfig::new(f.dir.path().join("nope.xml").to_str().unwrap());
    let err = TrustStore::load(missing).await.unwrap_err().to_string();
    assert!(err.contains("nope.xml"), "{err}");
    f.replace(&xml(&[]));
    let err = TrustStore::load(f.config.clone()).await.unwrap_err();
    assert!(matches!(err, TrustError::Empty { .. }), "{err}");
}

#[tokio::test]
async fn refresh_adds_a_domain_without_restart() {
    let f = Fixture::new(&xml(&[("a.mssante.fr", DN_A)]));
    let store = TrustStore::load(f.config.clone()).await.unwrap();
    let before = store.current();
    assert!(!before.is_listed("new.mssante.fr"));
    assert_eq!(store.refresh().await.unwrap(), RefreshOutcome::Unchanged);

    f.replace(&xml(&[("a.mssante.fr", DN_A), ("new.mssante.fr", DN_B)]));
    let outcome = store.refresh().await.unwrap();
    assert_eq!(
        outcome,
        RefreshOutcome::Updated {
            domains: 2,
            entries: 2,
            problems: 0
        }
    );
    assert!(store.current().dn_allowed("new.mssante.fr", &dn(DN_B)));
    // a reader holding the old index keeps a consistent view
    assert!(!before.is_listed("new.mssante.fr"));
    assert_eq!(store.failures(), 0);
}

#[tokio::test]
async fn corrupt_list_keeps_the_previous_one() {
    let good = many(20);
    let f = Fixture::new(&good);
    let store = TrustStore::load(f.config.clone()).await.unwrap();
    // cut in the middle (a truncated download), then not XML, then empty
    for (i, bad) in [&good[..good.len() / 2], "garbage", ""].into_iter().enumerate() {
        f.replace(bad);
        let err = store.refresh().await.unwrap_err();
        assert!(matches!(err, TrustError::Parse { .. }), "{err}");
        assert_eq!(store.failures(), i as u64 + 1);
        assert_eq!(store.current().domains(), 20);
        assert!(store.current().is_listed("d19.mssante.fr"));
    }
    // a missing file too
    std::fs::remove_file(f.dir.path().join("liste.xml")).unwrap();
    assert!(matches!(store.refresh().await, Err(TrustError::Fetch(_))));
    assert_eq!(store.failures(), 4);
    assert!(store.last_error().is_some_and(|e| e.contains("liste.xml")));
    // and the next good list is taken
    f.replace(&many(21));
    assert!(store.refresh().await.is_ok());
    assert_eq!(store.last_error(), None);
    assert_eq!(store.current().domains(), 21);
}

#[tokio::test]
async fn shrunken_list_is_refused() {
    let f = Fixture::new(&many(100));
    let store = TrustStore::load(f.config.clone()).await.unwrap();
    f.replace(&many(90)); // exactly 10 % fewer: accepted
    assert!(store.refresh().await.is_ok());
    f.replace(&many(80)); // 11 % fewer than 90: refused
    let err = store.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::Shrunk {
                what: "domains",
                before: 90,
                after: 80,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.current().domains(), 90);

    let mut lax = f.config.clone();
    lax.max_shrink_percent = 100;
    let store = TrustStore::load(lax).await.unwrap();
    f.replace(&many(1));
    assert!(store.refresh().await.is_ok());
}

#[tokio::test]
async fn checksum_is_verified() {
    let list = xml(&[("a.mssante.fr", DN_A)]);
    let f = Fixture::new(&list);
    let mut config = f.config.clone();
    config.checksum = Some(f.checksum(&sha256_hex(list.as_bytes()).to_uppercase()));
    let store = TrustStore::load(config.clone()).await.unwrap();
    assert_eq!(store.current().sha256(), Some(sha256_hex(list.as_bytes()).as_str()));

    // a new list whose checksum file is not updated yet: refused, old list kept
    f.replace(&xml(&[("a.mssante.fr", DN_A), ("b.mssante.fr", DN_A)]));
    let err = store.refresh().await.unwrap_err();
    assert!(matches!(err, TrustError::Checksum { .. }), "{err}");
    assert!(!store.current().is_listed("b.mssante.fr"));
    // a first load with a mismatching checksum fails
    assert!(matches!(
        TrustStore::load(config.clone()).await,
        Err(TrustError::Checksum { .. })
    ));
    // a checksum file that is not one
    std::fs::write(config.checksum.as_ref().unwrap(), "hello").unwrap();
    let err = store.refresh().await.unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[tokio::test]
async fn refresher_task_follows_the_file_and_stops() {
    let f = Fixture::new(&xml(&[("a.mssante.fr", DN_A)]));
    let mut config = f.config.clone();
    config.refresh_secs = 1;
    let store = Arc::new(TrustStore::load(config).await.unwrap());
    let life = crate::lifecycle::Lifecycle::new();
    let task = store.clone().spawn_refresher(life.watch());
    f.replace(&xml(&[("a.mssante.fr", DN_A), ("b.mssante.fr", DN_A)]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.current().is_listed("b.mssante.fr") {
        assert!(Instant::now() < deadline, "refresher did not pick up the new list");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.age() < Duration::from_secs(5));
    life.advance(Phase::Stopping);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn fixed_index_store() {
    let store = TrustStore::from_index(TrustIndex::from_entries([("a.fr", dn(DN_A))]).unwrap());
    assert!(store.current().is_listed("a.fr"));
    assert!(matches!(store.refresh().await, Err(TrustError::NoSource)));
    assert!(store.config().is_none());
}
