//! The packet source: HTTP/1.x transactions out of pcap/pcapng files and live AF_PACKET
//! capture, through IP decoding and TCP reassembly.
//!
//! This is the source that works everywhere, on any capture a user already has. Frames go
//! through zero-copy header views (link layer: Ethernet with 802.1Q/QinQ tags, Linux cooked
//! SLL and SLL2, raw IP, BSD null/loopback; then IPv4 or IPv6 with extension headers; then
//! TCP), then a connection table that puts each direction of each TCP connection back in
//! sequence order and feeds it to one [`httpscope_http::Connection`] per TCP connection.
//! Batches of transactions, with [`SourceStats`](httpscope_model::telemetry::SourceStats)
//! counting packets, payload bytes, undecodable frames, drops by reason and what the parser
//! saw, go to the monitor through a [`BatchSender`].
//!
//! Main entry points: [`read_files`] (blocking replay of capture files; never drops a batch)
//! and, on Linux, [`capture_live`] (AF_PACKET; never blocks). Both take a [`PacketConfig`]
//! whose caps bound memory whatever the input.
//!
//! Decisions, each for a reason measured or known from real captures:
//! - a connection is identified by its SYN, not its 4-tuple alone (ports are reused within
//!   seconds); a connection whose SYN was not captured is still parsed from its first data;
//! - checksums are never verified (loopback captures carry bad ones);
//! - timestamps are not assumed ordered: expiry runs on the latest timestamp seen;
//! - IP fragments are counted and skipped, not reassembled (TCP sizes its segments to the
//!   path MTU, so HTTP over TCP practically never fragments);
//! - holes left by capture loss become [`httpscope_http::Connection::gap`] calls, decided
//!   when the peer acknowledges past them, when the per-connection budget runs out, or at
//!   close.
//!
//! ```no_run
//! use httpscope_capture::packet::{read_files, PacketConfig};
//! use httpscope_model::{batch, Source};
//!
//! let (tx, rx) = batch::channel(Source::Packet, 16);
//! let cfg = PacketConfig { ports: vec![80], ..PacketConfig::default() };
//! let reader = std::thread::spawn(move || {
//!     read_files(&["capture.pcapng".into()], &cfg, &tx, None)
//! });
//! let transactions: usize = rx.receiver().iter().map(|b| b.transactions.len()).sum();
//! let report = reader.join().unwrap().unwrap();
//! println!("{transactions} transactions from {} packets", report.packets);
//! if let Some(w) = report.warning {
//!     eprintln!("warning: {w}");
//! }
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use httpscope_model::batch::{BatchSender, Disconnected};

mod file;
mod flows;
#[cfg(target_os = "linux")]
mod live;
mod reassembly;
pub mod synth;
mod wire;

#[cfg(target_os = "linux")]
pub use live::{capture_live, LiveReport};

use flows::Tracker;
use wire::Skip;

/// Options and limits of the packet source.
#[derive(Clone, Debug)]
pub struct PacketConfig {
    /// Only TCP segments to or from these ports are looked at; empty means all ports.
    pub ports: Vec<u16>,
    /// The HTTP parser's options and limits.
    pub http: httpscope_http::Config,
    /// The most connections tracked at once, including closed ones remembered for a few
    /// seconds to recognise their late segments (default 65,536). A new connection beyond it
    /// is dropped and counted as `dropped{reason="connection_limit"}`.
    pub max_connections: usize,
    /// The most bytes one connection holds ahead of holes, waiting for missing segments
    /// (default 256 KiB). When it is full the earliest hole is given up as a gap and counted
    /// as `dropped{reason="stream_buffer_limit"}`. In-order data is never buffered here.
    pub max_buffered_bytes_per_connection: usize,
    /// The most bytes all connections together hold ahead of holes (default 16 MiB); going
    /// over is handled and counted as for the per-connection limit.
    pub max_buffered_bytes_total: usize,
    /// A connection with no segment for this long (capture time) is closed, and counted as
    /// `dropped{reason="expired"}` (default 60 s).
    pub idle_timeout: Duration,
    /// A batch is sent once it holds this many transactions (default 1,024); live capture
    /// also sends at least every 250 ms, and every source sends at its end.
    pub batch_size: usize,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            ports: Vec::new(),
            http: httpscope_http::Config::default(),
            max_connections: 65_536,
            max_buffered_bytes_per_connection: 256 * 1024,
            max_buffered_bytes_total: 16 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            batch_size: 1024,
        }
    }
}

/// Why the packet source could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The input is neither pcap nor pcapng.
    #[error("{path}: not a capture (neither pcap nor pcapng)")]
    NotACapture {
        /// The file.
        path: PathBuf,
    },
    /// The capture's link layer is not one the packet source decodes.
    #[error("{path}: unsupported link type {linktype}")]
    UnsupportedLinkType {
        /// The file.
        path: PathBuf,
        /// The pcap `LINKTYPE_*` value.
        linktype: i32,
    },
    /// The monitor stopped receiving batches.
    #[error("the monitor is no longer receiving")]
    Disconnected,
    /// A live capture could not be set up or failed.
    #[error("cannot capture on {interface}: {source}")]
    Live {
        /// The interface asked for.
        interface: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The interface does not exist.
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
}

impl From<Disconnected> for PacketError {
    fn from(_: Disconnected) -> Self {
        PacketError::Disconnected
    }
}

/// What reading capture files did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileReport {
    /// Files read.
    pub files: usize,
    /// Bytes read as whole records.
    pub bytes: u64,
    /// Packets (frames) read.
    pub packets: u64,
    /// Packets that were TCP segments and were looked at.
    pub tcp_segments: u64,
    /// Packets whose headers could not be decoded (also in the batches' `undecodable`).
    pub undecodable: u64,
    /// IP fragments, counted and skipped.
    pub fragments: u64,
    /// Packets that were not TCP over IP (ARP, UDP, ...), ignored.
    pub not_tcp: u64,
    /// Packets on an interface whose link type is not decoded, or an undescribed one.
    pub unsupported_link: u64,
    /// TCP connections seen.
    pub connections: u64,
    /// Transactions sent.
    pub transactions: u64,
    /// Set when a file was damaged or truncated: which file and where reading stopped. What
    /// came before was processed.
    pub warning: Option<String>,
}

/// Per-frame counting shared by files and live capture.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FrameCounts {
    pub packets: u64,
    pub tcp_segments: u64,
    pub undecodable: u64,
    pub fragments: u64,
    pub not_tcp: u64,
}

impl FrameCounts {
    /// Decodes one frame and hands its segment to the tracker.
    #[inline]
    pub(crate) fn frame(&mut self, tracker: &mut Tracker, ts: u64, link: wire::Link, frame: &[u8]) {
        self.packets += 1;
        tracker.stats().events += 1;
        match wire::decode(link, frame) {
            Ok(seg) => {
                self.tcp_segments += 1;
                tracker.segment(ts, &seg);
            }
            Err(Skip::NotTcp) => self.not_tcp += 1,
            Err(Skip::Fragment) => self.fragments += 1,
            Err(Skip::Malformed) => {
                self.undecodable += 1;
                tracker.stats().undecodable += 1;
            }
        }
    }
}

/// Reads capture files one after another (connections may continue from one file to the
/// next, as with rotated captures) and sends their transactions, blocking while the channel
/// is full so nothing is lost. `progress(bytes_done, bytes_total)` is called every few
/// megabytes.
///
/// A damaged or truncated file is processed up to its last whole record; the report's
/// `warning` says where it stopped, and the following files are still read. A file that is
/// not a capture, or whose link type is not decoded, is an error.
pub fn read_files(
    paths: &[PathBuf],
    cfg: &PacketConfig,
    tx: &BatchSender,
    progress: Option<&(dyn Fn(u64, u64) + Sync)>,
) -> Result<FileReport, PacketError> {
    let total: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut run = Run::new(cfg);
    let mut done = 0u64;
    for path in paths {
        let f = File::open(path).map_err(|source| PacketError::Io {
            path: path.clone(),
            source,
        })?;
        let base = done;
        let on_progress = |n: u64| {
            if let Some(p) = progress {
                p(base + n, total);
            }
        };
        let bytes = run.read(f, path, tx, on_progress)?;
        done += bytes;
    }
    run.finish(tx)
}

/// Reads one capture from any reader (a pipe, a buffer), as [`read_files`] does for files.
/// `name` is used in errors and warnings.
pub fn read_reader(
    reader: impl std::io::Read,
    name: &Path,
    cfg: &PacketConfig,
    tx: &BatchSender,
) -> Result<FileReport, PacketError> {
    let mut run = Run::new(cfg);
    run.read(reader, name, tx, |_| {})?;
    run.finish(tx)
}

/// One replay: the tracker and counts shared by the files read in turn.
struct Run {
    tracker: Tracker,
    counts: FrameCounts,
    report: FileReport,
    batch_size: usize,
}

impl Run {
    fn new(cfg: &PacketConfig) -> Self {
        Run {
            tracker: Tracker::new(cfg),
            counts: FrameCounts::default(),
            report: FileReport::default(),
            batch_size: cfg.batch_size.max(1),
        }
    }

    fn read(
        &mut self,
        reader: impl std::io::Read,
        path: &Path,
        tx: &BatchSender,
        on_progress: impl FnMut(u64),
    ) -> Result<u64, PacketError> {
        let Run {
            tracker,
            counts,
            batch_size,
            ..
        } = self;
        let mut sent: Result<(), Disconnected> = Ok(());
        let end = file::read_capture(
            reader,
            |ts, link, frame| {
                counts.frame(tracker, ts, link, frame);
                if tracker.pending() >= *batch_size {
                    sent = tx.send_blocking(tracker.take_batch());
                }
                // Stop reading once the monitor has gone.
                sent.is_ok()
            },
            on_progress,
        )
        .map_err(|e| match e {
            file::OpenError::Io(source) => PacketError::Io {
                path: path.to_owned(),
                source,
            },
            file::OpenError::NotACapture => PacketError::NotACapture {
                path: path.to_owned(),
            },
            file::OpenError::UnsupportedLinkType(linktype) => PacketError::UnsupportedLinkType {
                path: path.to_owned(),
                linktype,
            },
        })?;
        sent?;
        self.report.files += 1;
        self.report.bytes += end.bytes;
        self.report.unsupported_link += end.unsupported_link + end.unknown_interface;
        if let Some(why) = end.stopped {
            let w = format!(
                "{}: {why}; the rest of the file was skipped",
                path.display()
            );
            self.report.warning = Some(match self.report.warning.take() {
                Some(prev) => format!("{prev}; {w}"),
                None => w,
            });
        }
        Ok(end.bytes)
    }

    fn finish(mut self, tx: &BatchSender) -> Result<FileReport, PacketError> {
        let last = self.tracker.finish();
        if !last.is_empty() {
            tx.send_blocking(last)?;
        }
        let c = self.counts;
        let r = &mut self.report;
        r.packets = c.packets;
        r.tcp_segments = c.tcp_segments;
        r.undecodable = c.undecodable;
        r.fragments = c.fragments;
        r.not_tcp = c.not_tcp;
        r.connections = self.tracker.totals.connections;
        r.transactions = self.tracker.totals.transactions;
        Ok(self.report)
    }
}
