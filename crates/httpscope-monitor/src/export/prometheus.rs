//! Prometheus text exposition on `/metrics` (default listen address `127.0.0.1:9464`).
//!
//! OpenTelemetry semantic-convention names mapped to Prometheus the way the OpenTelemetry
//! Prometheus exporter maps them (dots to underscores, unit suffix):
//! - `http_server_request_duration_seconds` (histogram; server side, and packet-captured
//!   exchanges whose side is not known, since the server is who received the request) and its
//!   twin `http_client_request_duration_seconds` for exchanges observed in the client;
//! - `http_{server,client}_{request,response}_body_size_bytes` (histograms, as the conventions'
//!   `http.*.body.size`: `_bucket` with `le` in bytes at [`BODY_SIZE_BOUNDS`] and `+Inf`,
//!   `_sum` of the bytes, `_count` of the bodies);
//! - the self-telemetry as `httpscope_*_total` counters and a few gauges.
//!
//! Labels follow the semantic conventions: `http_request_method`, `http_route`,
//! `http_response_status_code`, `server_address`, `server_port`, plus `httpscope_source`.
//! Values are cumulative since start. Written by hand rather than with `prometheus-client`
//! because the histograms come ready-made from DDSketches (bucket counts derived from the
//! sketch bins), which that crate's observe-one-value API cannot take.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use httpscope_model::telemetry::Reason;
use httpscope_model::Side;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::keeper::{EndpointKey, EndpointStats, BODY_SIZE_BOUNDS, BODY_SIZE_BUCKETS};
use crate::monitor::{ExportError, Exporter, Flush};
use crate::snapshot::Snapshot;

/// Histogram bucket bounds in seconds: the OpenTelemetry HTTP semantic conventions' advice for
/// `http.server.request.duration`.
pub const DURATION_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `[prometheus]` in the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Where to listen (default `127.0.0.1:9464`).
    pub listen: SocketAddr,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The Prometheus exporter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The label set of an endpoint (without the braces).
fn labels(k: &EndpointKey) -> String {
    let mut s = String::new();
    s.push_str("http_request_method=\"");
    s.push_str(k.method.as_str());
    s.push_str("\",http_route=\"");
    escape(&k.route, &mut s);
    let _ = write!(s, "\",http_response_status_code=\"{}\"", k.status);
    if let Some(server) = k.server {
        let _ = write!(
            s,
            ",server_address=\"{}\",server_port=\"{}\"",
            server.ip(),
            server.port()
        );
    }
    let _ = write!(s, ",httpscope_source=\"{}\"", k.source);
    s
}

fn is_client(k: &EndpointKey) -> bool {
    k.side == Some(Side::Client)
}

fn histogram(out: &mut String, name: &str, entries: &[&(EndpointKey, EndpointStats)]) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP {name} Duration of HTTP requests, first request byte to last response byte."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let bounds_ns: Vec<f64> = DURATION_BUCKETS_S.iter().map(|s| s * 1e9).collect();
    for (k, v) in entries {
        let l = labels(k);
        let counts = v.latency.bucket_counts(&bounds_ns);
        let mut cum = 0u64;
        for (i, b) in DURATION_BUCKETS_S.iter().enumerate() {
            cum += counts[i];
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{l},le=\"+Inf\"}} {}",
            v.latency.count()
        );
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", v.latency.sum_ns() as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{l}}} {}", v.latency.count());
    }
}

fn body_sizes(
    out: &mut String,
    name: &str,
    help: &str,
    entries: &[&(EndpointKey, EndpointStats)],
    field: impl Fn(&EndpointStats) -> (u64, &[u64; BODY_SIZE_BUCKETS]),
) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (k, v) in entries {
        let l = labels(k);
        let (sum, buckets) = field(v);
        let mut cum = 0u64;
        for (b, n) in BODY_SIZE_BOUNDS.iter().zip(buckets) {
            cum += n;
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{b}\"}} {cum}");
        }
        cum += buckets[BODY_SIZE_BUCKETS - 1];
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum{{{l}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{l}}} {cum}");
    }
}

fn counter(out: &mut String, name: &str, help: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (l, v) in rows {
        if l.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
    }
}

/// The whole exposition of a (cumulative) snapshot.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    // One series per label set: keys that differ in the client or process are merged.
    let merged = super::series(&snapshot.entries);
    let mut sorted: Vec<&(EndpointKey, EndpointStats)> = merged.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let (client, server): (Vec<_>, Vec<_>) = sorted.into_iter().partition(|e| is_client(&e.0));
    for (side, entries) in [("server", &server), ("client", &client)] {
        histogram(
            &mut out,
            &format!("http_{side}_request_duration_seconds"),
            entries,
        );
        body_sizes(
            &mut out,
            &format!("http_{side}_request_body_size_bytes"),
            "Size of HTTP request bodies, in bytes.",
            entries,
            |s| (s.request_bytes, &s.request_sizes),
        );
        body_sizes(
            &mut out,
            &format!("http_{side}_response_body_size_bytes"),
            "Size of HTTP response bodies, in bytes.",
            entries,
            |s| (s.response_bytes, &s.response_sizes),
        );
    }
    let t = &snapshot.telemetry;
    let per_source = |f: &dyn Fn(&crate::snapshot::SourceTelemetry) -> u64| -> Vec<(String, u64)> {
        t.sources
            .iter()
            .map(|s| (format!("source=\"{}\"", s.source), f(s)))
            .collect()
    };
    counter(
        &mut out,
        "httpscope_events_total",
        "Raw events received by each source.",
        &per_source(&|s| s.stats.events),
    );
    counter(
        &mut out,
        "httpscope_received_bytes_total",
        "Payload bytes received by each source.",
        &per_source(&|s| s.stats.bytes),
    );
    counter(
        &mut out,
        "httpscope_undecodable_total",
        "Events a source could not decode.",
        &per_source(&|s| s.stats.undecodable),
    );
    counter(
        &mut out,
        "httpscope_kernel_lost_total",
        "Events the kernel or OS reported it could not deliver.",
        &per_source(&|s| s.stats.kernel_lost),
    );
    counter(
        &mut out,
        "httpscope_kernel_skipped_total",
        "Socket reads and writes the kernel side passed over as not HTTP.",
        &per_source(&|s| s.stats.kernel_skipped),
    );
    counter(
        &mut out,
        "httpscope_channel_full_batches_total",
        "Batches dropped because a source channel was full.",
        &per_source(&|s| s.channel_full_batches),
    );
    counter(
        &mut out,
        "httpscope_source_transactions_total",
        "Transactions received from each source.",
        &per_source(&|s| s.transactions),
    );
    let k = &t.keeper;
    counter(
        &mut out,
        "httpscope_transactions_total",
        "Transactions received by the monitor.",
        &[(String::new(), k.transactions)],
    );
    counter(
        &mut out,
        "httpscope_aggregated_total",
        "Transactions aggregated.",
        &[(String::new(), k.aggregated)],
    );
    counter(
        &mut out,
        "httpscope_incomplete_total",
        "Incomplete transactions (no response or no request).",
        &[(String::new(), k.incomplete)],
    );
    counter(
        &mut out,
        "httpscope_filtered_total",
        "Transactions whose path matched a drop rule.",
        &[(String::new(), k.filtered)],
    );
    let reasons = |it: &mut dyn Iterator<Item = (&'static str, u64)>| -> Vec<(String, u64)> {
        it.map(|(r, n)| (format!("reason=\"{r}\""), n)).collect()
    };
    let malformed = reasons(&mut t.malformed().iter().map(|(r, n)| (r.as_str(), n)));
    counter(
        &mut out,
        "httpscope_malformed_total",
        "Transactions not aggregated because impossible, by reason.",
        &malformed,
    );
    let dropped = reasons(&mut t.dropped().iter().map(|(r, n)| (r.as_str(), n)));
    counter(
        &mut out,
        "httpscope_dropped_total",
        "Things dropped because of a cap, by reason.",
        &dropped,
    );
    let _ = writeln!(out, "# HELP httpscope_keys Endpoint keys in the last interval.\n# TYPE httpscope_keys gauge\nhttpscope_keys {}", t.keys);
    let _ = writeln!(
        out,
        "# HELP httpscope_flush_duration_seconds How long the last flush took.\n# TYPE httpscope_flush_duration_seconds gauge\nhttpscope_flush_duration_seconds {}",
        t.last_flush.as_secs_f64()
    );
    out
}

/// Serves the latest cumulative snapshot's exposition on `/metrics`.
pub struct PrometheusExporter {
    text: Arc<Mutex<String>>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusExporter")
            .field("addr", &self.addr)
            .finish()
    }
}

impl PrometheusExporter {
    /// Binds `cfg.listen` and serves from a thread of its own.
    pub fn start(cfg: &PrometheusConfig) -> Result<Self, PrometheusError> {
        let bind = |source| PrometheusError::Bind {
            addr: cfg.listen,
            source,
        };
        let std_listener = std::net::TcpListener::bind(cfg.listen).map_err(bind)?;
        std_listener.set_nonblocking(true).map_err(bind)?;
        let addr = std_listener.local_addr().map_err(bind)?;
        let text = Arc::new(Mutex::new(render(&Snapshot::default())));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = text.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(bind)?;
        std::thread::Builder::new()
            .name("httpscope-prometheus".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let served = served.clone();
                                tokio::spawn(async move {
                                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                                        let served = served.clone();
                                        async move { Ok::<_, std::convert::Infallible>(respond(&req, &served)) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), svc)
                                        .await;
                                });
                            }
                        }
                    }
                })
            })
            .map_err(bind)?;
        Ok(PrometheusExporter {
            text,
            addr,
            shutdown: Some(stop_tx),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn respond(req: &Request<hyper::body::Incoming>, text: &Mutex<String>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"try /metrics\n")));
        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
        return r;
    }
    let body = text.lock().map(|t| t.clone()).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

impl Exporter for PrometheusExporter {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn flush(&mut self, flush: &Flush<'_>) -> Result<(), ExportError> {
        let text = render(flush.total);
        if let Ok(mut t) = self.text.lock() {
            *t = text;
        }
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
    fn exposition_has_histograms_and_escapes_labels() {
        let mut k = StatKeeper::new(KeeperConfig::default(), Quantizer::heuristic());
        for (i, ms) in [3u64, 30, 300].iter().enumerate() {
            k.add(&Transaction {
                method: Some(Method::Get),
                path: "/q\"uote".into(),
                status: Some(200),
                start_ns: 0,
                end_ns: ms * 1_000_000,
                request_bytes: i as u64,
                server: Some("127.0.0.1:80".parse().unwrap()),
                ..Transaction::default()
            });
        }
        let (entries, _) = k.take();
        let text = render(&Snapshot {
            entries,
            ..Snapshot::default()
        });
        let l = r#"http_request_method="GET",http_route="/q\"uote",http_response_status_code="200",server_address="127.0.0.1",server_port="80",httpscope_source="packet""#;
        assert!(
            text.contains(&format!(
                "http_server_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 1"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{l},le=\"0.05\"}} 2"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3"
        )));
        assert!(text.contains(&format!(
            "http_server_request_duration_seconds_count{{{l}}} 3"
        )));
        assert!(text.contains(&format!("http_server_request_body_size_bytes_sum{{{l}}} 3")));
        // Request bodies of 0, 1 and 2 bytes: one in le="0", all three by le="64".
        assert!(text.contains("# TYPE http_server_request_body_size_bytes histogram"));
        for (le, n) in [("0", 1), ("64", 3), ("67108864", 3), ("+Inf", 3)] {
            let line =
                format!("http_server_request_body_size_bytes_bucket{{{l},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains(&format!(
            "http_server_response_body_size_bytes_bucket{{{l},le=\"0\"}} 3"
        )));
        assert!(text.contains(&format!(
            "http_server_request_body_size_bytes_count{{{l}}} 3"
        )));
        assert!(!text.contains("http_client_request_duration_seconds"));
    }

    /// Keys that differ only in what the labels leave out (client address, process, a server
    /// side known or not) are one series: written twice, Prometheus would keep the first
    /// sample and drop the other as a duplicate.
    #[test]
    fn entries_with_equal_labels_are_one_series() {
        let entries = super::super::entries_differing_outside_labels();
        let text = render(&Snapshot {
            entries,
            ..Snapshot::default()
        });
        let l = r#"http_request_method="GET",http_route="/a",http_response_status_code="200",server_address="127.0.0.1",server_port="80",httpscope_source="packet""#;
        for (series, value) in [
            (
                format!("http_server_request_duration_seconds_count{{{l}}}"),
                4,
            ),
            (
                format!("http_server_request_body_size_bytes_sum{{{l}}}"),
                600,
            ),
            (
                format!("http_server_request_body_size_bytes_bucket{{{l},le=\"+Inf\"}}"),
                4,
            ),
            (
                format!("http_server_request_body_size_bytes_bucket{{{l},le=\"64\"}}"),
                1,
            ),
        ] {
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| line.starts_with(&format!("{series} ")))
                .collect();
            assert_eq!(lines, [format!("{series} {value}")], "in\n{text}");
        }
    }
}
