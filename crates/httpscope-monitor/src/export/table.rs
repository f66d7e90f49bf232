//! The terminal table: one row per endpoint with count, error %, rate, p50/p90/p99 and bytes.

use std::fmt::Write as _;
use std::io::Write;

use httpscope_model::telemetry::Reason;

use super::{fmt_addr, fmt_bytes, fmt_quantile, rows, Cadence};
use crate::monitor::{ExportError, Exporter, Flush};
use crate::snapshot::{Snapshot, Telemetry};

const HEADERS: [&str; 13] = [
    "SERVER", "METHOD", "ROUTE", "STATUS", "COUNT", "ERR%", "RATE/s", "P50", "P90", "P99", "REQ",
    "RESP", "SOURCE",
];
/// Columns aligned right (numbers).
const RIGHT: [bool; 13] = [
    false, false, false, false, true, true, true, true, true, true, true, true, false,
];

/// The longest route shown in the table; longer ones end in `…`.
const ROUTE_WIDTH: usize = 48;

/// Renders a snapshot as a table of its `top` busiest endpoints (0 = all). Rates are per
/// second of the window, or of the data's own time span when `data_time` (file replays).
pub fn render(snapshot: &Snapshot, top: usize, data_time: bool) -> String {
    let all = rows(snapshot);
    let shown = if top == 0 {
        all.len()
    } else {
        top.min(all.len())
    };
    let secs = snapshot.rate_secs(data_time);
    let mut cells: Vec<[String; 13]> = Vec::with_capacity(shown);
    for r in &all[..shown] {
        let mut route = r.route.clone();
        if route.chars().count() > ROUTE_WIDTH {
            route = route.chars().take(ROUTE_WIDTH - 1).collect::<String>() + "…";
        }
        let side = match r.side {
            Some(s) => format!("{}/{}", r.source, s.as_str()),
            None => r.source.to_string(),
        };
        cells.push([
            fmt_addr(r.server),
            r.method.map_or("-", |m| m.as_str()).to_owned(),
            route,
            r.statuses_text(),
            r.stats.count.to_string(),
            format!("{:.1}", r.error_pct()),
            format!("{:.1}", r.stats.count as f64 / secs),
            fmt_quantile(&r.stats.latency, 0.5),
            fmt_quantile(&r.stats.latency, 0.9),
            fmt_quantile(&r.stats.latency, 0.99),
            fmt_bytes(r.stats.request_bytes),
            fmt_bytes(r.stats.response_bytes),
            side,
        ]);
    }
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String; 13]| {
        for (i, c) in row.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i > 0 {
                out.push_str("  ");
            }
            if RIGHT[i] {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if i + 1 < row.len() {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push('\n');
    };
    line(&mut out, &HEADERS.map(String::from));
    for row in &cells {
        line(&mut out, row);
    }
    let total = snapshot.transactions();
    let _ = write!(
        out,
        "{} transactions, {} endpoints over {:.1}s",
        total,
        all.len(),
        secs
    );
    if shown < all.len() {
        let _ = write!(out, " (top {shown} shown)");
    }
    out.push('\n');
    out
}

/// Renders self-telemetry as indented `name value` lines.
pub fn render_telemetry(t: &Telemetry) -> String {
    let mut out = String::from("telemetry:\n");
    for s in &t.sources {
        let st = &s.stats;
        let _ = writeln!(
            out,
            "  source {}: events {} bytes {} batches {} transactions {} undecodable {} kernel_lost {} kernel_skipped {} channel_full_batches {} channel_full_transactions {}",
            s.source,
            st.events,
            st.bytes,
            s.batches,
            s.transactions,
            st.undecodable,
            st.kernel_lost,
            st.kernel_skipped,
            s.channel_full_batches,
            s.channel_full_transactions
        );
        let p = &st.parse;
        let _ = writeln!(
            out,
            "    parse: requests {} responses {} incomplete {} resyncs {} gaps {} http1_connections {} http2_connections {} non_http_connections {}",
            p.requests,
            p.responses,
            p.incomplete,
            p.resyncs,
            p.gaps,
            p.http1_connections,
            p.http2_connections,
            p.non_http_connections
        );
        for (r, n) in p.errors.iter() {
            let _ = writeln!(out, "    parse_error{{reason=\"{}\"}} {n}", r.as_str());
        }
    }
    let k = &t.keeper;
    let _ = writeln!(
        out,
        "  transactions {} aggregated {} incomplete {} filtered {} keys {}",
        k.transactions, k.aggregated, k.incomplete, k.filtered, t.keys
    );
    for (r, n) in t.malformed().iter() {
        let _ = writeln!(out, "  malformed{{reason=\"{}\"}} {n}", r.as_str());
    }
    for (r, n) in t.dropped().iter() {
        let _ = writeln!(out, "  dropped{{reason=\"{}\"}} {n}", r.as_str());
    }
    for (name, n) in &t.export_errors {
        let _ = writeln!(out, "  export_errors{{exporter=\"{name}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "  flushes {} last_flush {:.3}ms flush_total {:.3}ms",
        t.flushes,
        t.last_flush.as_secs_f64() * 1e3,
        t.flush_total.as_secs_f64() * 1e3
    );
    out
}

/// Prints the table (and optionally the telemetry) to a writer.
pub struct TableExporter {
    out: Box<dyn Write + Send>,
    /// Which snapshot, when.
    pub cadence: Cadence,
    /// Rows shown (0 = all).
    pub top: usize,
    /// Also print the telemetry.
    pub stats: bool,
    /// A line printed above every table (e.g. where the data comes from).
    pub title: Option<String>,
    /// Rates over the data's own time span (file replays) rather than the window.
    pub data_time: bool,
}

impl TableExporter {
    /// A table exporter writing to `out`.
    pub fn new(out: Box<dyn Write + Send>, cadence: Cadence, top: usize, stats: bool) -> Self {
        TableExporter {
            out,
            cadence,
            top,
            stats,
            title: None,
            data_time: false,
        }
    }
}

impl Exporter for TableExporter {
    fn name(&self) -> &'static str {
        "table"
    }

    fn flush(&mut self, flush: &Flush<'_>) -> Result<(), ExportError> {
        let Some(snap) = self.cadence.pick(flush) else {
            return Ok(());
        };
        let mut text = String::new();
        if let Some(t) = &self.title {
            text.push_str(t);
            text.push('\n');
        }
        text.push_str(&render(snap, self.top, self.data_time));
        if self.stats {
            text.push_str(&render_telemetry(&snap.telemetry));
        }
        if self.cadence == Cadence::EveryWindow && !flush.last {
            text.push('\n');
        }
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keeper::{KeeperConfig, StatKeeper};
    use crate::route::Quantizer;
    use httpscope_model::{Method, Transaction};

    #[test]
    fn table_has_columns_and_rows() {
        let mut k = StatKeeper::new(KeeperConfig::default(), Quantizer::heuristic());
        for i in 0..100u64 {
            k.add(&Transaction {
                method: Some(Method::Get),
                path: format!("/users/{i}").into(),
                status: Some(if i % 10 == 0 { 500 } else { 200 }),
                start_ns: 0,
                end_ns: (i + 1) * 1_000_000,
                response_bytes: 1000,
                server: Some("127.0.0.1:8080".parse().unwrap()),
                ..Transaction::default()
            });
        }
        let (entries, _) = k.take();
        let snap = Snapshot {
            start_unix_ns: 0,
            end_unix_ns: 10_000_000_000,
            entries,
            ..Snapshot::default()
        };
        let text = render(&snap, 10, false);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        for h in HEADERS {
            assert!(header.contains(h), "{header}");
        }
        let row = lines.next().unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], "127.0.0.1:8080");
        assert_eq!(cols[1], "GET");
        assert_eq!(cols[2], "/users/*");
        assert_eq!(cols[3], "200×90");
        assert_eq!(cols[4], "500×10");
        assert_eq!(cols[5], "100");
        assert_eq!(cols[6], "10.0");
        assert_eq!(cols[7], "10.0");
        // p50 of 1..=100 ms is about 50 ms (1% accuracy).
        assert!(
            cols[8].starts_with("50") || cols[8].starts_with("49"),
            "{row}"
        );
        assert!(text.contains("100 transactions, 1 endpoints over 10.0s"));
    }
}
