//! The HTTP/1 stream parser on realistic traffic, one connection at a time, single core.
//!
//! Run: `cargo bench -p httpscope-http --bench parse`. Times are the benchmark thread's CPU
//! time (`bench/support/thread_cpu.rs`), so the figures are per core even on a busy machine.
//! Figures go in BENCHMARKS.md.

#[path = "../../../bench/support/thread_cpu.rs"]
mod thread_cpu;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use httpscope_http::{Config, ConnMeta, Connection, Direction, Output};
use httpscope_model::ConnTuple;
use thread_cpu::ThreadCpu;

/// One connection's traffic as chunks in arrival order.
struct Workload {
    name: &'static str,
    chunks: Vec<(Direction, Vec<u8>)>,
    transactions: u64,
    bytes: u64,
}

const REQUEST: &str = "GET /api/v1/users/12345/profile?fields=name,email HTTP/1.1\r\n\
Host: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\n\
Cookie: session=abcdef0123456789; theme=dark\r\nConnection: keep-alive\r\n\r\n";

const RESPONSE: &str = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 22 Nov 2026 03:00:00 GMT\r\nContent-Type: application/json\r\n\
Content-Length: 49\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\n\r\n\
{\"id\":12345,\"name\":\"Ada\",\"email\":\"a@example.com\"}";

/// What wrk sends, and nginx's answer to it (a 20-byte body).
const SMALL_REQUEST: &str = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const SMALL_RESPONSE: &str = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 22 Nov 2026 03:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 20\r\n\
Connection: keep-alive\r\n\r\n<html>small</html>\r\n";

fn workload(name: &'static str, chunks: Vec<(Direction, Vec<u8>)>, transactions: u64) -> Workload {
    let bytes = chunks.iter().map(|(_, c)| c.len() as u64).sum();
    Workload {
        name,
        chunks,
        transactions,
        bytes,
    }
}

fn small_gets(n: usize) -> Workload {
    let mut chunks = Vec::new();
    for _ in 0..n {
        chunks.push((Direction::Forward, SMALL_REQUEST.as_bytes().to_vec()));
        chunks.push((Direction::Reverse, SMALL_RESPONSE.as_bytes().to_vec()));
    }
    workload("small_keepalive_gets", chunks, n as u64)
}

/// Browser-like requests (user agent, cookies, accept headers) and API responses.
fn browser_gets(n: usize) -> Workload {
    let mut chunks = Vec::new();
    for _ in 0..n {
        chunks.push((Direction::Forward, REQUEST.as_bytes().to_vec()));
        chunks.push((Direction::Reverse, RESPONSE.as_bytes().to_vec()));
    }
    workload("browser_keepalive_gets", chunks, n as u64)
}

fn pipelined(n: usize, depth: usize) -> Workload {
    let mut chunks = Vec::new();
    for _ in 0..n / depth {
        chunks.push((Direction::Forward, REQUEST.repeat(depth).into_bytes()));
        chunks.push((Direction::Reverse, RESPONSE.repeat(depth).into_bytes()));
    }
    workload("pipelined_x10", chunks, (n / depth * depth) as u64)
}

/// Responses of `body` bytes in `chunk`-byte chunks, delivered in 64 KiB segments.
fn chunked(n: usize, body: usize, chunk: usize) -> Workload {
    let mut chunks = Vec::new();
    for _ in 0..n {
        chunks.push((Direction::Forward, REQUEST.as_bytes().to_vec()));
        let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..body / chunk {
            resp.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
            resp.extend(std::iter::repeat_n(b'c', chunk));
            resp.extend_from_slice(b"\r\n");
        }
        resp.extend_from_slice(b"0\r\n\r\n");
        for seg in resp.chunks(65536) {
            chunks.push((Direction::Reverse, seg.to_vec()));
        }
    }
    workload("chunked_256k_in_4k_chunks", chunks, n as u64)
}

/// Content-Length responses of `body` bytes, delivered in 64 KiB segments.
fn large_bodies(n: usize, body: usize) -> Workload {
    let mut chunks = Vec::new();
    let segment = vec![b'b'; 65536];
    for _ in 0..n {
        chunks.push((Direction::Forward, REQUEST.as_bytes().to_vec()));
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {body}\r\n\r\n");
        chunks.push((Direction::Reverse, head.into_bytes()));
        for _ in 0..body / segment.len() {
            chunks.push((Direction::Reverse, segment.clone()));
        }
    }
    workload("large_bodies_1m", chunks, n as u64)
}

/// A mix: mostly small GETs, some pipelined bursts, some chunked and large responses.
fn mix() -> Workload {
    let mut chunks = Vec::new();
    let mut transactions = 0;
    for w in [
        small_gets(400),
        pipelined(100, 10),
        chunked(4, 65536, 4096),
        large_bodies(2, 1 << 20),
    ] {
        chunks.extend(w.chunks);
        transactions += w.transactions;
    }
    workload("realistic_mix", chunks, transactions)
}

fn parse(w: &Workload, out: &mut Output) {
    let tuple = ConnTuple::new(
        "10.0.0.1:50000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    let cfg = Config::default();
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let mut conn = Connection::new(tuple, meta, &cfg);
    for (i, (dir, chunk)) in w.chunks.iter().enumerate() {
        conn.feed(*dir, i as u64, chunk, out);
    }
    conn.close(w.chunks.len() as u64, out);
    assert_eq!(out.transactions.len() as u64, w.transactions, "{}", w.name);
    assert_eq!(
        (out.stats.resyncs, out.stats.errors.total()),
        (0, 0),
        "{}",
        w.name
    );
    out.transactions.clear();
    out.stats = Default::default();
}

fn bench(c: &mut Criterion<ThreadCpu>) {
    let mut out = Output::default();
    let workloads = [
        small_gets(10_000),
        browser_gets(10_000),
        pipelined(10_000, 10),
        chunked(64, 262_144, 4096),
        large_bodies(16, 1 << 20),
        mix(),
    ];
    let mut by_tx = c.benchmark_group("http1_transactions");
    for w in &workloads[..3] {
        by_tx.throughput(Throughput::Elements(w.transactions));
        by_tx.bench_with_input(BenchmarkId::from_parameter(w.name), w, |b, w| {
            b.iter(|| parse(black_box(w), &mut out))
        });
    }
    by_tx.finish();
    let mut by_bytes = c.benchmark_group("http1_bytes");
    for w in &workloads {
        by_bytes.throughput(Throughput::Bytes(w.bytes));
        by_bytes.bench_with_input(BenchmarkId::from_parameter(w.name), w, |b, w| {
            b.iter(|| parse(black_box(w), &mut out))
        });
    }
    by_bytes.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench
}
criterion_main!(benches);
