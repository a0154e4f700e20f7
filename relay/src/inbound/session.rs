//! One inbound SMTP session. `net`'s server loop drives proto's [`Server`]
//! over the socket (read → `handle_input` → events → `poll_transmit` → one
//! write, with a `select!` on read, the protocol timer and the node's drain;
//! the STARTTLS hand-off); this file answers the events (policy, spool) and
//! judges the client certificate once TLS is up.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use net::server::{Handler, ServerTls};
use proto::server::{Server, ServerEvent, Verdict};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::accept;
use super::identity::{self, Identity};
use super::operator::{self, PeerCert};
use super::policy::{Refusal, Side};
use super::tls;
use super::ListenerCtx;
use crate::config::TlsMode;
use crate::lifecycle::{Phase, PhaseWatch};

/// Per-session facts the policy needs besides the proto server's own.
pub(crate) struct Session {
    pub(crate) peer: SocketAddr,
    /// Subject DN of a verified client certificate (listed or not).
    pub(crate) client_cert: Option<proto::dn::Dn>,
    pub(crate) identity: Option<Identity>,
    pub(crate) messages: u64,
    /// Whether TLS is up.
    pub(crate) tls: bool,
    /// Operator listeners: the client certificate as judged after the handshake.
    pub(crate) peer_cert: PeerCert,
    /// The side of the trust space of this transaction's recipients so far.
    pub(crate) side: Option<Side>,
    /// Counted against its client since its first MAIL FROM (`fairness`).
    pub(crate) slot: Option<super::fairness::Slot>,
    /// The SIZE the open transaction declared at MAIL FROM.
    pub(crate) declared_size: Option<u64>,
    /// A large message's content going to the spool in pieces as it arrives.
    pub(crate) pieces: Option<Pieces>,
}

/// The pieces of the open transaction's content already handed to the
/// spool (proto's `ServerEvent::Content`), until the end of DATA commits
/// them or the transaction ends without `250` and they are discarded.
pub(crate) struct Pieces {
    spill: storage::Spill,
    /// The first octets, kept for the header section (`accept::HEAD_SCAN`).
    start: Vec<u8>,
    /// The spool refused a piece: the message gets this reply at its end.
    failed: Option<proto::Reply>,
}

impl Session {
    /// Hands one piece of content to the spool, waiting for the write (the
    /// back-pressure that keeps a fast client from filling memory).
    async fn piece(&mut self, piece: Vec<u8>, ctx: &ListenerCtx) {
        let pieces = self.pieces.get_or_insert_with(|| Pieces {
            start: piece[..piece.len().min(accept::HEAD_SCAN)].to_vec(),
            spill: ctx.queue.spill(),
            failed: None,
        });
        if pieces.failed.is_some() {
            return;
        }
        if let Err(e) = pieces.spill.write(bytes::Bytes::from(piece)).await {
            warn!(peer = %self.peer, id = %pieces.spill.id(), error = %e, "body piece not written; the message will be refused");
            pieces.failed = Some(crate::queue::spool_reply(&e));
        }
    }

    /// The transaction ended without `250`: its pieces go.
    async fn discard_pieces(&mut self) {
        if let Some(p) = self.pieces.take() {
            if let Err(e) = p.spill.discard().await {
                // The spool sweeps them at its next start.
                warn!(peer = %self.peer, error = %e, "pieces of an abandoned message not deleted");
            }
        }
    }

    /// The content of the message that just ended: the pieces, if any, and
    /// the rest proto kept. `Err` is the reply when a piece was not stored
    /// or the octets do not add up.
    fn content(&mut self, rest: Vec<u8>, size: u64) -> Result<accept::Content, proto::Reply> {
        let Some(p) = self.pieces.take() else {
            return Ok(accept::Content::Whole(rest));
        };
        if let Some(reply) = p.failed {
            return Err(reply);
        }
        if p.spill.len() + rest.len() as u64 != size {
            warn!(peer = %self.peer, id = %p.spill.id(), stored = p.spill.len(), rest = rest.len(), size, "message content does not add up");
            return Err(proto::Reply::new(
                451,
                proto::EnhancedCode::new(4, 3, 0),
                "local error in processing, try again later",
            ));
        }
        Ok(accept::Content::Spilled {
            start: p.start,
            spill: p.spill,
            tail: rest,
        })
    }
}

impl Session {
    /// Records a verified client certificate; a listed subject identifies the
    /// client (it satisfies `require_auth`, and AUTH is no longer offered).
    fn set_certificate(&mut self, subject: Option<proto::dn::Dn>, server: &mut Server, ctx: &ListenerCtx) {
        self.tls = true;
        if ctx.peer_check.is_some() {
            // Operator: judged by the trust list at MAIL FROM, not by identities.
            self.client_cert = subject;
            return;
        }
        if let Some(dn) = &subject {
            if ctx.policy.identities().certificate_senders(dn).is_some() {
                self.identity = Some(Identity::Certificate(dn.clone()));
                server.set_authenticated(dn.to_string());
            }
        }
        self.client_cert = subject;
    }
}

/// Serves one accepted connection to its end. Errors are logged, not returned:
/// a broken client must never disturb the listener.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    shutdown: PhaseWatch,
    clients: super::listener::ClientSessions,
) {
    // Every line the session logs carries its id, listener and (TCP) peer:
    // in JSON logs they are the span's fields.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::info_span!("session", session = id, listener = %ctx.listener.name, tcp_peer = %peer);
    tracing::Instrument::instrument(serve_session(tcp, peer, ctx, shutdown, clients), span).await;
}

async fn serve_session(
    mut tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    mut shutdown: PhaseWatch,
    clients: super::listener::ClientSessions,
) {
    let peer = if ctx.listener.proxy_protocol {
        let from = &ctx.listener.proxy_from;
        match super::proxy::client_address(&mut tcp, peer, from, ctx.handshake_timeout).await {
            Ok(client) => client,
            Err(e) => {
                warn!(%peer, listener = %ctx.listener.name, error = %e, "connection closed");
                return;
            }
        }
    } else {
        peer
    };
    let Some(_slot) = clients.enter(peer.ip(), ctx.listener.max_sessions_per_client) else {
        warn!(%peer, listener = %ctx.listener.name, "per-client session limit reached");
        let line = format!(
            "421 4.7.0 {} too many sessions from your address, try again later\r\n",
            ctx.hostname
        );
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.write_all(line.as_bytes())).await;
        let _ = tcp.shutdown().await;
        return;
    };
    let mut session = Session {
        peer,
        client_cert: None,
        identity: None,
        messages: 0,
        tls: false,
        peer_cert: PeerCert::Missing,
        side: None,
        slot: None,
        declared_size: None,
        pieces: None,
    };
    let tls = ServerTls {
        acceptor: ctx.tls.as_ref(),
        implicit: matches!(ctx.listener.tls, TlsMode::Implicit),
        handshake_timeout: ctx.handshake_timeout,
    };
    let mut answers = Answers {
        session: &mut session,
        ctx: &ctx,
    };
    let draining = shutdown.reached(Phase::Draining);
    let config = ctx.server_config.clone();
    let result = net::server::serve(tcp, config, peer.to_string(), tls, &mut answers, draining).await;
    // A connection that broke in the middle of DATA.
    session.discard_pieces().await;
    match result {
        Ok(()) => debug!(%peer, listener = %ctx.listener.name, messages = session.messages, "session closed"),
        Err(e) => info!(%peer, listener = %ctx.listener.name, messages = session.messages, error = %e, "session ended"),
    }
}

/// The session's side of `net`'s loop: [`on_event`] answers proto's events;
/// once TLS is up, the client certificate is judged.
struct Answers<'a> {
    session: &'a mut Session,
    ctx: &'a ListenerCtx,
}

impl Handler for Answers<'_> {
    async fn on_event(&mut self, event: ServerEvent, server: &mut Server) -> ControlFlow<()> {
        // The STARTTLS hand-off is net's; `on_event`'s flag for it is not needed.
        on_event(event, server, self.session, self.ctx).await;
        ControlFlow::Continue(())
    }

    fn on_tls(&mut self, stream: &net::Stream, server: &mut Server) {
        if let Some(info) = stream.tls_info() {
            let resumed = stream
                .server_connection()
                .is_some_and(|c| c.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
            self.ctx.metrics.tls_session(&info.version, &info.cipher, resumed);
        }
        let Some(conn) = stream.server_connection() else {
            return;
        };
        let session = &mut *self.session;
        if let Some(check) = &self.ctx.peer_check {
            session.peer_cert = check.verify(conn.peer_certificates());
            match &session.peer_cert {
                PeerCert::Valid(dn) => {
                    info!(peer = %session.peer, dn = %dn, "operator certificate chains to the anchors")
                }
                PeerCert::Invalid(why) => warn!(peer = %session.peer, reason = %why, "operator certificate refused"),
                PeerCert::Missing => info!(peer = %session.peer, "no client certificate on an operator listener"),
            }
        }
        session.set_certificate(tls::peer_subject(conn), server, self.ctx);
    }
}

/// Answers one event; returns true when the session must switch to TLS.
async fn on_event(event: ServerEvent, server: &mut Server, session: &mut Session, ctx: &ListenerCtx) -> bool {
    match event {
        ServerEvent::Hello { .. } => {}
        ServerEvent::Closed(_) => session.discard_pieces().await,
        ServerEvent::Reset => {
            session.side = None;
            session.discard_pieces().await;
        }
        ServerEvent::Content(piece) => session.piece(piece, ctx).await,
        ServerEvent::Mail(req) => {
            session.side = None;
            session.discard_pieces().await;
            session.declared_size = req.params.size;
            // A full or failing spool refuses before the client sends a body.
            let client = server
                .authenticated()
                .map(str::to_owned)
                .or_else(|| session.client_cert.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| session.peer.ip().to_string());
            let verdict = match ctx.queue.health() {
                Err(reply) => {
                    ctx.metrics.refused(
                        reply.code,
                        "unavailable",
                        format!("{} MAIL FROM:{}: {reply}", session.peer, req.from),
                    );
                    Verdict::Reject(reply)
                }
                Ok(()) => {
                    let checked = match (ctx.peer_check.is_some(), ctx.policy.trust()) {
                        (true, Some(trust)) => {
                            operator::check_mail(session.tls, &session.peer_cert, &req.from, &trust.store.current())
                        }
                        _ => ctx.policy.check_mail(&req.from, session.identity.as_ref()),
                    };
                    if let Err(r) = &checked {
                        ctx.metrics.refused(
                            r.reply().code,
                            r.reason(),
                            format!("{} MAIL FROM:{}: {r}", session.peer, req.from),
                        );
                        info!(peer = %session.peer, from = %req.from, reason = r.reason(), refusal = %r, "sender refused");
                    }
                    // A sender the policy accepts takes its share: a
                    // refused one costs its client nothing.
                    match Refusal::verdict(checked) {
                        Verdict::Accept => match ctx.fairness.admit(&client, &mut session.slot) {
                            Ok(()) => Verdict::Accept,
                            Err((reply, why)) => {
                                ctx.metrics.refused(
                                    reply.code,
                                    why,
                                    format!("{} MAIL FROM:{}: {reply}", session.peer, req.from),
                                );
                                debug!(peer = %session.peer, %client, reason = why, "over its share");
                                Verdict::Reject(reply)
                            }
                        },
                        other => other,
                    }
                }
            };
            server.answer_mail(req, verdict);
        }
        ServerEvent::Rcpt(req) => {
            let checked = if ctx.peer_check.is_some() {
                ctx.policy.check_operator_rcpt(&req.to)
            } else {
                ctx.policy
                    .check_size(&req.to, session.declared_size)
                    .and_then(|()| ctx.policy.check_rcpt(&req.to, &mut session.side))
            };
            if let Err(r) = &checked {
                ctx.metrics.refused(
                    r.reply().code,
                    r.reason(),
                    format!("{} RCPT TO:{}: {r}", session.peer, req.to),
                );
                debug!(peer = %session.peer, rcpt = %req.to, reason = r.reason(), refusal = %r, "recipient refused");
            }
            server.answer_rcpt(req, Refusal::verdict(checked));
        }
        ServerEvent::Auth(req) => {
            let policy = ctx.policy.clone();
            let (account, password) = (req.authcid.clone(), req.password.clone());
            // argon2 is slow on purpose: off the async workers, a bounded number at once.
            let ok = identity::bounded_check(&ctx.auth_checks, move || {
                policy.identities().verify_password(&account, &password)
            })
            .await;
            if ok && (req.authzid.is_empty() || req.authzid == req.authcid) {
                info!(peer = %session.peer, account = %req.authcid, "authenticated");
                session.identity = Some(Identity::Account(req.authcid.clone()));
                server.answer_auth(req, Verdict::Accept);
            } else {
                warn!(peer = %session.peer, account = %req.authcid, "authentication failed");
                ctx.metrics
                    .refused(535, "auth", format!("{} AUTH {}", session.peer, req.authcid));
                let r = proto::Reply::new(
                    535,
                    proto::EnhancedCode::new(5, 7, 8),
                    "authentication credentials invalid",
                );
                server.answer_auth(req, Verdict::Reject(r));
            }
        }
        ServerEvent::StartTls { discarded } => {
            if discarded > 0 {
                warn!(peer = %session.peer, discarded, "octets pipelined after STARTTLS discarded");
            }
            return true;
        }
        ServerEvent::Message(mut done) => {
            session.side = None;
            let rest = std::mem::take(&mut done.body);
            let stored = match session.content(rest, done.size) {
                Ok(content) => accept::store(ctx, server, session, &done, content).await,
                Err(reply) => Err(reply),
            };
            match stored {
                Ok(id) => {
                    session.messages += 1;
                    info!(id = %id, peer = %session.peer, from = %done.from, rcpts = done.recipients.len(), "accepted");
                    server.message_stored(done, Ok(&id.to_string()));
                }
                Err(reply) => {
                    ctx.metrics
                        .refused(reply.code, "commit", format!("{} DATA: {reply}", session.peer));
                    warn!(peer = %session.peer, reply = %reply, "message not accepted");
                    server.message_stored(done, Err(reply));
                }
            }
        }
        ServerEvent::Refused(reply) => {
            ctx.metrics
                .refused(reply.code, "protocol", format!("{}: {reply}", session.peer));
            debug!(peer = %session.peer, reply = %reply, "refused");
        }
    }
    false
}
