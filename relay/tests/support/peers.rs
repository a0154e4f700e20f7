//! Real peers on 127.0.0.1: Postfix's smtp-sink and a Python aiosmtpd server
//! (STARTTLS or implicit TLS with a certificate from a test CA made with
//! rcgen) for delivery, and Python's http.server over TLS for trust-list
//! downloads. Also the ports they listen on, and the outbound client's
//! settings and messages for them. Each peer is killed when its guard drops,
//! also when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::address::{ForwardPath, Mailbox, ReversePath};
use proto::client::{ClientConfig, Outgoing};
use proto::params::{MailParams, RcptParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use relay::outbound::{ClientTls, ConnectSettings};
use tempfile::TempDir;

/// A peer process and the directory it writes received messages to.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on, never handed out twice in this process (tests
/// run in parallel).
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux): a port
/// chosen there and bound later can meanwhile become the local port of some
/// outgoing connection or of another `bind(…:0)`, which made a node's start
/// fail with "address in use" about once in a few dozen runs.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port: u16 = rand::random_range(20_000..32_000);
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
}

fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(mut probe) = TcpStream::connect(addr) {
            // A polite probe: take the greeting and QUIT. A client that
            // vanishes before the greeting was seen to make smtp-sink
            // refuse the next connections now and then.
            let _ = probe.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 512];
            let _ = probe.read(&mut buf);
            let _ = probe.write_all(b"QUIT\r\n");
            let _ = probe.read(&mut buf);
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("peer exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("peer not listening on {addr}");
}

/// Postfix's smtp-sink writing each message to `dir/m.<hex>`; `extra` are
/// more options (e.g. `-r RCPT`).
/// estafette-load, built next to `estafette` by `cargo test --workspace`
/// (the loadtest package's own tests need it).
pub fn estafette_load() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_estafette")).with_file_name("estafette-load");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (scripts/test) or cargo build -p estafette-loadtest",
        path.display()
    );
    path
}

pub fn smtp_sink(extra: &[&str]) -> Peer {
    smtp_sink_on(free_port(), extra)
}

/// [`smtp_sink`] on a given port (from [`free_port`]): a destination that
/// was down comes up.
pub fn smtp_sink_on(port: u16, extra: &[&str]) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let template = format!("{}/m.", dir.path().display());
    let mut child = Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "root", "-d", &template])
        .args(extra)
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdout(Stdio::null())
        .spawn()
        .expect("smtp-sink");
    wait_listening(addr, &mut child);
    Peer { child, addr, dir }
}

const AIOSMTPD: &str = r#"
import asyncio, logging, os, ssl, sys
from aiosmtpd.smtp import SMTP

# Handshakes refused on purpose would print tracebacks.
logging.getLogger('mail.log').setLevel(logging.CRITICAL)

port, outdir, cert, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

class Handler:
    n = 0
    tries = {}
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith('flaky'):
            # 451 to the first two attempts for this address, then accept.
            Handler.tries[address] = Handler.tries.get(address, 0) + 1
            if Handler.tries[address] <= 2:
                return '451 4.3.0 try later'
        if address.startswith('defer'):
            return '451 4.3.0 try later'
        if address.startswith('reject'):
            return '550 5.1.1 no such user'
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 OK'
    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        path = os.path.join(outdir, '%03d.eml' % Handler.n)
        with open(path + '.tmp', 'wb') as f:
            f.write(envelope.original_content)
        os.rename(path + '.tmp', path)
        return '250 2.0.0 OK queued'
    async def handle_QUIT(self, server, session, envelope):
        # One empty file per QUIT: tests see that a client closed politely.
        Handler.n += 1
        open(os.path.join(outdir, 'quit-%03d' % Handler.n), 'wb').close()
        return '221 Bye'

ctx = None
if cert != '-':
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if mode == 'mtls':
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(os.path.join(os.path.dirname(cert), 'ca.pem'))

class Session(SMTP):
    async def _handle_client(self):
        try:
            await super()._handle_client()
        finally:
            # One empty file per session that got to EHLO or HELO, once it is
            # over (QUIT, a failed TLS handshake, a dropped connection): what
            # it carried is on disk. Readiness probes say no EHLO.
            if self.session.host_name:
                Handler.n += 1
                open(os.path.join(outdir, 'end-%03d' % Handler.n), 'wb').close()

# No aiosmtpd Controller: its start-up self-check has a 1 s timeout that a
# loaded machine misses. A plain asyncio server has no such race.
def factory():
    if mode == 'implicit':
        return Session(Handler(), hostname='mx.clinique.test')
    return Session(Handler(), hostname='mx.clinique.test',
                   require_starttls=ctx is not None, tls_context=ctx)

loop = asyncio.new_event_loop()
server = loop.run_until_complete(loop.create_server(
    factory, '127.0.0.1', port, ssl=ctx if mode == 'implicit' else None))
print('ready', flush=True)
loop.run_forever()
"#;

/// How the aiosmtpd peer does TLS.
pub enum PyTls<'a> {
    /// No TLS at all (no STARTTLS offered).
    None,
    /// STARTTLS offered and required before MAIL.
    StartTls(&'a Pki),
    /// TLS from the first byte.
    Implicit(&'a Pki),
    /// STARTTLS, and a client certificate from the test CA is required.
    Mutual(&'a Pki),
}

/// aiosmtpd: RCPT to `defer*` gets 451, `reject*` 550, `flaky*` 451 twice
/// then 250, others 250; each
/// message is written to `dir/NNN.eml` as received (dot-unstuffed).
pub fn aiosmtpd(tls: PyTls<'_>) -> Peer {
    aiosmtpd_on(tls, free_port())
}

/// [`aiosmtpd`] on a given port (a restarted server).
pub fn aiosmtpd_on(tls: PyTls<'_>, port: u16) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("server.py");
    std::fs::write(&script, AIOSMTPD).expect("script");
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).expect("mkdir");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (pki, mode) = match tls {
        PyTls::None => (None, "starttls"),
        PyTls::StartTls(p) => (Some(p), "starttls"),
        PyTls::Implicit(p) => (Some(p), "implicit"),
        PyTls::Mutual(p) => (Some(p), "mtls"),
    };
    let (cert, key) = pki.map_or(("-".into(), "-".into()), |p| {
        (p.server_cert.display().to_string(), p.server_key.display().to_string())
    });
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([&port.to_string(), &out.display().to_string(), &cert, &key, mode])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 aiosmtpd");
    // The script says "ready" once it listens.
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
    wait_listening(addr, &mut child);
    Peer { child, addr, dir }
}

impl Peer {
    /// Waits until `n` messages were written (aiosmtpd: `mail/*.eml`,
    /// smtp-sink: `m.*`), returns them in name order.
    ///
    /// smtp-sink creates its dump file when the transaction starts and
    /// writes it as DATA arrives, so a file that exists may still be empty
    /// or partial: a file counts once it is non-empty and its size held
    /// over one poll. Callers that can should also wait for the sender's
    /// 250 (the node drained) before reading.
    pub fn received(&self, n: usize) -> Vec<Vec<u8>> {
        let start = Instant::now();
        let mut last: Vec<u64> = Vec::new();
        loop {
            let files = self.files();
            let sizes: Vec<u64> = files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                .collect();
            let settled = sizes.iter().all(|&s| s > 0) && sizes == last;
            if (files.len() >= n && settled) || start.elapsed() > Duration::from_secs(10) {
                return files.iter().map(|f| std::fs::read(f).expect("read")).collect();
            }
            last = sizes;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many QUIT commands an aiosmtpd peer has answered so far.
    pub fn quits(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("mail")).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("quit-"))
                .count()
        })
    }

    /// How many sessions that got to EHLO or HELO an aiosmtpd peer has
    /// finished so far (whatever the way they ended); once a session is
    /// counted, every message it carried is in [`Peer::files`].
    pub fn sessions(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("mail")).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("end-"))
                .count()
        })
    }

    /// Waits (up to 10 s) until an aiosmtpd peer has finished `n` sessions;
    /// panics if it has not.
    pub fn wait_sessions(&self, n: usize) {
        let start = Instant::now();
        while self.sessions() < n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the peer finished {} sessions, not {n}",
                self.sessions()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Messages received so far.
    pub fn files(&self) -> Vec<PathBuf> {
        let mail = self.dir.path().join("mail");
        let dir = if mail.is_dir() {
            mail
        } else {
            self.dir.path().to_path_buf()
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read_dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.ends_with(".eml") || name.starts_with("m.")
            })
            .collect();
        files.sort();
        files
    }
}

/// Python's http.server over TLS on 127.0.0.1 (a port of its choosing),
/// serving the files under a directory; killed on drop.
pub struct HttpsServer {
    child: Child,
    /// Where it listens on 127.0.0.1.
    pub port: u16,
}

const HTTPS_SERVER: &str = r#"
import functools, http.server, ssl, sys
cert, key, root = sys.argv[1:4]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
handler = functools.partial(Quiet, directory=root)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

impl HttpsServer {
    /// Serves `root` with the certificate chain `cert` and its key `key` (PEM).
    pub fn start(cert: &Path, key: &Path, root: &Path) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", HTTPS_SERVER])
            .arg(cert)
            .arg(key)
            .arg(root)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("server said {line:?}"));
        Self { child, port }
    }

    /// The URL of `file` under the served directory.
    pub fn url(&self, file: &str) -> String {
        format!("https://127.0.0.1:{}/{file}", self.port)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA with a server certificate for `mx.clinique.test`, and a second,
/// unrelated CA.
pub struct Pki {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub const SERVER_NAME: &str = "mx.clinique.test";

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca1 = ca("Estafette Test CA");
    let ca2 = ca("Some Other CA");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, SERVER_NAME);
    let cert = params.signed_by(&key, &ca1).expect("sign");
    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(vec!["relay.chu.test".to_string()]).expect("params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "relay.chu.test");
    let client_cert = client_params.signed_by(&client_key, &ca1).expect("sign");
    let write = |name: &str, data: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).expect("write");
        p
    };
    Pki {
        ca: write("ca.pem", ca1.pem()),
        other_ca: write("other-ca.pem", ca2.pem()),
        server_cert: write("server.pem", cert.pem()),
        server_key: write("server.key", key.serialize_pem()),
        client_cert: write("client.pem", client_cert.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        dir,
    }
}

/// Connect settings trusting `ca` (or an empty-but-valid store via the other
/// CA), with short timeouts so that a broken test fails fast.
pub fn settings(ca: &Path) -> ConnectSettings {
    settings_with(ca, None)
}

/// [`settings`] presenting a client certificate (chain, key PEM files).
pub fn settings_with(ca: &Path, client: Option<(&Path, &Path)>) -> ConnectSettings {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = ClientTls::from_pem_files(ca, client).expect("tls config");
    let secs = Duration::from_secs(10);
    // proto does not re-export `Timeouts`: set the fields in place.
    let mut client = ClientConfig {
        hostname: "relay.chu.test".into(),
        ..ClientConfig::default()
    };
    let t = &mut client.timeouts;
    (t.greeting, t.command, t.mail, t.rcpt, t.data_command, t.data_end) = (secs, secs, secs, secs, secs, secs);
    let mut s = ConnectSettings::new(client, tls);
    s.connect_timeout(Duration::from_secs(5));
    s
}

pub fn message(rcpts: &[&str], body: &[u8]) -> Outgoing {
    Outgoing {
        from: ReversePath::Path(Mailbox::parse("dr.martin@chu.test").expect("sender")),
        params: MailParams::default(),
        recipients: rcpts
            .iter()
            .map(|r| {
                (
                    ForwardPath::Path(Mailbox::parse(r).expect("rcpt")),
                    RcptParams::default(),
                )
            })
            .collect(),
        body: body.to_vec(),
        streamed: None,
    }
}

/// A 10 KB-ish body with dot-stuffing cases and an MSSanté header.
pub fn body(n: usize) -> Vec<u8> {
    let mut b = format!(
        "From: dr.martin@chu.test\r\nTo: lab@clinique.test\r\nSubject: CR {n}\r\nX-MSS-INS: 1234567890123\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(b".leading dot\r\n..two dots\r\n.\r\n");
    for i in 0..150 {
        b.extend_from_slice(format!("line {i} of message {n}: lorem ipsum dolor sit amet consectetur\r\n").as_bytes());
    }
    b
}
