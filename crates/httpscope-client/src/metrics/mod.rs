//! OpenTelemetry semantic-convention HTTP client metrics, from the observer's events.
//!
//! [`Metrics`] is an [`Observer`] that turns events into the five client instruments of the
//! OpenTelemetry HTTP semantic conventions and hands each measurement to a [`Recorder`]:
//!
//! | instrument | kind | from |
//! |---|---|---|
//! | `http.client.request.duration` (s) | histogram | `request_start` → `request_end` / `request_failed` |
//! | `http.client.active_requests` | up-down counter | `request_start` / its end |
//! | `http.client.open_connections{http.connection.state}` | up-down counter | `connection_open`, `idle_in`, `idle_out`, `connection_closed` |
//! | `http.client.connection.duration` (s) | histogram | `connection_closed` |
//! | `http.client.request.time_in_queue` (s) | histogram | `queue_exit` |
//!
//! The recorder is a small trait so that any metrics library can sit behind it; the
//! `prometheus` feature provides [`PrometheusRecorder`] (prometheus-client). Attributes are
//! passed as borrowed values, so a recorder that keys its series by them need not allocate
//! once a series exists. The Prometheus recorder keeps its series in lock-free cells (see its
//! module).

use http::Method;

use crate::observer::{
    ConnectionClosed, ConnectionOpen, IdleIn, IdleOut, QueueExit, RequestEnd, RequestFailed,
    RequestStart,
};
use crate::{Observer, Origin};

#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "prometheus")]
pub use prometheus::PrometheusRecorder;

/// `http.connection.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Carrying a request (or closing).
    Active,
    /// On the idle list.
    Idle,
}

impl ConnectionState {
    /// `"active"` or `"idle"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Active => "active",
            ConnectionState::Idle => "idle",
        }
    }
}

/// The attributes of `http.client.request.duration`.
#[derive(Clone, Copy, Debug)]
pub struct RequestAttrs<'a> {
    /// `server.address`, `server.port`, `url.scheme`.
    pub origin: &'a Origin,
    /// `http.request.method`.
    pub method: &'a Method,
    /// `http.response.status_code`, when a response arrived.
    pub status: Option<u16>,
    /// `error.type`, for requests that failed without a complete response
    /// ([`Error::kind`](crate::Error::kind)).
    pub error: Option<&'static str>,
}

/// Receives the measurements of [`Metrics`].
pub trait Recorder: Send + Sync + 'static {
    /// `http.client.request.duration`, in seconds.
    fn request_duration(&self, attrs: &RequestAttrs<'_>, seconds: f64);
    /// `http.client.active_requests` changes by `delta`.
    fn active_requests(&self, origin: &Origin, method: &Method, delta: i64);
    /// `http.client.open_connections` of `state` changes by `delta`.
    fn open_connections(&self, origin: &Origin, state: ConnectionState, delta: i64);
    /// One connection moves from `from` to `to` (idle list ↔ request). The default is two
    /// [`open_connections`](Self::open_connections) updates; a recorder that keeps both
    /// states in one cell can do it in one.
    fn connection_state(&self, origin: &Origin, from: ConnectionState, to: ConnectionState) {
        self.open_connections(origin, from, -1);
        self.open_connections(origin, to, 1);
    }
    /// `http.client.connection.duration`, in seconds.
    fn connection_duration(&self, origin: &Origin, seconds: f64);
    /// `http.client.request.time_in_queue`, in seconds.
    fn time_in_queue(&self, origin: &Origin, seconds: f64);
}

/// The observer that produces OpenTelemetry HTTP client metrics into a [`Recorder`].
#[derive(Debug, Default)]
pub struct Metrics<R> {
    recorder: R,
}

impl<R: Recorder> Metrics<R> {
    /// Metrics into `recorder`.
    pub fn new(recorder: R) -> Self {
        Metrics { recorder }
    }

    /// The recorder.
    pub fn recorder(&self) -> &R {
        &self.recorder
    }
}

impl<R: Recorder> Observer for Metrics<R> {
    fn request_start(&self, e: &RequestStart<'_>) {
        self.recorder.active_requests(e.origin, e.method, 1);
    }

    fn request_end(&self, e: &RequestEnd<'_>) {
        let s = &e.summary;
        self.recorder.active_requests(s.origin, s.method, -1);
        if let Some(start) = s.timeline.start {
            let attrs = RequestAttrs {
                origin: s.origin,
                method: s.method,
                status: s.status.map(|s| s.as_u16()),
                error: None,
            };
            self.recorder
                .request_duration(&attrs, (e.at - start).as_secs_f64());
        }
    }

    fn request_failed(&self, e: &RequestFailed<'_>) {
        let s = &e.summary;
        self.recorder.active_requests(s.origin, s.method, -1);
        if let Some(start) = s.timeline.start {
            let attrs = RequestAttrs {
                origin: s.origin,
                method: s.method,
                status: s.status.map(|s| s.as_u16()),
                error: Some(e.error.kind()),
            };
            self.recorder
                .request_duration(&attrs, (e.at - start).as_secs_f64());
        }
    }

    fn queue_exit(&self, e: &QueueExit<'_>) {
        self.recorder
            .time_in_queue(e.origin, e.waited.as_secs_f64());
    }

    fn connection_open(&self, e: &ConnectionOpen<'_>) {
        self.recorder
            .open_connections(e.origin, ConnectionState::Active, 1);
    }

    fn idle_in(&self, e: &IdleIn<'_>) {
        self.recorder
            .connection_state(e.origin, ConnectionState::Active, ConnectionState::Idle);
    }

    fn idle_out(&self, e: &IdleOut<'_>) {
        // Leaving the idle list, a connection is active: carrying a request, or closing (its
        // `connection_closed` follows and takes it off the active count).
        self.recorder
            .connection_state(e.origin, ConnectionState::Idle, ConnectionState::Active);
    }

    fn connection_closed(&self, e: &ConnectionClosed<'_>) {
        self.recorder
            .open_connections(e.origin, ConnectionState::Active, -1);
        self.recorder
            .connection_duration(e.origin, e.lifetime.as_secs_f64());
    }
}
