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
use httpscope_monitor::route::Quantizer;
use httpscope_monitor::{ClientRollup, KeeperConfig, StatKeeper};
use thread_cpu::ThreadCpu;
#[path = "support/mix.rs"]
mod mix;
use mix::mix;

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
    // The monitor's way: `add_batch` on each source batch (sources send up to 1,024).
    let mut warm = keeper();
    for t in &txs {
        warm.add(t);
    }
    g.bench_function("add_batch_warm_100k", |b| {
        b.iter(|| {
            for batch in txs.chunks(BATCH) {
                warm.add_batch(batch);
            }
        })
    });
    g.bench_function("add_batch_cold_100k", |b| {
        b.iter_batched(
            keeper,
            |mut k| {
                for batch in txs.chunks(BATCH) {
                    k.add_batch(batch);
                }
                k
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Transactions per batch, as the packet and ETW sources send them.
const BATCH: usize = 1024;

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
