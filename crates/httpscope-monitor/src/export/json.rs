//! JSON and JSON lines: snapshots (one document per flush) and the raw transaction stream.

use std::io::Write;

use httpscope_model::telemetry::Reason;
use httpscope_model::Transaction;
use serde_json::{json, Map, Value};

use super::Cadence;
use crate::keeper::{BODY_SIZE_BOUNDS, BODY_SIZE_BUCKETS};
use crate::monitor::{ExportError, Exporter, Flush};
use crate::snapshot::{Snapshot, Telemetry};

fn ms(ns: Option<f64>) -> Value {
    ns.map_or(Value::Null, |v| json!((v / 1e3).round() / 1e3))
}

/// A body-size histogram as `{upper bound in bytes: transactions}`, non-empty buckets only,
/// the last bound being `"+Inf"` (the buckets of the Prometheus and OTLP histograms).
fn size_buckets(counts: &[u64; BODY_SIZE_BUCKETS]) -> Value {
    Value::Object(
        counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let le = BODY_SIZE_BOUNDS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), u64::to_string);
                (le, json!(n))
            })
            .collect::<Map<_, _>>(),
    )
}

fn rfc3339(unix_ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A snapshot as a JSON value: `start`, `end`, `window_s`, `endpoints` (one object per key,
/// busiest first, at most `top` when `top > 0`; with body-size histograms by bucket upper
/// bound) and `telemetry`.
///
/// Rates are per second of the window, or of the data's own span when `data_time`.
pub fn snapshot_json(snapshot: &Snapshot, top: usize, data_time: bool) -> Value {
    let secs = snapshot.rate_secs(data_time);
    let mut entries: Vec<_> = snapshot.entries.iter().collect();
    entries.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    if top > 0 {
        entries.truncate(top);
    }
    let endpoints: Vec<Value> = entries
        .into_iter()
        .map(|(k, s)| {
            let l = &s.latency;
            json!({
                "source": k.source,
                "server": k.server,
                "client": k.client,
                "pid": k.pid,
                "comm": k.comm,
                "side": k.side,
                "method": k.method,
                "route": &*k.route,
                "status": k.status,
                "count": s.count,
                "errors": if k.is_error() { s.count } else { 0 },
                "rate": s.count as f64 / secs,
                "latency_ms": {
                    "p50": ms(l.quantile_ns(0.5)),
                    "p90": ms(l.quantile_ns(0.9)),
                    "p99": ms(l.quantile_ns(0.99)),
                    "min": ms(l.min_ns().map(|v| v as f64)),
                    "max": ms(l.max_ns().map(|v| v as f64)),
                    "mean": ms((s.count > 0).then(|| l.sum_ns() as f64 / s.count as f64)),
                },
                "request_bytes": s.request_bytes,
                "response_bytes": s.response_bytes,
                "request_body_size": size_buckets(&s.request_sizes),
                "response_body_size": size_buckets(&s.response_sizes),
            })
        })
        .collect();
    json!({
        "start": rfc3339(snapshot.start_unix_ns),
        "end": rfc3339(snapshot.end_unix_ns),
        "window_s": secs,
        "endpoints": endpoints,
        "telemetry": telemetry_json(&snapshot.telemetry),
    })
}

/// Telemetry as a JSON value.
pub fn telemetry_json(t: &Telemetry) -> Value {
    fn reasons<R: Reason>(it: impl Iterator<Item = (R, u64)>) -> Value {
        Value::Object(
            it.map(|(r, n)| (r.as_str().to_owned(), json!(n)))
                .collect::<Map<_, _>>(),
        )
    }
    let sources: Vec<Value> = t
        .sources
        .iter()
        .map(|s| {
            let p = &s.stats.parse;
            json!({
                "source": s.source,
                "events": s.stats.events,
                "bytes": s.stats.bytes,
                "batches": s.batches,
                "transactions": s.transactions,
                "undecodable": s.stats.undecodable,
                "kernel_lost": s.stats.kernel_lost,
                "kernel_skipped": s.stats.kernel_skipped,
                "channel_full_batches": s.channel_full_batches,
                "channel_full_transactions": s.channel_full_transactions,
                "dropped": reasons(s.stats.dropped.iter()),
                "parse": {
                    "requests": p.requests,
                    "responses": p.responses,
                    "incomplete": p.incomplete,
                    "resyncs": p.resyncs,
                    "gaps": p.gaps,
                    "errors": reasons(p.errors.iter()),
                },
            })
        })
        .collect();
    json!({
        "sources": sources,
        "transactions": t.keeper.transactions,
        "aggregated": t.keeper.aggregated,
        "incomplete": t.keeper.incomplete,
        "filtered": t.keeper.filtered,
        "malformed": reasons(t.malformed().iter()),
        "dropped": reasons(t.dropped().iter()),
        "keys": t.keys,
        "flushes": t.flushes,
        "last_flush_ms": t.last_flush.as_secs_f64() * 1e3,
        "export_errors": Value::Object(t.export_errors.iter().map(|(n, c)| ((*n).to_owned(), json!(c))).collect()),
    })
}

/// Writes snapshots as JSON: pretty, one document per flush (`json`), or one line per flush
/// (`jsonl`).
pub struct JsonExporter {
    out: Box<dyn Write + Send>,
    /// One line per snapshot instead of a pretty document.
    pub lines: bool,
    /// Which snapshot, when.
    pub cadence: Cadence,
    /// Endpoints kept (0 = all).
    pub top: usize,
    /// Rates over the data's own time span (file replays) rather than the window.
    pub data_time: bool,
}

impl JsonExporter {
    /// A JSON exporter writing to `out`.
    pub fn new(out: Box<dyn Write + Send>, lines: bool, cadence: Cadence, top: usize) -> Self {
        JsonExporter {
            out,
            lines,
            cadence,
            top,
            data_time: false,
        }
    }
}

impl Exporter for JsonExporter {
    fn name(&self) -> &'static str {
        "json"
    }

    fn flush(&mut self, flush: &Flush<'_>) -> Result<(), ExportError> {
        let Some(snap) = self.cadence.pick(flush) else {
            return Ok(());
        };
        let v = snapshot_json(snap, self.top, self.data_time);
        if self.lines {
            serde_json::to_writer(&mut self.out, &v).map_err(std::io::Error::from)?;
        } else {
            serde_json::to_writer_pretty(&mut self.out, &v).map_err(std::io::Error::from)?;
        }
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Streams every transaction as one JSON line (the `DESIGN.md` shape).
pub struct TransactionsExporter {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
}

impl TransactionsExporter {
    /// Writes to `out` (buffered; flushed after every batch).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        TransactionsExporter {
            out: std::io::BufWriter::with_capacity(64 * 1024, out),
        }
    }
}

impl Exporter for TransactionsExporter {
    fn name(&self) -> &'static str {
        "transactions"
    }

    fn wants_transactions(&self) -> bool {
        true
    }

    fn transactions(&mut self, txs: &[Transaction]) -> Result<(), ExportError> {
        for tx in txs {
            serde_json::to_writer(&mut self.out, tx).map_err(std::io::Error::from)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }

    fn flush(&mut self, _flush: &Flush<'_>) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_buckets_name_their_upper_bounds_and_skip_empty_ones() {
        let mut c = [0u64; BODY_SIZE_BUCKETS];
        c[0] = 3;
        c[3] = 2;
        c[BODY_SIZE_BUCKETS - 1] = 1;
        assert_eq!(size_buckets(&c), json!({"0": 3, "1024": 2, "+Inf": 1}));
        assert_eq!(size_buckets(&[0; BODY_SIZE_BUCKETS]), json!({}));
    }
}
