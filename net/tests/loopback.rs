//! net's client and server loops talking to each other over loopback TCP:
//! plain, STARTTLS and implicit TLS, a handler that drops the connection,
//! shutdown, streamed bodies (DATA and BDAT, a failing source); and `drive` alone over an in-memory pipe: a pipelined batch
//! answered in one write, the STARTTLS hand-off.

use std::ops::ControlFlow;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use net::client::{ConnError, Connection, ContentSource, TlsTarget};
use net::server::{drive, serve, Handler, Next, ServerTls};
use net::Stream;
use proto::address::{ForwardPath, ReversePath};
use proto::client::{ClientConfig, Outgoing, TlsPolicy};
use proto::params::{MailParams, RcptParams};
use proto::server::{PeerInfo, Server, ServerConfig, ServerEvent, Verdict};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

const LIMIT: Duration = Duration::from_secs(10);

/// Messages a server stored: (came by BDAT, body).
type Stored = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

/// Accepts everything; `drop_messages`: disconnects instead of answering
/// the content. `stored` keeps each message's (came by BDAT, body).
#[derive(Default)]
struct Accept {
    messages: Arc<AtomicU32>,
    stored: Stored,
    drop_messages: bool,
    saw_tls: bool,
}

impl Handler for Accept {
    async fn on_event(&mut self, event: ServerEvent, server: &mut Server) -> ControlFlow<()> {
        match event {
            ServerEvent::Mail(r) => server.answer_mail(r, Verdict::Accept),
            ServerEvent::Rcpt(r) => server.answer_rcpt(r, Verdict::Accept),
            ServerEvent::Message(mut done) => {
                if self.drop_messages {
                    let r = proto::Reply::new(421, proto::EnhancedCode::new(4, 4, 2), "dropped");
                    server.message_stored(done, Err(r));
                    return ControlFlow::Break(());
                }
                self.messages.fetch_add(1, Ordering::Relaxed);
                let body = std::mem::take(&mut done.body);
                self.stored.lock().unwrap().push((done.chunked, body));
                server.message_stored(done, Ok("test"));
            }
            ServerEvent::Auth(_) => unreachable!("AUTH is not offered"),
            // content_chunk stays 0 in these configs: the whole message is in
            // DataDone::body and no piece can come.
            ServerEvent::Content(_) => unreachable!("content is not streamed"),
            ServerEvent::Hello { .. }
            | ServerEvent::StartTls { .. }
            | ServerEvent::Reset
            | ServerEvent::Refused(_)
            | ServerEvent::Closed(_) => {}
        }
        ControlFlow::Continue(())
    }

    fn on_tls(&mut self, stream: &Stream, server: &mut Server) {
        self.saw_tls = stream.is_tls() && server.is_tls();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn acceptor() -> TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from_pem_slice(ck.cert.pem().as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

fn tls_target() -> TlsTarget {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(net::tls::AcceptAnyServerCert::new(provider())))
        .with_no_client_auth();
    TlsTarget {
        config: Arc::new(config),
        name: ServerName::try_from("localhost").unwrap(),
    }
}

/// A one-session server; returns its address, the handler's count and the
/// session's end (`saw_tls`).
async fn one_session(
    config: ServerConfig,
    tls: Option<(TlsAcceptor, bool)>,
    drop_messages: bool,
    shutdown: oneshot::Receiver<()>,
) -> (std::net::SocketAddr, Arc<AtomicU32>, Session) {
    let messages = Arc::new(AtomicU32::new(0));
    let handler = Accept {
        messages: messages.clone(),
        drop_messages,
        ..Accept::default()
    };
    let (addr, task) = spawn_session(config, tls, handler, shutdown).await;
    (addr, messages, task)
}

/// Serves one session with `handler` on a fresh loopback port.
async fn spawn_session(
    config: ServerConfig,
    tls: Option<(TlsAcceptor, bool)>,
    mut handler: Accept,
    shutdown: oneshot::Receiver<()>,
) -> (std::net::SocketAddr, Session) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        let acceptor = tls.as_ref().map(|(a, _)| a);
        let tls = ServerTls {
            acceptor,
            implicit: tls.as_ref().is_some_and(|(_, implicit)| *implicit),
            handshake_timeout: LIMIT,
        };
        let stop = async {
            let _ = shutdown.await;
        };
        let r = serve(tcp, Arc::new(config), peer.to_string(), tls, &mut handler, stop).await;
        (r, handler.saw_tls)
    });
    (addr, task)
}

fn message() -> Outgoing {
    Outgoing {
        from: ReversePath::parse("<a@example.org>").unwrap(),
        params: MailParams::default(),
        recipients: vec![(ForwardPath::parse("<b@example.net>").unwrap(), RcptParams::default())],
        body: b"Subject: t\r\n\r\nhello\r\n".to_vec(),
        streamed: None,
    }
}

fn client_config(tls: TlsPolicy) -> Arc<ClientConfig> {
    Arc::new(ClientConfig {
        tls,
        ..ClientConfig::default()
    })
}

fn starttls_config() -> ServerConfig {
    ServerConfig {
        starttls: true,
        ..ServerConfig::default()
    }
}

type Session = tokio::task::JoinHandle<(std::io::Result<()>, bool)>;

/// Sends `n` messages on a ready connection, QUITs, and checks the server's
/// side: a clean end, TLS seen by the handler or not, `n` messages stored.
async fn send_and_quit(mut conn: Connection, n: u32, messages: &AtomicU32, task: Session, tls: bool) {
    assert_eq!(conn.stream().unwrap().is_tls(), tls);
    for _ in 0..n {
        let a = conn.send(message(), |_| {}).await.unwrap();
        assert!(!a.synthetic);
        assert_eq!(a.outcome.data.as_ref().map(|r| r.code), Some(250));
        assert!(conn.is_usable());
    }
    conn.quit().await;
    let (r, saw_tls) = task.await.unwrap();
    r.unwrap();
    assert_eq!(saw_tls, tls);
    assert_eq!(messages.load(Ordering::Relaxed), n);
}

#[tokio::test]
async fn plain_messages_then_quit() {
    let (_tx, rx) = oneshot::channel();
    let (addr, messages, task) = one_session(ServerConfig::default(), None, false, rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = Connection::new(tcp, client_config(TlsPolicy::Never), false, None, LIMIT);
    conn.ready(|_| {}).await.unwrap();
    let empty = Outgoing {
        recipients: Vec::new(),
        ..message()
    };
    assert!(matches!(conn.send(empty, |_| {}).await, Err(ConnError::NoRecipient)));
    send_and_quit(conn, 3, &messages, task, false).await;
}

#[tokio::test]
async fn starttls_hand_off() {
    let (_tx, rx) = oneshot::channel();
    let (addr, messages, task) = one_session(starttls_config(), Some((acceptor(), false)), false, rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut events = Vec::new();
    let mut conn = Connection::new(
        tcp,
        client_config(TlsPolicy::Required),
        false,
        Some(tls_target()),
        LIMIT,
    );
    conn.ready(|e| events.push(format!("{e:?}"))).await.unwrap();
    assert!(events.iter().any(|e| e == "StartTls"), "{events:?}");
    let stream = conn.stream().unwrap();
    assert!(stream.tls_info().unwrap().version.starts_with("TLSv1."));
    assert!(stream.peer_certificates().is_some_and(|c| c.len() == 1));
    send_and_quit(conn, 1, &messages, task, true).await;
}

#[tokio::test]
async fn implicit_tls() {
    let (_tx, rx) = oneshot::channel();
    let (addr, messages, task) = one_session(ServerConfig::default(), Some((acceptor(), true)), false, rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = Connection::new(tcp, client_config(TlsPolicy::Never), true, Some(tls_target()), LIMIT);
    conn.ready(|_| {}).await.unwrap();
    send_and_quit(conn, 2, &messages, task, true).await;
}

#[tokio::test]
async fn required_tls_without_settings_is_an_error() {
    let (_tx, rx) = oneshot::channel();
    let (addr, _, _task) = one_session(starttls_config(), Some((acceptor(), false)), false, rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = Connection::new(tcp, client_config(TlsPolicy::Required), false, None, LIMIT);
    assert!(matches!(conn.ready(|_| {}).await, Err(ConnError::NoTls)));
    assert!(!conn.is_usable());
}

#[tokio::test]
async fn a_handler_break_drops_the_connection_and_the_message_is_unknown() {
    let (_tx, rx) = oneshot::channel();
    let (addr, _, task) = one_session(ServerConfig::default(), None, true, rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = Connection::new(tcp, client_config(TlsPolicy::Never), false, None, LIMIT);
    conn.ready(|_| {}).await.unwrap();
    let r = conn.send(message(), |_| {}).await;
    assert!(matches!(r, Err(ConnError::Eof)), "{r:?}");
    assert!(!conn.is_usable());
    task.await.unwrap().0.unwrap();
}

#[tokio::test]
async fn shutdown_says_421_and_closes() {
    let (tx, rx) = oneshot::channel();
    let (addr, _, task) = one_session(ServerConfig::default(), None, false, rx).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"220 "));
    tx.send(()).unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    assert!(rest.starts_with(b"421 4.3.2 "), "{}", String::from_utf8_lossy(&rest));
    task.await.unwrap().0.unwrap();
}

/// A socket that counts its writes.
struct Counting<S> {
    inner: S,
    writes: Arc<AtomicU32>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs one `drive` pass over an in-memory pipe holding `input` from the
/// start; returns how it ended, how many writes it made and the codes of the
/// replies it wrote.
async fn drive_pipe(config: ServerConfig, input: &[u8]) -> (Next, u32, Vec<String>) {
    let (mut client, server_side) = tokio::io::duplex(64 * 1024);
    let writes = Arc::new(AtomicU32::new(0));
    let mut io = Counting {
        inner: server_side,
        writes: writes.clone(),
    };
    client.write_all(input).await.unwrap();
    let peer = PeerInfo {
        remote: "test".into(),
        tls: None,
    };
    let mut server = Server::new(Arc::new(config), peer, net::now());
    let mut handler = Accept::default();
    let shutdown = pin!(std::future::pending::<()>());
    let next = drive(&mut io, &mut server, &mut handler, shutdown).await.unwrap();
    drop(io);
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    let codes = String::from_utf8_lossy(&all)
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l[..3].to_string())
        .collect();
    (next, writes.load(Ordering::Relaxed), codes)
}

#[tokio::test]
async fn a_pipelined_batch_is_answered_in_one_write() {
    let batch =
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nQUIT\r\n";
    let (next, writes, codes) = drive_pipe(ServerConfig::default(), batch).await;
    assert_eq!(next, Next::Closed);
    assert_eq!(codes, ["220", "250", "250", "250", "250", "221"]);
    // The greeting goes first, on its own; then every reply of the batch
    // (which arrived in one read) leaves in one write.
    assert_eq!(writes, 2);
}

#[tokio::test]
async fn starttls_is_handed_to_the_caller_and_pipelined_input_discarded() {
    let input = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@example.org>\r\n";
    let (next, _, codes) = drive_pipe(starttls_config(), input).await;
    assert_eq!(next, Next::StartTls);
    // Greeting, EHLO, STARTTLS; the MAIL behind STARTTLS is never answered.
    assert_eq!(codes, ["220", "250", "220"]);
}

/// A spool stand-in: gives `body` in pieces of `piece` octets, or fails after
/// `fail_after` pieces.
struct Pieces {
    body: Bytes,
    piece: usize,
    pos: usize,
    given: usize,
    fail_after: Option<usize>,
}

impl Pieces {
    fn new(body: &Bytes, piece: usize) -> Self {
        Self {
            body: body.clone(),
            piece,
            pos: 0,
            given: 0,
            fail_after: None,
        }
    }
}

impl ContentSource for Pieces {
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.fail_after == Some(self.given) {
            return Err(std::io::Error::other("spool read failed"));
        }
        if self.pos == self.body.len() {
            return Ok(None);
        }
        let end = (self.pos + self.piece).min(self.body.len());
        let piece = self.body.slice(self.pos..end);
        self.pos = end;
        self.given += 1;
        Ok(Some(piece))
    }
}

/// About 5 MB of CRLF lines, among them lines that must be dot-stuffed (a
/// lone `.` among them) and one over a piece boundary at every offset.
fn big_body() -> Bytes {
    let mut body = b"Subject: streamed\r\n\r\n".to_vec();
    let mut i = 0u64;
    while body.len() < 5_000_000 {
        match i % 5 {
            0 => body.extend_from_slice(b".\r\n"),
            1 => body.extend_from_slice(format!(".dot line {i}\r\n").as_bytes()),
            _ => body.extend_from_slice(format!("line {i} {}\r\n", "x".repeat((i % 97) as usize)).as_bytes()),
        }
        i += 1;
    }
    Bytes::from(body)
}

fn streamed_message(size: usize) -> Outgoing {
    Outgoing {
        body: Vec::new(),
        streamed: Some(size as u64),
        ..message()
    }
}

fn chunking_client(chunking: bool) -> Arc<ClientConfig> {
    Arc::new(ClientConfig {
        tls: TlsPolicy::Never,
        chunking,
        ..ClientConfig::default()
    })
}

/// A ready plain connection to a fresh one-session server (which offers
/// CHUNKING); the client uses BDAT when `chunking`. Returns the server's
/// stored messages too, and its shutdown trigger (dropping it shuts the
/// server down).
async fn streaming_pair(chunking: bool) -> (Connection, Stored, Session, oneshot::Sender<()>) {
    let (tx, rx) = oneshot::channel();
    let handler = Accept::default();
    let stored = handler.stored.clone();
    let (addr, task) = spawn_session(ServerConfig::default(), None, handler, rx).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = Connection::new(tcp, chunking_client(chunking), false, None, LIMIT);
    conn.ready(|_| {}).await.unwrap();
    (conn, stored, task, tx)
}

#[tokio::test]
async fn a_streamed_message_arrives_byte_exact_over_data_and_bdat() {
    let body = big_body();
    for chunking in [false, true] {
        let (mut conn, stored, task, _tx) = streaming_pair(chunking).await;
        // The wrong method for either kind of message is refused up front.
        let r = conn.send(streamed_message(body.len()), |_| {}).await;
        assert!(matches!(r, Err(ConnError::StreamedMismatch)), "{r:?}");
        let r = conn.send_streamed(message(), &mut Pieces::new(&body, 1), |_| {}).await;
        assert!(matches!(r, Err(ConnError::StreamedMismatch)), "{r:?}");
        assert!(conn.is_usable());

        let mut source = Pieces::new(&body, 64 * 1024);
        let mut asked = 0;
        let a = conn
            .send_streamed(streamed_message(body.len()), &mut source, |e| {
                asked += usize::from(*e == proto::client::ClientEvent::SendContent);
            })
            .await
            .unwrap();
        assert_eq!(asked, 1);
        assert!(!a.synthetic);
        assert_eq!(a.outcome.data.as_ref().map(|r| r.code), Some(250));
        assert_eq!(source.given, body.len().div_ceil(64 * 1024));
        // A plain message after it on the same connection.
        assert!(conn.send(message(), |_| {}).await.unwrap().outcome.data.is_some());
        conn.quit().await;
        task.await.unwrap().0.unwrap();
        let stored = stored.lock().unwrap();
        assert_eq!(stored.len(), 2);
        let (chunked, got) = &stored[0];
        assert_eq!(*chunked, chunking);
        assert_eq!(got.len(), body.len());
        assert!(got[..] == body[..], "the body arrived altered (chunking: {chunking})");
    }
}

#[tokio::test]
async fn a_failing_source_never_ends_the_content() {
    let body = big_body();
    for chunking in [false, true] {
        let (mut conn, stored, task, _tx) = streaming_pair(chunking).await;
        let mut source = Pieces::new(&body, 64 * 1024);
        source.fail_after = Some(3);
        let mut asked = false;
        let r = conn
            .send_streamed(streamed_message(body.len()), &mut source, |e| {
                asked |= *e == proto::client::ClientEvent::SendContent;
            })
            .await;
        assert!(
            matches!(&r, Err(ConnError::Content(e)) if e.to_string() == "spool read failed"),
            "{r:?}"
        );
        // The content had begun (354 or BDAT) when the source failed.
        assert!(asked);
        assert_eq!(source.given, 3);
        assert!(!conn.is_usable());
        // The server sees the connection close mid-content, and no message.
        let (r, _) = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        r.unwrap();
        assert!(stored.lock().unwrap().is_empty(), "chunking: {chunking}");
        drop(conn);
    }
}

#[tokio::test]
async fn a_source_shorter_than_declared_is_reported_not_ended() {
    let body = Bytes::from_static(b"Subject: t\r\n\r\nshort\r\n");
    for chunking in [false, true] {
        let (mut conn, stored, task, _tx) = streaming_pair(chunking).await;
        let mut source = Pieces::new(&body, 8);
        let a = conn
            .send_streamed(streamed_message(body.len() + 10), &mut source, |_| {})
            .await
            .unwrap();
        assert!(a.synthetic);
        assert_eq!(a.outcome.data.as_ref().map(|r| r.code), Some(451));
        assert!(!conn.is_usable());
        conn.quit().await;
        tokio::time::timeout(LIMIT, task).await.unwrap().unwrap().0.unwrap();
        assert!(stored.lock().unwrap().is_empty(), "chunking: {chunking}");
    }
}
