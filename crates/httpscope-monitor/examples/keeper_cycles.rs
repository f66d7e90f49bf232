//! Feeds the StatKeeper bench's transaction mix to a warm keeper `PASSES` times (default 20)
//! and prints thread CPU nanoseconds per transaction; one `add` per transaction, or
//! `add_batch` on batches of `BATCH` transactions when that is set (the monitor's way). Meant to run under
//! `perf stat -e cycles:u,instructions:u`, whose counts (divided by the transactions printed)
//! depend much less on how busy a shared machine is than time does.

#[path = "../benches/support/mix.rs"]
mod mix;

use httpscope_monitor::route::Quantizer;
use httpscope_monitor::{ClientRollup, KeeperConfig, StatKeeper};

fn main() {
    let passes: usize = std::env::var("PASSES")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(20);
    let txs = mix::mix(100_000);
    let mut k = StatKeeper::new(
        KeeperConfig {
            max_keys: 100_000,
            client_rollup: ClientRollup::Ip,
        },
        Quantizer::heuristic(),
    );
    for t in &txs {
        k.add(t);
    }
    let batch: Option<usize> = std::env::var("BATCH").ok().and_then(|b| b.parse().ok());
    let t0 = cpu_ns();
    for _ in 0..passes {
        match batch {
            Some(n) => {
                for b in txs.chunks(n.max(1)) {
                    k.add_batch(b);
                }
            }
            None => {
                for t in &txs {
                    k.add(t);
                }
            }
        }
    }
    let ns = cpu_ns() - t0;
    let n = (passes * txs.len()) as f64;
    println!(
        "{} warm transactions (+{} to warm up), {} keys: {:.1} ns each (thread CPU), {:.2} M/s",
        passes * txs.len(),
        txs.len(),
        k.len(),
        ns as f64 / n,
        n / ns as f64 * 1e3
    );
}

#[cfg(unix)]
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; the clock id is a kernel constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(unix))]
fn cpu_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}
