//! Bad input over real sockets: each gets its code or a timeout, the node
//! stays up and keeps serving.

mod support;

use std::time::{Duration, Instant};

use relay::metrics::{Format, Snapshot};
use support::node::{start_node, TestNode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let (r, w) = s.into_split();
        Self {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// Reads one whole reply (all its lines); empty string at EOF.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("read");
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Whether the node closes the connection (within 10 s), whatever it
    /// sends before (a TLS alert, a last reply).
    async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    async fn transaction(port: u16) -> Self {
        let mut c = Self::connect(port).await;
        assert!(c.reply().await.starts_with("220 "));
        assert!(c.cmd("EHLO c.test").await.starts_with("250"));
        assert!(c.cmd("MAIL FROM:<a@src.test>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<b@cabinet.test>").await.starts_with("250"));
        c
    }
}

async fn still_serving(port: u16) {
    let mut c = Client::transaction(port).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    let r = c.cmd("Subject: ok\r\n\r\nfine\r\n.").await;
    assert!(r.starts_with("250 2.0.0 queued as"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_in_data_is_refused_and_closes() {
    let t = start_node("", "").await;
    let port = t.port("plain");
    let mut c = Client::transaction(port).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("554 5.5.2 bare LF"), "{r}");
    assert!(c.is_closed().await);
    still_serving(port).await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recipients_hit_the_limit() {
    let t = start_node("max_recipients = 1000", "").await;
    let port = t.port("plain");
    let c = Client::transaction(port).await;
    let mut batch = String::new();
    for i in 0..10_000 {
        batch.push_str(&format!("RCPT TO:<r{i}@cabinet.test>\r\n"));
    }
    // Write and read at once, as a pipelining client must: the node answers
    // while the rest of the batch is still arriving.
    let mut writer = c.writer;
    let sending = tokio::spawn(async move {
        writer.write_all(batch.as_bytes()).await.expect("write");
        writer
    });
    let mut c = Client {
        reader: c.reader,
        writer: TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("spare")
            .into_split()
            .1,
    };
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..10_000 {
        let r = c.reply().await;
        if r.starts_with("250 2.1.5") {
            ok += 1;
        } else if r.starts_with("452 4.5.3") {
            limited += 1;
        } else {
            panic!("unexpected {r}");
        }
    }
    assert_eq!((ok, limited), (999, 9001));
    drop(sending.await.expect("writer"));
    still_serving(port).await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stream_is_refused_with_bounded_memory() {
    // 1 MiB limit, 64 MiB streamed: the node reads it all, keeps at most the
    // limit, answers 552 and goes on.
    let t = start_node("max_message_size = 1048576", "").await;
    let port = t.port("plain");
    let mut c = Client::transaction(port).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    let line = [b'x'; 998];
    let mut chunk = Vec::with_capacity(1 << 20);
    while chunk.len() < (1 << 20) {
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\r\n");
    }
    for _ in 0..64 {
        c.send(&chunk).await;
    }
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(c.cmd("NOOP").await.starts_with("250"));
    still_serving(port).await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_commands_end_the_session() {
    let t = start_node("max_errors = 5", "").await;
    let port = t.port("plain");
    let mut c = Client::connect(port).await;
    c.reply().await;
    c.send(b"\x00\xff\xfe garbage\r\nGET / HTTP/1.1\r\nfoo\r\nbar\r\nbaz\r\nqux\r\n")
        .await;
    let mut replies = Vec::new();
    loop {
        let r = c.reply().await;
        if r.is_empty() {
            break;
        }
        replies.push(r);
    }
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert!(replies[5].starts_with("421 4.7.0 too many errors"), "{replies:?}");
    still_serving(port).await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_garbage_is_dropped() {
    let t = start_node("", "").await;
    let mut c = Client::connect(t.port("smtps")).await;
    c.send(b"EHLO not-tls\r\n\x16\x03\x01\x00\x05garbage").await;
    assert!(c.is_closed().await);
    // STARTTLS then garbage.
    let mut c = Client::connect(t.port("mta")).await;
    c.reply().await;
    c.cmd("EHLO c.test").await;
    assert!(c.cmd("STARTTLS").await.starts_with("220 2.0.0"));
    c.send(&[0x16, 0x03, 0x03, 0xff, 0xff, 1, 2, 3, 4]).await;
    assert!(c.is_closed().await);
    still_serving(t.port("plain")).await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_times_out() {
    let t = start_node("", "command_timeout_secs = 1").await;
    let mut c = Client::connect(t.port("plain")).await;
    c.reply().await;
    c.send(b"EHLO c.t").await; // never finished
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.is_closed().await);
    t.node.shutdown().await;
}

/// `estafette_sessions_active` of `listener`, from the node's counters.
fn sessions_active(t: &TestNode, listener: &str) -> u64 {
    let text = t
        .node
        .metrics()
        .encode(&Snapshot::default(), Format::PrometheusText)
        .expect("encode");
    let key = format!("estafette_sessions_active{{listener=\"{listener}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limit_answers_421() {
    let t = start_node("", "max_sessions = 2").await;
    let port = t.port("plain");
    let mut a = Client::connect(port).await;
    let mut b = Client::connect(port).await;
    assert!(a.reply().await.starts_with("220"));
    assert!(b.reply().await.starts_with("220"));
    let mut c = Client::connect(port).await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(c.is_closed().await);
    assert!(a.cmd("QUIT").await.starts_with("221"));
    drop(a);
    // The node ended a's session (its slot is free before it stops counting).
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions_active(&t, "plain") != 1 {
        assert!(Instant::now() < deadline, "a's session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    still_serving(port).await;
    drop(b);
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_before_starttls_is_refused_where_tls_is_required() {
    let t = start_node("", "").await;
    let mut c = Client::connect(t.port("mta")).await;
    c.reply().await;
    let ehlo = c.cmd("EHLO c.test").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let r = c.cmd("MAIL FROM:<a@src.test>").await;
    assert!(r.starts_with("530 5.7.0"), "{r}");
    t.node.shutdown().await;
}
