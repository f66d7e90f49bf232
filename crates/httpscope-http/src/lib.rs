//! HTTP/1.x stream parsing for httpscope: the bytes of one TCP connection in, paired
//! [`Transaction`]s out.
//!
//! Sources that see raw bytes (eBPF, TLS uprobes, packet capture) keep one [`Connection`] per
//! TCP connection and feed it the payload of both directions in arrival order, each chunk
//! with a timestamp. The connection first decides from the first bytes whether it carries
//! HTTP/1.x, HTTP/2 or something else ([`Protocol`]); non-HTTP connections are counted and
//! then cost one branch per chunk. HTTP/1 connections run a push parser per direction: heads
//! may be split at any byte (only the request or status line and the framing fields are
//! read, nothing is kept), bodies are skipped by counting (never
//! copied), requests are paired with responses in order (pipelining), and lost bytes or a
//! start in the middle of a stream make it resynchronise on the next message head instead of
//! failing for good. Whatever is left at close becomes an `incomplete` transaction.
//!
//! Everything a parser notices (errors, resyncs, gaps, overflows) is counted in
//! [`Output::stats`]; nothing is silently lost and nothing grows past [`Config`]'s limits.
//!
//! ```
//! use httpscope_http::{Config, ConnMeta, Connection, Direction, Output};
//! use httpscope_model::ConnTuple;
//!
//! let tuple = ConnTuple::new("10.0.0.1:50000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
//! let cfg = Config::default();
//! let mut conn = Connection::new(tuple, ConnMeta::default(), &cfg);
//! let mut out = Output::default();
//! conn.feed(Direction::Forward, 1_000, b"GET /hello?name=x HTTP/1.1\r\nHost: a\r\n\r\n", &mut out);
//! conn.feed(Direction::Reverse, 9_000, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", &mut out);
//! let tx = &out.transactions[0];
//! assert_eq!((tx.path.as_str(), tx.status, tx.response_bytes), ("/hello", Some(200), 2));
//! assert_eq!(tx.duration_ns(), 8_000);
//! assert_eq!(tx.server, Some("10.0.0.2:80".parse().unwrap()));
//! ```
#![deny(missing_docs)]

mod chunked;
mod connection;
mod head;
mod http1;
mod lines;
mod scan;

pub use connection::{Connection, Protocol};

use httpscope_model::telemetry::ParseStats;
use httpscope_model::{Comm, Side, Source, Tags, Transaction};

/// Limits and options shared by all connections of a source.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest request or response head buffered across chunks (default 64 KiB). A longer
    /// head is counted as [`ParseError::HeadTooLarge`](httpscope_model::telemetry::ParseError)
    /// and the direction resynchronises.
    pub max_head_bytes: usize,
    /// The most requests kept waiting for their responses on one connection (default 64;
    /// clients rarely pipeline more than a few). Beyond it the oldest is emitted as incomplete
    /// and counted as a pipeline overflow. With `max_path_bytes` it bounds a connection's
    /// queued paths (64 x 2 KiB), next to its two head buffers (2 x `max_head_bytes`).
    pub max_in_flight: usize,
    /// Keep the query string in [`Transaction::path`] (default false: privacy).
    pub keep_query: bool,
    /// The longest path kept, in bytes (default 2048); longer paths are cut at a char boundary.
    pub max_path_bytes: usize,
    /// How many bytes a connection that has never shown an HTTP head may pass over while
    /// searching for one before it is declared not HTTP (default 256 KiB).
    pub max_search_bytes: u64,
    /// The bytes of heads split across chunks that all connections built from this config
    /// (and its clones) may hold together (default 16 MiB). A head that would go past it is
    /// counted as [`ParseError::HeadBudget`](httpscope_model::telemetry::ParseError) and its
    /// direction resynchronises, so a flood of connections with partial heads cannot grow
    /// memory past this, whatever `max_head_bytes` allows one connection.
    pub head_budget: std::sync::Arc<HeadBudget>,
}

/// Bytes of partial heads held by the connections sharing one [`Config`]. Heads that arrive
/// whole in one chunk (the common case) are parsed in place and never touch it.
#[derive(Debug)]
pub struct HeadBudget {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

impl HeadBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(HeadBudget {
            limit,
            used: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes if they fit.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if n == 0 {
            return true;
        }
        self.used
            .fetch_update(Relaxed, Relaxed, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    /// Takes `n` bytes whether or not they fit (a few bytes of a message start).
    pub(crate) fn take(&self, n: usize) {
        self.used.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Gives `n` bytes back.
    pub(crate) fn give_back(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_bytes: 64 * 1024,
            max_in_flight: 64,
            keep_query: false,
            max_path_bytes: 2048,
            max_search_bytes: 256 * 1024,
            head_budget: HeadBudget::new(16 * 1024 * 1024),
        }
    }
}

/// The direction of a chunk relative to the connection's [`ConnTuple`](httpscope_model::ConnTuple).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From `tuple.src` to `tuple.dst`.
    Forward,
    /// From `tuple.dst` to `tuple.src`.
    Reverse,
}

impl Direction {
    /// The other direction.
    pub const fn flip(self) -> Direction {
        match self {
            Direction::Forward => Direction::Reverse,
            Direction::Reverse => Direction::Forward,
        }
    }

    const fn index(self) -> usize {
        match self {
            Direction::Forward => 0,
            Direction::Reverse => 1,
        }
    }
}

/// Which end of the tuple a process-aware source observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The process owns `tuple.src` (the local socket, for kernel sources).
    Src,
    /// The process owns `tuple.dst`.
    Dst,
}

/// What a source knows about a connection besides its bytes; copied into every transaction.
#[derive(Clone, Debug, Default)]
pub struct ConnMeta {
    /// The source that observed the connection.
    pub source: Source,
    /// The observed process id, where known.
    pub pid: Option<u32>,
    /// The observed process name, where known.
    pub comm: Option<Comm>,
    /// Which end the observed process owns, where known. With it the parser sets
    /// [`Transaction::side`]: the process that sent the requests is the client.
    pub observer: Option<Endpoint>,
    /// Added to a chunk timestamp to get wall-clock nanoseconds since the Unix epoch
    /// (zero when timestamps already are wall-clock, as in capture files).
    pub wall_offset_ns: i64,
    /// Whether the source saw the connection from its first byte (a SYN, a new socket). If
    /// not, the parser searches both directions for the first message head.
    pub from_start: bool,
    /// Tags copied into every transaction of this connection.
    pub tags: Tags,
}

/// Where a parser puts what it produced: the transactions, and counts of what it saw.
/// A source keeps one per batch, hands the transactions on and merges the stats.
#[derive(Debug, Default)]
pub struct Output {
    /// Transactions completed so far, in completion order.
    pub transactions: Vec<Transaction>,
    /// What the parsers saw.
    pub stats: ParseStats,
}

impl Output {
    /// Takes the transactions and stats out, leaving the output empty.
    pub fn take(&mut self) -> (Vec<Transaction>, ParseStats) {
        (
            std::mem::take(&mut self.transactions),
            std::mem::take(&mut self.stats),
        )
    }
}

/// The side the observed process played, given which direction carried requests.
fn side_of(observer: Option<Endpoint>, requests: Direction) -> Option<Side> {
    match (observer?, requests) {
        (Endpoint::Src, Direction::Forward) | (Endpoint::Dst, Direction::Reverse) => {
            Some(Side::Client)
        }
        _ => Some(Side::Server),
    }
}
