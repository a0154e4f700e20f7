//! Why a delivery attempt failed as a whole (as opposed to a recipient refused
//! inside a [`proto::client::MessageOutcome`]).

use std::net::SocketAddr;
use std::time::Instant;

use proto::client::Stage;
use proto::{Reply, Severity};

/// A connection-level delivery failure. Every variant names the peer.
///
/// [`DeliveryError::is_transient`] says what the caller does with the recipients
/// of the message it was sending: transient means defer and retry later (the
/// DESIGN's backoff), permanent means bounce. Only a 5yz reply to a
/// connection-level step and a domain that DNS says cannot receive mail
/// ([`DeliveryError::Unroutable`]) are permanent; everything else (network,
/// TLS, timeouts, DNS failures, a parked destination) may heal and is
/// transient.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The host name of the route did not resolve to any address.
    #[error("{host}: cannot resolve: {reason}")]
    Resolve {
        /// The name looked up.
        host: String,
        /// Why.
        reason: String,
    },
    /// DNS answered that the recipient domain cannot receive mail: it does
    /// not exist, or publishes a null MX. Permanent: retrying cannot help.
    #[error("{domain}: {why}")]
    Unroutable {
        /// The recipient domain.
        domain: String,
        /// What DNS said.
        why: Unroutable,
    },
    /// TCP connect failed (refused, unreachable) on every address tried; `peer`
    /// is the last one.
    #[error("{peer}: connect failed: {source}")]
    Connect {
        /// The address.
        peer: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: certificate not trusted or not valid for the
    /// name, no common version or cipher suite, handshake garbage. Nothing of
    /// the message was sent (no plaintext fallback).
    #[error("{peer}: TLS handshake failed: {reason}")]
    Tls {
        /// The address.
        peer: SocketAddr,
        /// What rustls reported (e.g. `invalid peer certificate: UnknownIssuer`).
        reason: String,
    },
    /// TLS is required but the server does not offer STARTTLS. Nothing of the
    /// message was sent.
    #[error("{peer}: STARTTLS not offered and TLS is required")]
    TlsNotOffered {
        /// The address.
        peer: SocketAddr,
    },
    /// The server refused a connection-level step (greeting, EHLO, STARTTLS,
    /// RSET) or said 421.
    #[error("{peer}: {stage}: server replied {reply}")]
    Refused {
        /// The address.
        peer: SocketAddr,
        /// Where.
        stage: Stage,
        /// What the server said.
        reply: Reply,
    },
    /// The server sent something that is not an SMTP reply.
    #[error("{peer}: {stage}: protocol error: {detail}")]
    Protocol {
        /// The address.
        peer: SocketAddr,
        /// Where.
        stage: Stage,
        /// What was wrong (our words; never echoed to anyone).
        detail: String,
    },
    /// No reply in time (`stage` None: the TCP connect or TLS handshake).
    #[error("{peer}: timed out{}", stage.map(|s| format!(" at {s}")).unwrap_or_default())]
    Timeout {
        /// The address.
        peer: SocketAddr,
        /// The step, when in the SMTP session.
        stage: Option<Stage>,
    },
    /// The connection broke (read/write error, or the server closed it) while
    /// a reply was awaited. The message in flight, if any, may or may not have
    /// been delivered: retrying may duplicate it (at-least-once).
    #[error("{peer}: connection lost: {reason}")]
    ConnectionLost {
        /// The address.
        peer: SocketAddr,
        /// The I/O error or "closed by peer".
        reason: String,
    },
    /// Trust space: the server's certificate chains to the anchors, but its
    /// subject DN is not listed for the recipient domain. Nothing was sent;
    /// transient, so the message waits in the queue (`4.7.5`) for the list or
    /// the peer's certificate to be fixed.
    #[error("{peer}: server certificate {dn} is not listed for {domain} in the trust list")]
    PeerNotListed {
        /// The address.
        peer: SocketAddr,
        /// The recipient domain.
        domain: String,
        /// The certificate's subject (canonical form), or why it is unreadable.
        dn: String,
    },
    /// Trust space: the recipient domain is not (or no longer) in the trust
    /// list and no route allows it outside. Nothing was tried; transient
    /// (`4.7.1`): a list refresh may bring it back.
    #[error("{domain}: not in the trust list")]
    NotInTrustSpace {
        /// The recipient domain.
        domain: String,
    },
    /// The destination's circuit breaker is open: no connection was tried.
    #[error("{destination}: parked by the circuit breaker")]
    Parked {
        /// The destination key.
        destination: String,
        /// When a probe will be allowed.
        until: Instant,
    },
}

/// Why DNS says a domain cannot receive mail (see [`DeliveryError::Unroutable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    /// NXDOMAIN: the domain does not exist.
    #[error("domain does not exist (DNS: NXDOMAIN)")]
    NoSuchDomain,
    /// A null MX (`0 .`, RFC 7505): the domain accepts no mail.
    #[error("domain accepts no mail (null MX, RFC 7505)")]
    NullMx,
    /// No MX record, and no address record for the implicit MX (RFC 5321 §5.1).
    #[error("no MX and no address record for the domain (RFC 5321 section 5.1)")]
    NoAddress,
    /// The domain is not a valid DNS name.
    #[error("not a valid DNS domain name")]
    BadName,
}

impl DeliveryError {
    /// Whether retrying later may help: everything but a 5yz reply and an
    /// [`DeliveryError::Unroutable`] domain.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused { reply, .. } => reply.severity() != Severity::Permanent,
            Self::Unroutable { .. } => false,
            _ => true,
        }
    }

    /// The peer's address, when a connection was attempted.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            Self::Resolve { .. } | Self::Unroutable { .. } | Self::Parked { .. } | Self::NotInTrustSpace { .. } => None,
            Self::Connect { peer, .. }
            | Self::Tls { peer, .. }
            | Self::TlsNotOffered { peer }
            | Self::Refused { peer, .. }
            | Self::Protocol { peer, .. }
            | Self::Timeout { peer, .. }
            | Self::ConnectionLost { peer, .. }
            | Self::PeerNotListed { peer, .. } => Some(*peer),
        }
    }

    /// The reply to put in a DSN's Diagnostic-Code: the server's when it
    /// refused, a synthetic `451 4.4.x` otherwise (4.4.1 no answer from host,
    /// 4.4.2 bad connection, 4.7.5 TLS failure, 4.7.10 TLS not offered, 4.4.3
    /// resolution failure, 4.7.5 server certificate not listed, 4.7.1 domain
    /// not in the trust list); for an unroutable domain a permanent `556 5.1.10`
    /// (null MX, RFC 7505) or `550 5.1.2` (bad destination system).
    pub fn reply(&self) -> Reply {
        use proto::EnhancedCode as E;
        let text = self.to_string();
        match self {
            Self::Refused { reply, .. } => reply.clone(),
            Self::Resolve { .. } => Reply::new(451, E::new(4, 4, 3), text),
            Self::Unroutable {
                why: Unroutable::NullMx,
                ..
            } => Reply::new(556, E::new(5, 1, 10), text),
            Self::Unroutable { .. } => Reply::new(550, E::new(5, 1, 2), text),
            Self::Connect { .. } | Self::Timeout { .. } => Reply::new(451, E::new(4, 4, 1), text),
            Self::Tls { .. } | Self::PeerNotListed { .. } => Reply::new(451, E::new(4, 7, 5), text),
            Self::NotInTrustSpace { .. } => Reply::new(451, E::new(4, 7, 1), text),
            Self::TlsNotOffered { .. } => Reply::new(451, E::new(4, 7, 10), text),
            Self::Protocol { .. } | Self::ConnectionLost { .. } => Reply::new(451, E::new(4, 4, 2), text),
            Self::Parked { .. } => Reply::new(451, E::new(4, 4, 1), text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::EnhancedCode;

    fn peer() -> SocketAddr {
        "127.0.0.1:25".parse().unwrap()
    }

    #[test]
    fn only_5yz_refusals_are_permanent() {
        let refused = |code| DeliveryError::Refused {
            peer: peer(),
            stage: Stage::Greeting,
            reply: Reply::new(code, EnhancedCode::new((code / 100) as u8, 0, 0), "no"),
        };
        assert!(refused(421).is_transient());
        assert!(!refused(554).is_transient());
        let tls = DeliveryError::Tls {
            peer: peer(),
            reason: "UnknownIssuer".into(),
        };
        assert!(tls.is_transient());
        assert_eq!(tls.peer(), Some(peer()));
        assert_eq!(tls.reply().enhanced, Some(EnhancedCode::new(4, 7, 5)));
        assert!(tls.to_string().contains("127.0.0.1:25"));
    }

    #[test]
    fn unroutable_domains_are_permanent_with_their_codes() {
        let null = DeliveryError::Unroutable {
            domain: "null.test".into(),
            why: Unroutable::NullMx,
        };
        assert!(!null.is_transient());
        assert_eq!(null.reply().code, 556);
        assert_eq!(null.reply().enhanced, Some(EnhancedCode::new(5, 1, 10)));
        let nx = DeliveryError::Unroutable {
            domain: "nx.test".into(),
            why: Unroutable::NoSuchDomain,
        };
        assert_eq!(nx.reply().enhanced, Some(EnhancedCode::new(5, 1, 2)));
        assert!(nx.reply().to_string().contains("NXDOMAIN"), "{}", nx.reply());
        let dns = DeliveryError::Resolve {
            host: "x.test".into(),
            reason: "SERVFAIL".into(),
        };
        assert!(dns.is_transient());
    }
}
