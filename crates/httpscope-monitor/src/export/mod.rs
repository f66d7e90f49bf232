//! Exporters: each consumes [`Flush`](crate::Flush)es (and, for the transaction stream, raw
//! transactions). A folder or file per exporter, each with its own settings.

pub mod json;
pub mod otlp;
pub mod prometheus;

pub mod table;
pub mod tui;

use std::net::SocketAddr;

use httpscope_model::{Method, Side, Source};

use crate::keeper::{EndpointKey, EndpointStats};
use crate::monitor::Flush;
use crate::sketch::Sketch;
use crate::snapshot::Snapshot;

/// Which snapshot an exporter shows, and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cadence {
    /// The window since the previous flush, at every flush (live views).
    #[default]
    EveryWindow,
    /// The cumulative snapshot, once, at the final flush (file analysis, demo).
    FinalTotal,
}

impl Cadence {
    /// The snapshot to show for this flush, if any.
    pub fn pick<'a>(self, flush: &Flush<'a>) -> Option<&'a Snapshot> {
        match self {
            Cadence::EveryWindow => Some(flush.window),
            Cadence::FinalTotal => flush.last.then_some(flush.total),
        }
    }
}

/// One endpoint row for display: a snapshot's entries grouped by (source, server, side,
/// method, route), with the statuses listed.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Where it was observed.
    pub source: Source,
    /// The server.
    pub server: Option<SocketAddr>,
    /// Which end was observed.
    pub side: Option<Side>,
    /// The method.
    pub method: Option<Method>,
    /// The route.
    pub route: String,
    /// Count per status, most frequent first.
    pub statuses: Vec<(u16, u64)>,
    /// Transactions whose status is an error.
    pub errors: u64,
    /// Everything else, merged.
    pub stats: EndpointStats,
}

impl Row {
    /// `errors / count` in percent.
    pub fn error_pct(&self) -> f64 {
        if self.stats.count == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.stats.count as f64
        }
    }

    /// The statuses as `200×90 500×3` (at most three, then `+n`).
    pub fn statuses_text(&self) -> String {
        let mut s = String::new();
        for (i, (code, n)) in self.statuses.iter().enumerate() {
            if i == 3 {
                s.push_str(&format!(" +{}", self.statuses.len() - 3));
                break;
            }
            if i > 0 {
                s.push(' ');
            }
            if self.statuses.len() == 1 {
                s.push_str(&code.to_string());
            } else {
                s.push_str(&format!("{code}×{n}"));
            }
        }
        s
    }
}

type RowKey<'a> = (Source, Option<SocketAddr>, Option<Side>, Method, &'a str);

/// Groups a snapshot's entries into display rows, sorted by count (descending), then by
/// route, server, method, side and source, so that equal counts always print in one order.
pub fn rows(snapshot: &Snapshot) -> Vec<Row> {
    let mut map: std::collections::HashMap<RowKey<'_>, Row> = std::collections::HashMap::new();
    for (k, v) in &snapshot.entries {
        let row = map
            .entry((k.source, k.server, k.side, k.method, &k.route))
            .or_insert_with(|| Row {
                source: k.source,
                server: k.server,
                side: k.side,
                method: Some(k.method),
                route: k.route.to_string(),
                ..Row::default()
            });
        match row.statuses.iter_mut().find(|(c, _)| *c == k.status) {
            Some((_, n)) => *n += v.count,
            None => row.statuses.push((k.status, v.count)),
        }
        if k.is_error() {
            row.errors += v.count;
        }
        row.stats.merge(v);
    }
    let mut out: Vec<Row> = map.into_values().collect();
    for r in &mut out {
        r.statuses.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    out.sort_by(|a, b| {
        b.stats
            .count
            .cmp(&a.stats.count)
            .then_with(|| a.route.cmp(&b.route))
            .then_with(|| a.server.cmp(&b.server))
            .then_with(|| a.method.cmp(&b.method))
            .then_with(|| a.side.cmp(&b.side))
            .then_with(|| a.source.cmp(&b.source))
    });
    out
}

/// What a metric series is told apart by in the Prometheus and OTLP exports: their labels
/// (source, server, method, route, status) and whether the metric is the `client` or the
/// `server` one. The client address, process and a server side known or not are not labels.
type SeriesKey<'a> = (Source, Option<SocketAddr>, Method, &'a str, u16, bool);

/// A snapshot's entries merged by metric series ([`SeriesKey`]): keys that differ only in
/// what the labels leave out would otherwise be written as several series with equal labels,
/// which Prometheus keeps one of (the others are dropped as duplicate samples) and which break
/// OTLP's one-point-per-attribute-set rule. The keys returned have no client, pid or comm.
pub(crate) fn series(
    entries: &[(EndpointKey, EndpointStats)],
) -> Vec<(EndpointKey, EndpointStats)> {
    let mut index: std::collections::HashMap<SeriesKey<'_>, usize> =
        std::collections::HashMap::with_capacity(entries.len());
    let mut out: Vec<(EndpointKey, EndpointStats)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let id = (
            k.source,
            k.server,
            k.method,
            &*k.route,
            k.status,
            k.side == Some(Side::Client),
        );
        match index.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()].1.merge(v),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                let key = EndpointKey {
                    client: None,
                    pid: None,
                    comm: None,
                    ..k.clone()
                };
                out.push((key, v.clone()));
            }
        }
    }
    out
}

/// A duration in nanoseconds as `850µs`, `12.3ms`, `2.41s`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.0}µs", ns / 1e3)
    } else if ns < 1e9 {
        let ms = ns / 1e6;
        if ms < 10.0 {
            format!("{ms:.2}ms")
        } else if ms < 100.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        }
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// A byte count as `512B`, `1.5KiB`, `3.2MiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// A quantile of a sketch, formatted, or `-`.
pub fn fmt_quantile(s: &Sketch, q: f64) -> String {
    s.quantile_ns(q).map_or_else(|| "-".to_owned(), fmt_ns)
}

/// The server address as text, `-` when unknown.
pub fn fmt_addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "-".to_owned(), |a| a.to_string())
}

/// Four transactions of `GET /a` -> 200 on 127.0.0.1:80, 1 ms each, whose keys differ only
/// in what the exported labels leave out (client address, pid, a server side known or not);
/// transaction `i` has `100 * i` request and response body bytes. The exporters must write
/// them as one series / data point.
#[cfg(test)]
pub(crate) fn entries_differing_outside_labels() -> Vec<(crate::EndpointKey, crate::EndpointStats)>
{
    use httpscope_model::{Method, Side, Transaction};
    let mut k = crate::StatKeeper::new(
        crate::KeeperConfig::default(),
        crate::route::Quantizer::heuristic(),
    );
    for (i, (client, pid, side)) in [
        ("10.0.0.1:5000", Some(10), Some(Side::Server)),
        ("10.0.0.2:5000", Some(10), Some(Side::Server)),
        ("10.0.0.1:5000", Some(11), Some(Side::Server)),
        ("10.0.0.1:5000", None, None),
    ]
    .into_iter()
    .enumerate()
    {
        k.add(&Transaction {
            method: Some(Method::Get),
            path: "/a".into(),
            status: Some(200),
            start_ns: 0,
            end_ns: 1_000_000,
            request_bytes: 100 * i as u64,
            response_bytes: 100 * i as u64,
            client: Some(client.parse().unwrap()),
            server: Some("127.0.0.1:80".parse().unwrap()),
            pid,
            side,
            ..Transaction::default()
        });
    }
    let (entries, _) = k.take();
    assert_eq!(entries.len(), 4);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EndpointKey, EndpointStats};

    #[test]
    fn rows_of_equal_count_have_one_order() {
        let entry = |method| {
            let key = EndpointKey {
                source: Source::Packet,
                server: Some("127.0.0.1:80".parse().unwrap()),
                client: None,
                pid: None,
                comm: None,
                side: None,
                method,
                route: "/big.txt".into(),
                status: 200,
            };
            let mut stats = EndpointStats {
                count: 1,
                ..EndpointStats::default()
            };
            stats.latency.add(1_000);
            (key, stats)
        };
        let order = |methods: [Method; 3]| {
            let snapshot = Snapshot {
                start_unix_ns: 0,
                end_unix_ns: 1_000_000_000,
                entries: methods.into_iter().map(entry).collect(),
                telemetry: Default::default(),
                data_span: None,
            };
            rows(&snapshot).iter().map(|r| r.method).collect::<Vec<_>>()
        };
        let want = order([Method::Get, Method::Head, Method::Delete]);
        assert_eq!(order([Method::Head, Method::Delete, Method::Get]), want);
        assert_eq!(order([Method::Delete, Method::Get, Method::Head]), want);
    }
}
