use super::*;
use proptest::prelude::*;

fn dn(s: &str) -> Dn {
    Dn::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn canonical_display() {
    let d = dn("CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR");
    assert_eq!(
        d.to_string(),
        "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=gip sesan,ST=paris (75),C=fr"
    );
    assert_eq!(d.get("O"), Some("gip sesan"));
    assert_eq!(d.get("L"), None);
}

#[test]
fn order_case_and_spacing_do_not_matter() {
    let a = dn("CN=mss.chu-limoges.fr,OU=1870000015,O=C H U DE LIMOGES,ST=Haute-Vienne (87),C=FR");
    for b in [
        "C=FR,ST=Haute-Vienne (87),O=C H U DE LIMOGES,OU=1870000015,CN=mss.chu-limoges.fr",
        "cn=MSS.CHU-LIMOGES.FR, ou=1870000015, o=c h u de limoges, st=haute-vienne (87), c=fr",
        "CN=mss.chu-limoges.fr,OU=1870000015,O=\"C H U  DE  LIMOGES\",ST=Haute-Vienne (87),C=FR",
        "CN = mss.chu-limoges.fr ; OU=1870000015 ;O=C H U\u{a0}DE \u{a0}LIMOGES,ST=Haute-Vienne (87),C=FR",
        "commonName=mss.chu-limoges.fr,OU=1870000015,2.5.4.10=C H U DE LIMOGES,S=Haute-Vienne (87),countryName=FR",
        "CN=mss.chu-limoges.fr+OU=1870000015,OID.2.5.4.10=C H U DE LIMOGES,ST=Haute-Vienne (87),C=FR",
        "  CN=mss.chu-limoges.fr ,OU=1870000015,O=C H U DE LIMOGES  ,ST=Haute-Vienne (87),C=FR  ",
    ] {
        assert_eq!(dn(b), a, "{b}");
    }
}

#[test]
fn different_values_stay_different() {
    assert_ne!(dn("CN=x,ST=Paris(75),C=FR"), dn("CN=x,ST=Paris (75),C=FR"));
    assert_ne!(dn("CN=x,ST=Paris (75),C=FR"), dn("CN=x,L=Paris (75),C=FR"));
    assert_ne!(dn("CN=x,C=FR"), dn("CN=x,C=FR,OU=1"));
    // a repeated attribute is a multiset member, not a set member
    assert_ne!(dn("CN=x,OU=1"), dn("CN=x,OU=1,OU=1"));
}

#[test]
fn escapes() {
    assert_eq!(dn(r"CN=a\,b").get("CN"), Some("a,b"));
    assert_eq!(dn(r"CN=a\2Cb").get("CN"), Some("a,b"));
    assert_eq!(dn(r"CN=\#x").get("CN"), Some("#x"));
    assert_eq!(dn(r#"CN=say \"hi\""#).get("CN"), Some("say \"hi\""));
    assert_eq!(dn(r"CN=H\C3\B4pital").get("CN"), Some("hôpital"));
    assert_eq!(dn(r#"O="a, b; c+d <e>""#).get("O"), Some("a, b; c+d <e>"));
    assert_eq!(dn(r#"O="a \"b\"""#).get("O"), Some("a \"b\""));
    assert_eq!(dn("CN=a=b").get("CN"), Some("a=b"));
    assert_eq!(dn("CN=").get("CN"), Some(""));
    // '#' hex values: PrintableString "FR", UTF8String "é", BMPString "A"
    assert_eq!(dn("C=#13024652").get("C"), Some("fr"));
    assert_eq!(dn("O=#0C02C3A9").get("O"), Some("é"));
    assert_eq!(dn("O=#1E020041").get("O"), Some("a"));
}

#[test]
fn invalid() {
    use DnError::*;
    let cases: &[(&str, DnError)] = &[
        ("", Empty),
        ("   ", Empty),
        ("CN", MissingEquals { at: 0 }),
        ("CN=a,", MissingEquals { at: 5 }),
        ("CN=a,,O=b", MissingEquals { at: 5 }),
        ("CN=a,O", MissingEquals { at: 5 }),
        (
            "C N=a",
            BadType {
                at: 0,
                found: "C N".into(),
            },
        ),
        (
            "1CN=a",
            BadType {
                at: 0,
                found: "1CN".into(),
            },
        ),
        (
            "2.5.04.3=a",
            BadType {
                at: 0,
                found: "2.5.04.3".into(),
            },
        ),
        (
            "=a",
            BadType {
                at: 0,
                found: "".into(),
            },
        ),
        // the real list's bare quotes
        (r#"O=CRLCC "PAUL STRAUSS",C=FR"#, UnexpectedChar { at: 8, found: '"' }),
        (r#"O=a"b"#, UnexpectedChar { at: 3, found: '"' }),
        ("O=a<b", UnexpectedChar { at: 3, found: '<' }),
        (r#"O="a"b"#, UnexpectedChar { at: 5, found: 'b' }),
        (r#"O="ab"#, UnterminatedQuote { at: 2 }),
        (r"O=a\", BadEscape { at: 3 }),
        (r"O=a\q", BadEscape { at: 3 }),
        (r"O=a\x1", BadEscape { at: 3 }),
        (r"O=\C3", BadUtf8 { at: 2 }),
        ("O=#zz", BadHexValue { at: 2 }),
        ("O=#0402abcd", BadHexValue { at: 2 }),
        ("O=#0C05ab", BadHexValue { at: 2 }),
    ];
    for (text, err) in cases {
        assert_eq!(Dn::parse(text).as_ref(), Err(err), "{text:?}");
    }
    assert_eq!(Dn::parse(&"CN=a,".repeat(65)[..64 * 5 + 3]), Err(TooLong));
    assert_eq!(Dn::parse(&"x".repeat(MAX_DN_LEN + 1)), Err(TooLong));
    // short enough as given, too long once control characters are escaped
    // (fuzzer finding: the display must parse back)
    let controls = format!("CN={}", "\u{1}".repeat(MAX_DN_LEN / 2));
    assert!(controls.len() <= MAX_DN_LEN);
    assert_eq!(Dn::parse(&controls), Err(TooLong));
    assert_eq!(
        Dn::from_attributes([("CN", "\u{1}".repeat(MAX_DN_LEN / 2))]),
        Err(TooLong)
    );
}

#[test]
fn from_attributes_matches_parse() {
    let a = Dn::from_attributes([
        ("2.5.4.6", "FR"),
        ("2.5.4.8", "Paris (75)"),
        ("organizationName", "GIP  SESAN"),
        ("OU", "1750048886"),
        ("CN", "smtp-1.sesan.santnet.com"),
    ])
    .unwrap();
    assert_eq!(
        a,
        dn("CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR")
    );
    // values are raw: a comma is a comma, not a separator
    let b = Dn::from_attributes([("O", "a, b")]).unwrap();
    assert_eq!(b.to_string(), r"O=a\, b");
    assert_eq!(dn(&b.to_string()), b);
    assert_eq!(Dn::from_attributes(Vec::<(&str, &str)>::new()), Err(DnError::Empty));
    assert!(matches!(
        Dn::from_attributes([("not a type", "x")]),
        Err(DnError::BadType { .. })
    ));
    let unknown = Dn::from_attributes([("1.2.3.4", "x"), ("businessCategory", "y")]).unwrap();
    assert_eq!(unknown.to_string(), "1.2.3.4=x,BUSINESSCATEGORY=y");
}

proptest! {
    /// Display then parse gives the same DN, whatever the values hold.
    #[test]
    fn display_parse_round_trip(
        attrs in proptest::collection::vec(
            (
                prop_oneof![
                    Just("CN"), Just("OU"), Just("O"), Just("L"), Just("ST"), Just("C"),
                    Just("E"), Just("1.2.3.4"), Just("x-custom"),
                ],
                "[ -~\u{a0}éÉ\u{1}\u{7f}]{0,20}",
            ),
            1..8,
        )
    ) {
        let d = Dn::from_attributes(attrs).unwrap();
        let text = d.to_string();
        prop_assert_eq!(d.text_len(), text.len());
        prop_assert_eq!(Dn::parse(&text), Ok(d), "{}", text);
    }

    /// Any text: parse never panics, and what parses displays to a fixed point.
    #[test]
    fn parse_any(text in "[ -~\u{a0}é]{0,60}") {
        if let Ok(d) = Dn::parse(&text) {
            prop_assert_eq!(Dn::parse(&d.to_string()), Ok(d));
        }
    }
}
