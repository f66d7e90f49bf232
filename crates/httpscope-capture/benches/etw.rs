//! The HttpService decoder and correlator on synthetic records.
//!
//! `correlate`: 10,000 requests on 100 connections in the fast-response flow
//! (1 → 2 → 3 → 8 → 12, 5 events each, plus connect/close/cleanup), user data encoded per the
//! manifest; throughput in events. `decode`: the same events through `wire::decode` only;
//! throughput in user-data bytes.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, Criterion, Throughput};
use httpscope_capture::etw::wire::{self, encode};
use httpscope_capture::etw::{Config, Correlator, Guid, RawEvent};

struct Rec {
    id: u16,
    ts: u64,
    activity: Guid,
    related: Option<Guid>,
    data: Vec<u8>,
}

fn records(requests: u32, conns: u32) -> Vec<Rec> {
    let server: SocketAddr = "10.0.0.5:80".parse().unwrap();
    let client: SocketAddr = "192.0.2.10:50438".parse().unwrap();
    let url = "http://localhost:80/api/orders/12345?expand=items";
    let mut connect = 0xffff_fa80_0100_0000u64.to_le_bytes().to_vec();
    connect.extend_from_slice(&16u32.to_le_bytes());
    encode::sockaddr(&mut connect, server);
    connect.extend_from_slice(&16u32.to_le_bytes());
    encode::sockaddr(&mut connect, client);
    let mut recv = 1u64.to_le_bytes().to_vec();
    recv.extend_from_slice(&2u64.to_le_bytes());
    recv.extend_from_slice(&16u32.to_le_bytes());
    encode::sockaddr(&mut recv, client);
    let mut parse = 0xffff_fa80_01bb_5320u64.to_le_bytes().to_vec();
    parse.extend_from_slice(&4u32.to_le_bytes());
    encode::utf16z(&mut parse, url);
    let mut deliver = 0xffff_fa80_01bb_5320u64.to_le_bytes().to_vec();
    deliver.extend_from_slice(&1u64.to_le_bytes());
    deliver.extend_from_slice(&1u32.to_le_bytes());
    encode::utf16z(&mut deliver, "DefaultAppPool");
    encode::utf16z(&mut deliver, url);
    deliver.extend_from_slice(&0u32.to_le_bytes());
    let mut resp = 1u64.to_le_bytes().to_vec();
    resp.extend_from_slice(&2u64.to_le_bytes());
    resp.extend_from_slice(&200u16.to_le_bytes());
    encode::ansiz(&mut resp, "GET");
    resp.extend_from_slice(&180u32.to_le_bytes());
    resp.extend_from_slice(&1u16.to_le_bytes());
    resp.extend_from_slice(&0u32.to_le_bytes());
    let mut send = 1u64.to_le_bytes().to_vec();
    send.extend_from_slice(&200u16.to_le_bytes());
    let conn_obj = 0xffff_fa80_0100_0000u64.to_le_bytes().to_vec();
    let mut close = conn_obj.clone();
    close.extend_from_slice(&0u32.to_le_bytes());

    let mut out = Vec::new();
    let mut ts = 134_397_792_000_000_000u64;
    let mut push = |id: u16, activity: u128, related: Option<u128>, data: &Vec<u8>| {
        ts += 500;
        out.push(Rec {
            id,
            ts,
            activity: Guid(activity),
            related: related.map(Guid),
            data: data.clone(),
        });
    };
    let conn = |i: u32| (0x6000_0000u128 + u128::from(i % conns)) << 96;
    for c in 0..conns {
        push(21, conn(c), None, &connect);
    }
    for i in 0..requests {
        let req = (0x8000_0000u128 + u128::from(i)) << 96 | 0x2fb00 << 64;
        push(1, conn(i), Some(req), &recv);
        push(2, req, None, &parse);
        push(3, req, None, &deliver);
        push(8, req, None, &resp);
        push(12, req, None, &send);
    }
    for c in 0..conns {
        push(23, conn(c), None, &close);
        push(24, conn(c), None, &conn_obj);
    }
    out
}

fn bench(c: &mut Criterion) {
    let recs = records(10_000, 100);
    let mut g = c.benchmark_group("etw");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("correlate", |b| {
        let mut out = Vec::with_capacity(16);
        b.iter(|| {
            let mut c = Correlator::new(Config::default());
            let mut n = 0usize;
            for r in &recs {
                c.process(
                    &RawEvent {
                        event_id: r.id,
                        version: 0,
                        timestamp: r.ts,
                        activity_id: r.activity,
                        related_activity_id: r.related,
                        user_data: &r.data,
                    },
                    &mut out,
                );
                n += out.len();
                out.clear();
            }
            assert_eq!(n, 10_000);
            black_box(c.counters().transactions)
        })
    });
    let bytes: usize = recs.iter().map(|r| r.data.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for r in &recs {
                ok += usize::from(wire::decode(r.id, 0, black_box(&r.data)).is_ok());
            }
            assert_eq!(ok, recs.len());
            ok
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

/// `ETW_CPU_ITERS=N cargo bench --bench etw`: runs the `correlate` workload N times and reports
/// events per second of *CPU time* (getrusage), which stays meaningful on a machine whose cores
/// are shared with other jobs (wall-clock criterion figures then mostly measure the load).
#[cfg(target_os = "linux")]
fn cpu_run(iters: u32) {
    fn cpu_secs() -> f64 {
        // SAFETY: getrusage only writes the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
    let recs = records(10_000, 100);
    let mut out = Vec::with_capacity(16);
    let (wall, cpu) = (std::time::Instant::now(), cpu_secs());
    let mut txs = 0u64;
    for _ in 0..iters {
        let mut c = Correlator::new(Config::default());
        for r in &recs {
            c.process(
                &RawEvent {
                    event_id: r.id,
                    version: 0,
                    timestamp: r.ts,
                    activity_id: r.activity,
                    related_activity_id: r.related,
                    user_data: &r.data,
                },
                &mut out,
            );
            out.clear();
        }
        txs += c.counters().transactions;
    }
    let (cpu, wall) = (cpu_secs() - cpu, wall.elapsed().as_secs_f64());
    let events = recs.len() as f64 * f64::from(iters);
    println!(
        "etw correlate: {events} events, {txs} transactions, {cpu:.3} s CPU ({wall:.3} s wall): \
         {:.2} M events/s of CPU time, {:.2} M events/s wall",
        events / cpu / 1e6,
        events / wall / 1e6
    );
}

fn main() {
    #[cfg(target_os = "linux")]
    if let Some(n) = std::env::var("ETW_CPU_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cpu_run(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
