//! The eBPF source's user-space hot path without the kernel: ring-buffer records (as
//! `bpf/http.bpf.c` writes them) -> `Event::new_checked` -> per-socket `Streams` -> the HTTP
//! parser -> transactions, single core.
//!
//! The records replay what `bench/ebpf/run.sh` produces: wrk against nginx on loopback, 64
//! keep-alive connections, each request seen from both ends (5 events: wrk's write and its
//! read of head + 612-byte body capped at 512 captured bytes, nginx's recvfrom, its writev of
//! the head and its length-only sendfile of the body), so 2 transactions per request. A
//! socket's first event has the full header, the others the kernel's short one.
//!
//! Run: `cargo bench -p httpscope-capture --bench ebpf`. Times are the benchmark thread's CPU
//! time (`bench/support/thread_cpu.rs`). Figures go in BENCHMARKS.md (eBPF source section).

#[cfg(target_os = "linux")]
#[path = "../../../bench/support/thread_cpu.rs"]
mod thread_cpu;

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::time::Duration;

    use criterion::{black_box, Criterion, Throughput};
    use httpscope_capture::ebpf::event::{
        Event, RawEvent, EVENT_SIZE, FLAG_FROM_START, KIND_DATA_SHORT, SHORT_EVENT_SIZE,
    };
    use httpscope_capture::ebpf::streams::Streams;
    use httpscope_http::{Config, Output};
    use httpscope_model::telemetry::SourceStats;

    use super::thread_cpu::ThreadCpu;

    const REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:18089\r\n\r\n";
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 22 Nov 2026 05:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 612\r\n\
Last-Modified: Sun, 22 Nov 2026 04:00:00 GMT\r\nConnection: keep-alive\r\n\
ETag: \"6740e4c0-264\"\r\nAccept-Ranges: bytes\r\n\r\n";
    const BODY: usize = 612;
    const CAPTURE: usize = 512;
    const CONNECTIONS: u64 = 64;

    /// One record as the kernel writes it (syscall 1 and the addresses do not matter here).
    #[allow(clippy::too_many_arguments)]
    fn record(
        cookie: u64,
        ts: u64,
        local: SocketAddr,
        remote: SocketAddr,
        recv: bool,
        payload: &[u8],
        len: usize,
        comm: &[u8],
    ) -> Vec<u8> {
        let v4 = |a: SocketAddr| match a.ip() {
            std::net::IpAddr::V4(ip) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&ip.octets());
                b
            }
            std::net::IpAddr::V6(ip) => ip.octets(),
        };
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm);
        let raw = RawEvent {
            ts_ns: ts,
            cookie,
            tgid: 1000 + (cookie & 1) as u32,
            tid: 1000,
            len: len as u32,
            captured: payload.len() as u32,
            family: 2,
            lport: local.port(),
            rport: remote.port(),
            kind: 1,
            direction: u8::from(recv),
            syscall: 1,
            flags: FLAG_FROM_START,
            laddr: v4(local),
            raddr: v4(remote),
            comm: c,
            ..RawEvent::default()
        };
        // SAFETY: RawEvent is repr(C) plain data without padding bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(&raw as *const RawEvent as *const u8, EVENT_SIZE) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// The same record with the short header the kernel uses after a socket's first event.
    fn short(full: Vec<u8>) -> Vec<u8> {
        let mut v = full[..SHORT_EVENT_SIZE].to_vec();
        v[38] = KIND_DATA_SHORT;
        v[32..38].fill(0);
        v.extend_from_slice(&full[EVENT_SIZE..]);
        v
    }

    /// `requests` requests spread over the connections, round robin, as ring-buffer records.
    pub struct Workload {
        pub records: Vec<Vec<u8>>,
        pub transactions: u64,
        pub bytes: u64,
    }

    pub fn workload(requests: u64) -> Workload {
        let server: SocketAddr = "127.0.0.1:18089".parse().unwrap();
        let mut response = HEAD.to_vec();
        response.extend(std::iter::repeat_n(b'n', BODY));
        let mut records = Vec::new();
        let mut ts = 1_000_000u64;
        for i in 0..requests {
            let c = i % CONNECTIONS;
            let client: SocketAddr = format!("127.0.0.1:{}", 40000 + c).parse().unwrap();
            let (wrk, nginx) = (2 * c + 2, 2 * c + 3);
            // A socket's first event has the full header, the others the short one.
            let first = i < CONNECTIONS;
            let mut ev = |cookie, local, remote, recv, payload: &[u8], len, comm: &[u8]| {
                ts += 1_000;
                let r = record(cookie, ts, local, remote, recv, payload, len, comm);
                let first_of_socket = first && (cookie == wrk && !recv || cookie == nginx && recv);
                records.push(if first_of_socket { r } else { short(r) });
            };
            ev(wrk, client, server, false, REQUEST, REQUEST.len(), b"wrk");
            ev(
                nginx,
                server,
                client,
                true,
                REQUEST,
                REQUEST.len(),
                b"nginx",
            );
            ev(nginx, server, client, false, HEAD, HEAD.len(), b"nginx");
            ev(nginx, server, client, false, b"", BODY, b"nginx");
            ev(
                wrk,
                client,
                server,
                true,
                &response[..CAPTURE],
                response.len(),
                b"wrk",
            );
        }
        let bytes = records.iter().map(|r| r.len() as u64).sum();
        Workload {
            records,
            transactions: 2 * requests,
            bytes,
        }
    }

    /// What the capture loop does with each record (src/ebpf/mod.rs), then the batch's
    /// transactions are taken, as a flush would.
    fn run(w: &Workload, streams: &mut Streams, out: &mut Output, stats: &mut SourceStats) {
        for rec in &w.records {
            stats.events += 1;
            match Event::new_checked(&rec[..]) {
                Ok(ev) => streams.event(&ev, out, stats),
                Err(_) => stats.undecodable += 1,
            }
        }
        let (txs, _) = out.take();
        assert_eq!(txs.len() as u64, w.transactions);
        black_box(txs);
    }

    fn decode_only(w: &Workload) -> u64 {
        let mut sum = 0u64;
        for rec in &w.records {
            if let Ok(ev) = Event::new_checked(&rec[..]) {
                sum = sum
                    .wrapping_add(ev.cookie())
                    .wrapping_add(ev.payload().len() as u64)
                    .wrapping_add(u64::from(ev.local().port()));
            }
        }
        sum
    }

    pub fn bench(c: &mut Criterion<ThreadCpu>) {
        let w = workload(10_000);
        // Connections stay open across iterations, like keep-alive connections under load.
        let mut streams = Streams::new(
            Config::default(),
            65_536,
            Duration::from_secs(60),
            Duration::from_millis(200),
            0,
        );
        let (mut out, mut stats) = (Output::default(), SourceStats::default());
        run(&w, &mut streams, &mut out, &mut stats);

        let mut g = c.benchmark_group("ebpf_user_space");
        g.throughput(Throughput::Elements(w.transactions));
        g.bench_function("decode_streams_parse/transactions", |b| {
            b.iter(|| run(black_box(&w), &mut streams, &mut out, &mut stats))
        });
        g.throughput(Throughput::Bytes(w.bytes));
        g.bench_function("decode_streams_parse/bytes", |b| {
            b.iter(|| run(black_box(&w), &mut streams, &mut out, &mut stats))
        });
        g.throughput(Throughput::Elements(w.records.len() as u64));
        g.bench_function("decode_only/events", |b| {
            b.iter(|| decode_only(black_box(&w)))
        });
        g.finish();
    }
}

#[cfg(target_os = "linux")]
criterion::criterion_group! {
    name = benches;
    config = criterion::Criterion::default().with_measurement(thread_cpu::ThreadCpu);
    targets = linux::bench
}
#[cfg(target_os = "linux")]
criterion::criterion_main!(benches);

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the eBPF source is Linux only");
}
