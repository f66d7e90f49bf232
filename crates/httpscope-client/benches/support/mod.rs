//! What the benchmark and the load example share: the loopback server on its own thread, and
//! the four clients compared on it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use httpscope_client::metrics::{Metrics, PrometheusRecorder};
use httpscope_client::observer::*;
use httpscope_client::{Client, Observer};

/// Starts the hyper test server (`tests/common`) on 127.0.0.1 on its own thread with its own
/// single-threaded runtime; it lives as long as the process.
pub fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tx.send(crate::common::server(true).await).unwrap();
            std::future::pending::<()>().await
        });
    });
    rx.recv().unwrap()
}

/// An observer that overrides every method, so that every hook fires.
#[derive(Default)]
pub struct CountAll(AtomicU64);

macro_rules! count_all {
    ($($m:ident($e:ident);)*) => {
        impl Observer for CountAll {
            $(fn $m(&self, _: &$e<'_>) { self.0.fetch_add(1, Ordering::Relaxed); })*
        }
    };
}

count_all! {
    request_start(RequestStart); request_end(RequestEnd); request_failed(RequestFailed);
    request_retry(RequestRetry); headers_written(HeadersWritten); body_written(BodyWritten);
    informational(Informational); first_response_byte(FirstResponseByte);
    continue_wait_start(ContinueWaitStart); continue_wait_end(ContinueWaitEnd);
    response_headers(ResponseHeaders); response_body_end(ResponseBodyEnd); get_conn(GetConn);
    queue_enter(QueueEnter); queue_exit(QueueExit); got_conn(GotConn); dns_start(DnsStart);
    dns_done(DnsDone); connect_start(ConnectStart); connect_done(ConnectDone);
    tls_start(TlsStart); tls_done(TlsDone); connection_open(ConnectionOpen); idle_in(IdleIn);
    idle_out(IdleOut); put_idle_refused(PutIdleRefused); limit_hit(LimitHit);
    connection_closed(ConnectionClosed);
}

impl CountAll {
    pub fn events(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An observer that wants every event and does nothing with them: the cost of the hooks
/// themselves (clock reads, building events, the socket tap), without an observer's work.
#[derive(Default)]
pub struct DoNothing;

impl Observer for DoNothing {}

/// Every hook on, with a real recorder behind the metrics.
pub type AllHooks = (CountAll, Metrics<PrometheusRecorder>);

/// One of the compared clients.
#[derive(Clone)]
pub enum Subject {
    HyperUtil(
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Empty<Bytes>,
        >,
    ),
    Reqwest(reqwest::Client),
    Noop(Client),
    AllHooks(Client<AllHooks>, Arc<prometheus_client::registry::Registry>),
    /// Breakdown: only the observer that counts every event (no metrics).
    CountOnly(Client<CountAll>),
    /// Breakdown: an enabled observer that does nothing.
    EmptyObserver(Client<DoNothing>),
    /// Breakdown: only the metrics with the Prometheus recorder.
    MetricsOnly(
        Client<Metrics<PrometheusRecorder>>,
        Arc<prometheus_client::registry::Registry>,
    ),
}

async fn read<O: Observer>(c: &Client<O>, uri: &http::Uri) -> usize {
    let res = c.get(uri.clone()).await.expect("request");
    res.into_body().bytes().await.expect("body").len()
}

impl Subject {
    /// The four compared subjects, in a fixed order.
    pub fn all() -> Vec<Subject> {
        let mut v = Self::with_breakdown();
        v.truncate(4);
        v
    }

    /// The four subjects, then the two halves of "all hooks" on their own.
    pub fn with_breakdown() -> Vec<Subject> {
        let hu = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(PrometheusRecorder::new(&mut registry));
        let hooked = Client::builder()
            .observer((CountAll::default(), metrics))
            .build()
            .unwrap();
        let mut r2 = prometheus_client::registry::Registry::default();
        let m2 = Metrics::new(PrometheusRecorder::new(&mut r2));
        vec![
            Subject::HyperUtil(hu),
            Subject::Reqwest(reqwest::Client::new()),
            Subject::Noop(Client::new()),
            Subject::AllHooks(hooked, Arc::new(registry)),
            Subject::CountOnly(
                Client::builder()
                    .observer(CountAll::default())
                    .build()
                    .unwrap(),
            ),
            Subject::MetricsOnly(
                Client::builder().observer(m2).build().unwrap(),
                Arc::new(r2),
            ),
            Subject::EmptyObserver(Client::builder().observer(DoNothing).build().unwrap()),
        ]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Subject::HyperUtil(_) => "hyper-util legacy",
            Subject::Reqwest(_) => "reqwest",
            Subject::Noop(_) => "httpscope Noop",
            Subject::AllHooks(..) => "httpscope all hooks",
            Subject::CountOnly(_) => "(breakdown) counting observer only",
            Subject::MetricsOnly(..) => "(breakdown) metrics only",
            Subject::EmptyObserver(_) => "(breakdown) enabled observer doing nothing",
        }
    }

    /// One GET, body read to the end; returns the body length.
    pub async fn get(&self, uri: &http::Uri, url: &str) -> usize {
        match self {
            Subject::HyperUtil(c) => {
                let res = c.get(uri.clone()).await.expect("hyper-util request");
                res.into_body()
                    .collect()
                    .await
                    .expect("hyper-util body")
                    .to_bytes()
                    .len()
            }
            Subject::Reqwest(c) => {
                let res = c.get(url).send().await.expect("reqwest request");
                res.bytes().await.expect("reqwest body").len()
            }
            Subject::Noop(c) => read(c, uri).await,
            Subject::AllHooks(c, _) => read(c, uri).await,
            Subject::CountOnly(c) => read(c, uri).await,
            Subject::MetricsOnly(c, _) => read(c, uri).await,
            Subject::EmptyObserver(c) => read(c, uri).await,
        }
    }

    /// Events seen, for the all-hooks client (to show the hooks really ran).
    pub fn events(&self) -> Option<u64> {
        match self {
            Subject::AllHooks(c, _) => Some(c.observer().0.events()),
            _ => None,
        }
    }
}
