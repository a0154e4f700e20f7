//! A client and a server talking in memory with a simulated clock (quinn's
//! `Pair`): whole transactions, pipelining, BDAT, STARTTLS and timeouts, no sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::{ForwardPath, Mailbox, ReversePath};
use crate::client::{Client, ClientConfig, ClientError, ClientEvent, Outgoing, Stage, TlsPolicy};
use crate::params::{MailParams, RcptParams};
use crate::reply::{EnhancedCode, Reply};
use crate::server::{PeerInfo, Server, ServerConfig, ServerEvent, TlsInfo, Verdict};

struct Pair {
    client: Client,
    server: Server,
    now: Instant,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// Messages the server stored: (sender, recipients, body).
    stored: Vec<(String, Vec<String>, Vec<u8>)>,
    /// Content pieces of the open transaction (`ServerConfig::content_chunk`).
    streamed: Vec<u8>,
    /// How many pieces the server sent.
    pieces: usize,
    client_events: Vec<ClientEvent>,
    /// Largest number of client writes needed for one message (pipelining check).
    writes: usize,
}

impl Pair {
    fn new(server_config: ServerConfig, client_config: ClientConfig) -> Self {
        let now = Instant::now();
        let peer = PeerInfo {
            remote: "127.0.0.1:9".into(),
            tls: None,
        };
        Self {
            client: Client::new(Arc::new(client_config), false, now),
            server: Server::new(Arc::new(server_config), peer, now),
            now,
            to_server: Vec::new(),
            to_client: Vec::new(),
            stored: Vec::new(),
            streamed: Vec::new(),
            pieces: 0,
            client_events: Vec::new(),
            writes: 0,
        }
    }

    /// Moves bytes both ways until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            // Server side.
            let used = self.server.handle_input(self.now, &self.to_server);
            self.to_server.drain(..used);
            progress |= used > 0;
            while let Some(ev) = self.server.poll_event() {
                progress = true;
                self.server_event(ev);
            }
            progress |= self.server.poll_transmit(&mut self.to_client) > 0;
            // Client side.
            let used = self.client.handle_input(self.now, &self.to_client);
            self.to_client.drain(..used);
            progress |= used > 0;
            while let Some(ev) = self.client.poll_event() {
                progress = true;
                if ev == ClientEvent::StartTls {
                    let tls = TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_256_GCM_SHA384".into(),
                    };
                    self.server.tls_established(self.now, tls);
                    self.client.tls_established(self.now);
                }
                self.client_events.push(ev);
            }
            if self.client.poll_transmit(&mut self.to_server) > 0 {
                self.writes += 1;
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }

    fn server_event(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::Mail(req) => self.server.answer_mail(req, Verdict::Accept),
            ServerEvent::Rcpt(req) => {
                let verdict = match req.to.mailbox() {
                    Some(m) if m.domain == "refused.test" => {
                        Verdict::Reject(Reply::new(550, EnhancedCode::new(5, 1, 1), "no such user"))
                    }
                    _ => Verdict::Accept,
                };
                self.server.answer_rcpt(req, verdict);
            }
            ServerEvent::Content(piece) => {
                self.pieces += 1;
                self.streamed.extend_from_slice(&piece);
            }
            ServerEvent::Reset | ServerEvent::Closed(_) => self.streamed.clear(),
            ServerEvent::Message(mut done) => {
                let rcpts = done.recipients.iter().map(|r| r.to.to_string()).collect();
                let mut body = std::mem::take(&mut self.streamed);
                body.append(&mut done.body);
                assert_eq!(done.size, body.len() as u64);
                self.stored.push((done.from.to_string(), rcpts, body));
                let id = format!("ID{}", self.stored.len());
                self.server.message_stored(done, Ok(&id));
            }
            ServerEvent::Auth(req) => self.server.answer_auth(req, Verdict::Accept),
            _ => {}
        }
    }

    fn ready(&self) -> bool {
        self.client.is_idle()
    }
}

fn rcpt(s: &str) -> (ForwardPath, RcptParams) {
    (ForwardPath::Path(Mailbox::parse(s).unwrap()), RcptParams::default())
}

fn message(rcpts: &[&str], body: &[u8]) -> Outgoing {
    Outgoing {
        from: ReversePath::Path(Mailbox::parse("sender@hopital.test").unwrap()),
        params: MailParams::default(),
        recipients: rcpts.iter().map(|r| rcpt(r)).collect(),
        body: body.to_vec(),
        streamed: None,
    }
}

fn plain_client(chunking: bool) -> ClientConfig {
    ClientConfig {
        hostname: "relay.test".into(),
        tls: TlsPolicy::Never,
        chunking,
        ..ClientConfig::default()
    }
}

fn done_events(events: &[ClientEvent]) -> Vec<&crate::client::MessageOutcome> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::MessageDone(o) => Some(o),
            _ => None,
        })
        .collect()
}

const BODY: &[u8] = b"From: a@hopital.test\r\nSubject: CR\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n";

#[test]
fn pipelined_data_transaction() {
    let mut p = Pair::new(ServerConfig::default(), plain_client(false));
    p.drive();
    assert!(p.ready());
    p.writes = 0;
    p.client
        .send_message(p.now, message(&["dr@cabinet.test", "x@refused.test"], BODY))
        .unwrap();
    p.drive();
    assert_eq!(p.stored.len(), 1);
    assert_eq!(p.stored[0].2, BODY, "body crosses byte for byte");
    assert_eq!(p.stored[0].1, vec!["<dr@cabinet.test>"]);
    // MAIL+RCPT+RCPT+DATA in one write, then the content.
    assert_eq!(p.writes, 2);
    let done = done_events(&p.client_events);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].recipient_reply(0).to_string(), "250 2.0.0 queued as ID1");
    assert_eq!(done[0].recipient_reply(1).code, 550);
    assert!(p.ready());
}

#[test]
fn chunking_transaction_and_connection_reuse() {
    let mut p = Pair::new(ServerConfig::default(), plain_client(true));
    p.drive();
    for i in 0..3 {
        let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        p.client
            .send_message(p.now, message(&["dr@cabinet.test"], body.as_bytes()))
            .unwrap();
        p.drive();
        assert_eq!(p.stored[i].2, body.as_bytes());
    }
    assert_eq!(done_events(&p.client_events).len(), 3);
    p.client.quit(p.now);
    p.drive();
    assert!(p.client.is_closed());
    assert!(p.server.is_closed());
}

#[test]
fn streamed_content_crosses_whole() {
    let mut big = Vec::new();
    for i in 0..3000 {
        let line = match i % 4 {
            0 => format!(".line {i} starts with a dot\r\n"),
            1 => ".\r\n".to_string(),
            _ => format!("line {i} of a large message, nothing special\r\n"),
        };
        big.extend_from_slice(line.as_bytes());
    }
    for chunking in [false, true] {
        let server = ServerConfig {
            content_chunk: 4096,
            ..ServerConfig::default()
        };
        let mut p = Pair::new(server, plain_client(chunking));
        p.drive();
        for (i, body) in [&big[..], BODY, &big[..]].into_iter().enumerate() {
            p.client
                .send_message(p.now, message(&["dr@cabinet.test"], body))
                .unwrap();
            p.drive();
            assert_eq!(p.stored[i].2, body, "chunking={chunking}, message {i}");
        }
        assert!(
            p.pieces >= 2 * (big.len() / 4097),
            "chunking={chunking}: {} pieces",
            p.pieces
        );
        assert_eq!(done_events(&p.client_events).len(), 3);
    }
}

#[test]
fn no_content_when_every_recipient_is_refused() {
    for chunking in [false, true] {
        let mut p = Pair::new(ServerConfig::default(), plain_client(chunking));
        p.drive();
        p.client
            .send_message(p.now, message(&["a@refused.test", "b@refused.test"], BODY))
            .unwrap();
        p.drive();
        assert!(p.stored.is_empty());
        let done = done_events(&p.client_events);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].recipient_reply(0).code, 550);
        assert_eq!(done[0].recipient_reply(1).code, 550);
        // The connection is reset and reusable.
        assert!(p.ready(), "chunking={chunking}");
        p.client
            .send_message(p.now, message(&["ok@cabinet.test"], BODY))
            .unwrap();
        p.drive();
        assert_eq!(p.stored.len(), 1);
        assert_eq!(p.stored[0].2, BODY);
    }
}

#[test]
fn without_pipelining_commands_go_one_by_one() {
    // A server config cannot switch PIPELINING off, so strip it on the client.
    let mut p = Pair::new(ServerConfig::default(), plain_client(false));
    p.drive();
    let mut ext = p.client.extensions().clone();
    ext.remove(crate::ehlo::Extension::Pipelining);
    p.client.set_extensions_for_test(ext);
    p.writes = 0;
    p.client
        .send_message(p.now, message(&["a@cabinet.test", "b@cabinet.test"], BODY))
        .unwrap();
    p.drive();
    assert_eq!(p.stored.len(), 1);
    // MAIL, RCPT, RCPT, DATA, content: five writes.
    assert_eq!(p.writes, 5);
}

#[test]
fn starttls_required_upgrades_then_greets_again() {
    let server = ServerConfig {
        starttls: true,
        require_tls: true,
        ..ServerConfig::default()
    };
    let client = ClientConfig {
        tls: TlsPolicy::Required,
        ..ClientConfig::default()
    };
    let mut p = Pair::new(server, client);
    p.drive();
    assert!(p.client.is_tls());
    assert!(p.server.is_tls());
    let ehlos = p
        .client_events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Ehlo(_)))
        .count();
    assert_eq!(ehlos, 2);
    p.client
        .send_message(p.now, message(&["dr@cabinet.test"], BODY))
        .unwrap();
    p.drive();
    assert_eq!(p.stored.len(), 1);
}

#[test]
fn tls_required_but_not_offered_fails_without_sending_mail() {
    let client = ClientConfig::default(); // TlsPolicy::Required
    let mut p = Pair::new(ServerConfig::default(), client); // no STARTTLS offered
    p.drive();
    assert!(p
        .client_events
        .contains(&ClientEvent::Failed(ClientError::TlsNotOffered)));
    assert!(p.client.is_closed());
    assert!(p.server.is_closed(), "the client said QUIT");
    assert!(p.client.send_message(p.now, message(&["a@b.test"], BODY)).is_err());
}

#[test]
fn silent_server_times_out() {
    let mut p = Pair::new(ServerConfig::default(), plain_client(false));
    // Drop the greeting on the floor: the client never hears anything.
    let mut sink = Vec::new();
    p.server.poll_transmit(&mut sink);
    let deadline = p.client.poll_timeout().unwrap();
    p.now = deadline + Duration::from_millis(1);
    p.client.handle_timeout(p.now);
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![
            ClientEvent::Failed(ClientError::Timeout { stage: Stage::Greeting }),
            ClientEvent::Closed
        ]
    );
}

#[test]
fn server_timeout_reaches_client_as_421() {
    let mut p = Pair::new(ServerConfig::default(), plain_client(false));
    p.drive();
    p.client
        .send_message(p.now, message(&["a@cabinet.test"], BODY))
        .unwrap();
    // The client's commands are lost; the server times out while idle.
    p.client.poll_transmit(&mut Vec::new());
    p.now += Duration::from_secs(301);
    p.server.handle_timeout(p.now);
    p.drive();
    let done = done_events(&p.client_events);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].recipient_reply(0).code, 421);
    assert!(p.client.is_closed());
}
