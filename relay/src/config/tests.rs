//! Tests of the configuration: the example files load, bad values are named.

use super::*;

fn example() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("estafette.example.toml")
}

#[test]
fn example_file_loads_and_validates() {
    let c = Config::load(&example()).unwrap();
    assert_eq!(c.node.hostname, "relay.example.org");
    assert!(c.listeners.iter().any(|l| l.tls == TlsMode::Implicit));
    assert!(c.node.spool.is_absolute(), "relative paths resolve next to the file");
    assert_eq!(c.outbound.resolver, ResolverSetting::default());
    assert_eq!(c.outbound.mx_port, 25);
    assert_eq!((c.outbound.handoff_grace_secs, c.outbound.max_ready), (300, 100_000));
    assert!(c.routes.iter().any(|r| r.host.is_none()), "an MX route is shown");
}

#[test]
fn mssante_example_loads_and_validates() {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("estafette.mssante.example.toml");
    let c = Config::load(&path).unwrap();
    let trust = c.trust.as_ref().expect("[trust]");
    assert!(!trust.outside);
    assert!(trust.list.source.starts_with("https://"));
    assert!(c.listeners.iter().any(|l| l.operators));
    // Own mailbox servers are internal; Mon espace santé is reached by MX
    // under the trust list's checks, with its 25 MB limit.
    assert!(c.routes.iter().filter(|r| r.host.is_some()).all(|r| r.internal));
    let patient = c
        .routes
        .iter()
        .find(|r| r.domain == "patient.mssante.fr")
        .expect("patient route");
    assert_eq!(patient.max_message_size, Some(25_000_000));
    let admin = c.admin.as_ref().expect("[admin]");
    assert!(!admin.address.ip().is_loopback() && admin.token_file.is_some());
    // An operator listener without [trust] is refused, naming the field.
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.split("[trust]").next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, cut).unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("operators") && e.contains("[trust]"), "{e}");
}

#[test]
fn admin_section() {
    let c = Config::load(&example()).unwrap();
    let admin = c.admin.as_ref().expect("the example shows [admin]");
    assert_eq!(admin.address, DEFAULT_ADMIN_ADDRESS);
    assert_eq!(
        admin.token_file.as_deref(),
        Some(Path::new("/etc/estafette/admin.token"))
    );
    let base = std::fs::read_to_string(example()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let load = |from: &str, to: &str| {
        assert!(base.contains(from), "example lacks {from}");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
        Config::load(&p)
    };
    // An empty section means the defaults; no section, no admin listener.
    let c = load("[admin]\naddress = \"127.0.0.1:9025\"", "[admin]").unwrap();
    assert_eq!(c.admin.as_ref().unwrap().address, DEFAULT_ADMIN_ADDRESS);
    let section = base.find("[admin]").map(|at| &base[at..]).unwrap();
    let section = &section[..section.find("\n\n").unwrap()];
    let p = dir.path().join("none.toml");
    std::fs::write(&p, base.replacen(section, "", 1)).unwrap();
    assert!(Config::load(&p).unwrap().admin.is_none());
    // A relative token file is next to the config file.
    let c = load("/etc/estafette/admin.token", "admin.token").unwrap();
    assert_eq!(c.admin.unwrap().token_file.unwrap(), dir.path().join("admin.token"));
    // Refused, naming the field.
    let e = load("127.0.0.1:9025", "0.0.0.0:9025");
    assert!(e.is_ok(), "a token file is set: any address");
    let e = load(
        "token_file = \"/etc/estafette/admin.token\"",
        "token_file = \"/etc/estafette/admin.token\"\ntoken = \"t\"",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("admin.token") && e.contains("not both"), "{e}");
    let no_write = base.replacen("write_token_file = \"/etc/estafette/admin.write-token\"", "", 1);
    let p = dir.path().join("open.toml");
    std::fs::write(
        &p,
        no_write.replacen(
            "address = \"127.0.0.1:9025\"     # a non-loopback address needs a token\ntoken_file = \"/etc/estafette/admin.token\"",
            "address = \"0.0.0.0:9025\"",
            1,
        ),
    )
    .unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("admin.address") && e.contains("token"), "{e}");
    // The write token: relative to the config file, distinct from the read token.
    let c = load("/etc/estafette/admin.write-token", "admin.write-token").unwrap();
    assert_eq!(
        c.admin.unwrap().write_token_file.unwrap(),
        dir.path().join("admin.write-token")
    );
    std::fs::write(
        &p,
        no_write.replacen(
            "token_file = \"/etc/estafette/admin.token\"  # read at start; or token = \"...\"",
            "token = \"same\"\nwrite_token = \"same\"",
            1,
        ),
    )
    .unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("admin.write_token") && e.contains("must differ"), "{e}");
    let e = load("token_file = \"/etc/estafette/admin.token\"", "token = \"\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.token"), "{e}");
    // The token file: trimmed; empty or missing is an error naming it.
    let t = dir.path().join("admin.token");
    std::fs::write(&t, "s3cret\n").unwrap();
    let c = load("/etc/estafette/admin.token", "admin.token").unwrap();
    assert_eq!(
        c.admin.as_ref().unwrap().load_token().unwrap().as_deref(),
        Some("s3cret")
    );
    std::fs::write(&t, " \n").unwrap();
    let e = c.admin.as_ref().unwrap().load_token().unwrap_err().to_string();
    assert!(e.contains("admin.token_file") && e.contains("empty"), "{e}");
    std::fs::remove_file(&t).unwrap();
    let e = c.admin.as_ref().unwrap().load_token().unwrap_err().to_string();
    assert!(e.contains("admin.token"), "{e}");
}

#[test]
fn resolver_is_system_or_a_server_list() {
    let base = std::fs::read_to_string(example()).unwrap();
    let load = |line: &str| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, base.replacen("resolver = \"system\"", line, 1)).unwrap();
        Config::load(&p)
    };
    let c = load("resolver = [\"127.0.0.1:5353\", \"[::1]:53\"]").unwrap();
    assert_eq!(
        c.outbound.resolver,
        ResolverSetting::Servers(vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()])
    );
    for bad in ["resolver = \"google\"", "resolver = [\"127.0.0.1\"]", "resolver = []"] {
        let e = load(bad).unwrap_err().to_string();
        assert!(e.contains("resolver") || e.contains("system"), "{bad}: {e}");
    }
}

#[test]
fn errors_name_the_field() {
    let base = std::fs::read_to_string(example()).unwrap();
    let cases = [
        (
            "hostname = \"relay.example.org\"",
            "hostname = \"not a host\"",
            "node.hostname",
        ),
        (
            "max_line_length = 1000",
            "max_line_length = 10",
            "limits.max_line_length",
        ),
        ("max_sessions = 1000", "max_sessions = 0", "max_sessions"),
    ];
    for (from, to, field) in cases {
        assert!(base.contains(from), "example lacks {from}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, base.replacen(from, to, 1)).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("{base}\nunknown_key = 1\n")).unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("unknown"), "{e}");
}

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn environment_overrides_scalar_settings() {
    let c = Config::load_with(
        &example(),
        vars(&[
            ("ESTAFETTE_LIMITS__MAX_RECIPIENTS", "7"),
            ("ESTAFETTE_NODE__HOSTNAME", "mx.example.net"),
            ("ESTAFETTE_listener__1__max_sessions", "3"),
            ("ESTAFETTE_LOG", "debug"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.limits.max_recipients, 7);
    assert_eq!(c.node.hostname, "mx.example.net");
    assert_eq!(c.listeners[1].max_sessions, 3);
    assert_eq!(
        c.overrides,
        ["limits.max_recipients", "node.hostname", "listener.1.max_sessions"]
    );
    let plain = Config::load_with(&example(), vars(&[])).unwrap();
    assert!(plain.overrides.is_empty());
    assert_ne!(plain.limits.max_recipients, 7);
}

#[test]
fn environment_overrides_that_cannot_apply_are_named() {
    let cases = [
        ("ESTAFETTE_CLUSTER__NAME", "estafette-1", "no such section"),
        ("ESTAFETTE_LISTENER__NAME", "x", "add its index"),
        ("ESTAFETTE_LISTENER__9__NAME", "x", "past the list"),
        ("ESTAFETTE_LIMITS", "x", ""),
        ("ESTAFETTE_NODE__HOSTNAME__X", "x", "is a value"),
        ("ESTAFETTE_OUTBOUND", "x", ""),
        ("ESTAFETTE_NODE____X", "x", "empty key"),
    ];
    for (var, value, reason) in cases {
        let result = Config::load_with(&example(), vars(&[(var, value)]));
        if reason.is_empty() {
            // No `__`: not a setting, left alone.
            assert!(result.is_ok(), "{var}");
            continue;
        }
        let e = result.unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{var}: {e}");
        let text = e.to_string();
        assert!(text.contains(var) && text.contains(reason), "{var}: {text}");
    }
    // A value of the wrong type is the schema's error.
    let e = Config::load_with(&example(), vars(&[("ESTAFETTE_LIMITS__MAX_RECIPIENTS", "many")])).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

#[test]
fn a_cluster_member_takes_its_node_id_from_the_member_list() {
    let base = std::fs::read_to_string(example()).unwrap();
    let cluster = r#"
[cluster]
name = "estafette-0"
listen = "0.0.0.0:7946"
ca = "cluster/ca.pem"
cert = "cluster/node.pem"
key = "cluster/node.key"
[[cluster.member]]
name = "estafette-0"
id = 0
address = "estafette-0.estafette-peers:7946"
[[cluster.member]]
name = "estafette-1"
id = 1
address = "estafette-1.estafette-peers:7946"
"#;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    // The example sets node_id; a StatefulSet's shared file does not.
    let text: String = base
        .lines()
        .filter(|l| !l.starts_with("node_id"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&p, format!("{text}\n{cluster}")).unwrap();
    let c = Config::load_with(&p, vars(&[])).unwrap();
    assert_eq!(c.node.node_id, 0);
    let c = Config::load_with(&p, vars(&[("ESTAFETTE_CLUSTER__NAME", "estafette-1")])).unwrap();
    assert_eq!(
        (c.cluster.as_ref().unwrap().name.as_str(), c.node.node_id),
        ("estafette-1", 1)
    );
    // An explicit node_id that disagrees with the member is refused.
    let e = Config::load_with(
        &p,
        vars(&[
            ("ESTAFETTE_CLUSTER__NAME", "estafette-1"),
            ("ESTAFETTE_NODE__NODE_ID", "0"),
        ]),
    );
    assert!(e.is_err(), "an explicit node_id must still match");
    let e = Config::load_with(&p, vars(&[("ESTAFETTE_CLUSTER__NAME", "estafette-7")])).unwrap_err();
    assert!(e.to_string().contains("estafette-7"), "{e}");
}

#[test]
fn with_discovery_a_pod_name_is_a_member_and_its_ordinal_the_id() {
    assert_eq!(ordinal("estafette-12"), Some(("estafette", 12)));
    assert_eq!(ordinal("my-relay-0"), Some(("my-relay", 0)));
    for bad in ["estafette", "estafette-", "-3", "estafette-x", "estafette-99999"] {
        assert_eq!(ordinal(bad), None, "{bad}");
    }
    let base = std::fs::read_to_string(example()).unwrap();
    let text: String = base
        .lines()
        .filter(|l| !l.starts_with("node_id"))
        .collect::<Vec<_>>()
        .join("\n");
    let cluster = r#"
[cluster]
name = "estafette-4"
listen = "0.0.0.0:7946"
ca = "c/ca.pem"
cert = "c/n.pem"
key = "c/n.key"
[cluster.discover]
srv = "_repl._udp.estafette-peers"
"#;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("{text}\n{cluster}")).unwrap();
    let c = Config::load_with(&p, vars(&[])).unwrap();
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!((c.node.node_id, cl.my_id()), (4, Some(4)));
    assert_eq!(cl.discover.as_ref().map(|d| d.interval_secs), Some(10));
    // Peers: pods of the same StatefulSet only.
    assert_eq!(cl.member_id("estafette-7"), Some(7));
    assert_eq!(cl.member_id("ESTAFETTE-7"), Some(7));
    assert_eq!(cl.member_id("other-7"), None);
    assert_eq!(cl.member_id("estafette"), None);
    let e = Config::load_with(&p, vars(&[("ESTAFETTE_CLUSTER__NAME", "relay")])).unwrap_err();
    assert!(e.to_string().contains("NAME-ORDINAL"), "{e}");
}
