//! httpscope's monitor: the one event loop between sources and exporters.
//!
//! Every source runs on its own thread and pushes
//! [`Batch`](httpscope_model::batch::Batch)es into its own bounded channel. The [`Monitor`]
//! selects over those channels, hands every transaction to the [`StatKeeper`] (per-endpoint
//! count, latency [`Sketch`], bytes, keyed by server, client, process, side, method, quantized
//! route and status), keeps self-[`Telemetry`] (what each source saw, dropped or could not
//! parse, what the keeper found malformed or had to drop) and, every interval and once more at
//! shutdown, gives every [`Exporter`] a [`Snapshot`]. Exporters live in [`export`]: the terminal
//! table, JSON / JSON lines, the transaction stream, Prometheus, OTLP/HTTP and the live TUI.
//!
//! Why one loop: sources never aggregate and the monitor never parses, so every source gets
//! the same validation, caps, quantization and outputs, and a slow exporter can only delay the
//! monitor, never a kernel reader (a full channel drops and counts instead of blocking).
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use httpscope_model::batch::{channel, Batch};
//! use httpscope_model::{Method, Source, Transaction};
//! use httpscope_monitor::{Monitor, MonitorConfig};
//!
//! let (tx, rx) = channel(Source::Packet, 16);
//! let mut monitor = Monitor::new(MonitorConfig::default()).unwrap();
//! monitor.add_source(rx);
//! let mut batch = Batch::new(Source::Packet);
//! batch.transactions.push(Transaction {
//!     method: Some(Method::Get),
//!     path: "/users/42".into(),
//!     status: Some(200),
//!     start_ns: 1_000,
//!     end_ns: 2_001_000,
//!     ..Transaction::default()
//! });
//! tx.send_blocking(batch).unwrap();
//! drop(tx); // the source is done: `run` drains, flushes and returns
//! let summary = monitor.run(&AtomicBool::new(false));
//! let (key, stats) = &summary.total.entries[0];
//! assert_eq!((&*key.route, stats.count), ("/users/*", 1));
//! ```
#![deny(missing_docs)]

pub mod export;
mod keeper;
mod monitor;
pub mod route;
mod sketch;
mod snapshot;

pub use keeper::{
    naive_aggregate, validate, ClientRollup, EndpointKey, EndpointStats, KeeperConfig,
    KeeperCounts, StatKeeper,
};
pub use monitor::{
    now_unix_ns, ExportError, Exporter, Flush, Monitor, MonitorConfig, MonitorError, RunSummary,
};
pub use sketch::{Sketch, MAX_BINS, RELATIVE_ACCURACY};
pub use snapshot::{Cumulative, Snapshot, SourceTelemetry, Telemetry};
