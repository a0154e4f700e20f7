//! The trust list over real HTTPS: Python's http.server wrapped in ssl, on
//! 127.0.0.1 with a certificate from a CA generated here, the CA file given to
//! the loader. And `estafette trustlist check` on the real list.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use proto::dn::Dn;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use relay::trust::fetch::sha256_hex;
use relay::trust::{RefreshOutcome, TrustError, TrustListConfig, TrustStore};
use support::peers::HttpsServer;

/// Read at run time: a test binary built from another clone that shares the
/// target directory would carry that clone's path.
fn real_list() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../shared/data/listeblanchemssante-2025-03-13.xml")
}
const DN_A: &str = "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR";

fn xml(domains: &[&str]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\">\n\
         <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>\n<ListeDomaines>\n",
    );
    for d in domains {
        s.push_str(&format!(
            "<Domaine><Nom>{d}</Nom><DNCertificatOperateur>{DN_A}</DNCertificatOperateur></Domaine>\n"
        ));
    }
    s + "</ListeDomaines>\n"
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it.
fn pki(dir: &Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join(format!("{ca_name}.pem")),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

struct Setup {
    dir: tempfile::TempDir,
    server: HttpsServer,
    ca: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        let (ca, cert, key) = pki(dir.path(), "ca");
        let server = HttpsServer::start(&cert, &key, &root);
        Self { dir, server, ca }
    }

    /// Publishes a list and its checksum file, as ANS does.
    fn publish(&self, list: &[u8]) {
        let root = self.dir.path().join("www");
        let tmp = root.join("tmp");
        std::fs::write(&tmp, list).unwrap();
        std::fs::rename(&tmp, root.join("liste.xml")).unwrap();
        std::fs::write(root.join("checksum"), sha256_hex(list)).unwrap();
    }

    fn config(&self) -> TrustListConfig {
        let mut c = TrustListConfig::new(self.server.url("liste.xml"));
        c.ca_file = Some(self.ca.clone());
        c.checksum = Some(self.server.url("checksum"));
        c.timeout_secs = 10;
        c
    }
}

#[tokio::test]
async fn https_download_refresh_and_corrupt_download() {
    let s = Setup::new();
    s.publish(xml(&["a.mssante.fr", "b.mssante.fr", "c.mssante.fr"]).as_bytes());
    let store = TrustStore::load(s.config()).await.unwrap();
    assert_eq!(store.current().domains(), 3);
    assert_eq!(store.refresh().await.unwrap(), RefreshOutcome::Unchanged);

    // ANS adds a domain: taken without restart
    s.publish(xml(&["a.mssante.fr", "b.mssante.fr", "c.mssante.fr", "new.mssante.fr"]).as_bytes());
    assert!(matches!(
        store.refresh().await.unwrap(),
        RefreshOutcome::Updated { domains: 4, .. }
    ));
    let dn = Dn::parse(DN_A).unwrap();
    assert!(store.current().dn_allowed("NEW.mssante.fr", &dn));

    // a corrupt download (cut short, checksum matching what was served, as a
    // broken publication would be): refused, previous list kept
    let full = xml(&[
        "a.mssante.fr",
        "b.mssante.fr",
        "c.mssante.fr",
        "new.mssante.fr",
        "e.mssante.fr",
    ]);
    s.publish(&full.as_bytes()[..full.len() * 2 / 3]);
    let err = store.refresh().await.unwrap_err();
    assert!(matches!(err, TrustError::Parse { .. }), "{err}");
    assert!(err.to_string().contains(&s.server.url("liste.xml")), "{err}");
    // a download that does not match its checksum: refused
    s.publish(full.as_bytes());
    std::fs::write(s.dir.path().join("www/checksum"), sha256_hex(b"other")).unwrap();
    assert!(matches!(store.refresh().await, Err(TrustError::Checksum { .. })));
    assert_eq!(store.failures(), 2);
    assert_eq!(store.current().domains(), 4);
    assert!(store.current().is_listed("new.mssante.fr"));
    assert!(!store.current().is_listed("e.mssante.fr"));
}

#[tokio::test]
async fn https_errors_name_the_url() {
    let s = Setup::new();
    s.publish(xml(&["a.mssante.fr"]).as_bytes());

    // a server certificate from another CA
    let (other_ca, _, _) = pki(s.dir.path(), "other-ca");
    let mut c = s.config();
    c.ca_file = Some(other_ca);
    let err = TrustStore::load(c).await.unwrap_err().to_string();
    assert!(
        err.contains("127.0.0.1") && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    // 404
    let mut c = s.config();
    c.source = s.server.url("missing.xml");
    let err = TrustStore::load(c).await.unwrap_err().to_string();
    assert!(err.contains("missing.xml") && err.contains("404"), "{err}");

    // larger than the cap
    let mut c = s.config();
    c.max_bytes = 100;
    let err = TrustStore::load(c).await.unwrap_err().to_string();
    assert!(err.contains("larger than 100 bytes"), "{err}");

    // nobody listening
    let mut c = s.config();
    c.source = "https://127.0.0.1:9/liste.xml".into();
    let err = TrustStore::load(c).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

/// ANS's real list and checksum file, served over HTTPS.
#[tokio::test]
async fn real_list_over_https() {
    let real = real_list();
    let Ok(bytes) = std::fs::read(&real) else {
        eprintln!("skipped: {} not found", real.display());
        return;
    };
    let s = Setup::new();
    s.publish(&bytes);
    std::fs::copy(real.with_extension("xml.sha256"), s.dir.path().join("www/checksum")).unwrap();
    let store = TrustStore::load(s.config()).await.unwrap();
    let idx = store.current();
    // 2 DNs with bare inner quotes are read leniently (kept); 1 mailbox in
    // place of a domain is skipped.
    assert_eq!((idx.entries(), idx.domains(), idx.distinct_dns()), (6553, 5001, 384));
    assert_eq!(idx.problems().len(), 1);
    assert_eq!(idx.generated(), Some("2025-03-13T14:54:10Z"));
    let sesan = Dn::parse("C=FR,ST=Paris(75),O=GIP SESAN,OU=1750048886,CN=smtp-1.sesan.santnet.com").unwrap();
    let listed: Vec<_> = ["uc-cmp.mssante.fr", "UC-CMP.mssante.fr", "adsea29.mssante.fr"]
        .iter()
        .map(|d| idx.is_listed(d))
        .collect();
    assert_eq!(listed, [true, true, true]);
    // two spellings of one DN (quoted, double spaces) fold into one; the third
    // (bare quotes around FRANCK-JOLY) is another DN, read leniently
    assert_eq!(idx.dns_for("ch-ouestguyane.mssante.fr").len(), 2);
    // the cancer centre whose DN has bare quotes stays in the trust space
    assert!(idx.is_listed("strasbourg.unicancer.mssante.fr"));
    // listed as ST=Paris(75), without a space: that spelling only
    assert!(idx.dn_allowed("esad.ssiad.survilliers.mssante.fr", &sesan));
    let spaced = Dn::parse("CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR").unwrap();
    assert!(!idx.dn_allowed("esad.ssiad.survilliers.mssante.fr", &spaced));
}

#[test]
fn check_command() {
    let bin = env!("CARGO_BIN_EXE_estafette");
    let real = real_list();
    if std::fs::metadata(&real).is_err() {
        eprintln!("skipped: {} not found", real.display());
        return;
    }
    let out = Command::new(bin)
        .args(["trustlist", "check"])
        .arg(&real)
        .arg("--checksum")
        .arg(real.with_extension("xml.sha256"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "checksum: OK",
        "entries: 6553 usable, 1 skipped",
        "domains: 5001; operator DNs: 384 distinct (392 spellings)",
        "read leniently (2):",
        "line 50066: strasbourg.unicancer.mssante.fr: certificate DN",
        "no usable entry): sessad@ase.ditepbeziers.mssante.fr\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let strict = Command::new(bin)
        .args(["trustlist", "check", "--strict"])
        .arg(&real)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));

    // the same list cut between two entries: refused, exit status 1
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&real).unwrap();
    let cut = bytes.len() / 2;
    let cut = cut + bytes[cut..].windows(10).position(|w| w == b"</Domaine>").unwrap() + 10;
    let path = dir.path().join("cut.xml");
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let out = Command::new(bin)
        .args(["trustlist", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("REFUSED: line") && text.contains("cut short inside <ListeDomaines>"),
        "{text}"
    );
}
