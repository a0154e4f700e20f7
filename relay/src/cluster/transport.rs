//! QUIC between the nodes: quinn with mutual TLS from the cluster CA, ALPN
//! `estafette-repl/N` for each frame version N the node speaks (highest first,
//! so that two nodes agree on the highest both have: a rolling upgrade mixes
//! builds), frames as length-prefixed records on one unidirectional stream per
//! connection. This layer only moves bytes; the protocol is
//! `proto::cluster::Node`, run by [`super::driver`].
//!
//! Each node opens one connection to every peer and sends its frames on it;
//! it receives the peer's frames on the connection the peer opened. So a pair
//! of nodes holds two connections, each carrying one direction (simpler than
//! electing who dials, and a lost path shows on both sides at once).
//!
//! Who a peer is comes from its certificate, never from what it says: the
//! certificate must chain to the cluster CA (checked in the handshake) and
//! carry a member's name as DNS name; a frame claiming another id is ignored
//! by the protocol. Anything else is refused, logged and counted; a malformed
//! frame closes that connection, never the node.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::cluster::{Frame, FrameDecoder, NodeId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::driver::Cmd;
use super::replicate::{Outbound, Receiver};
use crate::config::ClusterConfig;
use crate::tls::TlsError;

/// The ALPN of the replication protocol, before its version number.
const ALPN_PREFIX: &str = "estafette-repl/";

/// The ALPN names of frame versions `1..=max`, highest first: both rustls
/// sides then settle on the highest version both speak.
fn alpns(max: u8) -> Vec<Vec<u8>> {
    (1..=max)
        .rev()
        .map(|v| format!("{ALPN_PREFIX}{v}").into_bytes())
        .collect()
}

/// The frame version a connection negotiated (version 1 without ALPN, which
/// the handshake does not allow).
fn negotiated(conn: &quinn::Connection) -> u8 {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .and_then(|p| {
            std::str::from_utf8(p.strip_prefix(ALPN_PREFIX.as_bytes())?)
                .ok()?
                .parse()
                .ok()
        })
        .unwrap_or(1)
}

/// Largest frame accepted from a peer (a 1 MiB body chunk, its envelope and
/// placement fit with room to spare).
const MAX_FRAME: usize = 4 << 20;

/// Ack-eliciting packets a peer may receive before it must send a QUIC ack.
const ACK_EVERY_PACKETS: u32 = 10;

/// Refused handshakes and frames (metrics, `cluster status`).
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Connections refused: certificate not naming a member, handshake failed.
    pub refused: AtomicU64,
    /// Connections closed on a malformed frame.
    pub malformed: AtomicU64,
}

/// Builds the QUIC endpoint: server side requires a client certificate from the
/// cluster CA, client side presents this node's certificate.
///
/// # Errors
/// Unreadable PEM files, a key not matching its certificate, or the UDP bind.
pub(super) fn endpoint(config: &ClusterConfig) -> Result<quinn::Endpoint, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(crate::tls::load_roots(&config.ca)?);
    let chain: Vec<CertificateDer<'static>> = crate::tls::load_certs(&config.cert)?;
    let key: PrivateKeyDer<'static> = crate::tls::load_key(&config.key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = alpns(config.wire_version);
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    client.alpn_protocols = alpns(config.wire_version);
    let server = QuicServerConfig::try_from(server).map_err(|e| TlsError::Verifier(e.to_string()))?;
    let client = QuicClientConfig::try_from(client).map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    let window = u32::try_from(config.max_in_flight_bytes).unwrap_or(u32::MAX);
    transport
        .stream_receive_window(quinn::VarInt::from_u32(window))
        .receive_window(quinn::VarInt::from_u32(window))
        .send_window(config.max_in_flight_bytes)
        .keep_alive_interval(Some(Duration::from_millis(500)))
        .max_idle_timeout(Some(quinn::VarInt::from_u32(3_000).into()));
    // A 10 KB copy is 8 packets: by default the peer acks every second one,
    // and each ack is a packet to seal, send, receive and open on both
    // nodes. Replication needs no quicker QUIC acks (the holder's `Ack`
    // frame, sent once the copy is synced, carries one at once), so ask for
    // one every ten packets or `max_ack_delay`, as quinn's bulk benchmark
    // does. A peer without the extension acks as before.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(quinn::VarInt::from_u32(ACK_EVERY_PACKETS));
    transport.ack_frequency_config(Some(acks));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    let bind_error = |e: std::io::Error| TlsError::File {
        what: "cluster endpoint",
        path: config.listen.to_string(),
        reason: e.to_string(),
    };
    let socket = udp_socket(config.listen, config.udp_buffer_bytes).map_err(bind_error)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime).map_err(bind_error)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// The UDP socket of the endpoint, its kernel buffers asked to hold `buffer`
/// bytes each way (0: the system's default).
///
/// Why: the default receive buffer (`net.core.rmem_default`, 208 KiB on most
/// Linux hosts) fills when a burst of copies arrives while the node's runtime
/// is busy, and the kernel drops the datagrams (`UdpRcvbufErrors`). QUIC
/// recovers them, but only after its loss detection: a stall of tens of
/// milliseconds on the accepts waiting for those copies. The kernel caps the
/// request at `net.core.rmem_max` / `wmem_max`; what it granted is logged.
fn udp_socket(listen: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(listen), Type::DGRAM, Some(Protocol::UDP))?;
    if listen.is_ipv6() {
        // As quinn's own bind does: also reachable over IPv4 where allowed.
        let _ = socket.set_only_v6(false);
    }
    if buffer > 0 {
        socket.set_recv_buffer_size(buffer)?;
        socket.set_send_buffer_size(buffer)?;
    }
    socket.bind(&listen.into())?;
    let (recv, send) = (socket.recv_buffer_size()?, socket.send_buffer_size()?);
    if buffer > 0 && recv < buffer {
        warn!(
            asked = buffer,
            granted = recv,
            "cluster UDP receive buffer capped by net.core.rmem_max: bursts of copies may be dropped and resent"
        );
    }
    info!(%listen, recv_buffer = recv, send_buffer = send, "cluster UDP socket");
    Ok(socket.into())
}

/// The member a peer's certificate names (its DNS subject alternative name):
/// a listed member, or with `discover` a pod of this node's StatefulSet.
fn member_of(conn: &quinn::Connection, config: &ClusterConfig) -> Option<NodeId> {
    let chain = conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(name) => config.member_id(name).map(NodeId),
        _ => None,
    })
}

/// Accepts peers' connections until the endpoint closes; each one's frames go
/// to the driver as `Cmd::Frame`.
pub(super) async fn accept(
    endpoint: quinn::Endpoint,
    config: Arc<ClusterConfig>,
    driver: mpsc::Sender<Cmd>,
    counters: Arc<TransportCounters>,
    spool: storage::Spool,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (config, driver, counters, spool) = (config.clone(), driver.clone(), counters.clone(), spool.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(%remote, error = %e, "cluster handshake refused");
                    return;
                }
            };
            let Some(peer) = member_of(&conn, &config) else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                warn!(%remote, "cluster peer certificate names no member: closed");
                conn.close(quinn::VarInt::from_u32(1), b"not a member");
                return;
            };
            if peer == NodeId(config.my_id().unwrap_or(u16::MAX)) {
                conn.close(quinn::VarInt::from_u32(1), b"self");
                return;
            }
            let version = negotiated(&conn);
            debug!(%remote, %peer, version, "cluster peer connected");
            while let Ok(mut stream) = conn.accept_uni().await {
                let mut decoder = FrameDecoder::new(MAX_FRAME).with_max_version(version);
                // Copies are written here, in frame order, before the next
                // frame is read: the back-pressure of replicate's doc.
                let mut copies = Receiver::new(peer, spool.clone(), driver.clone());
                loop {
                    match stream.read_chunk(1 << 20, true).await {
                        Ok(Some(chunk)) => decoder.push(&chunk.bytes),
                        Ok(None) | Err(_) => break,
                    }
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(Frame::Replicate(r))) => copies.on_replicate(r).await,
                            Ok(Some(frame)) => {
                                if let Frame::Release(ids) = &frame {
                                    copies.released(ids);
                                }
                                if driver.send(Cmd::Frame { from: peer, frame }).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                counters.malformed.fetch_add(1, Ordering::Relaxed);
                                warn!(%peer, error = %e, "malformed cluster frame: connection closed");
                                conn.close(quinn::VarInt::from_u32(2), b"malformed frame");
                                return;
                            }
                        }
                    }
                }
            }
        });
    }
}

/// Starts [`dial`] for `peer` at `address`; the returned sender moves it.
pub(super) fn spawn_dial(
    endpoint: &quinn::Endpoint,
    peer: NodeId,
    name: String,
    address: String,
    driver: &mpsc::Sender<Cmd>,
) -> watch::Sender<String> {
    let (tx, rx) = watch::channel(address);
    tokio::spawn(dial(endpoint.clone(), peer, name, rx, driver.clone()));
    tx
}

/// Keeps a connection to `peer` up (re-established with backoff), writing the
/// encoded frames the driver queues for it. Reports the link to the driver.
/// `address` is `host:port`, resolved again at each attempt, and may change.
async fn dial(
    endpoint: quinn::Endpoint,
    peer: NodeId,
    name: String,
    address: watch::Receiver<String>,
    driver: mpsc::Sender<Cmd>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Read at each attempt: discovery moves a rescheduled pod.
        let address = address.borrow().clone();
        match connect(&endpoint, &name, &address).await {
            Ok(conn) => {
                backoff = Duration::from_millis(100);
                match conn.open_uni().await {
                    Ok(mut stream) => {
                        let version = negotiated(&conn);
                        info!(%peer, %address, version, "cluster link up");
                        let (tx, mut rx) = mpsc::channel::<Outbound>(1024);
                        let link = Some((tx, version));
                        if driver.send(Cmd::Link { peer, link }).await.is_err() {
                            return;
                        }
                        // A streamed chunk's budget goes back once written. A
                        // connection that dies while idle (the peer was paused
                        // past the idle timeout) is reported at once: frames
                        // queued for it meanwhile would be lost.
                        let mut batch = Vec::with_capacity(GATHER);
                        loop {
                            tokio::select! {
                                n = rx.recv_many(&mut batch, GATHER) => if n == 0 { break },
                                _ = conn.closed() => break,
                            }
                            if write_batch(&mut stream, &mut batch).await.is_err() {
                                break;
                            }
                        }
                        warn!(%peer, "cluster link down");
                        if driver.send(Cmd::Link { peer, link: None }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => debug!(%peer, error = %e, "opening the cluster stream failed"),
                }
            }
            Err(e) => debug!(%peer, %address, error = %e, "cluster connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Queued writes a link task takes at once.
const GATHER: usize = 64;

/// Writes what the link task took from its queue in one call (one lock of
/// the connection, one wake-up of its driver, no copy of the bytes), then
/// gives the streamed chunks' budget back.
async fn write_batch(stream: &mut quinn::SendStream, batch: &mut Vec<Outbound>) -> Result<(), quinn::WriteError> {
    let mut chunks: Vec<Bytes> = batch
        .iter_mut()
        .map(|out| Bytes::from(std::mem::take(&mut out.bytes)))
        .collect();
    let written = stream.write_all_chunks(&mut chunks).await;
    batch.clear();
    written
}

async fn connect(endpoint: &quinn::Endpoint, name: &str, address: &str) -> anyhow::Result<quinn::Connection> {
    let addr: SocketAddr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{address}: no address"))?;
    let conn = tokio::time::timeout(Duration::from_secs(3), endpoint.connect(addr, name)?).await??;
    Ok(conn)
}
