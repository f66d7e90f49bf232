//! One GET at a time on a loopback hyper server: hyper-util's legacy client, reqwest, and
//! httpscope-client with the `Noop` observer and with every hook on (plus the Prometheus
//! recorder). The interleaved whole-run comparison is `examples/load.rs`.
//!
//!     cargo bench -p httpscope-client --bench client

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn loopback_get(c: &mut Criterion) {
    let addr = support::start_server();
    let url = format!("http://{addr}/");
    let uri: http::Uri = url.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("loopback_get");
    group.throughput(Throughput::Elements(1));
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.sample_size(30);
    for subject in support::Subject::all() {
        group.bench_function(subject.name(), |b| {
            b.to_async(&rt)
                .iter(|| async { assert_eq!(subject.get(&uri, &url).await, 5) })
        });
    }
    group.finish();
}

criterion_group!(benches, loopback_get);
criterion_main!(benches);
