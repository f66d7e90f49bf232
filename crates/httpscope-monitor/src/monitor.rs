//! The event loop: select over the source channels, aggregate, flush every interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Select, TryRecvError};
use httpscope_model::batch::{Batch, BatchReceiver};
use httpscope_model::Transaction;

use crate::keeper::{KeeperConfig, StatKeeper};
use crate::route::{Quantizer, RouteConfig, RouteError};
use crate::snapshot::{Cumulative, Snapshot, SourceTelemetry, Telemetry};

/// Settings of a [`Monitor`].
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// How often exporters get a snapshot (default 10 s).
    pub interval: Duration,
    /// Caps and client roll-up of the aggregation.
    pub keeper: KeeperConfig,
    /// Route quantization.
    pub routes: RouteConfig,
    /// The longest a shutdown waits for sources' channels to drain (default 2 s).
    pub drain_timeout: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(10),
            keeper: KeeperConfig::default(),
            routes: RouteConfig::default(),
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// An exporter could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Writing to an output failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// Sending to a remote endpoint failed.
    #[error("push failed: {0}")]
    Push(String),
}

/// The monitor could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The route configuration is invalid.
    #[error("route configuration: {0}")]
    Routes(#[from] RouteError),
}

/// What a flush hands to exporters.
#[derive(Clone, Copy, Debug)]
pub struct Flush<'a> {
    /// Aggregates since the previous flush.
    pub window: &'a Snapshot,
    /// Aggregates since the monitor started.
    pub total: &'a Snapshot,
    /// Whether this is the final flush (the monitor is stopping).
    pub last: bool,
}

/// A consumer of snapshots (and optionally of raw transactions).
///
/// Exporters run on the monitor thread: `flush` must not block for long (network exporters
/// bound their own time).
pub trait Exporter: Send {
    /// A short name for telemetry (`"table"`, `"prometheus"`...).
    fn name(&self) -> &'static str;

    /// Whether [`Exporter::transactions`] should be called.
    fn wants_transactions(&self) -> bool {
        false
    }

    /// Every transaction, as received, before aggregation.
    fn transactions(&mut self, _txs: &[Transaction]) -> Result<(), ExportError> {
        Ok(())
    }

    /// A flush: every interval, and once more when the monitor stops.
    fn flush(&mut self, flush: &Flush<'_>) -> Result<(), ExportError>;
}

/// What [`Monitor::run`] returns.
#[derive(Debug)]
pub struct RunSummary {
    /// Aggregates over the whole run (with cumulative telemetry).
    pub total: Snapshot,
}

type ErrorHook = Box<dyn FnMut(&str, &ExportError) + Send>;

/// The event loop. Build it, add source receivers and exporters, then [`Monitor::run`].
pub struct Monitor {
    cfg: MonitorConfig,
    keeper: StatKeeper,
    receivers: Vec<BatchReceiver>,
    live: Vec<bool>,
    exporters: Vec<Box<dyn Exporter>>,
    telemetry: Telemetry,
    window_start_unix_ns: i64,
    cumulative: Cumulative,
    on_error: Option<ErrorHook>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("sources", &self.receivers.len())
            .field("exporters", &self.exporters.len())
            .field("keys", &self.keeper.len())
            .finish()
    }
}

/// Now, in Unix nanoseconds.
pub fn now_unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Monitor {
    /// A monitor with no sources and no exporters yet.
    pub fn new(cfg: MonitorConfig) -> Result<Self, MonitorError> {
        let quantizer = Quantizer::new(&cfg.routes)?;
        let now = now_unix_ns();
        Ok(Monitor {
            keeper: StatKeeper::new(cfg.keeper.clone(), quantizer),
            cumulative: Cumulative::new(now, cfg.keeper.max_keys),
            cfg,
            receivers: Vec::new(),
            live: Vec::new(),
            exporters: Vec::new(),
            telemetry: Telemetry::default(),
            window_start_unix_ns: now,
            on_error: None,
        })
    }

    /// Adds a source channel.
    pub fn add_source(&mut self, rx: BatchReceiver) {
        self.telemetry.sources.push(SourceTelemetry {
            source: rx.source,
            ..Default::default()
        });
        self.receivers.push(rx);
        self.live.push(true);
    }

    /// Adds an exporter.
    pub fn add_exporter(&mut self, exporter: Box<dyn Exporter>) {
        self.exporters.push(exporter);
    }

    /// Called with the exporter's name whenever an exporter fails (the failure is also
    /// counted in [`Telemetry::export_errors`]).
    pub fn on_export_error(&mut self, hook: impl FnMut(&str, &ExportError) + Send + 'static) {
        self.on_error = Some(Box::new(hook));
    }

    /// Processes one batch from the source channel at `index` (the order of
    /// [`Monitor::add_source`] calls).
    pub fn process(&mut self, index: usize, batch: Batch) {
        if let Some(t) = self.telemetry.sources.get_mut(index) {
            t.batches += 1;
            t.transactions += batch.transactions.len() as u64;
            t.stats.merge(&batch.stats);
        }
        for e in &mut self.exporters {
            if e.wants_transactions() {
                if let Err(err) = e.transactions(&batch.transactions) {
                    report(&mut self.telemetry, &mut self.on_error, e.name(), &err);
                }
            }
        }
        self.keeper.add_batch(&batch.transactions);
    }

    /// Takes a snapshot of the window and hands it to every exporter.
    pub fn flush(&mut self, last: bool) {
        let started = Instant::now();
        let (entries, counts) = self.keeper.take();
        self.telemetry.keeper.merge(&counts);
        self.telemetry.keys = entries.len() as u64;
        self.telemetry.flushes += 1;
        for (t, rx) in self.telemetry.sources.iter_mut().zip(&self.receivers) {
            t.channel_full_batches = rx.drops().batches.get();
            t.channel_full_transactions = rx.drops().transactions.get();
        }
        let now = now_unix_ns();
        // A flush's own snapshot cannot hold its full duration (the exporters are still to
        // run): it holds the time so far (taking the keeper's aggregates), completed below.
        let so_far = started.elapsed();
        self.telemetry.last_flush = so_far;
        self.telemetry.flush_total += so_far;
        let window = Snapshot {
            start_unix_ns: self.window_start_unix_ns,
            end_unix_ns: now,
            entries,
            telemetry: self.telemetry.clone(),
            data_span: self.keeper.take_span(),
        };
        self.window_start_unix_ns = now;
        self.cumulative.merge(&window);
        let flush = Flush {
            window: &window,
            total: self.cumulative.snapshot(),
            last,
        };
        for e in &mut self.exporters {
            if let Err(err) = e.flush(&flush) {
                report(&mut self.telemetry, &mut self.on_error, e.name(), &err);
            }
        }
        let took = started.elapsed();
        self.telemetry.last_flush = took;
        self.telemetry.flush_total += took.saturating_sub(so_far);
    }

    /// Telemetry so far.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Runs until every source channel is disconnected (the sources finished) or `stop` is
    /// set; then drains what the channels still hold (bounded by the drain timeout), flushes
    /// once more with `last = true` and returns the cumulative snapshot.
    pub fn run(mut self, stop: &AtomicBool) -> RunSummary {
        let mut next_flush = Instant::now() + self.cfg.interval;
        let tick = Duration::from_millis(100);
        loop {
            if stop.load(Ordering::Relaxed) {
                self.drain();
                break;
            }
            let live: Vec<usize> = (0..self.receivers.len())
                .filter(|&i| self.live[i])
                .collect();
            if live.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= next_flush {
                self.flush(false);
                next_flush = (next_flush + self.cfg.interval).max(now);
                continue;
            }
            let timeout = (next_flush - now).min(tick);
            let mut sel = Select::new();
            for &i in &live {
                sel.recv(self.receivers[i].receiver());
            }
            let got = match sel.select_timeout(timeout) {
                Ok(op) => {
                    let i = live[op.index()];
                    Some((i, op.recv(self.receivers[i].receiver())))
                }
                Err(_) => None,
            };
            drop(sel);
            match got {
                Some((i, Ok(batch))) => self.process(i, batch),
                Some((i, Err(_))) => self.live[i] = false,
                None => {}
            }
        }
        self.flush(true);
        RunSummary {
            total: self.cumulative.snapshot().clone(),
        }
    }

    /// Takes whatever the channels hold right now, for at most the drain timeout.
    fn drain(&mut self) {
        let deadline = Instant::now() + self.cfg.drain_timeout;
        for i in 0..self.receivers.len() {
            while self.live[i] && Instant::now() < deadline {
                match self.receivers[i].receiver().try_recv() {
                    Ok(batch) => self.process(i, batch),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => self.live[i] = false,
                }
            }
        }
    }
}

fn report(
    telemetry: &mut Telemetry,
    hook: &mut Option<ErrorHook>,
    name: &'static str,
    err: &ExportError,
) {
    match telemetry.export_errors.iter_mut().find(|(n, _)| *n == name) {
        Some((_, c)) => *c += 1,
        None => telemetry.export_errors.push((name, 1)),
    }
    if let Some(h) = hook {
        h(name, err);
    }
}
