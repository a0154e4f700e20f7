//! PROXY protocol v2 on a listener (`proxy_protocol = true`): the client's
//! address survives a load balancer that cannot keep it (one that terminates
//! TCP). Off by default; accepted only from `proxy_from` networks, so that a
//! client cannot claim another address.
//!
//! The contract, chosen for a relay whose policy and audit trail depend on the
//! client address:
//! - a connection from outside `proxy_from` is closed at once, before any
//!   byte is read or written (it is not a load balancer, and without the
//!   header its address would be the balancer's);
//! - a connection from `proxy_from` must start with a valid v2 header within
//!   the listener's handshake timeout, or it is closed: no fallback to the
//!   socket address, which would make every client look like the balancer;
//! - `PROXY` with an IPv4 or IPv6 source: that source is the client address
//!   for policy, logs, `Received:` and the trace; `LOCAL` (the balancer's own
//!   health check) and other families keep the socket address;
//! - exactly the header's bytes are read, nothing of the SMTP stream after it;
//!   a header longer than [`MAX_HEADER`] is refused (a real one carries a few
//!   TLVs, well under it).
//!
//! Parsing is the `ppp` crate's; this module only reads the bytes off the socket.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use ppp::v2;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest PROXY v2 header read (16 fixed octets, addresses and TLVs).
pub const MAX_HEADER: usize = 4096;

/// The fixed part: 12-octet signature, version/command, family, length.
const FIXED: usize = 16;

/// Why a connection on a PROXY listener was closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not come from a `proxy_from` network.
    #[error("{0} is not in proxy_from: PROXY headers are taken only from the load balancers")]
    NotAllowed(SocketAddr),
    /// No complete header within the timeout.
    #[error("no PROXY v2 header within {0:?}")]
    Timeout(Duration),
    /// The socket failed or closed before the header ended.
    #[error("reading the PROXY v2 header: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PROXY v2 header, or a malformed one.
    #[error("not a valid PROXY v2 header: {0}")]
    Invalid(String),
    /// The declared length is over [`MAX_HEADER`].
    #[error("PROXY v2 header of {0} octets (at most {MAX_HEADER})")]
    TooLong(usize),
}

/// Whether `peer` may send PROXY headers.
pub fn allowed(peer: SocketAddr, from: &[IpNet]) -> bool {
    // An IPv4 balancer seen through a dual-stack socket (::ffff:a.b.c.d).
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), std::net::IpAddr::V4),
        ip => ip,
    };
    from.iter().any(|net| net.contains(&ip))
}

/// Reads the PROXY v2 header from `stream` and returns the client's address
/// (`peer` itself for `LOCAL` and non-IP families).
///
/// # Errors
/// [`ProxyError`]: the caller closes the connection.
pub async fn client_address<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    from: &[IpNet],
    timeout: Duration,
) -> Result<SocketAddr, ProxyError> {
    if !allowed(peer, from) {
        return Err(ProxyError::NotAllowed(peer));
    }
    let header = tokio::time::timeout(timeout, read_header(stream))
        .await
        .map_err(|_| ProxyError::Timeout(timeout))??;
    parse(&header, peer)
}

async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, ProxyError> {
    let mut buf = vec![0u8; FIXED];
    stream.read_exact(&mut buf).await?;
    // Checks the signature, version and command before trusting the length.
    match v2::Header::try_from(&buf[..]) {
        Ok(_) | Err(v2::ParseError::Partial(..)) => {}
        Err(e) => return Err(ProxyError::Invalid(e.to_string())),
    }
    let len = FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_HEADER {
        return Err(ProxyError::TooLong(len));
    }
    buf.resize(len, 0);
    stream.read_exact(&mut buf[FIXED..]).await?;
    Ok(buf)
}

/// The client address a complete header names.
fn parse(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let h = v2::Header::try_from(header).map_err(|e| ProxyError::Invalid(e.to_string()))?;
    if h.command == v2::Command::Local {
        return Ok(peer);
    }
    Ok(match h.addresses {
        v2::Addresses::IPv4(a) => SocketAddr::from((a.source_address, a.source_port)),
        v2::Addresses::IPv6(a) => SocketAddr::from((a.source_address, a.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: v2::Command, src: &str, dst: &str) -> Vec<u8> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        v2::Builder::with_addresses(v2::Version::Two | command, v2::Protocol::Stream, (src, dst))
            .build()
            .unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn the_source_address_is_the_client_and_nothing_after_the_header_is_read() {
        let balancer: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        let mut bytes = header(v2::Command::Proxy, "192.0.2.7:51000", "10.0.0.1:25");
        bytes.extend_from_slice(b"EHLO client.example\r\n");
        let mut stream = &bytes[..];
        let client = client_address(&mut stream, balancer, &nets(&["10.0.0.0/8"]), T)
            .await
            .unwrap();
        assert_eq!(client, "192.0.2.7:51000".parse::<SocketAddr>().unwrap());
        assert_eq!(stream, b"EHLO client.example\r\n");
        let v6 = header(v2::Command::Proxy, "[2001:db8::7]:51000", "[2001:db8::1]:25");
        let client = client_address(&mut &v6[..], balancer, &nets(&["10.0.0.0/8"]), T)
            .await
            .unwrap();
        assert_eq!(client, "[2001:db8::7]:51000".parse::<SocketAddr>().unwrap());
    }

    #[tokio::test]
    async fn local_keeps_the_socket_address() {
        let balancer: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        let bytes = header(v2::Command::Local, "192.0.2.7:51000", "10.0.0.1:25");
        let client = client_address(&mut &bytes[..], balancer, &nets(&["10.0.0.0/8"]), T)
            .await
            .unwrap();
        assert_eq!(client, balancer);
    }

    #[tokio::test]
    async fn outsiders_missing_and_bad_headers_are_refused() {
        let bytes = header(v2::Command::Proxy, "192.0.2.7:51000", "10.0.0.1:25");
        let from = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        let outsider: SocketAddr = "192.0.2.50:40000".parse().unwrap();
        let e = client_address(&mut &bytes[..], outsider, &from, T).await.unwrap_err();
        assert!(matches!(e, ProxyError::NotAllowed(_)), "{e}");
        // An IPv4 balancer seen as an IPv4-mapped IPv6 address is recognised.
        let mapped: SocketAddr = "[::ffff:10.0.0.9]:40000".parse().unwrap();
        assert!(allowed(mapped, &from));
        let balancer: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        // SMTP straight away instead of the header.
        let e = client_address(&mut &b"EHLO client.example\r\n"[..], balancer, &from, T)
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyError::Invalid(_)), "{e}");
        // Cut short.
        let e = client_address(&mut &bytes[..20], balancer, &from, T).await.unwrap_err();
        assert!(matches!(e, ProxyError::Io(_)), "{e}");
        // A declared length over the limit is refused before it is read.
        let mut long = bytes[..16].to_vec();
        long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let e = client_address(&mut &long[..], balancer, &from, T).await.unwrap_err();
        assert!(matches!(e, ProxyError::TooLong(_)), "{e}");
        // Silence: the timeout.
        let (mut quiet, _keep) = tokio::io::duplex(64);
        let e = client_address(&mut quiet, balancer, &from, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyError::Timeout(_)), "{e}");
    }
}
