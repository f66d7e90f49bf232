//! Queueing under a per-host limit: 6 requests at once to a slow local server, with at most
//! 2 connections to it. Prints the queue events and the pool statistics.
//!
//!     cargo run -p httpscope-client --example pool

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use httpscope_client::observer::*;
use httpscope_client::{Client, Observer};

struct Queue(Instant, AtomicU32);

impl Queue {
    fn at(&self, at: Instant) -> f64 {
        (at - self.0).as_secs_f64() * 1e3
    }
}

impl Observer for Queue {
    fn queue_enter(&self, e: &QueueEnter<'_>) {
        let h = e.snapshot.host;
        println!(
            "{:>8.1} ms  request {} queues ({:?}): host active={} connecting={} idle={} waiting={}",
            self.at(e.at),
            e.ids.request.0,
            e.reason,
            h.active,
            h.connecting,
            h.idle,
            h.waiting
        );
    }
    fn queue_exit(&self, e: &QueueExit<'_>) {
        println!(
            "{:>8.1} ms  request {} leaves the queue: {:?} after {:.1} ms",
            self.at(e.at),
            e.ids.request.0,
            e.outcome,
            e.waited.as_secs_f64() * 1e3
        );
    }
    fn got_conn(&self, e: &GotConn<'_>) {
        println!(
            "{:>8.1} ms  request {} got connection #{} ({:?})",
            self.at(e.at),
            e.ids.request.0,
            e.ids.connection.map_or(0, |c| c.0),
            e.origin
        );
    }
    fn connection_open(&self, _: &ConnectionOpen<'_>) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
    fn request_end(&self, e: &RequestEnd<'_>) {
        println!(
            "{:>8.1} ms  request {} done: {:?}",
            self.at(e.at),
            e.ids.request.0,
            e.summary.status
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = common::server(true).await;
    let client = Client::builder()
        .max_connections_per_host(2)
        .observer(Queue(Instant::now(), AtomicU32::new(0)))
        .build()
        .expect("client");
    let uri: http::Uri = format!("http://{addr}/slow/100").parse().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (c, u) = (client.clone(), uri.clone());
        tasks.spawn(async move { c.get(u).await?.into_body().bytes().await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("request");
    }
    let stats = client.pool_stats();
    let t = stats.total;
    println!();
    println!("pool now: {:?}", t.now);
    println!(
        "waits: {} requests queued, {:.1} ms in total; connections opened: {}",
        t.waits,
        t.wait_time.as_secs_f64() * 1e3,
        client.observer().1.load(Ordering::Relaxed)
    );
}
