//! The packet source (capture reader, link/IP/TCP decoding, TCP reassembly, connection
//! table, HTTP parser) on arbitrary input, under small limits so every cap is reached.
//! Nothing may panic, and the report must agree with the batches.
//!
//! Input: one flags byte, then either (flags & 0x80 == 0) a capture file as is, or
//! (flags & 0x80) a script of TCP segments that is written as a valid pcap first, so that
//! the fuzzer spends its time in reassembly rather than in header checks. Script records:
//! `[conn][tcp flags][seq lo][seq hi][ack lo][ack hi][ts][len]` then `len` payload bytes;
//! `conn & 3` picks one of four connections, `conn & 4` the direction.
#![no_main]

use std::path::Path;
use std::time::Duration;

use httpscope_capture::packet::synth::{Format, TcpSegment, Writer};
use httpscope_capture::packet::{read_reader, PacketConfig};
use httpscope_model::{batch, Source};
use libfuzzer_sys::fuzz_target;

fn script(mut rest: &[u8]) -> Vec<u8> {
    let mut w = Writer::new(Format::Pcap {
        nanos: true,
        big_endian: false,
    });
    let mut ts = 1_700_000_000_000_000_000u64;
    while let [conn, flags, s0, s1, a0, a1, dt, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        // Timestamps mostly advance, sometimes jump back or far ahead.
        ts = match dt {
            0xff => ts.saturating_add(120_000_000_000),
            0xfe => ts.saturating_sub(5_000_000_000),
            d => ts.saturating_add(u64::from(*d) * 1_000_000),
        };
        let c = u16::from(conn & 3);
        let client = format!("10.0.0.1:{}", 40000 + c).parse().unwrap();
        let server = "10.0.0.2:80".parse().unwrap();
        let (src, dst) = if conn & 4 == 0 {
            (client, server)
        } else {
            (server, client)
        };
        // Sequence numbers near the wrap, so that wrapping is exercised.
        let base = if conn & 4 == 0 { u32::MAX - 1000 } else { 5000 };
        let off = u32::from(u16::from_le_bytes([*s0, *s1]));
        let ack = u32::from(u16::from_le_bytes([*a0, *a1]));
        let ack_base = if conn & 4 == 0 { 5000 } else { u32::MAX - 1000 };
        w.segments(&[TcpSegment {
            ts_ns: ts,
            src,
            dst,
            seq: base.wrapping_add(off),
            ack: ack_base.wrapping_add(ack),
            flags: *flags,
            payload: payload.to_vec(),
        }]);
    }
    w.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let cfg = PacketConfig {
        max_connections: if flags & 1 != 0 { 2 } else { 1024 },
        max_buffered_bytes_per_connection: if flags & 2 != 0 { 16 } else { 4096 },
        max_buffered_bytes_total: if flags & 4 != 0 { 32 } else { 1 << 20 },
        idle_timeout: Duration::from_secs(if flags & 8 != 0 { 1 } else { 60 }),
        batch_size: if flags & 16 != 0 { 1 } else { 1024 },
        ..PacketConfig::default()
    };
    let owned;
    let input = if flags & 0x80 != 0 {
        owned = script(rest);
        &owned[..]
    } else {
        rest
    };
    let (tx, rx) = batch::channel(Source::Packet, 4096);
    let result = read_reader(input, Path::new("fuzz"), &cfg, &tx);
    drop(tx);
    let mut transactions = 0u64;
    let mut packets = 0u64;
    for b in rx.receiver().try_iter() {
        transactions += b.transactions.len() as u64;
        packets += b.stats.events;
        for t in &b.transactions {
            assert!(t.status.is_none_or(|s| (100..=999).contains(&s)));
        }
    }
    if let Ok(report) = result {
        assert_eq!(report.transactions, transactions);
        assert_eq!(report.packets, packets);
        assert!(
            report.tcp_segments + report.undecodable + report.fragments + report.not_tcp
                <= report.packets
        );
    }
});
