//! A [`Recorder`] on prometheus-client, with the OpenTelemetry names translated the usual
//! way (dots to underscores, unit suffix): `http_client_request_duration_seconds`,
//! `http_client_active_requests`, `http_client_open_connections`,
//! `http_client_connection_duration_seconds`, `http_client_request_time_in_queue_seconds`.

use std::fmt::Write as _;
use std::sync::atomic::AtomicI64;
use std::sync::Mutex;

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

/// `(&Origin, &Method)` looking up an `(Origin, Method)` key without cloning it (hashes the
/// same: fields in the same order).
#[derive(Hash)]
struct ActiveRef<'a>(&'a Origin, &'a Method);

impl hashbrown::Equivalent<(Origin, Method)> for ActiveRef<'_> {
    fn equivalent(&self, k: &(Origin, Method)) -> bool {
        *self.0 == k.0 && *self.1 == k.1
    }
}

/// A borrowed [`RequestLabels`] (same fields, same order, same hash).
#[derive(Hash)]
struct RequestRef<'a> {
    origin: &'a Origin,
    method: &'a Method,
    status: u16,
    error: &'static str,
}

impl hashbrown::Equivalent<RequestLabels> for RequestRef<'_> {
    fn equivalent(&self, k: &RequestLabels) -> bool {
        *self.origin == k.origin
            && *self.method == k.method
            && self.status == k.status
            && self.error == k.error
    }
}

type IntGauge = Gauge<i64, AtomicI64>;

/// Handles of the series already created, found by borrowed keys: a hit costs one
/// uncontended lock and one word-sized hash, where a `Family` lookup would clone the labels
/// and SipHash them under its own lock. The handles share their values with the families.
#[derive(Debug, Default)]
struct Handles {
    open: hashbrown::HashMap<Origin, [IntGauge; 2]>,
    active: hashbrown::HashMap<(Origin, Method), IntGauge>,
    duration: hashbrown::HashMap<RequestLabels, Histogram>,
}

/// The five instruments, registered in a prometheus-client [`Registry`].
#[derive(Debug)]
pub struct PrometheusRecorder {
    duration: HistFamily<RequestLabels>,
    active: Family<ActiveLabels, IntGauge>,
    open: Family<ConnLabels, IntGauge>,
    conn_duration: HistFamily<ServerLabels>,
    queue: HistFamily<ServerLabels>,
    handles: Mutex<Handles>,
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
            handles: Mutex::default(),
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

impl PrometheusRecorder {
    fn handles(&self) -> std::sync::MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Recorder for PrometheusRecorder {
    fn request_duration(&self, attrs: &RequestAttrs<'_>, seconds: f64) {
        let key = RequestRef {
            origin: attrs.origin,
            method: attrs.method,
            status: attrs.status.unwrap_or(0),
            error: attrs.error.unwrap_or(""),
        };
        let mut h = self.handles();
        if let Some(hist) = h.duration.get(&key) {
            hist.observe(seconds);
            return;
        }
        let labels = RequestLabels {
            origin: attrs.origin.clone(),
            method: attrs.method.clone(),
            status: key.status,
            error: key.error,
        };
        let hist = self.duration.get_or_create_owned(&labels);
        hist.observe(seconds);
        h.duration.insert(labels, hist);
    }

    fn active_requests(&self, origin: &Origin, method: &Method, delta: i64) {
        let mut h = self.handles();
        if let Some(g) = h.active.get(&ActiveRef(origin, method)) {
            g.inc_by(delta);
            return;
        }
        let labels = ActiveLabels {
            origin: origin.clone(),
            method: method.clone(),
        };
        let g = self.active.get_or_create_owned(&labels);
        g.inc_by(delta);
        h.active.insert((origin.clone(), method.clone()), g);
    }

    fn open_connections(&self, origin: &Origin, state: ConnectionState, delta: i64) {
        let i = match state {
            ConnectionState::Active => 0,
            ConnectionState::Idle => 1,
        };
        let mut h = self.handles();
        if let Some(g) = h.open.get(origin) {
            g[i].inc_by(delta);
            return;
        }
        let g = [ConnectionState::Active, ConnectionState::Idle].map(|state| {
            self.open.get_or_create_owned(&ConnLabels {
                origin: origin.clone(),
                state,
            })
        });
        g[i].inc_by(delta);
        h.open.insert(origin.clone(), g);
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
