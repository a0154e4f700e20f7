//! A real DNS server for the MX tests: Debian's dnsmasq on 127.0.0.1 at an
//! ephemeral port, authoritative for `.test` (unknown names get NXDOMAIN),
//! serving the records a test gives. Killed when the guard drops, also when
//! a test fails.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts dnsmasq with `records`: dnsmasq options such as
/// `--mx-host=clinique.test,mx1.clinique.test,10` or
/// `--host-record=mx1.clinique.test,127.0.0.1`. Records have a 300 s TTL.
pub fn dnsmasq(records: &[&str]) -> Dnsmasq {
    // The port is picked, released, then bound by dnsmasq: another test may
    // take it meanwhile, so a failed start is retried on another port.
    for _ in 0..5 {
        if let Some(d) = try_start(records) {
            return d;
        }
    }
    panic!("dnsmasq did not start (apt-get install dnsmasq-base)");
}

fn try_start(records: &[&str]) -> Option<Dnsmasq> {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("udp port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // As root, dnsmasq would switch to user nobody; stay who we are.
    let user = Command::new("id").arg("-un").output().expect("id -un");
    let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
    let mut child = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--local=/test/",
            "--local-ttl=300",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--pid-file={}/pid", dir.path().display()))
        .arg(format!("--user={user}"))
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq-base)");
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Dnsmasq { child, addr, _dir: dir })
}
