//! AUTH with a real client: swaks authenticates with PLAIN after STARTTLS
//! against an argon2-hashed account; the account may send only from its own
//! addresses; AUTH is not offered in clear.

mod support;

use std::process::Command;

use support::node::{file, run, start_node_full, Extra};

fn swaks(port: u16, ca: &str, from: &str, password: &str) -> Command {
    let mut cmd = Command::new("swaks");
    cmd.args([
        "--server",
        &format!("127.0.0.1:{port}"),
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        ca,
    ])
    .args(["--auth", "PLAIN", "--auth-user", "dpi-chu", "--auth-password", password])
    .args(["--from", from, "--to", "dr@cabinet.test", "--helo", "dpi.test"]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_plain_after_starttls_with_sender_ownership() {
    let ids = tempfile::tempdir().expect("tempdir");
    let hash = relay::inbound::identity::hash_password("correct horse").expect("hash");
    let ids_file = ids.path().join("identities.toml");
    std::fs::write(
        &ids_file,
        format!("[[account]]\nname = \"dpi-chu\"\npassword = \"{hash}\"\nsenders = [\"@ch.mssante.test\"]\n"),
    )
    .expect("write");
    let node_extra = format!("identities = \"{}\"", ids_file.display());
    let t = start_node_full(Extra {
        node: &node_extra,
        mta: "auth = true\nrequire_auth = true",
        ..Extra::default()
    })
    .await;
    let ca = file(&t.pki().join("ca.pem"));
    let port = t.port("mta");

    let (ok, out) = run(swaks(port, &ca, "app@ch.mssante.test", "correct horse")).await;
    assert!(ok, "{out}");
    assert!(out.contains("235 2.7.0 authentication successful"), "{out}");
    assert!(out.contains("250 2.0.0 queued as"), "{out}");

    let (ok, out) = run(swaks(port, &ca, "app@ch.mssante.test", "wrong")).await;
    assert!(!ok, "{out}");
    assert!(out.contains("535 5.7.8"), "{out}");

    let (ok, out) = run(swaks(port, &ca, "someone@elsewhere.test", "correct horse")).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("550 5.7.1 sender someone@elsewhere.test not allowed for identity dpi-chu"),
        "{out}"
    );

    // In clear, AUTH is neither offered nor accepted.
    let mut clear = Command::new("swaks");
    clear
        .args(["--server", &format!("127.0.0.1:{port}"), "--quit-after", "EHLO"])
        .args(["--helo", "dpi.test"]);
    let (_, out) = run(clear).await;
    assert!(out.contains("STARTTLS") && !out.contains("AUTH PLAIN"), "{out}");
    t.node.shutdown().await;
}
