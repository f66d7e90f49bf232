//! The line ends and NUL bytes of a head, found 32 bytes at a time.
//!
//! Why not `memchr::memchr_iter` (which the head scanner used before): heads are made of short
//! lines (20 to 60 bytes), and each `memchr` call pays its set-up (dispatch, alignment, tail
//! handling) for a search of a few dozen bytes. With one call per line, one per split of the
//! request line and one more pass for NUL bytes, `callgrind` counted 18 `memchr` calls and
//! about 45% of the instructions of a small keep-alive exchange in them. Here one compare per
//! 32-byte block gives the positions of every line end and every NUL in it at once, and the
//! head is walked block by block only as far as its empty line.
//!
//! On x86_64 the block compare is SSE2 (part of the baseline, so always there); elsewhere a
//! plain loop that compilers vectorise.

const BLOCK: usize = 32;

/// The line ends (`\n`) of a buffer, in order, and whether a NUL byte comes before a given one.
pub(crate) struct Lines<'a> {
    buf: &'a [u8],
    /// Offset of the block that `lf` and `nul` describe.
    base: usize,
    /// Line ends of the current block not handed out yet (bit i is byte `base + i`).
    lf: u32,
    /// NUL bytes of the current block.
    nul: u32,
    /// A NUL byte was in an earlier block.
    nul_earlier: bool,
    /// Blocks in a row without a line end.
    dry: u8,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        let (lf, nul) = block_masks(buf, 0);
        Lines {
            buf,
            base: 0,
            lf,
            nul,
            nul_earlier: false,
            dry: 0,
        }
    }

    /// The offset of the next `\n`, or `None` at the end of the buffer.
    #[inline(always)]
    pub(crate) fn next_lf(&mut self) -> Option<usize> {
        while self.lf == 0 {
            self.advance()?;
        }
        let i = self.lf.trailing_zeros() as usize;
        self.lf &= self.lf - 1;
        Some(self.base + i)
    }

    /// Moves to the next block; `None` at the end of the buffer.
    #[inline(always)]
    fn advance(&mut self) -> Option<()> {
        let next = self.base + BLOCK;
        if next >= self.buf.len() {
            return None;
        }
        self.nul_earlier |= self.nul != 0;
        self.base = next;
        (self.lf, self.nul) = block_masks(self.buf, next);
        self.dry = if self.lf == 0 { self.dry + 1 } else { 0 };
        if self.dry >= 2 {
            self.skip_long_line()?;
        }
        Some(())
    }

    /// In a long line (a cookie, a long URL; two blocks without a line end so far), lets
    /// `memchr` run to its end, which is faster than blocks, stopping at a NUL on the way.
    #[inline(never)]
    fn skip_long_line(&mut self) -> Option<()> {
        self.dry = 0;
        let after = self.base + BLOCK;
        if after >= self.buf.len() {
            return Some(());
        }
        self.nul_earlier |= self.nul != 0;
        let at = after + memchr::memchr2(b'\n', 0, &self.buf[after..])?;
        self.nul_earlier |= self.buf[at] == 0;
        self.base = at;
        (self.lf, self.nul) = block_masks(self.buf, at);
        // The NUL itself was noted; look on from the byte after it.
        self.nul &= !1;
        if self.buf[at] == 0 {
            self.lf &= !1;
        }
        Some(())
    }

    /// Whether a NUL byte is among the bytes before `end`, which is one past the line end
    /// [`Lines::next_lf`] returned last.
    #[inline]
    pub(crate) fn nul_before(&self, end: usize) -> bool {
        let n = end - self.base; // 1..=BLOCK
        let below = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        self.nul_earlier || self.nul & below != 0
    }
}

/// The `\n` and NUL positions among the 32 bytes of `buf` from `at` (bit i is byte `at + i`);
/// past the end of `buf` there are neither.
#[inline]
fn block_masks(buf: &[u8], at: usize) -> (u32, u32) {
    let rest = &buf[at..];
    if let Some(block) = rest.first_chunk::<BLOCK>() {
        return masks(block);
    }
    if let Some(last) = buf.last_chunk::<BLOCK>() {
        // The buffer's last 32 bytes, shifted so that bit 0 is byte `at` (1 to 31 places:
        // `rest` is shorter than a block). Copying the tail into a padded block instead made
        // the vector load wait for the copy's narrower stores (a store-forwarding stall that
        // `perf annotate` put at ~8% of the head scan).
        let shift = BLOCK - rest.len();
        let (lf, nul) = masks(last);
        // (An empty `rest` would shift by 32: nothing is left, and `checked_shr` says so.)
        let shr = |m: u32| m.checked_shr(shift as u32).unwrap_or(0);
        return (shr(lf), shr(nul));
    }
    let mut block = [b' '; BLOCK];
    block[..rest.len()].copy_from_slice(rest);
    masks(&block)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn masks(block: &[u8; BLOCK]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    let p = block.as_ptr().cast::<__m128i>();
    // SAFETY: SSE2 is in the x86_64 baseline; the two unaligned loads read bytes 0..16 and
    // 16..32 of `block`, which is 32 bytes long.
    unsafe {
        let (lo, hi) = (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
        let nl = _mm_set1_epi8(b'\n' as i8);
        let zero = _mm_setzero_si128();
        let lf_lo = _mm_movemask_epi8(_mm_cmpeq_epi8(lo, nl)) as u32 & 0xffff;
        let lf_hi = _mm_movemask_epi8(_mm_cmpeq_epi8(hi, nl)) as u32 & 0xffff;
        let nul_lo = _mm_movemask_epi8(_mm_cmpeq_epi8(lo, zero)) as u32 & 0xffff;
        let nul_hi = _mm_movemask_epi8(_mm_cmpeq_epi8(hi, zero)) as u32 & 0xffff;
        (lf_lo | lf_hi << 16, nul_lo | nul_hi << 16)
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn masks(block: &[u8; BLOCK]) -> (u32, u32) {
    portable_masks(block)
}

#[cfg(any(not(target_arch = "x86_64"), test))]
#[inline]
fn portable_masks(block: &[u8; BLOCK]) -> (u32, u32) {
    let mut lf = 0u32;
    let mut nul = 0u32;
    for (i, &b) in block.iter().enumerate() {
        lf |= u32::from(b == b'\n') << i;
        nul |= u32::from(b == 0) << i;
    }
    (lf, nul)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &[u8]) -> Vec<usize> {
        buf.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn finds_every_line_end_and_nul() {
        // Bytes drawn from a small alphabet so line ends and NULs are dense, at every length
        // around the block size.
        let mut seed = 0x9e37_79b9_u32;
        for len in 0..200 {
            for _ in 0..20 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        [b'\n', b'\r', 0, b'a', b' ', 0x80, 0xff][seed as usize % 7]
                    })
                    .collect();
                let mut lines = Lines::new(&buf);
                let mut got = Vec::new();
                while let Some(lf) = lines.next_lf() {
                    let nul = buf[..=lf].contains(&0);
                    assert_eq!(lines.nul_before(lf + 1), nul, "{buf:?} at {lf}");
                    got.push(lf);
                }
                assert_eq!(got, naive(&buf), "{buf:?}");
                assert_eq!(lines.next_lf(), None);
            }
        }
    }

    #[test]
    fn simd_and_portable_agree() {
        let mut block = [0u8; BLOCK];
        for (i, b) in block.iter_mut().enumerate() {
            *b = [b'\n', 0, b'x', 0x8a, 0x80][i % 5];
        }
        assert_eq!(masks(&block), portable_masks(&block));
        assert_eq!(portable_masks(&block).0.count_ones(), 7);
    }
}
