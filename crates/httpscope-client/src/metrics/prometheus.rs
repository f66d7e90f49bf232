//! A [`Recorder`] on prometheus-client, with the OpenTelemetry names translated the usual
//! way (dots to underscores, unit suffix): `http_client_request_duration_seconds`,
//! `http_client_active_requests`, `http_client_open_connections`,
//! `http_client_connection_duration_seconds`, `http_client_request_time_in_queue_seconds`.
//!
//! Why not prometheus-client's own `Family`, `Gauge` and `Histogram`: every update of those
//! takes a lock (the family's map, the histogram's `RwLock`), and this recorder sits on the
//! request path of every observed request. Here every (server, thread) pair has its own
//! block of cells, written only by that thread (a load and a store, no atomic
//! read-modify-write and no lock) and found through a one-entry per-thread cache; a
//! [`Collector`] registered in the [`Registry`] adds the blocks of a server up at scrape
//! time. A scrape may see a histogram's count and buckets one observation apart.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{ConnectionState, Recorder, RequestAttrs};
use crate::Origin;

/// The OpenTelemetry default buckets for HTTP durations, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A histogram of lock-free cells: one counter per bucket (the last is `+Inf`), and the sum in
/// nanoseconds (an integer add, where an `f64` sum would need a compare-and-swap loop).
#[derive(Debug, Default)]
struct Hist {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Hist {
    #[inline]
    fn observe(&self, seconds: f64, shared: bool) {
        let seconds = seconds.max(0.0);
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        bump(&self.buckets[i], 1, shared);
        bump(&self.count, 1, shared);
        bump(&self.sum_ns, (seconds * 1e9) as u64, shared);
    }

    fn add_to(&self, sum: &mut HistSum) {
        for (t, b) in sum.buckets.iter_mut().zip(&self.buckets) {
            *t += b.load(Ordering::Relaxed);
        }
        sum.count += self.count.load(Ordering::Relaxed);
        sum.sum_ns += self.sum_ns.load(Ordering::Relaxed);
    }
}

/// Adds to a cell. A thread's own cell has one writer: a plain load and store, no
/// read-modify-write. The `shared` cells (for threads whose thread-locals are gone) take an
/// atomic add.
#[inline]
fn bump(cell: &AtomicU64, n: u64, shared: bool) {
    if shared {
        cell.fetch_add(n, Ordering::Relaxed);
    } else {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// [`bump`] for signed cells.
#[inline]
fn bump_i(cell: &AtomicI64, n: i64, shared: bool) {
    if shared {
        cell.fetch_add(n, Ordering::Relaxed);
    } else {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// The histograms of one server, added up over its threads at scrape time.
#[derive(Clone, Copy, Debug, Default)]
struct HistSum {
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    count: u64,
    sum_ns: u64,
}

impl HistSum {
    fn encode(&self, enc: &mut prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result {
        let mut b = [(f64::INFINITY, 0); DURATION_BUCKETS.len() + 1];
        for (i, slot) in b.iter_mut().enumerate() {
            *slot = (
                DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                self.buckets[i],
            );
        }
        enc.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_ns as f64 / 1e9,
            self.count,
            &b,
            None,
        )
    }
}

/// The standard methods get a fixed active-requests cell each; others share a small list.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::PATCH,
    Method::TRACE,
];

fn method_index(m: &Method) -> Option<usize> {
    METHODS.iter().position(|s| s == m)
}

/// The labels of a request-duration series besides the server's.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DurationKey {
    method: Method,
    status: u16,
    error: &'static str,
}

/// One request-duration series of an origin.
#[derive(Debug)]
struct DurationCell {
    method: Method,
    status: u16,
    error: &'static str,
    hist: Hist,
}

impl DurationCell {
    fn is(&self, a: &RequestAttrs<'_>) -> bool {
        let error = a.error.unwrap_or("");
        // Lengths first: the usual request has no error, and comparing two empty strings
        // with `==` still called `memcmp` (about 1% of the client thread's CPU in the load
        // example with every hook on, found with perf).
        self.status == a.status.unwrap_or(0)
            && self.error.len() == error.len()
            && (error.is_empty() || self.error == error)
            && self.method == *a.method
    }
}

/// Every cell of one server, for one thread (its only writer).
#[derive(Debug)]
struct OriginCells {
    origin: Origin,
    /// The writing thread's number; 0 for the cells shared by threads that cannot use their
    /// thread-locals any more (being torn down).
    thread: u64,
    shared: bool,
    active_conns: AtomicI64,
    idle_conns: AtomicI64,
    active: [AtomicI64; METHODS.len()],
    other_active: RwLock<Vec<(Method, AtomicI64)>>,
    durations: RwLock<Vec<Arc<DurationCell>>>,
    conn_duration: Hist,
    queue: Hist,
}

impl OriginCells {
    fn new(origin: Origin, thread: u64) -> Self {
        OriginCells {
            origin,
            thread,
            shared: thread == 0,
            active_conns: AtomicI64::new(0),
            idle_conns: AtomicI64::new(0),
            active: Default::default(),
            other_active: RwLock::default(),
            durations: RwLock::default(),
            conn_duration: Hist::default(),
            queue: Hist::default(),
        }
    }

    fn conns(&self, state: ConnectionState) -> &AtomicI64 {
        match state {
            ConnectionState::Active => &self.active_conns,
            ConnectionState::Idle => &self.idle_conns,
        }
    }

    fn duration(&self, a: &RequestAttrs<'_>) -> Arc<DurationCell> {
        {
            let list = self.durations.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = list.iter().find(|c| c.is(a)) {
                return c.clone();
            }
        }
        let mut list = self.durations.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = list.iter().find(|c| c.is(a)) {
            return c.clone();
        }
        let cell = Arc::new(DurationCell {
            method: a.method.clone(),
            status: a.status.unwrap_or(0),
            error: a.error.unwrap_or(""),
            hist: Hist::default(),
        });
        list.push(cell.clone());
        cell
    }
}

/// What the recorder and its collector share.
#[derive(Debug)]
struct Shared {
    /// Tells recorders apart in the per-thread cache.
    id: u64,
    origins: RwLock<Vec<Arc<OriginCells>>>,
}

/// The last origin (and its last duration series) a thread recorded for, per recorder.
struct LastUsed {
    recorder: u64,
    cells: Arc<OriginCells>,
    duration: Option<Arc<DurationCell>>,
}

thread_local! {
    static LAST: RefCell<Option<LastUsed>> = const { RefCell::new(None) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's number, for the cells it owns.
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl Shared {
    /// This thread's cells for `origin`.
    fn find(&self, origin: &Origin) -> Arc<OriginCells> {
        let thread = THREAD.try_with(|t| *t).unwrap_or(0);
        let mine = |c: &&Arc<OriginCells>| c.thread == thread && c.origin == *origin;
        {
            let list = self.origins.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = list.iter().find(mine) {
                return c.clone();
            }
        }
        let mut list = self.origins.write().unwrap_or_else(|e| e.into_inner());
        let cells = Arc::new(OriginCells::new(origin.clone(), thread));
        list.push(cells.clone());
        cells
    }

    /// Runs `f` on this thread's cells of `origin` (and its cached duration series), through
    /// the per-thread cache.
    #[inline]
    fn with<R>(
        &self,
        origin: &Origin,
        f: impl FnOnce(&OriginCells, &mut Option<Arc<DurationCell>>) -> R,
    ) -> R {
        let mut f = Some(f);
        let r = LAST.try_with(|last| {
            let mut last = last.borrow_mut();
            let hit = last
                .as_ref()
                .is_some_and(|l| l.recorder == self.id && l.cells.origin == *origin);
            if !hit {
                *last = Some(LastUsed {
                    recorder: self.id,
                    cells: self.find(origin),
                    duration: None,
                });
            }
            let f = f.take().expect("runs once");
            match &mut *last {
                Some(l) => f(&l.cells, &mut l.duration),
                None => unreachable!("set above"),
            }
        });
        match r {
            Ok(r) => r,
            // This thread's locals are being torn down: no cache.
            Err(_) => (f.take().expect("not run"))(&self.find(origin), &mut None),
        }
    }
}

/// The five instruments, registered in a prometheus-client [`Registry`].
#[derive(Debug)]
pub struct PrometheusRecorder {
    shared: Arc<Shared>,
}

impl PrometheusRecorder {
    /// Registers the instruments in `registry` (as one collector).
    pub fn new(registry: &mut Registry) -> Self {
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            origins: RwLock::default(),
        });
        registry.register_collector(Box::new(Scrape(shared.clone())));
        PrometheusRecorder { shared }
    }
}

impl Recorder for PrometheusRecorder {
    fn request_duration(&self, attrs: &RequestAttrs<'_>, seconds: f64) {
        self.shared.with(attrs.origin, |cells, last| {
            if !last.as_ref().is_some_and(|d| d.is(attrs)) {
                *last = Some(cells.duration(attrs));
            }
            if let Some(d) = last {
                d.hist.observe(seconds, cells.shared);
            }
        })
    }

    fn active_requests(&self, origin: &Origin, method: &Method, delta: i64) {
        self.shared
            .with(origin, |cells, _| match method_index(method) {
                Some(i) => bump_i(&cells.active[i], delta, cells.shared),
                None => {
                    {
                        let list = cells.other_active.read().unwrap_or_else(|e| e.into_inner());
                        if let Some((_, g)) = list.iter().find(|(m, _)| m == method) {
                            g.fetch_add(delta, Ordering::Relaxed);
                            return;
                        }
                    }
                    let mut list = cells
                        .other_active
                        .write()
                        .unwrap_or_else(|e| e.into_inner());
                    match list.iter().find(|(m, _)| m == method) {
                        Some((_, g)) => {
                            g.fetch_add(delta, Ordering::Relaxed);
                        }
                        None => list.push((method.clone(), AtomicI64::new(delta))),
                    }
                }
            })
    }

    fn open_connections(&self, origin: &Origin, state: ConnectionState, delta: i64) {
        self.shared.with(origin, |cells, _| {
            bump_i(cells.conns(state), delta, cells.shared)
        })
    }

    fn connection_state(&self, origin: &Origin, from: ConnectionState, to: ConnectionState) {
        self.shared.with(origin, |cells, _| {
            bump_i(cells.conns(from), -1, cells.shared);
            bump_i(cells.conns(to), 1, cells.shared);
        })
    }

    fn connection_duration(&self, origin: &Origin, seconds: f64) {
        self.shared.with(origin, |cells, _| {
            cells.conn_duration.observe(seconds, cells.shared)
        })
    }

    fn time_in_queue(&self, origin: &Origin, seconds: f64) {
        self.shared.with(origin, |cells, _| {
            cells.queue.observe(seconds, cells.shared)
        })
    }
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
    label(enc, "server_port", o.port().to_string().as_str())?;
    label(enc, "url_scheme", o.scheme())
}

/// Label sets, borrowed from the cells at scrape time.
struct Server<'a>(&'a Origin);
struct Request<'a>(&'a Origin, &'a DurationKey);
struct Active<'a>(&'a Origin, &'a Method);
struct Conn<'a>(&'a Origin, ConnectionState);

impl EncodeLabelSet for Server<'_> {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        server(enc, self.0)
    }
}

impl EncodeLabelSet for Request<'_> {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        label(enc, "http_request_method", self.1.method.as_str())?;
        server(enc, self.0)?;
        if self.1.status != 0 {
            label(
                enc,
                "http_response_status_code",
                self.1.status.to_string().as_str(),
            )?;
        }
        if !self.1.error.is_empty() {
            label(enc, "error_type", self.1.error)?;
        }
        Ok(())
    }
}

impl EncodeLabelSet for Active<'_> {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        label(enc, "http_request_method", self.1.as_str())?;
        server(enc, self.0)
    }
}

impl EncodeLabelSet for Conn<'_> {
    fn encode(&self, enc: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        label(enc, "http_connection_state", self.1.as_str())?;
        server(enc, self.0)
    }
}

/// Reads the cells at scrape time.
#[derive(Debug)]
struct Scrape(Arc<Shared>);

/// One server's figures, added up over its threads.
#[derive(Debug)]
struct Sums {
    origin: Origin,
    conns: [i64; 2],
    active: Vec<(Method, i64)>,
    durations: Vec<(DurationKey, HistSum)>,
    conn_duration: HistSum,
    queue: HistSum,
}

impl Scrape {
    fn sums(&self) -> Vec<Sums> {
        let shards: Vec<Arc<OriginCells>> = self
            .0
            .origins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out: Vec<Sums> = Vec::new();
        for c in &shards {
            let i = match out.iter().position(|s| s.origin == c.origin) {
                Some(i) => i,
                None => {
                    out.push(Sums {
                        origin: c.origin.clone(),
                        conns: [0; 2],
                        active: METHODS.iter().map(|m| (m.clone(), 0)).collect(),
                        durations: Vec::new(),
                        conn_duration: HistSum::default(),
                        queue: HistSum::default(),
                    });
                    out.len() - 1
                }
            };
            let s = &mut out[i];
            s.conns[0] += c.active_conns.load(Ordering::Relaxed);
            s.conns[1] += c.idle_conns.load(Ordering::Relaxed);
            for (j, g) in c.active.iter().enumerate() {
                s.active[j].1 += g.load(Ordering::Relaxed);
            }
            for (m, g) in c
                .other_active
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                let v = g.load(Ordering::Relaxed);
                match s.active.iter_mut().find(|(x, _)| x == m) {
                    Some((_, t)) => *t += v,
                    None => s.active.push((m.clone(), v)),
                }
            }
            for d in c.durations.read().unwrap_or_else(|e| e.into_inner()).iter() {
                let key = DurationKey {
                    method: d.method.clone(),
                    status: d.status,
                    error: d.error,
                };
                let j = match s.durations.iter().position(|(k, _)| *k == key) {
                    Some(j) => j,
                    None => {
                        s.durations.push((key, HistSum::default()));
                        s.durations.len() - 1
                    }
                };
                d.hist.add_to(&mut s.durations[j].1);
            }
            c.conn_duration.add_to(&mut s.conn_duration);
            c.queue.add_to(&mut s.queue);
        }
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let sums = self.sums();
        let seconds = Unit::Seconds;
        {
            let mut m = encoder.encode_descriptor(
                "http_client_request_duration",
                "Duration of HTTP client requests (http.client.request.duration)",
                Some(&seconds),
                MetricType::Histogram,
            )?;
            for s in &sums {
                for (key, h) in &s.durations {
                    h.encode(&mut m.encode_family(&Request(&s.origin, key))?)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "http_client_active_requests",
                "Number of active HTTP requests (http.client.active_requests)",
                None,
                MetricType::Gauge,
            )?;
            for s in &sums {
                for (method, v) in &s.active {
                    m.encode_family(&Active(&s.origin, method))?
                        .encode_gauge(v)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "http_client_open_connections",
                "Number of outbound HTTP connections that are active or idle (http.client.open_connections)",
                None,
                MetricType::Gauge,
            )?;
            for s in &sums {
                for (i, state) in [ConnectionState::Active, ConnectionState::Idle]
                    .into_iter()
                    .enumerate()
                {
                    m.encode_family(&Conn(&s.origin, state))?
                        .encode_gauge(&s.conns[i])?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "http_client_connection_duration",
                "Duration of the successfully established outbound HTTP connections (http.client.connection.duration)",
                Some(&seconds),
                MetricType::Histogram,
            )?;
            for s in &sums {
                s.conn_duration
                    .encode(&mut m.encode_family(&Server(&s.origin))?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "http_client_request_time_in_queue",
            "Time requests spent in a queue waiting for a connection (http.client.request.time_in_queue)",
            Some(&seconds),
            MetricType::Histogram,
        )?;
        for s in &sums {
            s.queue.encode(&mut m.encode_family(&Server(&s.origin))?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(a: &str) -> Origin {
        Origin::new(false, a.parse().unwrap())
    }

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn cells_per_origin_through_the_thread_cache() {
        let mut registry = Registry::default();
        let r = PrometheusRecorder::new(&mut registry);
        let mut other_registry = Registry::default();
        let other = PrometheusRecorder::new(&mut other_registry);
        let (a, b) = (origin("a:1"), origin("b:2"));
        r.open_connections(&a, ConnectionState::Active, 1);
        other.open_connections(&a, ConnectionState::Active, 5);
        r.connection_state(&a, ConnectionState::Active, ConnectionState::Idle);
        r.open_connections(&b, ConnectionState::Active, 1);
        r.connection_state(&a, ConnectionState::Idle, ConnectionState::Active);
        r.connection_state(&a, ConnectionState::Active, ConnectionState::Idle);
        r.active_requests(&a, &Method::GET, 1);
        r.active_requests(&a, &Method::from_bytes(b"PURGE").unwrap(), 1);
        for (s, e) in [
            (Some(200), None),
            (Some(200), None),
            (None, Some("connect")),
        ] {
            let attrs = RequestAttrs {
                origin: &a,
                method: &Method::GET,
                status: s,
                error: e,
            };
            r.request_duration(&attrs, 0.02);
        }
        r.time_in_queue(&b, 3.0);
        // Another thread has cells of its own; a scrape adds them up (a connection opened
        // here and closed there counts zero).
        std::thread::scope(|s| {
            s.spawn(|| {
                r.open_connections(&b, ConnectionState::Active, -1);
                r.open_connections(&b, ConnectionState::Active, 1);
                r.request_duration(
                    &RequestAttrs {
                        origin: &a,
                        method: &Method::GET,
                        status: Some(200),
                        error: None,
                    },
                    7.0,
                );
                r.active_requests(&a, &Method::GET, -1);
            });
        });
        let text = scrape(&registry);
        let has = |l: &str| assert!(text.lines().any(|x| x == l), "no {l} in\n{text}");
        let a_lbl = "server_address=\"a\",server_port=\"1\",url_scheme=\"http\"";
        has(&format!(
            "http_client_open_connections{{http_connection_state=\"idle\",{a_lbl}}} 1"
        ));
        has(&format!(
            "http_client_open_connections{{http_connection_state=\"active\",{a_lbl}}} 0"
        ));
        has("http_client_open_connections{http_connection_state=\"active\",server_address=\"b\",server_port=\"2\",url_scheme=\"http\"} 1");
        has(&format!(
            "http_client_active_requests{{http_request_method=\"PURGE\",{a_lbl}}} 1"
        ));
        has(&format!(
            "http_client_request_duration_seconds_count{{http_request_method=\"GET\",{a_lbl},http_response_status_code=\"200\"}} 3"
        ));
        has(&format!(
            "http_client_request_duration_seconds_bucket{{le=\"5.0\",http_request_method=\"GET\",{a_lbl},http_response_status_code=\"200\"}} 2"
        ));
        has(&format!(
            "http_client_request_duration_seconds_bucket{{le=\"7.5\",http_request_method=\"GET\",{a_lbl},http_response_status_code=\"200\"}} 3"
        ));
        has(&format!(
            "http_client_active_requests{{http_request_method=\"GET\",{a_lbl}}} 0"
        ));
        has(&format!(
            "http_client_request_duration_seconds_bucket{{le=\"0.025\",http_request_method=\"GET\",{a_lbl},http_response_status_code=\"200\"}} 2"
        ));
        has(&format!(
            "http_client_request_duration_seconds_count{{http_request_method=\"GET\",{a_lbl},error_type=\"connect\"}} 1"
        ));
        has("http_client_request_time_in_queue_seconds_sum{server_address=\"b\",server_port=\"2\",url_scheme=\"http\"} 3.0");
        // The other recorder's cells are its own.
        assert!(scrape(&other_registry).contains(&format!(
            "http_client_open_connections{{http_connection_state=\"active\",{a_lbl}}} 5"
        )));
    }

    struct RecordOnDrop(Arc<PrometheusRecorder>, Origin);

    impl Drop for RecordOnDrop {
        fn drop(&mut self) {
            self.0.open_connections(&self.1, ConnectionState::Idle, 1);
        }
    }

    thread_local! {
        static LATE: RefCell<Option<RecordOnDrop>> = const { RefCell::new(None) };
    }

    #[test]
    fn recording_while_the_thread_locals_are_torn_down() {
        let mut registry = Registry::default();
        let r = Arc::new(PrometheusRecorder::new(&mut registry));
        let a = origin("late:1");
        let (r2, a2) = (r.clone(), a.clone());
        std::thread::spawn(move || {
            // Registered first, so destroyed after the recorder's own thread-locals: its
            // drop records without them.
            LATE.with(|l| *l.borrow_mut() = Some(RecordOnDrop(r2.clone(), a2.clone())));
            r2.open_connections(&a2, ConnectionState::Active, 1);
        })
        .join()
        .unwrap();
        let text = scrape(&registry);
        for state in ["active", "idle"] {
            let l = format!("http_client_open_connections{{http_connection_state=\"{state}\",server_address=\"late\",server_port=\"1\",url_scheme=\"http\"}} 1");
            assert!(text.lines().any(|x| x == l), "no {l} in\n{text}");
        }
    }
}
