//! The MSSanté trust space: which domains are in it, and which operator
//! certificate (by subject DN) may speak for each.
//!
//! # Layout
//! - [`list`]: [`TrustIndex`] (the loaded list, looked up at RCPT and on every
//!   TLS peer), [`TrustListConfig`] (`[trust]`), and [`TrustStore`], which loads
//!   the list, swaps in refreshed copies atomically and keeps the last good one
//!   when a refresh fails.
//! - [`fetch`]: reading the list from a file or over HTTPS (verified against a
//!   configured CA), size-capped, with ANS's SHA-256 checksum file.
//! - [`check`]: the report of `estafette trustlist check FILE`.
//! - [`indicators`]: the operator's monthly MSSanté indicators (X-MSS-NIL,
//!   X-MSS-CODECDA, X-MSS-INS, domains, sizes, outcomes) in the spool.
//! - [`certdn`]: the subject DN of an X.509 certificate, in the same canonical
//!   form as the list's DNs ([`proto::dn::Dn`]).
//!
//! Parsing is sans-io in [`proto::trustlist`] (fuzzed, benchmarked).

pub mod certdn;
pub mod check;
pub mod fetch;
pub mod indicators;
pub mod list;

pub use certdn::subject_dn;
pub use list::{RefreshOutcome, TrustError, TrustIndex, TrustListConfig, TrustStore};
