//! The connection table: TCP segments in, HTTP parser calls and batches out.
//!
//! A connection is identified by its SYN, not by its 4-tuple alone: a new SYN on a tuple
//! that is in use (ports are reused within seconds) closes the old connection and starts a
//! new one. A connection whose SYN was not captured starts at its first segment that
//! carries data, and the parser is told it did not see the start. FIN in both directions,
//! RST, idle expiry or the end of the input close a connection; a closed connection stays
//! behind as a small marker for a while so that late retransmissions and ACKs do not start
//! a phantom connection.
//!
//! Everything is bounded: the number of connections, the bytes held ahead of holes per
//! connection and in total. What goes over a bound is counted in the batch's
//! [`SourceStats::dropped`] and the stream carries on with a gap.

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use httpscope_http::{ConnMeta, Connection, Direction, Output};
use httpscope_model::batch::Batch;
use httpscope_model::telemetry::{DropReason, SourceStats};
use httpscope_model::{ConnTuple, Source};

use super::reassembly::{Budget, Piece, Stream};
use super::wire::{flags, Segment};
use super::PacketConfig;

/// How long a closed connection is remembered (capture time), so that its late segments
/// are recognised as stale. Well above typical retransmission timeouts on a LAN.
const CLOSED_LINGER_NS: u64 = 10_000_000_000;
/// The most segments one direction holds ahead of a hole.
const MAX_HELD_SEGMENTS: usize = 512;

/// A live connection.
struct Flow {
    tuple: ConnTuple,
    streams: [Stream; 2],
    parser: Connection,
    /// Initial sequence number of the SYN from `tuple.src`, when seen.
    syn: Option<u32>,
    last_ts: u64,
}

/// Both ends of a connection in a fixed order, compact and cheap to hash: one lookup per
/// packet is the table's whole cost, so the key is two `u128` addresses and two ports
/// (IPv4 mapped into IPv6) hashed with FxHash rather than two `SocketAddr`s with SipHash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    a: u128,
    b: u128,
    ports: u32,
}

impl FlowKey {
    #[inline]
    fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        let ip = |a: IpAddr| match a {
            IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
            IpAddr::V6(v) => u128::from(v),
        };
        let (x, y) = ((ip(src), sport), (ip(dst), dport));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        FlowKey {
            a: lo.0,
            b: hi.0,
            ports: (u32::from(lo.1) << 16) | u32::from(hi.1),
        }
    }
}

enum Slot {
    Live(Box<Flow>),
    /// Closed at this capture time; only a SYN reopens the tuple before it expires.
    Closed(u64),
}

/// Totals over the whole run, for the final report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub connections: u64,
    pub transactions: u64,
}

pub(crate) struct Tracker {
    cfg: PacketConfig,
    flows: FxHashMap<FlowKey, Slot>,
    out: Output,
    stats: SourceStats,
    /// The latest timestamp seen (captures are not strictly ordered; expiry uses this).
    now: u64,
    next_sweep: u64,
    held_total: usize,
    pub totals: Totals,
}

impl Tracker {
    pub(crate) fn new(cfg: &PacketConfig) -> Self {
        Tracker {
            cfg: cfg.clone(),
            flows: FxHashMap::default(),
            out: Output::default(),
            stats: SourceStats::default(),
            now: 0,
            next_sweep: 0,
            held_total: 0,
            totals: Totals::default(),
        }
    }

    /// Mutable access to the counts of the batch being built (packets, undecodable...).
    pub(crate) fn stats(&mut self) -> &mut SourceStats {
        &mut self.stats
    }

    /// Transactions waiting to be sent.
    pub(crate) fn pending(&self) -> usize {
        self.out.transactions.len()
    }

    /// Takes what was produced since the previous batch.
    pub(crate) fn take_batch(&mut self) -> Batch {
        let (transactions, parse) = self.out.take();
        let mut stats = std::mem::take(&mut self.stats);
        stats.parse.merge(&parse);
        self.totals.transactions += transactions.len() as u64;
        Batch {
            source: Source::Packet,
            transactions,
            stats,
        }
    }

    fn wanted(&self, seg: &Segment<'_>) -> bool {
        self.cfg.ports.is_empty()
            || self.cfg.ports.contains(&seg.sport)
            || self.cfg.ports.contains(&seg.dport)
    }

    /// Advances the clock to `ts` (if later) and expires idle connections when due.
    pub(crate) fn tick(&mut self, ts: u64) {
        if ts > self.now {
            self.now = ts;
        }
        if self.now >= self.next_sweep {
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        let idle = self.cfg.idle_timeout.as_nanos() as u64;
        let now = self.now;
        self.next_sweep = now.saturating_add((idle / 4).clamp(100_000_000, 1_000_000_000));
        let (out, stats, held) = (&mut self.out, &mut self.stats, &mut self.held_total);
        self.flows.retain(|_, slot| match slot {
            Slot::Closed(at) => at.saturating_add(CLOSED_LINGER_NS.min(idle)) >= now,
            Slot::Live(flow) => {
                if flow.last_ts.saturating_add(idle) >= now {
                    return true;
                }
                stats.dropped.inc(DropReason::Expired);
                let ts = flow.last_ts;
                close_flow(flow, ts, out, held);
                false
            }
        });
    }

    /// Takes one decoded TCP segment captured at `ts` (wall-clock nanoseconds).
    pub(crate) fn segment(&mut self, ts: u64, seg: &Segment<'_>) {
        if !self.wanted(seg) {
            return;
        }
        self.tick(ts);
        let src = SocketAddr::new(seg.src, seg.sport);
        let dst = SocketAddr::new(seg.dst, seg.dport);
        let key = FlowKey::new(seg.src, seg.sport, seg.dst, seg.dport);
        let syn = seg.has(flags::SYN);
        let ack = seg.has(flags::ACK);
        let carries = !seg.payload.is_empty() || seg.missing > 0;

        // Decide whether this segment belongs to the tracked connection, starts a new one,
        // or is to be ignored.
        let start = match self.flows.get_mut(&key) {
            Some(Slot::Live(flow)) => {
                if syn && !ack && flow.syn != Some(seg.seq) {
                    // A new SYN on a tuple in use: the port was reused.
                    Some(true)
                } else if syn && !ack && flow.tuple.src != src {
                    Some(true)
                } else {
                    None
                }
            }
            Some(Slot::Closed(_)) => {
                if syn {
                    Some(true)
                } else {
                    return;
                }
            }
            None => {
                if syn || carries {
                    Some(false)
                } else {
                    // A bare ACK/FIN/RST of a connection we never saw: nothing to learn.
                    return;
                }
            }
        };
        if start.is_some() {
            if let Some(Slot::Live(old)) = self.flows.remove(&key) {
                let mut old = old;
                let ts = old.last_ts.max(ts);
                close_flow(&mut old, ts, &mut self.out, &mut self.held_total);
            } else if self.flows.len() >= self.cfg.max_connections {
                // Full even after the periodic expiry (`tick`): refuse and count. No extra
                // sweep here, so a flood of new connections costs O(1) each.
                self.stats.dropped.inc(DropReason::ConnectionLimit);
                return;
            }
            // The SYN sender (or, for a SYN-ACK whose SYN we missed, its receiver; or the
            // first sender) is the tuple's src; the parser decides who is the client.
            let tuple = if syn && ack {
                ConnTuple::new(dst, src)
            } else {
                ConnTuple::new(src, dst)
            };
            let meta = ConnMeta {
                source: Source::Packet,
                from_start: syn,
                wall_offset_ns: 0,
                ..ConnMeta::default()
            };
            let mut streams = [Stream::default(), Stream::default()];
            if syn && !ack {
                streams[0].syn(seg.seq);
            } else if syn {
                streams[0].syn(seg.ack.wrapping_sub(1));
            }
            let flow = Flow {
                tuple,
                streams,
                parser: Connection::new(tuple, meta, &self.cfg.http),
                syn: (syn && !ack).then_some(seg.seq),
                last_ts: ts,
            };
            self.totals.connections += 1;
            self.flows.insert(key, Slot::Live(Box::new(flow)));
        }
        let Some(Slot::Live(flow)) = self.flows.get_mut(&key) else {
            return;
        };
        let dir = if src == flow.tuple.src {
            Direction::Forward
        } else {
            Direction::Reverse
        };
        let d = usize::from(dir == Direction::Reverse);
        if ts > flow.last_ts {
            flow.last_ts = ts;
        }
        if syn {
            if ack && d == 1 && !flow.streams[0].started() {
                flow.streams[0].syn(seg.ack.wrapping_sub(1));
            }
            flow.streams[d].syn(seg.seq);
        }
        let ignoring = flow.parser.is_ignoring();
        let Flow {
            streams, parser, ..
        } = &mut **flow;
        let (a, b) = streams.split_at_mut(1);
        let (this, other) = if d == 0 {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        };
        let out = &mut self.out;
        let held_before = this.held_bytes() + other.held_bytes();

        if carries {
            self.stats.bytes += seg.payload.len() as u64;
            let seq = if syn {
                seg.seq.wrapping_add(1)
            } else {
                seg.seq
            };
            let per_conn = self.cfg.max_buffered_bytes_per_connection;
            let room_total = self
                .cfg
                .max_buffered_bytes_total
                .saturating_sub(self.held_total);
            let budget = if ignoring {
                // The parser ignores this connection: hold nothing for it.
                Budget {
                    bytes: 0,
                    segments: 0,
                }
            } else {
                Budget {
                    bytes: per_conn
                        .saturating_sub(other.held_bytes())
                        .min(room_total + this.held_bytes()),
                    segments: MAX_HELD_SEGMENTS,
                }
            };
            this.segment(seq, seg.payload, seg.missing, budget, &mut |p| {
                feed(parser, dir, ts, p, out)
            });
            if !ignoring {
                let n = std::mem::take(&mut this.events.budget_overflows);
                self.stats.dropped.add(DropReason::StreamBufferLimit, n);
            }
        }
        if ack {
            other.ack(seg.ack, &mut |p| feed(parser, dir.flip(), ts, p, out));
        }
        if seg.has(flags::FIN) {
            let len = seg.payload.len() as u32 + seg.missing + u32::from(syn);
            this.fin(seg.seq.wrapping_add(len));
        }
        let held_after = this.held_bytes() + other.held_bytes();
        self.held_total = self.held_total + held_after - held_before;
        let done = seg.has(flags::RST) || (this.finished() && other.finished());
        if done {
            let ts = flow.last_ts;
            close_flow(flow, ts, &mut self.out, &mut self.held_total);
            self.flows.insert(key, Slot::Closed(ts));
        }
    }

    /// Closes every connection (end of input) and returns the last batch.
    pub(crate) fn finish(&mut self) -> Batch {
        let (out, held) = (&mut self.out, &mut self.held_total);
        for (_, slot) in self.flows.drain() {
            if let Slot::Live(mut flow) = slot {
                let ts = flow.last_ts;
                close_flow(&mut flow, ts, out, held);
            }
        }
        self.take_batch()
    }
}

fn feed(parser: &mut Connection, dir: Direction, ts: u64, piece: Piece<'_>, out: &mut Output) {
    match piece {
        Piece::Data(bytes) => parser.feed(dir, ts, bytes, out),
        Piece::Gap(n) => parser.gap(dir, ts, n, out),
    }
}

/// Delivers what is held (holes become gaps), then closes the parser.
fn close_flow(flow: &mut Flow, ts: u64, out: &mut Output, held_total: &mut usize) {
    let Flow {
        streams, parser, ..
    } = flow;
    for (i, s) in streams.iter_mut().enumerate() {
        let dir = if i == 0 {
            Direction::Forward
        } else {
            Direction::Reverse
        };
        *held_total -= s.held_bytes();
        s.flush(&mut |p| feed(parser, dir, ts, p, out));
    }
    parser.close(ts, out);
}
