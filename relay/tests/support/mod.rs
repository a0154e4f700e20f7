//! What the relay's integration tests share: one module for every file in
//! `relay/tests`, each of which starts with `mod support;`.
//!
//! # Layout
//! - [`node`]: a real node on 127.0.0.1 ephemeral ports with a generated PKI
//!   in a temporary directory; command-line clients (swaks, Python's smtplib)
//!   run off the async runtime; queue ids read from their transcripts.
//! - [`peers`]: real peers the node talks to (Postfix's smtp-sink, Python's
//!   aiosmtpd, an HTTPS file server), free ports, a test CA, and the outbound
//!   client's settings and messages for those peers.
//! - [`dns`]: a real DNS server (dnsmasq) for the MX tests.
//! - [`cluster`]: a cluster of real `estafette` processes and the clients
//!   that send through it.
//! - [`grafana`]: the dashboard's metric names, to check against `/metrics`.
//! - [`raw`]: a bare SMTP line client and a process's memory from /proc.
//! - [`large`]: large message bodies, the client that sends them, the
//!   sink's dumps of them.
//!
//! Every peer is a child process killed when its guard drops, also when a
//! test fails. A test binary uses only part of this module, hence the
//! `dead_code` allowance; `pub` items in a test crate are unreachable by
//! nature.
#![allow(dead_code, unreachable_pub)]

pub mod cluster;
pub mod dns;
pub mod grafana;
pub mod large;
pub mod node;
pub mod peers;
pub mod raw;
