//! Whole-run comparison on one loopback server, the clients interleaved round by round so
//! that the machine's noise hits them alike: hyper-util's legacy client, reqwest,
//! httpscope-client with `Noop`, and httpscope-client with every hook on plus the
//! Prometheus recorder.
//!
//!     cargo run --release -p httpscope-client --example load -- [ROUNDS] [REQUESTS] [CONCURRENCY]
//!
//! Each round runs every client once (the order rotates every round) for REQUESTS requests
//! with CONCURRENCY tasks on one current-thread runtime; the server runs on another thread.
//! `LOAD_BREAKDOWN=1` adds, as further subjects, the halves of "all hooks" (the counting
//! observer alone, the metrics alone) and an enabled observer that does nothing.
//!
//! Reported: median requests/s over the rounds (with min..max), p50 and p99 latency over all
//! requests, and the ratios of each round (median, min..max), in throughput and in CPU time
//! of the client thread per request (`CLOCK_THREAD_CPUTIME_ID`: the runtime, and so every
//! client and its connection tasks, runs on the main thread; the server on another). CPU
//! time counts only the time the thread ran, so it is steadier than wall time on a shared
//! machine.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../benches/support/mod.rs"]
mod support;
#[path = "../../../bench/support/thread_cpu.rs"]
mod thread_cpu;

use criterion::measurement::Measurement as _;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Subject;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run(
    subject: &Subject,
    uri: &http::Uri,
    url: &str,
    n: usize,
    c: usize,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = n / c;
    for _ in 0..c {
        let (s, u, url) = (subject.clone(), uri.clone(), url.to_owned());
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                assert_eq!(s.get(&u, &url).await, 5);
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("task"));
    }
    (start.elapsed(), all)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("numbers"));
    let rounds = args.next().unwrap_or(7);
    let requests = args.next().unwrap_or(4000);
    let concurrency = args.next().unwrap_or(4).max(1);
    let addr = support::start_server();
    let url = format!("http://{addr}/");
    let uri: http::Uri = url.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // LOAD_BREAKDOWN=1 adds the breakdown subjects (see the top of the file).
    let breakdown = std::env::var_os("LOAD_BREAKDOWN").is_some();
    let subjects = Arc::new(rt.block_on(async {
        if breakdown {
            Subject::with_breakdown()
        } else {
            Subject::all()
        }
    }));
    // Profiling aid: LOAD_ONLY=3 runs only subject 3 (the others get no requests).
    let only: Option<usize> = std::env::var("LOAD_ONLY").ok().and_then(|v| v.parse().ok());
    println!(
        "rounds {rounds}, {requests} requests per client per round, concurrency {concurrency}, loadavg at start {}",
        loadavg()
    );
    let k = subjects.len();
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); k];
    // Client-thread CPU nanoseconds per request, per round.
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); k];
    rt.block_on(async {
        for s in subjects.iter() {
            run(s, &uri, &url, requests / 4, concurrency).await; // warm-up
        }
        for round in 0..rounds {
            for j in 0..k {
                let i = (j + round) % k;
                if only.is_some_and(|o| o != i) {
                    rps[i].push(1.0);
                    cpu[i].push(1.0);
                    continue;
                }
                let cpu0 = thread_cpu::ThreadCpu.start();
                let (took, l) = run(&subjects[i], &uri, &url, requests, concurrency).await;
                let cpu_ns = thread_cpu::ThreadCpu.end(cpu0);
                cpu[i].push(cpu_ns as f64 / l.len() as f64);
                rps[i].push(l.len() as f64 / took.as_secs_f64());
                lat[i].extend(l);
            }
        }
    });
    println!("loadavg at end {}", loadavg());
    println!();
    println!("| client | req/s (median) | min..max | p50 | p99 | client CPU µs/req (median) | min..max |");
    println!("|---|---|---|---|---|---|---|");
    for (i, s) in subjects.iter().enumerate() {
        if lat[i].is_empty() {
            continue;
        }
        let mut r = rps[i].clone();
        let med = median(&mut r);
        lat[i].sort();
        let mut cp = cpu[i].clone();
        let cmed = median(&mut cp);
        println!(
            "| {} | {:.0} | {:.0}..{:.0} | {:.1} µs | {:.1} µs | {:.2} | {:.2}..{:.2} |",
            s.name(),
            med,
            r[0],
            r[r.len() - 1],
            pct(&lat[i], 0.50).as_secs_f64() * 1e6,
            pct(&lat[i], 0.99).as_secs_f64() * 1e6,
            cmed / 1e3,
            cp[0] / 1e3,
            cp[cp.len() - 1] / 1e3,
        );
    }
    let ratio = |a: usize, b: usize| {
        let mut v: Vec<f64> = (0..rounds).map(|r| rps[a][r] / rps[b][r]).collect();
        let m = median(&mut v);
        (m, v[0], v[v.len() - 1])
    };
    let (hu, noop, hooks) = (0, 2, 3);
    let (m, lo, hi) = ratio(noop, hu);
    println!();
    println!("Noop / hyper-util, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
    let (m, lo, hi) = ratio(hooks, noop);
    println!("all hooks / Noop, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
    let (m, lo, hi) = ratio(noop, 1);
    println!("Noop / reqwest, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
    // CPU per request, as a throughput ratio (b's CPU / a's CPU: above 1 means a is cheaper).
    let cpu_ratio = |a: usize, b: usize| {
        let mut v: Vec<f64> = (0..rounds).map(|r| cpu[b][r] / cpu[a][r]).collect();
        let m = median(&mut v);
        (m, v[0], v[v.len() - 1])
    };
    let (m, lo, hi) = cpu_ratio(noop, hu);
    println!(
        "CPU per request, hyper-util / Noop (>1: Noop cheaper), per round: median {m:.3} (min {lo:.3}, max {hi:.3})"
    );
    let (m, lo, hi) = cpu_ratio(hooks, noop);
    println!(
        "CPU per request, Noop / all hooks (the all-hooks share of Noop's rate on one core), per round: median {m:.3} (min {lo:.3}, max {hi:.3})"
    );
    if breakdown {
        let (m, lo, hi) = cpu_ratio(4, noop);
        println!("CPU, Noop / counting observer only, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
        let (m, lo, hi) = cpu_ratio(5, noop);
        println!("CPU, Noop / metrics only, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
        let (m, lo, hi) = cpu_ratio(6, noop);
        println!("CPU, Noop / enabled observer doing nothing, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
    }
    if breakdown {
        let (m, lo, hi) = ratio(4, noop);
        println!(
            "counting observer only / Noop, per round: median {m:.3} (min {lo:.3}, max {hi:.3})"
        );
        let (m, lo, hi) = ratio(5, noop);
        println!("metrics only / Noop, per round: median {m:.3} (min {lo:.3}, max {hi:.3})");
    }
    if let Some(n) = subjects[hooks].events() {
        println!("events seen by the all-hooks observer: {n}");
    }
}
