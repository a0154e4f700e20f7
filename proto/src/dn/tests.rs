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

/// The real list's two DNs with bare quotes, and the subject attributes of
/// the certificates they name, as `x509-parser` hands them to the relay
/// (`relay/src/trust/certdn.rs`: dotted OID, decoded string, certificate order).
const BARE_QUOTES: [(&str, [(&str, &str); 5]); 2] = [
    (
        r#"CN=mss.strasbourg.unicancer.fr,OU=1670000033,O=CRLCC "PAUL STRAUSS",ST=Bas-Rhin (67),C=FR"#,
        [
            ("2.5.4.6", "FR"),
            ("2.5.4.8", "Bas-Rhin (67)"),
            ("2.5.4.10", r#"CRLCC "PAUL STRAUSS""#),
            ("2.5.4.11", "1670000033"),
            ("2.5.4.3", "mss.strasbourg.unicancer.fr"),
        ],
    ),
    (
        r#"CN=mssante.ch-ouestguyane.fr,OU=1970300083,O=CENTRE HOSPITALIER "FRANCK-JOLY",ST=Guyane (973),C=FR"#,
        [
            ("2.5.4.6", "FR"),
            ("2.5.4.8", "Guyane (973)"),
            ("2.5.4.10", r#"CENTRE HOSPITALIER "FRANCK-JOLY""#),
            ("2.5.4.11", "1970300083"),
            ("2.5.4.3", "mssante.ch-ouestguyane.fr"),
        ],
    ),
];

#[test]
fn lenient_bare_quotes_equal_the_certificate_subject() {
    for (text, cert) in BARE_QUOTES {
        assert!(matches!(
            Dn::parse(text),
            Err(DnError::UnexpectedChar { found: '"', .. })
        ));
        let (d, leniencies) = Dn::parse_lenient(text).unwrap();
        let at = text.find('"').unwrap();
        assert_eq!(leniencies, [Leniency::BareQuotes { at }], "{text}");
        assert_eq!(d, Dn::from_attributes(cert).unwrap(), "{text}");
        // The canonical text escapes the quotes: read strictly, it is the same DN.
        assert_eq!(dn(&d.to_string()), d);
        assert!(d.to_string().contains(r#"\""#), "{d}");
    }
    let (d, _) = Dn::parse_lenient(BARE_QUOTES[0].0).unwrap();
    assert_eq!(d.get("O"), Some(r#"crlcc "paul strauss""#));
    // The same value written the RFC 4514 ways, or as a BER UTF8String.
    let hex = format!("O=#0C14{}", hex_upper(br#"CRLCC "PAUL STRAUSS""#));
    for o in [r#"O=CRLCC \"PAUL STRAUSS\""#, r#"O="CRLCC \"PAUL  STRAUSS\"""#, &hex] {
        let text = format!("CN=mss.strasbourg.unicancer.fr,OU=1670000033,{o},ST=Bas-Rhin (67),C=FR");
        assert_eq!(Dn::parse_lenient(&text), Ok((d.clone(), vec![])), "{text}");
        assert_eq!(dn(&text), d, "{text}");
    }
    // The quotes are part of the value: without them it is another DN.
    assert_ne!(
        d,
        dn("CN=mss.strasbourg.unicancer.fr,OU=1670000033,O=CRLCC PAUL STRAUSS,ST=Bas-Rhin (67),C=FR")
    );
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn lenient_reads_only_what_has_one_reading() {
    use DnError::*;
    let ok: &[(&str, &str, &[usize])] = &[
        // (text, O's canonical value, offsets of the leniencies)
        (r#"O=a "b" c"#, r#"a "b" c"#, &[4]),
        (r#"O=5" disk,C=FR"#, r#"5" disk"#, &[3]),
        (r#"C=FR,O=a"b"#, r#"a"b"#, &[8]),
        (r#"O=a "b" c "d" e"#, r#"a "b" c "d" e"#, &[4]),
        (r#"O=a \"b" c""#, r#"a "b" c""#, &[7]),
        (r#"O=x "y" , OU="z""#, r#"x "y""#, &[4]),
        ("O=\"quoted, whole\"", "quoted, whole", &[]),
    ];
    for (text, o, at) in ok {
        let (d, leniencies) = Dn::parse_lenient(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(d.get("O"), Some(*o), "{text}");
        let expected: Vec<_> = at.iter().map(|&at| Leniency::BareQuotes { at }).collect();
        assert_eq!(leniencies, expected, "{text}");
    }
    let (_, two) = Dn::parse_lenient(r#"O=a "b",OU=c "d""#).unwrap();
    assert_eq!(two, [Leniency::BareQuotes { at: 4 }, Leniency::BareQuotes { at: 13 }]);
    assert_eq!(
        two[0].to_string(),
        "bare '\"' at offset 4 read as a literal character (RFC 4514 wants it escaped)"
    );
    let refused: &[(&str, DnError)] = &[
        // a quoted stretch across a separator, or two values?
        (r#"O=x "y,OU=z""#, AmbiguousQuote { at: 4 }),
        (r#"O=a "b" c "d,OU=e" f"#, AmbiguousQuote { at: 10 }),
        (r#"O=a"b,OU=\"c"#, AmbiguousQuote { at: 3 }),
        // a quote opening a value: RFC 2253 quoting, so what follows is junk
        (r#"O="CRLCC" PAUL"#, UnexpectedChar { at: 10, found: 'P' }),
        (r#"O="CRLCC PAUL,C=FR"#, UnterminatedQuote { at: 2 }),
        (r#"CN="b"#, UnterminatedQuote { at: 3 }),
        // other characters RFC 4514 wants escaped stay refused
        (r#"O=a "b" <c>"#, UnexpectedChar { at: 8, found: '<' }),
    ];
    for (text, err) in refused {
        assert_eq!(Dn::parse_lenient(text).as_ref(), Err(err), "{text}");
        assert!(Dn::parse(text).is_err(), "{text}");
    }
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

    /// Lenient reading only adds: what `parse` reads it reads the same, without
    /// leniency; what it reads displays to a text `parse` reads back.
    #[test]
    fn lenient_extends_strict(text in "([A-Z]{1,2}=[ a-z\"\\\\,+]{0,8}[,;]?){1,4}") {
        let lenient = Dn::parse_lenient(&text);
        match Dn::parse(&text) {
            Ok(d) => prop_assert_eq!(lenient, Ok((d, vec![]))),
            Err(e) => {
                if let Ok((d, leniencies)) = lenient {
                    prop_assert!(!leniencies.is_empty(), "{}: {:?}", text, e);
                    prop_assert_eq!(Dn::parse(&d.to_string()), Ok(d));
                }
            }
        }
    }
}
