//! PROXY protocol v2 behind a real HAProxy (`send-proxy-v2`): the client's
//! address (swaks bound to 127.0.0.5) is the one the relay writes in
//! `Received:`, not the balancer's; a connection from outside `proxy_from`
//! and one that speaks SMTP without the header are closed before any greeting.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::node::{queued_id, run, start_node_full, Extra};
use support::peers::{aiosmtpd, free_port, PyTls};

struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(dir: &std::path::Path, front: u16, backend: u16) -> HaProxy {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  \
             timeout server 30s\nfrontend smtp\n  bind 127.0.0.1:{front}\n  default_backend relay\n\
             backend relay\n  server relay 127.0.0.1:{backend} send-proxy-v2\n"
        ),
    )
    .expect("haproxy.cfg");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy (scripts/deps installs it)");
    let proxy = HaProxy(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
}

/// Connects from `local`, optionally writes `send`, and returns what the
/// relay wrote before closing (empty: closed without a greeting).
fn talk(local: &str, port: u16, send: &[u8]) -> Vec<u8> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{local}:0").parse().expect("addr");
    socket.bind(&local.into()).expect("bind");
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    if !send.is_empty() {
        let _ = stream.write_all(send);
    }
    let mut got = Vec::new();
    // A reset (the relay closed with our bytes unread) ends it too.
    let _ = stream.read_to_end(&mut got);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_the_client_address_is_the_one_the_header_carries() {
    let peer = aiosmtpd(PyTls::None);
    let tail = format!(
        "[[route]]\ndomain = \"operator.test\"\nhost = \"{}\"\ntls = \"none\"\n\n[outbound]\npoll_ms = 100\n",
        peer.addr
    );
    let t = start_node_full(Extra {
        plain: "proxy_protocol = true\nproxy_from = [\"127.0.0.1/32\"]\nhandshake_timeout_secs = 2",
        tail: &tail,
        ..Extra::default()
    })
    .await;
    let front = free_port();
    let _proxy = haproxy(t.dir.path(), front, t.port("plain"));

    let mut cmd = Command::new("swaks");
    cmd.args([
        "--server",
        &format!("127.0.0.1:{front}"),
        "--local-interface",
        "127.0.0.5",
    ])
    .args(["--from", "dr@cabinet.test", "--to", "secretariat@operator.test"])
    .args([
        "--helo",
        "client.test",
        "--data",
        "Subject: via haproxy\r\n\r\nBonjour\r\n",
    ]);
    let (ok, transcript) = run(cmd).await;
    assert!(ok, "{transcript}");
    let id = queued_id(&transcript).expect("queued");
    let got = tokio::task::block_in_place(|| peer.received(1));
    let text = String::from_utf8_lossy(&got[0]).into_owned();
    let received = text.lines().take(3).collect::<Vec<_>>().join("\n");
    assert!(
        received.starts_with("Received: from client.test (127.0.0.5)") && text.contains(&format!("id {id}")),
        "{received}"
    );

    let port = t.port("plain");
    let (outsider, no_header) = tokio::task::spawn_blocking(move || {
        // Not a balancer: closed before a greeting, nothing read from it.
        let outsider = talk("127.0.0.9", port, b"");
        // A balancer's address, but SMTP instead of the header: closed.
        let no_header = talk("127.0.0.1", port, b"EHLO client.example\r\n");
        (outsider, no_header)
    })
    .await
    .expect("join");
    assert!(outsider.is_empty(), "{}", String::from_utf8_lossy(&outsider));
    assert!(no_header.is_empty(), "{}", String::from_utf8_lossy(&no_header));
    t.node.shutdown().await;
}
