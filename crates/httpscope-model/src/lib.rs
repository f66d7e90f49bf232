//! The shapes shared by every part of httpscope.
//!
//! Every source (eBPF, TLS uprobes, packet capture, ETW, the observable client) ends in the
//! same [`Transaction`]: one HTTP request paired with its response, with timing, sizes, the two
//! socket addresses and, where the source knows it, the observed process. Its JSON form is the
//! `--format jsonl --transactions` output and its field names are fixed by `DESIGN.md`.
//!
//! Besides the transaction this crate holds the small value types the sources build it from
//! ([`ConnTuple`], [`Method`], [`Side`], [`Source`], [`Comm`]) and the telemetry counter types
//! ([`telemetry`]) with which every part reports what it saw, dropped or could not parse.
//!
//! ```
//! use httpscope_model::{Method, Source, Transaction};
//!
//! let tx = Transaction {
//!     method: Some(Method::Get),
//!     path: "/users/42".into(),
//!     status: Some(200),
//!     start_ns: 1_000,
//!     end_ns: 251_000,
//!     source: Source::Packet,
//!     ..Transaction::default()
//! };
//! assert_eq!(tx.duration_ns(), 250_000);
//! let json = serde_json::to_string(&tx).unwrap();
//! assert!(json.contains(r#""method":"GET""#));
//! ```
#![deny(missing_docs)]

pub mod batch;
mod comm;
mod method;
pub mod telemetry;
mod transaction;
mod tuple;

pub use comm::Comm;
/// The string type of [`Transaction::path`]: a `String` look-alike that keeps up to 24 bytes
/// inline (re-exported so sources and tests need no dependency of their own).
pub use compact_str::CompactString;
pub use method::Method;
pub use transaction::{HttpVersion, Side, Source, Tags, Transaction};
pub use tuple::ConnTuple;
