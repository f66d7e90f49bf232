//! The bridge into httpscope: each finished request becomes a [`Transaction`] (source
//! `client`, side `client`) sent to the monitor in [`Batch`]es, so that a program's own
//! requests show up in httpscope's output next to what the other sources see.
//!
//! Sending never blocks ([`BatchSender::send`]): when the monitor's channel is full the
//! batch is dropped and counted by the channel. Transactions are batched: a batch goes out
//! when it holds `max_batch` transactions, when a request ends more than `max_delay` after
//! the last send, on [`TransactionBridge::flush`], and when the bridge is dropped.
//!
//! Privacy: the path is sent without its query string; no header or body is sent.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use httpscope_model::batch::{Batch, BatchSender, Disconnected};
use httpscope_model::{Comm, HttpVersion, Method, Side, Source, Transaction};

use crate::observer::{RequestEnd, RequestFailed, Summary};
use crate::Observer;

struct Pending {
    batch: Batch,
    last_send: Instant,
}

/// An [`Observer`] that sends every finished request to the httpscope monitor.
pub struct TransactionBridge {
    tx: BatchSender,
    pending: Mutex<Pending>,
    max_batch: usize,
    max_delay: Duration,
    /// The bridge's clock: `start_ns` / `end_ns` are nanoseconds since this instant...
    base: Instant,
    /// ...which was this wall-clock time.
    base_unix_ns: i64,
    pid: u32,
    comm: Option<Comm>,
}

impl std::fmt::Debug for TransactionBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionBridge")
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl TransactionBridge {
    /// A bridge sending into `tx` (from `httpscope_model::batch::channel(Source::Client, n)`),
    /// batching up to 64 transactions or 1 s.
    pub fn new(tx: BatchSender) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let comm = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| Comm::from(&*n.to_string_lossy())));
        TransactionBridge {
            tx,
            pending: Mutex::new(Pending {
                batch: Batch::new(Source::Client),
                last_send: Instant::now(),
            }),
            max_batch: 64,
            max_delay: Duration::from_secs(1),
            base: Instant::now(),
            base_unix_ns: unix.as_nanos() as i64,
            pid: std::process::id(),
            comm,
        }
    }

    /// Transactions per batch (at least 1).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Longest time a transaction waits for its batch, checked when a request ends.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sends what is pending now.
    pub fn flush(&self) -> Result<(), Disconnected> {
        let batch = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.last_send = Instant::now();
            std::mem::replace(&mut p.batch, Batch::new(Source::Client))
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.tx.send(batch)
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn transaction(&self, s: &Summary<'_>, end: Instant, incomplete: bool) -> Transaction {
        let start = s.timeline.start.unwrap_or(end);
        let start_ns = self.ns(start);
        Transaction {
            time_unix_ns: self.base_unix_ns.saturating_add(start_ns as i64),
            start_ns,
            end_ns: self.ns(end),
            method: Method::from_bytes(s.method.as_str().as_bytes()),
            path: s.uri.path().into(),
            status: s.status.map(|s| s.as_u16()),
            request_bytes: s.request_bytes,
            response_bytes: s.response_bytes,
            client: s.local,
            server: s.peer,
            pid: Some(self.pid),
            comm: self.comm,
            side: Some(Side::Client),
            source: Source::Client,
            version: s.version.and_then(|v| match v {
                http::Version::HTTP_10 => Some(HttpVersion::Http10),
                http::Version::HTTP_11 => Some(HttpVersion::Http11),
                http::Version::HTTP_2 => Some(HttpVersion::Http2),
                _ => None,
            }),
            incomplete,
            ..Transaction::default()
        }
    }

    fn push(&self, tx: Transaction, now: Instant) {
        let batch = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.batch.transactions.push(tx);
            if p.batch.transactions.len() < self.max_batch
                && now.saturating_duration_since(p.last_send) < self.max_delay
            {
                return;
            }
            p.last_send = now;
            std::mem::replace(&mut p.batch, Batch::new(Source::Client))
        };
        // A monitor that went away is not the program's problem: its requests go on.
        let _ = self.tx.send(batch);
    }
}

impl Observer for TransactionBridge {
    fn request_end(&self, e: &RequestEnd<'_>) {
        self.push(self.transaction(&e.summary, e.at, false), e.at);
    }

    fn request_failed(&self, e: &RequestFailed<'_>) {
        // A request without (a complete) response: incomplete, as the other sources report it.
        self.push(self.transaction(&e.summary, e.at, true), e.at);
    }
}

impl Drop for TransactionBridge {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
