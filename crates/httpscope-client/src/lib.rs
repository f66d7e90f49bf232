//! An HTTP client transport whose every step can be observed, at no cost when nobody looks.
//!
//! What Go's `httptrace.ClientTrace` gives per request and what OkHttp's `EventListener`,
//! .NET's connection metrics and curl's `-w` timings give, for a Rust program: a [`Client`]
//! built on hyper 1.x HTTP/1.1 connections, tokio and rustls, with its own pool (per-host and
//! total connection limits with a queue beyond them, idle limits, idle timeout, max lifetime,
//! deadlines, cancellation by dropping the future, one retry of an idempotent request whose
//! reused connection turned out dead), and an [`Observer`] that hears about every step:
//! request start/end, queueing with its reason and a pool snapshot, DNS, each TCP connect,
//! TLS, idle list changes, refusals, limits and connection closes. Every event carries its
//! time, the request id, the connection id and the attempt number.
//!
//! Main types: [`Client`] / [`Builder`]; [`Observer`] with the zero-sized default [`Noop`]
//! (uninstalled observers cost no clock read and no allocation: interest is decided once at
//! build time, tracing-core style) and pairs `(A, B)` composing observers; [`PoolStats`]
//! from [`Client::pool_stats`]; [`Resolve`] for name resolution. Adapters:
//! [`metrics::Metrics`] (OpenTelemetry semantic-convention client metrics through a
//! [`metrics::Recorder`], with a Prometheus recorder under the `prometheus` feature) and
//! `bridge::TransactionBridge` (feature `model`: each finished request becomes an
//! `httpscope_model::Transaction` sent to the httpscope monitor).
//!
//! What it does not do (yet): HTTP/2; streaming request bodies (a request body is `Bytes`);
//! a background reaper (an expired idle connection is closed when the pool next looks at its
//! host, or when the server closes it). A request with `Expect: 100-continue` and a body
//! holds the body back until `100 Continue`, a final response, or
//! [`Builder::expect_continue_timeout`] (1 s, as curl) — the `continue_wait_*` events; other
//! 1xx responses are reported when [`Interest::with_informational`] is asked for.
//! `headers_written`, `body_written` and `first_response_byte` are emitted from the
//! connection's task when the socket sees them (observed clients wrap the socket; `Noop`
//! clients do not).
//! A deadline covers the request up to its response head, not the reading of the body.
//!
//! ```no_run
//! use httpscope_client::{Client, Observer, observer::RequestEnd};
//!
//! struct PrintSlow;
//! impl Observer for PrintSlow {
//!     fn request_end(&self, e: &RequestEnd<'_>) {
//!         let took = e.at - e.summary.timeline.start.unwrap();
//!         if took.as_millis() > 100 {
//!             println!("{} {} took {took:?}", e.summary.method, e.summary.uri.path());
//!         }
//!     }
//! }
//!
//! # async fn run() -> Result<(), httpscope_client::Error> {
//! let client = Client::builder().max_connections_per_host(4).observer(PrintSlow).build()?;
//! let res = client.get("http://127.0.0.1:8080/".parse().unwrap()).await?;
//! let body = res.into_body().bytes().await?;
//! println!("{} bytes; pool: {:?}", body.len(), client.pool_stats().total);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod connection;
mod error;
pub mod metrics;
pub mod observer;
mod pool;
mod resolve;

#[cfg(feature = "model")]
pub mod bridge;

pub use client::{Body, Builder, Client};
pub use error::{Error, HttpError};
pub use observer::{Interest, Noop, Observer};
pub use pool::{HostStats, Origin, PoolStats};
pub use resolve::{Resolve, Resolving, StaticResolver, SystemResolver};
