//! OTLP/HTTP metrics push (protobuf, `POST {endpoint}/v1/metrics`), built on the
//! `opentelemetry-proto` types.
//!
//! Every flush sends `http.server.request.duration` / `http.client.request.duration`
//! (explicit-bucket histograms in seconds, with min, max and sum), the body sizes as
//! `http.{server,client}.{request,response}.body.size` (explicit-bucket histograms in bytes,
//! unit `By`, bounds [`BODY_SIZE_BOUNDS`](crate::keeper::BODY_SIZE_BOUNDS), with sum and
//! count), and the telemetry as
//! `httpscope.*` monotonic sums. Temporality is `delta` (each interval's window) or
//! `cumulative` (everything since start), as configured. Plain `http://` only; each push is
//! bounded by a timeout and a failure is counted, never retried in a loop.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use httpscope_model::telemetry::Reason;
use httpscope_model::Side;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::prometheus::DURATION_BUCKETS_S;
use crate::keeper::{EndpointKey, EndpointStats, BODY_SIZE_BOUNDS, BODY_SIZE_BUCKETS};
use crate::monitor::{ExportError, Exporter, Flush};
use crate::snapshot::Snapshot;

/// Delta (each interval on its own) or cumulative (since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    /// Each push holds the interval since the previous one.
    Delta,
    /// Each push holds everything since the monitor started.
    #[default]
    Cumulative,
}

/// `[otlp]` in the configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://127.0.0.1:4318`) or full metrics URL (ending in
    /// `/v1/metrics`).
    pub endpoint: String,
    /// Delta or cumulative (default cumulative).
    #[serde(default)]
    pub temporality: Temporality,
    /// Longest a push may take, in seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn default_timeout() -> f64 {
    5.0
}

/// The OTLP exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://host:port[/path]` URL.
    #[error("invalid OTLP endpoint {0:?} (expected http://host:port[/v1/metrics])")]
    Endpoint(String),
    /// The runtime for pushes could not be created.
    #[error("cannot start the OTLP push runtime: {0}")]
    Runtime(std::io::Error),
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// The semantic-convention attributes of an endpoint.
fn attributes(k: &EndpointKey) -> Vec<KeyValue> {
    let mut a = vec![
        kv("http.request.method", s(k.method.as_str())),
        kv("http.route", s(&*k.route)),
        kv(
            "http.response.status_code",
            any_value::Value::IntValue(i64::from(k.status)),
        ),
        kv("httpscope.source", s(k.source.as_str())),
    ];
    if let Some(server) = k.server {
        a.push(kv("server.address", s(server.ip().to_string())));
        a.push(kv(
            "server.port",
            any_value::Value::IntValue(i64::from(server.port())),
        ));
    }
    if k.is_error() {
        a.push(kv("error.type", s(k.status.to_string())));
    }
    a
}

/// Builds the export request for a snapshot.
pub fn request(
    snap: &Snapshot,
    temporality: Temporality,
    start_unix_ns: i64,
) -> ExportMetricsServiceRequest {
    let t = match temporality {
        Temporality::Delta => AggregationTemporality::Delta,
        Temporality::Cumulative => AggregationTemporality::Cumulative,
    } as i32;
    let start = match temporality {
        Temporality::Delta => snap.start_unix_ns,
        Temporality::Cumulative => start_unix_ns,
    }
    .max(0) as u64;
    let now = snap.end_unix_ns.max(0) as u64;
    let bounds_ns: Vec<f64> = DURATION_BUCKETS_S.iter().map(|s| s * 1e9).collect();
    let mut metrics = Vec::new();
    // One data point per attribute set: keys that differ in the client or process are merged.
    let merged = super::series(&snap.entries);
    for side in ["server", "client"] {
        let entries: Vec<_> = merged
            .iter()
            .filter(|(k, _)| (k.side == Some(Side::Client)) == (side == "client"))
            .collect();
        if entries.is_empty() {
            continue;
        }
        let points = entries
            .iter()
            .map(|(k, v)| HistogramDataPoint {
                attributes: attributes(k),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: v.latency.count(),
                sum: Some(v.latency.sum_ns() as f64 / 1e9),
                bucket_counts: v.latency.bucket_counts(&bounds_ns),
                explicit_bounds: DURATION_BUCKETS_S.to_vec(),
                min: v.latency.min_ns().map(|n| n as f64 / 1e9),
                max: v.latency.max_ns().map(|n| n as f64 / 1e9),
                ..Default::default()
            })
            .collect();
        metrics.push(Metric {
            name: format!("http.{side}.request.duration"),
            description: "Duration of HTTP requests.".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: t,
            })),
            ..Default::default()
        });
        type Field = fn(&EndpointStats) -> (u64, &[u64; BODY_SIZE_BUCKETS]);
        let fields: [(&str, Field); 2] = [
            ("request", |e| (e.request_bytes, &e.request_sizes)),
            ("response", |e| (e.response_bytes, &e.response_sizes)),
        ];
        for (what, f) in fields {
            let points = entries
                .iter()
                .map(|(k, v)| {
                    let (bytes, buckets) = f(v);
                    HistogramDataPoint {
                        attributes: attributes(k),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: buckets.iter().sum(),
                        sum: Some(bytes as f64),
                        bucket_counts: buckets.to_vec(),
                        explicit_bounds: BODY_SIZE_BOUNDS.iter().map(|&b| b as f64).collect(),
                        ..Default::default()
                    }
                })
                .collect();
            metrics.push(Metric {
                name: format!("http.{side}.{what}.body.size"),
                description: format!("Size of HTTP {what} bodies."),
                unit: "By".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: t,
                })),
                ..Default::default()
            });
        }
    }
    // Telemetry is always cumulative since start (it is kept that way).
    let tel = &snap.telemetry;
    let cum = AggregationTemporality::Cumulative as i32;
    let start_all = start_unix_ns.max(0) as u64;
    let point = |attrs: Vec<KeyValue>, v: u64| NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start_all,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(v as i64)),
        ..Default::default()
    };
    metrics.push(sum(
        "httpscope.transactions",
        "{transaction}",
        vec![point(vec![], tel.keeper.transactions)],
        cum,
    ));
    metrics.push(sum(
        "httpscope.incomplete",
        "{transaction}",
        vec![point(vec![], tel.keeper.incomplete)],
        cum,
    ));
    let by_reason = |it: Vec<(&'static str, u64)>| -> Vec<NumberDataPoint> {
        it.into_iter()
            .map(|(r, n)| point(vec![kv("reason", s(r))], n))
            .collect()
    };
    metrics.push(sum(
        "httpscope.malformed",
        "{transaction}",
        by_reason(
            tel.malformed()
                .iter()
                .map(|(r, n)| (r.as_str(), n))
                .collect(),
        ),
        cum,
    ));
    metrics.push(sum(
        "httpscope.dropped",
        "{item}",
        by_reason(tel.dropped().iter().map(|(r, n)| (r.as_str(), n)).collect()),
        cum,
    ));
    let per_source = |f: &dyn Fn(&crate::SourceTelemetry) -> u64| -> Vec<NumberDataPoint> {
        tel.sources
            .iter()
            .map(|st| point(vec![kv("source", s(st.source.as_str()))], f(st)))
            .collect()
    };
    metrics.push(sum(
        "httpscope.events",
        "{event}",
        per_source(&|st| st.stats.events),
        cum,
    ));
    metrics.push(sum(
        "httpscope.received.bytes",
        "By",
        per_source(&|st| st.stats.bytes),
        cum,
    ));
    metrics.push(sum(
        "httpscope.kernel_lost",
        "{event}",
        per_source(&|st| st.stats.kernel_lost),
        cum,
    ));
    metrics.push(sum(
        "httpscope.kernel_skipped",
        "{event}",
        per_source(&|st| st.stats.kernel_skipped),
        cum,
    ));
    metrics.push(sum(
        "httpscope.channel_full",
        "{batch}",
        per_source(&|st| st.channel_full_batches),
        cum,
    ));

    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("httpscope"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "httpscope".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn sum(name: &str, unit: &str, points: Vec<NumberDataPoint>, temporality: i32) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// Pushes a request per flush to an OTLP/HTTP collector.
pub struct OtlpExporter {
    uri: hyper::Uri,
    authority: String,
    temporality: Temporality,
    timeout: Duration,
    rt: tokio::runtime::Runtime,
    start_unix_ns: i64,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("uri", &self.uri)
            .finish()
    }
}

impl OtlpExporter {
    /// An exporter for `cfg.endpoint`; `/v1/metrics` is appended to a base URL.
    pub fn new(cfg: &OtlpConfig) -> Result<Self, OtlpError> {
        let bad = || OtlpError::Endpoint(cfg.endpoint.clone());
        let base: hyper::Uri = cfg.endpoint.parse().map_err(|_| bad())?;
        if base.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = base.authority().ok_or_else(bad)?.to_string();
        let path = match base.path() {
            "" | "/" => "/v1/metrics".to_owned(),
            p => p.to_owned(),
        };
        let uri: hyper::Uri = format!("http://{authority}{path}")
            .parse()
            .map_err(|_| bad())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OtlpError::Runtime)?;
        Ok(OtlpExporter {
            uri,
            authority,
            temporality: cfg.temporality,
            timeout: Duration::from_secs_f64(cfg.timeout_secs.clamp(0.1, 300.0)),
            rt,
            start_unix_ns: crate::now_unix_ns(),
        })
    }

    /// Where pushes go.
    pub fn uri(&self) -> &hyper::Uri {
        &self.uri
    }

    fn push(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let uri = self.uri.clone();
        let authority = self.authority.clone();
        let fut = async move {
            let stream = tokio::net::TcpStream::connect(&authority)
                .await
                .map_err(|e| format!("connect {authority}: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = hyper::Request::post(uri)
                .header(hyper::header::HOST, authority.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            let _ = res.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("collector answered {status}"))
            }
        };
        self.rt
            .block_on(async { tokio::time::timeout(self.timeout, fut).await })
            .map_err(|_| ExportError::Push(format!("timed out after {:?}", self.timeout)))?
            .map_err(ExportError::Push)
    }
}

impl Exporter for OtlpExporter {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn flush(&mut self, flush: &Flush<'_>) -> Result<(), ExportError> {
        let snap = match self.temporality {
            Temporality::Delta => flush.window,
            Temporality::Cumulative => flush.total,
        };
        let body = request(snap, self.temporality, self.start_unix_ns).encode_to_vec();
        self.push(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that differ only in what the attributes leave out (client address, process, a
    /// server side known or not) are one data point, not several with equal attributes.
    #[test]
    fn entries_with_equal_attributes_are_one_point() {
        let entries = super::super::entries_differing_outside_labels();
        let req = request(
            &Snapshot {
                entries,
                ..Snapshot::default()
            },
            Temporality::Delta,
            0,
        );
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        for (name, sum) in [
            ("http.server.request.duration", 0.004),
            ("http.server.response.body.size", 600.0),
        ] {
            let m = metrics.iter().find(|m| m.name == name).unwrap();
            let Some(metric::Data::Histogram(h)) = &m.data else {
                panic!("{name} is not a histogram");
            };
            assert_eq!(h.data_points.len(), 1, "{name}");
            let p = &h.data_points[0];
            assert_eq!(p.count, 4, "{name}");
            assert_eq!(p.bucket_counts.iter().sum::<u64>(), 4, "{name}");
            assert!((p.sum.unwrap() - sum).abs() < 1e-9, "{name}");
        }
    }
}
