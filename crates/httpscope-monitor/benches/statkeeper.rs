//! StatKeeper throughput on a realistic key mix, and memory per key.
//!
//! The mix: 8 servers, 40 route shapes (REST paths with numeric ids, UUIDs and hashes that the
//! quantizer collapses, static files, RPC-style names), 64 client IPs, mostly GET, 5% 4xx and
//! 2% 5xx, latencies spread over three decades. About 3,000 distinct keys.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use httpscope_model::{Method, Source, Transaction};
use httpscope_monitor::route::Quantizer;
use httpscope_monitor::{ClientRollup, KeeperConfig, StatKeeper};

/// A small deterministic generator (xorshift), so the bench needs no `rand`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn mix(n: usize) -> Vec<Transaction> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let shapes: [&dyn Fn(&mut Rng) -> String; 10] = [
        &|r| format!("/api/v1/users/{}", r.below(100_000)),
        &|r| {
            format!(
                "/api/v1/users/{}/orders/{}",
                r.below(100_000),
                r.below(1000)
            )
        },
        &|r| {
            format!(
                "/api/v2/orders/{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                r.next() as u32,
                r.below(0x10000),
                r.below(0x1000),
                r.below(0x1000),
                r.next() & 0xffff_ffff_ffff
            )
        },
        &|r| format!("/static/app.{:08x}.js", r.next() as u32),
        &|_| "/api/v1/health".to_owned(),
        &|_| "/grpc.health.v1.Health/Check".to_owned(),
        &|r| format!("/search/items?q={}", r.below(1000)),
        &|r| format!("/blobs/{:016x}", r.next()),
        &|_| "/api/v1/login".to_owned(),
        &|r| format!("/catalog/category{}/products", r.below(4)),
    ];
    let prefixes = ["", "/tenant-a", "/tenant-b", "/eu"];
    (0..n)
        .map(|_| {
            let shape = rng.below(shapes.len() as u64) as usize;
            let path = format!(
                "{}{}",
                prefixes[rng.below(4) as usize],
                shapes[shape](&mut rng)
            );
            let status = match rng.below(100) {
                0..=1 => 500 + rng.below(4) as u16,
                2..=6 => 400 + rng.below(5) as u16,
                _ => 200,
            };
            let dur = 50_000 + rng.below(1_000) * rng.below(1_000) * 50;
            let start = rng.below(1 << 40);
            Transaction {
                method: Some(if rng.below(10) < 8 {
                    Method::Get
                } else {
                    Method::Post
                }),
                path,
                status: Some(status),
                start_ns: start,
                end_ns: start + dur,
                request_bytes: rng.below(2000),
                response_bytes: rng.below(20_000),
                client: Some(
                    format!("10.1.0.{}:{}", rng.below(64), 30_000 + rng.below(30_000))
                        .parse()
                        .unwrap(),
                ),
                server: Some(format!("10.0.0.{}:8080", rng.below(8)).parse().unwrap()),
                source: Source::Packet,
                ..Transaction::default()
            }
        })
        .collect()
}

fn keeper() -> StatKeeper {
    StatKeeper::new(
        KeeperConfig {
            max_keys: 100_000,
            client_rollup: ClientRollup::Ip,
        },
        Quantizer::heuristic(),
    )
}

fn bench(c: &mut Criterion) {
    let txs = mix(100_000);
    {
        let mut k = keeper();
        for t in &txs {
            k.add(t);
        }
        let keys = k.len();
        let bytes = k.heap_bytes();
        eprintln!(
            "statkeeper memory: {keys} keys, {bytes} heap bytes, {} bytes/key",
            bytes / keys.max(1)
        );
    }
    let mut g = c.benchmark_group("statkeeper");
    g.throughput(Throughput::Elements(txs.len() as u64));
    // Warm keeper (keys and routes already present): the steady state between flushes.
    let mut warm = keeper();
    for t in &txs {
        warm.add(t);
    }
    g.bench_function("add_warm_100k", |b| {
        b.iter(|| {
            for t in &txs {
                warm.add(t);
            }
        })
    });
    // Cold keeper: every key created and every first sketch sample stored.
    g.bench_function("add_cold_100k", |b| {
        b.iter_batched(
            keeper,
            |mut k| {
                for t in &txs {
                    k.add(t);
                }
                k
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
