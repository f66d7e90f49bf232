//! Windows HTTP.sys (IIS and every HTTP.sys server) as a source: ETW events of the provider
//! Microsoft-Windows-HttpService `{dd5ef90a-6398-47a4-ad34-4dcecdef795f}` turned into
//! [`Transaction`](httpscope_model::Transaction)s.
//!
//! HTTP.sys reports each request as a handful of events (connection, receive, parse, deliver,
//! response, send...). This module decodes them ([`wire`]: zero-copy views, validated once),
//! stitches them into one transaction per request ([`Correlator`]: bounded maps, every drop
//! counted), names IIS sites from `applicationHost.config` ([`iis`]), and pushes completed
//! transactions to the monitor as soon as they complete ([`EtwSource`]). The same pipeline runs
//! on any OS from exported events ([`read_file`]: httpscope's JSON-lines replay format, or
//! Windows event XML from `tracerpt` / `Get-WinEvent`). The live consumer (`live`, on the
//! ferrisetw crate) exists only on Windows and is **untested**: it cannot be built on the Linux
//! machines this project is developed and tested on.
//!
//! # JSON-lines replay format
//! One raw event per line, GUIDs lowercase without braces, `timestamp` a FILETIME (100 ns
//! since 1601-01-01 UTC), `user_data` base64 of the event's user data:
//! ```text
//! {"provider":"dd5ef90a-6398-47a4-ad34-4dcecdef795f","event_id":21,"version":0,"timestamp":133000000000000000,"activity_id":"…","related_activity_id":null,"user_data":"…"}
//! ```
//!
//! # Example
//! ```
//! use httpscope_capture::etw;
//! use httpscope_model::{batch, Source};
//!
//! let dir = std::env::temp_dir().join(format!("etw-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("empty.jsonl");
//! // A ConnCleanup of a connection never seen: valid, but makes no transaction.
//! std::fs::write(&path, concat!(
//!     r#"{"provider":"dd5ef90a-6398-47a4-ad34-4dcecdef795f","event_id":24,"version":0,"#,
//!     r#""timestamp":133000000000000000,"activity_id":"00000000-0000-0000-0000-000000000001","#,
//!     r#""related_activity_id":null,"user_data":"AAAAAAAAAAA="}"#, "\n")).unwrap();
//! let head = std::fs::read(&path).unwrap();
//! assert!(etw::detect(&head));
//! let (tx, rx) = batch::channel(Source::Etw, 16);
//! let report = etw::read_file(&path, &tx).unwrap();
//! assert_eq!(report.records, 1);
//! assert_eq!(report.transactions, 0);
//! let stats: u64 = rx.receiver().try_iter().map(|b| b.stats.events).sum();
//! assert_eq!(stats, 1);
//! ```

pub mod correlate;
mod guid;
pub mod iis;
#[cfg(windows)]
pub mod live;
mod replay;
pub mod wire;
mod xml;

pub use correlate::{Config, Correlator, EtwCounters, RawEvent};
pub use guid::Guid;
pub use replay::{
    detect, detect_format, read_file, read_file_with, EtwError, EtwReport, Format, ReadOptions,
};

use httpscope_model::batch::{Batch, BatchSender, Disconnected};
use httpscope_model::Source;

/// How an [`EtwSource`] hands transactions to the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Live: every event that completes transactions sends them at once with the non-blocking
    /// [`BatchSender::send`] (a full channel drops the batch and counts it).
    Live,
    /// Replay: batches of up to this many transactions, sent with
    /// [`BatchSender::send_blocking`] (nothing is lost; the file waits for the monitor).
    Replay(usize),
}

/// The correlator plus the channel to the monitor.
pub struct EtwSource {
    correlator: Correlator,
    tx: BatchSender,
    batch: Batch,
    delivery: Delivery,
}

impl EtwSource {
    /// A source sending to `tx`.
    pub fn new(config: Config, tx: BatchSender, delivery: Delivery) -> Self {
        EtwSource {
            correlator: Correlator::new(config),
            tx,
            batch: Batch::new(Source::Etw),
            delivery,
        }
    }

    /// The correlator.
    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    /// The correlator, to set the IIS configuration or sweep.
    pub fn correlator_mut(&mut self) -> &mut Correlator {
        &mut self.correlator
    }

    /// Counts a record that could not even be read as an event (bad JSON, bad XML fields).
    pub fn count_undecodable(&mut self) {
        self.batch.stats.events += 1;
        self.batch.stats.undecodable += 1;
    }

    /// Processes one event and delivers what it completed.
    pub fn on_event(&mut self, ev: &RawEvent<'_>) -> Result<(), Disconnected> {
        let before = self.batch.transactions.len();
        self.correlator.process(ev, &mut self.batch.transactions);
        let n = self.batch.transactions.len();
        match self.delivery {
            Delivery::Live if n > before => self.send(false),
            Delivery::Replay(max) if n >= max.max(1) => self.send(true),
            _ => Ok(()),
        }
    }

    /// Sends everything pending (transactions and counts) now, waiting for room in the
    /// channel: when it returns, the monitor's channel holds every completed transaction.
    pub fn flush(&mut self) -> Result<(), Disconnected> {
        self.send(true)
    }

    /// Like [`flush`](Self::flush) but never blocks (live timers): a full channel drops the
    /// batch and counts it.
    pub fn flush_nonblocking(&mut self) -> Result<(), Disconnected> {
        self.send(false)
    }

    fn send(&mut self, blocking: bool) -> Result<(), Disconnected> {
        let stats = self.correlator.take_stats();
        self.batch.stats.merge(&stats);
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Batch::new(Source::Etw));
        if blocking {
            self.tx.send_blocking(batch)
        } else {
            self.tx.send(batch)
        }
    }
}
