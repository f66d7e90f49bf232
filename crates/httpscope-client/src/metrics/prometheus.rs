//! A [`Recorder`] on prometheus-client, with the OpenTelemetry names translated the usual
//! way (dots to underscores, unit suffix): `http_client_request_duration_seconds`,
//! `http_client_active_requests`, `http_client_open_connections`,
//! `http_client_connection_duration_seconds`, `http_client_request_time_in_queue_seconds`.

use std::fmt::Write as _;
use std::sync::atomic::AtomicI64;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{ConnectionState, Recorder, RequestAttrs};
use crate::Origin;

/// The OpenTelemetry default buckets for HTTP durations, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Labels keyed by owned values that clone without allocating (`Origin` and standard
/// `Method`s are reference-counted or inline), so a lookup of an existing series allocates
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestLabels {
    origin: Origin,
    method: Method,
    status: u16,
    error: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServerLabels {
    origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ActiveLabels {
    origin: Origin,
    method: Method,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ConnLabels {
    origin: Origin,
    state: ConnectionState,
}

fn label(enc: &mut LabelSetEncoder<'_>, key: &str, value: &str) -> std::fmt::Result {
    let mut l = enc.encode_label();
    let mut k = l.encode_label_key()?;
    k.write_str(key)?;
    let mut v = k.encode_label_value()?;
    v.write_str(value)?;
    v.finish()
}

fn server(enc: &mut LabelSetEncoder<'_>, o: &Origin) -> std::fmt::Result {
    label(enc, "server_address", o.host())?;
    label(enc, "server_port", itoa(o.port()).as_str())?;
    label(enc, "url_scheme", o.scheme())
}

/// A number as a label value (only at scrape time).
fn itoa(n: u16) -> String {
    n.to_string()
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        label(enc, "http_request_method", self.method.as_str())?;
        server(enc, &self.origin)?;
        if self.status != 0 {
            label(enc, "http_response_status_code", itoa(self.status).as_str())?;
        }
        if !self.error.is_empty() {
            label(enc, "error_type", self.error)?;
        }
        Ok(())
    }
}

impl EncodeLabelSet for ServerLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        server(enc, &self.origin)
    }
}

impl EncodeLabelSet for ActiveLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        label(enc, "http_request_method", self.method.as_str())?;
        server(enc, &self.origin)
    }
}

impl EncodeLabelSet for ConnLabels {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        label(enc, "http_connection_state", self.state.as_str())?;
        server(enc, &self.origin)
    }
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The five instruments, registered in a prometheus-client [`Registry`].
#[derive(Debug)]
pub struct PrometheusRecorder {
    duration: HistFamily<RequestLabels>,
    active: Family<ActiveLabels, Gauge<i64, AtomicI64>>,
    open: Family<ConnLabels, Gauge<i64, AtomicI64>>,
    conn_duration: HistFamily<ServerLabels>,
    queue: HistFamily<ServerLabels>,
}

impl PrometheusRecorder {
    /// Registers the instruments in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let r = PrometheusRecorder {
            duration: Family::new_with_constructor(histogram),
            active: Family::default(),
            open: Family::default(),
            conn_duration: Family::new_with_constructor(histogram),
            queue: Family::new_with_constructor(histogram),
        };
        registry.register_with_unit(
            "http_client_request_duration",
            "Duration of HTTP client requests (http.client.request.duration)",
            Unit::Seconds,
            r.duration.clone(),
        );
        registry.register(
            "http_client_active_requests",
            "Number of active HTTP requests (http.client.active_requests)",
            r.active.clone(),
        );
        registry.register(
            "http_client_open_connections",
            "Number of outbound HTTP connections that are active or idle (http.client.open_connections)",
            r.open.clone(),
        );
        registry.register_with_unit(
            "http_client_connection_duration",
            "Duration of the successfully established outbound HTTP connections (http.client.connection.duration)",
            Unit::Seconds,
            r.conn_duration.clone(),
        );
        registry.register_with_unit(
            "http_client_request_time_in_queue",
            "Time requests spent in a queue waiting for a connection (http.client.request.time_in_queue)",
            Unit::Seconds,
            r.queue.clone(),
        );
        r
    }
}

impl Recorder for PrometheusRecorder {
    fn request_duration(&self, attrs: &RequestAttrs<'_>, seconds: f64) {
        let labels = RequestLabels {
            origin: attrs.origin.clone(),
            method: attrs.method.clone(),
            status: attrs.status.unwrap_or(0),
            error: attrs.error.unwrap_or(""),
        };
        self.duration.get_or_create(&labels).observe(seconds);
    }

    fn active_requests(&self, origin: &Origin, method: &Method, delta: i64) {
        let labels = ActiveLabels {
            origin: origin.clone(),
            method: method.clone(),
        };
        self.active.get_or_create(&labels).inc_by(delta);
    }

    fn open_connections(&self, origin: &Origin, state: ConnectionState, delta: i64) {
        let labels = ConnLabels {
            origin: origin.clone(),
            state,
        };
        self.open.get_or_create(&labels).inc_by(delta);
    }

    fn connection_duration(&self, origin: &Origin, seconds: f64) {
        self.conn_duration
            .get_or_create(&ServerLabels {
                origin: origin.clone(),
            })
            .observe(seconds);
    }

    fn time_in_queue(&self, origin: &Origin, seconds: f64) {
        self.queue
            .get_or_create(&ServerLabels {
                origin: origin.clone(),
            })
            .observe(seconds);
    }
}
