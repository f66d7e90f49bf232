//! One direction of a TCP connection put back in sequence order, within a fixed budget.
//!
//! Modelled on smoltcp's `storage::Assembler`: in-order data is handed on at once without
//! copying; only segments that arrive ahead of a hole are kept, in a sorted list bounded by
//! bytes and by count. Running out of budget is not growth: the earliest hole is declared
//! lost (a [`Piece::Gap`] for the parser) and what followed it is delivered. A hole is also
//! declared lost as soon as the peer acknowledges bytes beyond it, since the receiver
//! already has them and they will never be sent again.
//!
//! Sequence numbers wrap; positions are compared relative to the next expected byte as a
//! signed 32-bit distance, as TCP itself does.

use std::collections::VecDeque;

/// What a stream hands to its consumer, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// This many bytes were lost from the capture before the next data.
    Gap(u64),
}

/// Per-stream limits on what is kept ahead of a hole.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Bytes kept ahead of a hole.
    pub bytes: usize,
    /// Segments kept ahead of a hole.
    pub segments: usize,
}

/// Counts a stream reports back to its owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamEvents {
    /// Segments (or parts) that were already delivered: retransmissions and overlaps.
    pub duplicate_bytes: u64,
    /// Times a hole had to be given up because the budget ran out.
    pub budget_overflows: u64,
    /// Holes given up because the peer acknowledged past them.
    pub acked_holes: u64,
}

#[derive(Debug)]
struct Held {
    seq: u32,
    /// Captured bytes (empty for a known-lost range).
    data: Vec<u8>,
    /// Bytes known lost right after `data` (cut by the capture's snap length).
    lost: u32,
}

impl Held {
    fn len(&self) -> u32 {
        self.data.len() as u32 + self.lost
    }
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// The next sequence number to deliver; `None` until the first segment or SYN.
    next: Option<u32>,
    /// Segments ahead of `next`, sorted by distance from it.
    held: VecDeque<Held>,
    held_bytes: usize,
    /// The sequence number of this direction's FIN, once seen.
    fin: Option<u32>,
    /// The highest acknowledgement the peer sent for this direction.
    acked: Option<u32>,
    /// What happened, for the owner to count.
    pub events: StreamEvents,
}

#[inline]
fn dist(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32)
}

impl Stream {
    /// Starts the stream at the initial sequence number of a SYN (data begins at `isn + 1`).
    /// A stream that already started keeps its position.
    pub(crate) fn syn(&mut self, isn: u32) {
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
        }
    }

    /// Whether a position is known yet.
    pub(crate) fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Bytes held ahead of holes.
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Records a FIN whose sequence number is `seq` (after the segment's data).
    pub(crate) fn fin(&mut self, seq: u32) {
        if self.fin.is_none() {
            self.fin = Some(seq);
        }
    }

    /// Whether a FIN was seen and every byte before it was delivered (or given up).
    pub(crate) fn finished(&self) -> bool {
        matches!((self.fin, self.next), (Some(f), Some(n)) if dist(n, f) <= 0)
    }

    /// Takes one segment: `data` starts at `seq`, and `lost` more bytes follow it that the
    /// capture cut off. Delivers whatever became in order, holds what is ahead of a hole,
    /// and gives holes up when `budget` runs out.
    pub(crate) fn segment(
        &mut self,
        seq: u32,
        data: &[u8],
        lost: u32,
        budget: Budget,
        sink: &mut impl FnMut(Piece<'_>),
    ) {
        let len = data.len() as u64 + u64::from(lost);
        if len == 0 {
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let rel = dist(next, seq);
        if rel + len as i64 <= 0 {
            self.events.duplicate_bytes += len;
            return;
        }
        if rel <= 0 {
            // In order, possibly overlapping what was delivered: deliver the new part now.
            let skip = (-rel) as usize;
            if skip > 0 {
                self.events.duplicate_bytes += skip as u64;
            }
            self.deliver_at(next, seq, data, lost, sink);
            self.drain(sink);
            return;
        }
        // Ahead of a hole: hold a copy, making room by giving up holes if needed.
        while !self.held.is_empty()
            && (self.held_bytes + data.len() > budget.bytes || self.held.len() >= budget.segments)
        {
            self.events.budget_overflows += 1;
            if !self.skip_first_hole(Some(seq), sink) {
                break;
            }
        }
        let next = self.next.unwrap_or(seq);
        if dist(next, seq) <= 0 {
            // Giving holes up made this segment the next one.
            self.deliver_at(next, seq, data, lost, sink);
            self.drain(sink);
            return;
        }
        if data.len() > budget.bytes || budget.segments == 0 {
            // Cannot be held even alone: give up the hole in front of it and deliver it.
            self.events.budget_overflows += 1;
            sink(Piece::Gap(dist(next, seq) as u64));
            self.next = Some(seq);
            self.deliver_at(seq, seq, data, lost, sink);
            self.drain(sink);
            return;
        }
        let key = dist(next, seq);
        let at = self.held.partition_point(|h| dist(next, h.seq) <= key);
        self.held_bytes += data.len();
        self.held.insert(
            at,
            Held {
                seq,
                data: data.to_vec(),
                lost,
            },
        );
    }

    /// The peer acknowledged everything before `ack`: if we are waiting on a hole that the
    /// acknowledgement covers, the hole is lost from the capture for good.
    pub(crate) fn ack(&mut self, ack: u32, sink: &mut impl FnMut(Piece<'_>)) {
        match self.acked {
            Some(a) if dist(a, ack) <= 0 => {}
            _ => self.acked = Some(ack),
        }
        let Some(next) = self.next else { return };
        if self.held.is_empty() || dist(next, ack) <= 0 {
            return;
        }
        let first = self.held[0].seq;
        let upto = if dist(ack, first) <= 0 { first } else { ack };
        self.events.acked_holes += 1;
        sink(Piece::Gap(dist(next, upto) as u64));
        self.next = Some(upto);
        self.drain(sink);
    }

    /// Ends the stream: everything held is delivered, holes become gaps, and bytes the peer
    /// acknowledged but the capture never showed become a final gap.
    pub(crate) fn flush(&mut self, sink: &mut impl FnMut(Piece<'_>)) {
        while self.skip_first_hole(None, sink) {}
        if let (Some(next), Some(acked)) = (self.next, self.acked) {
            let mut end = acked;
            if let Some(fin) = self.fin {
                // The FIN itself takes one sequence number that carries no data.
                if dist(fin, acked) > 0 {
                    end = fin;
                }
            }
            let missing = dist(next, end);
            if missing > 0 {
                sink(Piece::Gap(missing as u64));
                self.next = Some(end);
            }
        }
    }

    /// Gives up the hole before the first held segment (or before `incoming` if it comes
    /// first) and delivers what follows. Returns false if nothing was held.
    fn skip_first_hole(&mut self, incoming: Option<u32>, sink: &mut impl FnMut(Piece<'_>)) -> bool {
        let (Some(next), Some(first)) = (self.next, self.held.front().map(|h| h.seq)) else {
            return false;
        };
        if let Some(inc) = incoming {
            let to_inc = dist(next, inc);
            if to_inc <= 0 {
                // The incoming segment has become the next one.
                return false;
            }
            if to_inc < dist(next, first) {
                // The incoming segment is the earliest: skipping to it is enough.
                sink(Piece::Gap(to_inc as u64));
                self.next = Some(inc);
                return false;
            }
        }
        let hole = dist(next, first);
        if hole > 0 {
            sink(Piece::Gap(hole as u64));
            self.next = Some(first);
        }
        self.drain(sink);
        true
    }

    /// Delivers held segments that have become in order.
    fn drain(&mut self, sink: &mut impl FnMut(Piece<'_>)) {
        while let Some(next) = self.next {
            let Some(h) = self.held.front() else { break };
            if dist(next, h.seq) > 0 {
                break;
            }
            let h = self.held.pop_front().expect("front exists");
            self.held_bytes -= h.data.len();
            let end_rel = dist(next, h.seq) + i64::from(h.len());
            if end_rel <= 0 {
                self.events.duplicate_bytes += u64::from(h.len());
                continue;
            }
            self.deliver_at(next, h.seq, &h.data, h.lost, sink);
        }
    }

    /// Delivers the part of a segment starting at `seq` that lies at or after `next`
    /// (`seq <= next < seq + len`), then its lost tail, and advances.
    fn deliver_at(
        &mut self,
        next: u32,
        seq: u32,
        data: &[u8],
        lost: u32,
        sink: &mut impl FnMut(Piece<'_>),
    ) {
        let skip = dist(seq, next).max(0) as u64;
        let mut new_next = next;
        if (skip as usize) < data.len() {
            let part = &data[skip as usize..];
            sink(Piece::Data(part));
            new_next = new_next.wrapping_add(part.len() as u32);
        }
        let lost_skip = skip.saturating_sub(data.len() as u64);
        if u64::from(lost) > lost_skip {
            let n = u64::from(lost) - lost_skip;
            sink(Piece::Gap(n));
            new_next = new_next.wrapping_add(n as u32);
        }
        self.next = Some(new_next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: Budget = Budget {
        bytes: 1 << 20,
        segments: 1024,
    };

    /// What came out: the bytes, with gaps as `None` per lost byte.
    fn run(
        stream: &mut Stream,
        f: impl FnOnce(&mut Stream, &mut dyn FnMut(Piece<'_>)),
    ) -> Vec<Option<u8>> {
        let mut out = Vec::new();
        let mut sink = |p: Piece<'_>| match p {
            Piece::Data(d) => out.extend(d.iter().map(|&b| Some(b))),
            Piece::Gap(n) => out.extend(std::iter::repeat_n(None, n as usize)),
        };
        f(stream, &mut sink);
        out
    }

    fn seg(s: &mut Stream, seq: u32, d: &[u8], budget: Budget) -> Vec<Option<u8>> {
        run(s, |s, sink| s.segment(seq, d, 0, budget, &mut |p| sink(p)))
    }

    fn some(b: &[u8]) -> Vec<Option<u8>> {
        b.iter().map(|&x| Some(x)).collect()
    }

    #[test]
    fn in_order_reordered_and_retransmitted() {
        let mut s = Stream::default();
        s.syn(99);
        assert_eq!(seg(&mut s, 100, b"abc", BIG), some(b"abc"));
        assert_eq!(seg(&mut s, 106, b"ghi", BIG), vec![]);
        assert_eq!(s.held_bytes(), 3);
        assert_eq!(seg(&mut s, 101, b"bcdef", BIG), some(b"defghi"));
        assert_eq!(seg(&mut s, 100, b"abc", BIG), vec![]);
        assert_eq!(s.events.duplicate_bytes, 2 + 3);
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn wraps_around_sequence_space() {
        let mut s = Stream::default();
        s.syn(u32::MAX - 2);
        assert_eq!(seg(&mut s, 1, b"de", BIG), vec![]);
        assert_eq!(seg(&mut s, u32::MAX - 1, b"abc", BIG), some(b"abcde"));
    }

    #[test]
    fn budget_overflow_gives_up_the_hole() {
        let mut s = Stream::default();
        s.syn(0);
        let small = Budget {
            bytes: 4,
            segments: 8,
        };
        assert_eq!(seg(&mut s, 3, b"cd", small), vec![]);
        let out = seg(&mut s, 5, b"efg", small);
        assert_eq!(
            out,
            vec![
                None,
                None,
                Some(b'c'),
                Some(b'd'),
                Some(b'e'),
                Some(b'f'),
                Some(b'g')
            ]
        );
        assert_eq!(s.events.budget_overflows, 1);
        // A segment too big to hold at all.
        let out = seg(&mut s, 10, b"0123456789", small);
        assert_eq!(out.len(), 2 + 10);
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn ack_past_a_hole_declares_it_lost() {
        let mut s = Stream::default();
        s.syn(0);
        assert_eq!(seg(&mut s, 11, b"xyz", BIG), vec![]);
        let out = run(&mut s, |s, sink| s.ack(14, &mut |p| sink(p)));
        assert_eq!(out, [vec![None; 10], some(b"xyz")].concat());
        assert_eq!(s.events.acked_holes, 1);
    }

    #[test]
    fn flush_reports_acked_tail_and_held_data() {
        let mut s = Stream::default();
        s.syn(0);
        assert_eq!(seg(&mut s, 1, b"ab", BIG), some(b"ab"));
        assert_eq!(seg(&mut s, 5, b"ef", BIG), vec![]);
        run(&mut s, |s, sink| s.ack(3, &mut |p| sink(p)));
        s.fin(9);
        let out = run(&mut s, |s, sink| {
            s.ack(10, &mut |p| sink(p));
            s.flush(&mut |p| sink(p))
        });
        // The ack at 10 already gave the hole 3..5 up, then flush reports 7..9 lost.
        assert_eq!(out, vec![None, None, Some(b'e'), Some(b'f'), None, None]);
        assert!(s.finished());
    }

    #[test]
    fn snap_length_loss_becomes_a_gap() {
        let mut s = Stream::default();
        s.syn(0);
        let out = run(&mut s, |s, sink| {
            s.segment(1, b"ab", 3, BIG, &mut |p| sink(p))
        });
        assert_eq!(out, vec![Some(b'a'), Some(b'b'), None, None, None]);
        assert_eq!(seg(&mut s, 6, b"z", BIG), some(b"z"));
    }

    #[test]
    fn starts_without_syn_at_first_segment() {
        let mut s = Stream::default();
        assert!(!s.started());
        assert_eq!(seg(&mut s, 5000, b"mid", BIG), some(b"mid"));
        assert_eq!(seg(&mut s, 4990, b"old", BIG), vec![]);
    }

    proptest! {
        /// Against a naive model: with room enough, any delivery order of overlapping,
        /// duplicated pieces of a stream yields exactly the stream.
        #[test]
        fn reassembles_any_order(
            len in 1usize..600,
            isn in any::<u32>(),
            cuts in proptest::collection::vec((0usize..600, 1usize..120), 1..60),
            order in proptest::collection::vec(any::<u32>(), 60),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            // Pieces from the cuts, plus a tiling so every byte is covered.
            let mut pieces: Vec<(usize, usize)> = cuts.iter()
                .map(|&(s, l)| (s % len, (s % len + l).min(len)))
                .collect();
            let mut at = 0;
            while at < len { let e = (at + 97).min(len); pieces.push((at, e)); at = e; }
            let mut keyed: Vec<_> = pieces.into_iter().enumerate()
                .map(|(i, p)| (order.get(i).copied().unwrap_or(i as u32), p)).collect();
            keyed.sort();
            let mut s = Stream::default();
            s.syn(isn);
            let mut out = Vec::new();
            for (_, (a, b)) in keyed {
                let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                out.extend(seg(&mut s, seq, &data[a..b], BIG));
            }
            prop_assert_eq!(out, some(&data));
            prop_assert_eq!(s.held_bytes(), 0);
        }

        /// With loss and a tiny budget, the output still lines up: every delivered byte sits
        /// at its true offset (gaps count their bytes), nothing is delivered twice, and after
        /// a flush everything received is accounted for.
        #[test]
        fn losses_and_small_budget_keep_offsets(
            len in 1usize..400,
            isn in any::<u32>(),
            pieces in proptest::collection::vec((0usize..400, 1usize..60, any::<bool>()), 1..50),
            budget_bytes in 0usize..100,
            budget_segments in 0usize..4,
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let budget = Budget { bytes: budget_bytes, segments: budget_segments };
            let mut s = Stream::default();
            s.syn(isn);
            let mut out = Vec::new();
            let mut furthest = 0;
            for (start, l, keep) in pieces {
                let a = start % len;
                let b = (a + l).min(len);
                if !keep { continue; }
                furthest = furthest.max(b);
                let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                out.extend(seg(&mut s, seq, &data[a..b], budget));
            }
            out.extend(run(&mut s, |s, sink| s.flush(&mut |p| sink(p))));
            prop_assert_eq!(out.len(), furthest);
            for (i, b) in out.iter().enumerate() {
                if let Some(b) = b { prop_assert_eq!(*b, data[i]); }
            }
        }
    }
}
