//! The observer path allocates nothing per request: a client with every hook on (an observer
//! that reads every event, plus the OpenTelemetry metrics with the Prometheus recorder)
//! allocates no more per request than the same client with the `Noop` observer.
//!
//! Allocations are counted per thread, on the thread that runs the client (a current-thread
//! runtime, which also runs the connection tasks); the server runs on another thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use httpscope_client::observer::*;
use httpscope_client::{Client, Observer};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Reads something from every event, so nothing is optimised away.
#[derive(Default)]
struct Touch(AtomicU64);

impl Touch {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

impl Observer for Touch {
    fn request_start(&self, e: &RequestStart<'_>) {
        self.add(e.uri.path().len() as u64)
    }
    fn request_end(&self, e: &RequestEnd<'_>) {
        self.add(e.summary.response_bytes + e.summary.timeline.start.is_some() as u64)
    }
    fn request_failed(&self, e: &RequestFailed<'_>) {
        self.add(e.ids.attempt as u64)
    }
    fn request_retry(&self, e: &RequestRetry<'_>) {
        self.add(e.ids.attempt as u64)
    }
    fn headers_written(&self, e: &HeadersWritten<'_>) {
        self.add(e.ids.request.0)
    }
    fn body_written(&self, e: &BodyWritten<'_>) {
        self.add(e.bytes)
    }
    fn first_response_byte(&self, e: &FirstResponseByte<'_>) {
        self.add(e.ids.request.0)
    }
    fn response_headers(&self, e: &ResponseHeaders<'_>) {
        self.add(e.status.as_u16() as u64)
    }
    fn response_body_end(&self, e: &ResponseBodyEnd<'_>) {
        self.add(e.bytes)
    }
    fn get_conn(&self, e: &GetConn<'_>) {
        self.add(e.origin.port() as u64)
    }
    fn queue_enter(&self, e: &QueueEnter<'_>) {
        self.add(e.snapshot.total.waiting as u64)
    }
    fn queue_exit(&self, e: &QueueExit<'_>) {
        self.add(e.waited.as_nanos() as u64)
    }
    fn got_conn(&self, e: &GotConn<'_>) {
        self.add(e.reused as u64 + e.peer.port() as u64)
    }
    fn idle_in(&self, e: &IdleIn<'_>) {
        self.add(e.snapshot.host.idle as u64)
    }
    fn idle_out(&self, e: &IdleOut<'_>) {
        self.add(e.idle_time.as_nanos() as u64)
    }
    fn connection_closed(&self, e: &ConnectionClosed<'_>) {
        self.add(e.requests)
    }
}

const WARMUP: u64 = 50;
const N: u64 = 300;

/// Allocations for N sequential requests (after a warm-up), on this thread.
async fn run<O: Observer>(client: &Client<O>, uri: &http::Uri) -> u64 {
    for _ in 0..WARMUP {
        let body = client
            .get(uri.clone())
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"hello");
    }
    let before = allocs();
    for _ in 0..N {
        let body = client
            .get(uri.clone())
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"hello");
    }
    allocs() - before
}

#[test]
fn observed_requests_allocate_no_more_than_unobserved_ones() {
    // The server on its own thread and runtime: its allocations are not counted here.
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tx.send(common::server(true).await).unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        });
    });
    let addr = rx.recv().unwrap();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let noop = rt.block_on(async {
        let c = Client::new();
        run(&c, &uri).await
    });
    let touch = Arc::new(Touch::default());
    let observed = rt.block_on(async {
        let c = Client::builder().observer(touch.clone()).build().unwrap();
        run(&c, &uri).await
    });
    #[cfg(feature = "prometheus")]
    let (with_metrics, registry) = rt.block_on(async {
        let mut registry = prometheus_client::registry::Registry::default();
        let recorder = httpscope_client::metrics::PrometheusRecorder::new(&mut registry);
        let metrics = httpscope_client::metrics::Metrics::new(recorder);
        let c = Client::builder()
            .observer((touch.clone(), metrics))
            .build()
            .unwrap();
        (run(&c, &uri).await, registry)
    });
    println!(
        "allocations per request: noop {:.2}, observed {:.2}",
        noop as f64 / N as f64,
        observed as f64 / N as f64
    );
    assert!(
        touch.0.load(Ordering::Relaxed) > 0,
        "the observer saw events"
    );
    assert!(noop > 0, "the counter counts");
    assert!(
        observed <= noop,
        "observer path allocated: {observed} allocations with hooks on vs {noop} with Noop over {N} requests"
    );
    #[cfg(feature = "prometheus")]
    {
        println!("with metrics {:.2}", with_metrics as f64 / N as f64);
        assert!(
            with_metrics <= noop,
            "metrics path allocated: {with_metrics} vs {noop} with Noop over {N} requests"
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("http_client_request_duration_seconds_count"),
            "{text}"
        );
    }
    drop(server);
}
