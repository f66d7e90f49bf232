//! StatKeeper throughput on a realistic key mix, and memory per key.
//!
//! The mix: 8 servers, each serving 3 of 10 route shapes under 2 prefixes (REST paths with
//! numeric ids, UUIDs and hashes that the quantizer collapses, static files, RPC-style names),
//! 16 client IPs on random ports (rolled up by IP), 5% 404 and 2% 500, latencies from 50 µs to
//! 50 ms. Every path is a distinct string, so the quantizer runs on every transaction. About
//! 2,000 distinct keys (printed).

use criterion::measurement::Measurement;
#[path = "../../../bench/support/thread_cpu.rs"]
mod thread_cpu;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use httpscope_model::{Method, Source, Transaction};
use httpscope_monitor::route::Quantizer;
use httpscope_monitor::{ClientRollup, KeeperConfig, StatKeeper};
use thread_cpu::ThreadCpu;

/// Counts live heap bytes, to measure memory per key.
struct Counting;

static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `p` was allocated by `alloc` with `l`.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(
            new as isize - l.size() as isize,
            std::sync::atomic::Ordering::Relaxed,
        );
        // SAFETY: `p` was allocated by `alloc` with `l`.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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
    type Shape = (Method, &'static dyn Fn(&mut Rng) -> String);
    let shapes: [Shape; 10] = [
        (Method::Get, &|r| {
            format!("/api/v1/users/{}", r.below(100_000))
        }),
        (Method::Get, &|r| {
            format!(
                "/api/v1/users/{}/orders/{}",
                r.below(100_000),
                r.below(1000)
            )
        }),
        (Method::Get, &|r| {
            format!(
                "/api/v2/orders/{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                r.next() as u32,
                r.below(0x10000),
                r.below(0x1000),
                r.below(0x1000),
                r.next() & 0xffff_ffff_ffff
            )
        }),
        (Method::Get, &|r| {
            format!("/static/app.{:08x}.js", r.next() as u32)
        }),
        (Method::Get, &|_| "/api/v1/health".to_owned()),
        (Method::Post, &|_| "/grpc.health.v1.Health/Check".to_owned()),
        (Method::Get, &|r| {
            format!("/search/items?q={}", r.below(1000))
        }),
        (Method::Put, &|r| format!("/blobs/{:016x}", r.next())),
        (Method::Post, &|_| "/api/v1/login".to_owned()),
        (Method::Get, &|r| {
            format!("/catalog/category{}/products", r.below(4))
        }),
    ];
    let prefixes = ["", "/eu"];
    (0..n)
        .map(|_| {
            // Each server serves three route shapes under two prefixes.
            let server = rng.below(8);
            let shape = ((server + rng.below(3)) % shapes.len() as u64) as usize;
            let (method, make) = shapes[shape];
            let path = format!("{}{}", prefixes[rng.below(2) as usize], make(&mut rng));
            let status = match rng.below(100) {
                0..=1 => 500,
                2..=6 => 404,
                _ => 200,
            };
            let dur = 50_000 + rng.below(1_000) * rng.below(1_000) * 50;
            let start = rng.below(1 << 40);
            Transaction {
                method: Some(method),
                path,
                status: Some(status),
                start_ns: start,
                end_ns: start + dur,
                request_bytes: rng.below(2000),
                response_bytes: rng.below(20_000),
                client: Some(
                    format!("10.1.0.{}:{}", rng.below(16), 30_000 + rng.below(30_000))
                        .parse()
                        .unwrap(),
                ),
                server: Some(format!("10.0.0.{server}:8080").parse().unwrap()),
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

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, label: &str) {
    let txs = mix(100_000);
    if label == "wall" {
        let before = LIVE.load(std::sync::atomic::Ordering::Relaxed);
        let mut k = keeper();
        for t in &txs {
            k.add(t);
        }
        let live = LIVE.load(std::sync::atomic::Ordering::Relaxed) - before;
        let keys = k.len().max(1);
        eprintln!(
            "statkeeper memory: {keys} keys from {} transactions; heap measured by a counting \
             allocator {live} bytes = {} bytes/key (keeper's own estimate {} bytes)",
            txs.len(),
            live as usize / keys,
            k.heap_bytes()
        );
        // A sketch that saw one sample costs nothing on the heap.
        let mut one = StatKeeper::new(KeeperConfig::default(), Quantizer::heuristic());
        let before = LIVE.load(std::sync::atomic::Ordering::Relaxed);
        for t in txs.iter().take(1000) {
            one.add(t);
        }
        let live = LIVE.load(std::sync::atomic::Ordering::Relaxed) - before;
        eprintln!(
            "statkeeper memory, first 1000 transactions: {} keys, {live} bytes = {} bytes/key",
            one.len(),
            live as usize / one.len().max(1)
        );
    }
    let mut g = c.benchmark_group(format!("statkeeper_{label}"));
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

fn wall(c: &mut Criterion) {
    bench(c, "wall");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    bench(c, "thread_cpu");
}

criterion_group!(wall_benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);
