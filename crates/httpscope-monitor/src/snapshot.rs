//! What exporters get: per-endpoint aggregates over a time window, plus self-telemetry.

use std::collections::HashMap;
use std::time::Duration;

use httpscope_model::telemetry::{DropReason, MalformedReason, ReasonCounts, SourceStats};
use httpscope_model::Source;

use crate::keeper::{EndpointKey, EndpointStats, KeeperCounts};

/// Telemetry of one source channel, cumulative since the monitor started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceTelemetry {
    /// The source.
    pub source: Source,
    /// Batches received.
    pub batches: u64,
    /// Transactions received.
    pub transactions: u64,
    /// Batches the source had to drop because its channel was full.
    pub channel_full_batches: u64,
    /// Transactions inside those batches.
    pub channel_full_transactions: u64,
    /// What the source itself counted (events, bytes, kernel losses, drops, parse stats).
    pub stats: SourceStats,
}

/// What httpscope reports about itself, cumulative since the monitor started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Telemetry {
    /// One entry per source channel, in the order they were added.
    pub sources: Vec<SourceTelemetry>,
    /// What the StatKeeper counted.
    pub keeper: KeeperCounts,
    /// Keys held at the last flush.
    pub keys: u64,
    /// Flushes done.
    pub flushes: u64,
    /// How long the last flush took (snapshot plus every exporter). In the snapshot a flush
    /// hands its own exporters, the time of that flush so far (its exporters still to run).
    pub last_flush: Duration,
    /// Total time spent flushing.
    pub flush_total: Duration,
    /// Export errors, by exporter name.
    pub export_errors: Vec<(&'static str, u64)>,
}

impl Telemetry {
    /// Dropped, by reason, over the monitor and every source (including channel-full batches'
    /// transactions as `channel_full`).
    pub fn dropped(&self) -> ReasonCounts<DropReason> {
        let mut d = self.keeper.dropped;
        for s in &self.sources {
            d.merge(&s.stats.dropped);
            d.add(DropReason::ChannelFull, s.channel_full_transactions);
        }
        d
    }

    /// Malformed, by reason.
    pub fn malformed(&self) -> ReasonCounts<MalformedReason> {
        self.keeper.malformed
    }

    /// The sum of every source's own counts.
    pub fn source_totals(&self) -> SourceStats {
        let mut t = SourceStats::default();
        for s in &self.sources {
            t.merge(&s.stats);
        }
        t
    }

    /// Incomplete transactions (request without response or the reverse).
    pub fn incomplete(&self) -> u64 {
        self.keeper.incomplete
    }
}

/// Aggregates over one window (or over everything so far, for a cumulative snapshot).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Start of the window, Unix nanoseconds.
    pub start_unix_ns: i64,
    /// End of the window, Unix nanoseconds.
    pub end_unix_ns: i64,
    /// One entry per key, in no particular order.
    pub entries: Vec<(EndpointKey, EndpointStats)>,
    /// Self-telemetry at the end of the window (always cumulative).
    pub telemetry: Telemetry,
    /// The time span the transactions themselves cover (first request to last response, Unix
    /// ns), which is what rates of a replayed file are computed over.
    pub data_span: Option<(i64, i64)>,
}

impl Snapshot {
    /// The window's length in seconds (at least a millisecond, so rates stay finite).
    pub fn window_secs(&self) -> f64 {
        ((self.end_unix_ns - self.start_unix_ns) as f64 / 1e9).max(1e-3)
    }

    /// The seconds rates are computed over: the data's own span when `data_time` and known,
    /// else the window.
    pub fn rate_secs(&self, data_time: bool) -> f64 {
        match (data_time, self.data_span) {
            (true, Some((a, b))) => ((b - a) as f64 / 1e9).max(1e-3),
            _ => self.window_secs(),
        }
    }

    /// Transactions aggregated in this snapshot.
    pub fn transactions(&self) -> u64 {
        self.entries.iter().map(|(_, s)| s.count).sum()
    }
}

/// A cumulative snapshot built by merging windows, capped at a number of keys.
#[derive(Debug)]
pub struct Cumulative {
    snapshot: Snapshot,
    index: HashMap<EndpointKey, usize>,
    max_keys: usize,
    dropped: u64,
}

impl Cumulative {
    /// Empty, starting at `start_unix_ns`, holding at most `max_keys` keys.
    pub fn new(start_unix_ns: i64, max_keys: usize) -> Self {
        Cumulative {
            snapshot: Snapshot {
                start_unix_ns,
                end_unix_ns: start_unix_ns,
                ..Snapshot::default()
            },
            index: HashMap::new(),
            max_keys,
            dropped: 0,
        }
    }

    /// Merges a window in.
    pub fn merge(&mut self, window: &Snapshot) {
        for (k, v) in &window.entries {
            match self.index.get(k) {
                Some(&i) => self.snapshot.entries[i].1.merge(v),
                None if self.index.len() < self.max_keys => {
                    self.index.insert(k.clone(), self.snapshot.entries.len());
                    self.snapshot.entries.push((k.clone(), v.clone()));
                }
                None => self.dropped += v.count,
            }
        }
        self.snapshot.end_unix_ns = window.end_unix_ns;
        if let Some((a, b)) = window.data_span {
            self.snapshot.data_span = Some(match self.snapshot.data_span {
                Some((x, y)) => (x.min(a), y.max(b)),
                None => (a, b),
            });
        }
        self.snapshot.telemetry = window.telemetry.clone();
        self.snapshot
            .telemetry
            .keeper
            .dropped
            .add(DropReason::KeyLimit, self.dropped);
    }

    /// Transactions not kept because the cumulative view was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The cumulative snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}
