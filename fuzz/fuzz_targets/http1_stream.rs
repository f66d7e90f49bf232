//! The HTTP/1 stream parser on arbitrary conversations: chunks in both directions, gaps and
//! a close, under small limits so that every cap is reached. Nothing may panic, and what
//! comes out must be consistent with what was counted.
//!
//! Input: one flags byte, then records `[op][len]` followed by `len` payload bytes for feeds.
//! op & 3: 0 client bytes, 1 server bytes, 2 a gap of `len * 7` bytes (direction op & 4),
//! 3 close.
#![no_main]

use httpscope_http::{Config, ConnMeta, Connection, Direction, HeadBudget, Output};
use httpscope_model::ConnTuple;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let cfg = Config {
        max_head_bytes: if flags & 1 != 0 { 64 } else { 64 * 1024 },
        max_in_flight: if flags & 2 != 0 { 2 } else { 256 },
        keep_query: flags & 4 != 0,
        max_path_bytes: 16,
        max_search_bytes: if flags & 8 != 0 { 32 } else { 256 * 1024 },
        head_budget: HeadBudget::new(if flags & 32 != 0 { 40 } else { 1 << 20 }),
    };
    let meta = ConnMeta { from_start: flags & 16 != 0, ..ConnMeta::default() };
    let tuple = ConnTuple::new("1.1.1.1:1000".parse().unwrap(), "[::2]:80".parse().unwrap());
    let mut conn = Connection::new(tuple, meta, &cfg);
    let mut out = Output::default();
    let mut ts = 0u64;
    while let [op, len, tail @ ..] = rest {
        ts += 1;
        let len = usize::from(*len);
        let dir = if op & 4 == 0 { Direction::Forward } else { Direction::Reverse };
        match op & 3 {
            0 | 1 => {
                let n = len.min(tail.len());
                let dir = if op & 3 == 0 { Direction::Forward } else { Direction::Reverse };
                conn.feed(dir, ts, &tail[..n], &mut out);
                rest = &tail[n..];
                continue;
            }
            2 => conn.gap(dir, ts, len as u64 * 7, &mut out),
            _ => conn.close(ts, &mut out),
        }
        rest = tail;
    }
    conn.close(ts + 1, &mut out);
    // Whatever partial heads were held went back to the shared budget.
    assert_eq!(cfg.head_budget.used(), 0);
    assert_eq!(out.stats.transactions, out.transactions.len() as u64);
    let incomplete = out.transactions.iter().filter(|t| t.incomplete).count() as u64;
    assert_eq!(out.stats.incomplete, incomplete);
    for t in &out.transactions {
        assert!(t.end_ns >= t.start_ns);
        assert!(t.path.len() <= cfg.max_path_bytes);
        if let Some(s) = t.status {
            assert!((100..=599).contains(&s));
        }
        // A complete transaction always has its final status.
        assert!(t.incomplete || t.status.is_some());
    }
    // Each complete transaction was closed by one final response.
    assert!(out.stats.transactions - out.stats.incomplete <= out.stats.responses);
});
