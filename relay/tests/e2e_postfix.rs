//! Postfix → Estafette → Postfix: a stock Postfix relays (relayhost) through
//! the node, which delivers to a second stock Postfix with a virtual mailbox.
//! The message arrives byte for byte, with only trace headers added above it.
//!
//! Each Postfix is a private instance (`postfix -c DIR`) in a temporary
//! directory, on 127.0.0.1 ephemeral ports, stopped when the test ends. Needs
//! root (Postfix daemons switch to the `postfix` user), as in CI.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::node::{run, start_node_with};
use support::peers::free_port;

const MASTER_CF: &str = "\
PORT      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// A private Postfix instance; stopped on drop.
struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postfix {
    fn start(name: &str, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("estafette-postfix")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let port = free_port();
        let d = dir.path().display().to_string();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = {name}.test\n\
             mydomain = test\n\
             myorigin = $myhostname\n\
             mynetworks = 127.0.0.0/8\n\
             maillog_file = {d}/maillog\n\
             maillog_file_prefixes = /tmp\n\
             smtputf8_enable = no\n\
             biff = no\n\
             {extra}\n",
            extra = extra.replace("INSTANCE_DIR", &d)
        );
        std::fs::write(dir.path().join("main.cf"), main_cf).expect("main.cf");
        std::fs::write(
            dir.path().join("master.cf"),
            MASTER_CF.replace("PORT", &format!("127.0.0.1:{port}")),
        )
        .expect("master.cf");
        for sub in ["queue", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let status = Command::new("chown")
            .args(["postfix", &format!("{d}/data")])
            .status()
            .expect("chown");
        assert!(status.success());
        let out = Command::new("/usr/sbin/postfix")
            .args(["-c", &d, "start"])
            .output()
            .expect("postfix start");
        assert!(
            out.status.success(),
            "postfix start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix {name} did not listen; log:\n{}",
                Self::log_of(dir.path())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { dir, port }
    }

    fn log_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("maillog")).unwrap_or_default()
    }

    fn log(&self) -> String {
        Self::log_of(self.dir.path())
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .args(["-c", &self.dir.path().display().to_string(), "abort"])
            .output();
    }
}

/// A stock Postfix delivering every `clinique.test` address into one
/// maildir (`<base>/box/new`).
fn downstream() -> (Postfix, PathBuf) {
    let down = Postfix::start(
        "downstream",
        "mydestination =\n\
         virtual_mailbox_domains = clinique.test\n\
         virtual_mailbox_base = INSTANCE_DIR/mail\n\
         virtual_mailbox_maps = static:box/\n\
         virtual_uid_maps = static:65534\n\
         virtual_gid_maps = static:65534\n\
         smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
    );
    // The maildir's base exists before the first delivery. (It used to be
    // set by a `postfix reload` after start; a connection arriving during
    // that reload was once left without a greeting for a minute.)
    let base = down.path("mail");
    std::fs::create_dir_all(&base).expect("mkdir mail");
    let _ = Command::new("chown")
        .args(["-R", "65534:65534", &base.display().to_string()])
        .status();

    (down, base)
}

/// The first file of a maildir's `new/`, waiting up to a minute.
async fn first_mail(new: &Path, logs: impl Fn() -> String) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(f) = std::fs::read_dir(new)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
        {
            return std::fs::read(f.path()).expect("read maildir file");
        }
        assert!(Instant::now() < deadline, "not delivered.\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_to_estafette_to_postfix_byte_for_byte() {
    let (down, base) = downstream();

    let tail = format!(
        "[[route]]\ndomain = \"clinique.test\"\nhost = \"127.0.0.1:{}\"\ntls = \"opportunistic\"\n\n[outbound]\nca = \"pki/ca.pem\"\npoll_ms = 100\n",
        down.port
    );
    let t = start_node_with("", "", &tail).await;

    // Upstream: relays everything through the node (plain listener).
    let up = Postfix::start(
        "upstream",
        &format!(
            "mydestination =\nrelayhost = [127.0.0.1]:{}\nsmtp_tls_security_level = none\n\
             smtpd_relay_restrictions = permit_mynetworks, reject",
            t.port("plain")
        ),
    );

    let original = "From: Secretariat <secretariat@ch.mssante.test>\r\n\
To: Dr Martin <dr.martin@clinique.test>\r\n\
Subject: =?UTF-8?Q?Compte_rendu_op=C3=A9ratoire?=\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\
Message-ID: <cro-42@ch.mssante.test>\r\n\
MIME-Version: 1.0\r\n\
X-MSS-NIL: DPI-Exemple 5.1\r\n\
X-MSS-CODECDA: 34874-7\r\n\
X-MSS-INS: O\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Cher confrère, ci-joint le compte rendu.\r\n\
.Une ligne qui commence par un point.\r\n\
DOTLINE\r\n\
--b1\r\n\
Content-Type: application/zip; name=\"IHE_XDM.zip\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
UEsDBBQAAAAIAAAAIQAAAAAAAAAAAAAAAAAJAAAASUhFX1hETS9VRVNEQkJRQUFBQUlBQUFBSVFB\r\n\
--b1--\r\n";
    // RFC 5321 §4.5.3.1.6: a 998-octet text line that starts with a dot is
    // 1,001 octets on the wire once Postfix dot-stuffs it; the limit does not
    // count the transparency dot.
    let dot_line = format!(".{}", "x".repeat(997));
    let original = original.replace("DOTLINE", &dot_line);
    let original = original.as_str();
    let script = r#"
import smtplib, sys
port, path = int(sys.argv[1]), sys.argv[2]
data = open(path, 'rb').read()
with smtplib.SMTP('127.0.0.1', port) as s:
    s.sendmail('secretariat@ch.mssante.test', ['dr.martin@clinique.test'], data)
print('sent')
"#;
    let msg_path = t.dir.path().join("original.eml");
    std::fs::write(&msg_path, original).expect("write");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", script, &up.port.to_string(), &msg_path.display().to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");

    let new = base.join("box/new");
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        if let Some(f) = std::fs::read_dir(&new)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
        {
            break std::fs::read(f.path()).expect("read maildir file");
        }
        assert!(
            Instant::now() < deadline,
            "not delivered.\nupstream log:\n{}\ndownstream log:\n{}",
            up.log(),
            down.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Maildir files use LF; the original's lines must follow the trace headers unchanged.
    let delivered = String::from_utf8(delivered).expect("utf8");
    let expected = original.replace("\r\n", "\n");
    let start = delivered.find("From: Secretariat").expect("original headers present");
    assert_eq!(&delivered[start..], expected, "body changed in transit");
    // Above it: only trace fields (Return-Path, Delivered-To, X-Original-To
    // added by the downstream virtual agent, Received, and
    // their continuation lines); exactly one Received by Estafette.
    for line in delivered[..start].lines() {
        assert!(
            line.starts_with("Return-Path:")
                || line.starts_with("Delivered-To:")
                || line.starts_with("X-Original-To:")
                || line.starts_with("Received:")
                || line.starts_with(char::is_whitespace),
            "unexpected header added: {line}"
        );
    }
    assert_eq!(delivered[..start].matches("(Estafette)").count(), 1, "{delivered}");
    // Estafette's Received names its queue id (RFC 5321 §4.4 `id` clause):
    // the trace of this copy is `estafette trace ID`.
    let received = &delivered[delivered.find("(Estafette)").expect("ours")..];
    let id: String = received[received.find("\n\tid ").expect("id clause") + 5..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let id: storage::MessageId = id.parse().expect("a queue id");
    assert!(!t.node.spool.events(id).expect("trace").is_empty(), "no trace for {id}");
    drop(up);
    drop(down);
    t.node.shutdown().await;
}

/// A DSN from the node is a message another MTA takes: Postfix accepts it
/// and Python's email package reads it as a well-formed RFC 3464 report.
/// Also: every MAIL FROM parameter Postfix's client may send is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_is_accepted_by_postfix_and_parses_as_a_delivery_report() {
    let (down, base) = downstream();
    let refusing = support::peers::aiosmtpd(support::peers::PyTls::None);
    let tail = format!(
        "[[route]]\ndomain = \"clinique.test\"\nhost = \"127.0.0.1:{}\"\ntls = \"none\"\n\n\
         [[route]]\ndomain = \"refusing.test\"\nhost = \"{}\"\ntls = \"none\"\n\n\
         [outbound]\npoll_ms = 100\n",
        down.port, refusing.addr
    );
    let t = start_node_with("", "", &tail).await;
    // MAIL FROM with every parameter Postfix's smtp client may send (SIZE,
    // BODY, SMTPUTF8, RET, ENVID, AUTH=<>), then a recipient that is refused
    // for good downstream.
    let script = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('mx.upstream.test')
code, msg = s.mail('secretariat@clinique.test', ['SIZE=300', 'BODY=8BITMIME', 'SMTPUTF8', 'RET=HDRS', 'ENVID=env-42', 'AUTH=<>'])
assert code == 250, (code, msg)
code, msg = s.rcpt('reject@refusing.test', ['NOTIFY=FAILURE', 'ORCPT=rfc822;reject@refusing.test'])
assert code == 250, (code, msg)
code, msg = s.data('Subject: sera refuse\r\nMessage-ID: <r-1@clinique.test>\r\n\r\nBonjour\r\n'.encode())
assert code == 250, (code, msg)
s.quit()
print('sent')
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", script, &t.port("plain").to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}");
    let dsn = first_mail(&base.join("box/new"), || down.log()).await;
    let path = t.dir.path().join("dsn.eml");
    std::fs::write(&path, &dsn).expect("write");
    let parse = r#"
import email, sys
from email import policy
m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=policy.default)
assert m.get_content_type() == 'multipart/report', m.get_content_type()
assert m.get_param('report-type') == 'delivery-status', m.get_param('report-type')
parts = list(m.iter_parts())
assert [p.get_content_type() for p in parts] == ['text/plain', 'message/delivery-status', 'text/rfc822-headers'], [p.get_content_type() for p in parts]
status = parts[1]
blocks = status.get_payload()
fields = {}
for b in blocks:
    for k, v in b.items():
        fields[k.lower()] = str(v)
assert fields['original-envelope-id'] == 'env-42', fields
assert fields['action'] == 'failed', fields
assert fields['status'].startswith('5.'), fields
assert fields['final-recipient'].lower().endswith('reject@refusing.test'), fields
assert fields['original-recipient'].lower().replace(' ', '') == 'rfc822;reject@refusing.test', fields
assert 'r-1@clinique.test' in parts[2].get_content() if hasattr(parts[2], 'get_content') else True
print('report ok', m['From'])
"#;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", parse, &path.display().to_string()]);
    let (ok, out) = run(cmd).await;
    assert!(ok, "{out}\n{}", String::from_utf8_lossy(&dsn));
    assert!(out.contains("report ok"), "{out}");
    drop(down);
    t.node.shutdown().await;
}
