//! Packet source hot path: capture records -> link/IP/TCP decoding -> reassembly -> HTTP
//! parsing, over an in-memory capture (so no I/O is measured), in bytes per second.
//!
//! `cargo bench -p httpscope-capture --bench packet`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use httpscope_capture::packet::synth::{Conversation, Format, Writer};
use httpscope_capture::packet::{read_reader, PacketConfig};
use httpscope_model::{batch, Source};

/// 200 keep-alive connections of 20 mixed exchanges each; with `reorder`, some data segments
/// arrive after their successor so the reassembly holds and releases data.
fn capture(reorder: bool) -> Vec<u8> {
    let mut w = Writer::new(Format::Pcap {
        nanos: true,
        big_endian: false,
    });
    for c in 0..200u16 {
        let mut conv = Conversation::new(
            format!("10.0.{}.{}:{}", c / 250, c % 250 + 1, 30000 + c)
                .parse()
                .unwrap(),
            "10.1.0.1:80".parse().unwrap(),
        );
        conv.handshake();
        for i in 0..20usize {
            let body = vec![b'x'; [120, 1500, 9000, 40][i % 4]];
            let req = format!(
                "GET /api/items/{i}?q=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: criterion\r\n\
                 Accept: */*\r\n\r\n"
            );
            conv.client(req.as_bytes());
            if i % 5 == 4 {
                let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for part in body.chunks(700) {
                    chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    chunked.extend_from_slice(part);
                    chunked.extend_from_slice(b"\r\n");
                }
                chunked.extend_from_slice(b"0\r\n\r\n");
                conv.server(&chunked);
            } else {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                conv.server(&[head.as_bytes(), &body].concat());
            }
        }
        conv.close();
        if reorder {
            // Swap every third pair of consecutive data segments of the same direction.
            let data: Vec<usize> = (0..conv.segments.len())
                .filter(|&i| !conv.segments[i].payload.is_empty())
                .collect();
            for (n, w) in data.windows(2).enumerate() {
                let (a, b) = (w[0], w[1]);
                if n % 3 == 0 && conv.segments[a].src == conv.segments[b].src {
                    conv.segments.swap(a, b);
                }
            }
        }
        w.segments(&conv.segments);
    }
    w.into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet");
    for (name, reorder) in [("in_order", false), ("reordered", true)] {
        let cap = capture(reorder);
        g.throughput(Throughput::Bytes(cap.len() as u64));
        g.bench_function(format!("read_reassemble_parse/{name}"), |b| {
            b.iter(|| {
                let (tx, rx) = batch::channel(Source::Packet, 1024);
                let r = read_reader(&cap[..], Path::new("bench"), &PacketConfig::default(), &tx)
                    .unwrap();
                drop(rx);
                assert_eq!(r.transactions, 4000);
                r
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
