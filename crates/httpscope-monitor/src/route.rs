//! Route quantization: from the paths of individual requests to the routes they stand for.
//!
//! `/users/42/orders` and `/users/43/orders` are one endpoint. In order:
//! 1. the query string and fragment are cut, and an absolute-form target loses its scheme and
//!    authority;
//! 2. `drop` rules (regexes on the path) discard the transaction (counted as filtered);
//! 3. user route patterns (`/users/{id}/orders`) win: the route is the pattern itself;
//! 4. `replace` rules (regex, replacement) rewrite the path;
//! 5. the heuristic turns id-like segments into `*`: all digits, UUIDs, hex ids, tokens with
//!    several digits, long random tokens. Version segments (`v2`, `v1.1`, `2.0`, `v1beta1`) and words
//!    with a single digit (`oauth2`, `s3`) stay, and so do RPC-style names (`hello.world`).

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How paths become routes; part of the TOML configuration (`[routes]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Route patterns such as `/users/{id}/orders`: `{name}` (or `*`) matches one segment.
    pub patterns: Vec<String>,
    /// Regex rewrites applied to the path before the heuristic.
    pub replace: Vec<ReplaceRule>,
    /// Regexes: a matching path is not aggregated (counted as filtered).
    pub drop: Vec<String>,
    /// Turn off the id heuristic (routes are then the paths, after patterns and rules).
    pub no_heuristic: bool,
}

/// One regex rewrite: every match of `pattern` in the path becomes `with` (`$1` etc. allowed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceRule {
    /// The regex.
    pub pattern: String,
    /// The replacement.
    pub with: String,
}

/// A route configuration that could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A regex in a rule does not compile.
    #[error("invalid regex {pattern:?}: {message}")]
    Regex {
        /// The regex as given.
        pattern: String,
        /// What the regex compiler said.
        message: String,
    },
    /// A route pattern does not start with `/`.
    #[error("route pattern {0:?} must start with '/'")]
    Pattern(String),
}

#[derive(Clone, Debug)]
enum Seg {
    Literal(Box<str>),
    Any,
}

#[derive(Clone, Debug)]
struct Pattern {
    text: Box<str>,
    segs: Vec<Seg>,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let mut it = path.split('/').skip(1);
        for seg in &self.segs {
            match (seg, it.next()) {
                (_, None) => return false,
                (Seg::Any, Some(s)) => {
                    if s.is_empty() {
                        return false;
                    }
                }
                (Seg::Literal(l), Some(s)) => {
                    if **l != *s {
                        return false;
                    }
                }
            }
        }
        it.next().is_none()
    }
}

/// What became of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The route was written to the output buffer.
    Route,
    /// A drop rule matched.
    Dropped,
}

/// The longest route kept, in bytes; longer ones are cut at a segment boundary.
pub const MAX_ROUTE_BYTES: usize = 256;

/// A compiled [`RouteConfig`].
#[derive(Clone, Debug, Default)]
pub struct Quantizer {
    patterns: Vec<Pattern>,
    replace: Vec<(Regex, String)>,
    drop: Vec<Regex>,
    heuristic: bool,
}

fn compile(pattern: &str) -> Result<Regex, RouteError> {
    Regex::new(pattern).map_err(|e| RouteError::Regex {
        pattern: pattern.to_owned(),
        message: e.to_string(),
    })
}

impl Quantizer {
    /// Compiles the configuration.
    pub fn new(cfg: &RouteConfig) -> Result<Self, RouteError> {
        let mut patterns = Vec::with_capacity(cfg.patterns.len());
        for p in &cfg.patterns {
            if !p.starts_with('/') {
                return Err(RouteError::Pattern(p.clone()));
            }
            let segs = p[1..]
                .split('/')
                .map(|s| {
                    if s == "*" || (s.starts_with('{') && s.ends_with('}') && s.len() >= 2) {
                        Seg::Any
                    } else {
                        Seg::Literal(s.into())
                    }
                })
                .collect();
            patterns.push(Pattern {
                text: p.as_str().into(),
                segs,
            });
        }
        let replace = cfg
            .replace
            .iter()
            .map(|r| Ok((compile(&r.pattern)?, r.with.clone())))
            .collect::<Result<_, RouteError>>()?;
        let drop = cfg
            .drop
            .iter()
            .map(|d| compile(d))
            .collect::<Result<_, _>>()?;
        Ok(Quantizer {
            patterns,
            replace,
            drop,
            heuristic: !cfg.no_heuristic,
        })
    }

    /// The heuristic alone, no patterns or rules.
    pub fn heuristic() -> Self {
        Quantizer {
            heuristic: true,
            ..Quantizer::default()
        }
    }

    /// Writes the route of `path` into `out` (cleared first), unless a drop rule matches.
    pub fn route(&self, path: &str, out: &mut String) -> Outcome {
        let mut buf = RouteBuf::new();
        let outcome = self.route_into(path, &mut buf);
        out.clear();
        out.push_str(buf.as_str());
        outcome
    }

    /// [`Quantizer::route`] into a fixed buffer: what the StatKeeper calls on every
    /// transaction. With no drop rules, patterns or rewrites (the default) the query and
    /// fragment are cut in the same pass that splits the segments, instead of a `memchr` scan
    /// first.
    pub(crate) fn route_into(&self, path: &str, out: &mut RouteBuf) -> Outcome {
        out.len = 0;
        out.padded = false;
        if self.is_plain() && path.starts_with('/') {
            if path.len() > SHORT_PATH || !route_short(path.as_bytes(), self.heuristic, out) {
                out.len = 0;
                out.padded = false;
                self.segments(path.as_bytes(), true, out);
            }
            return Outcome::Route;
        }
        let path = strip_target(path);
        if self.drop.iter().any(|r| r.is_match(path)) {
            return Outcome::Dropped;
        }
        if let Some(p) = self.patterns.iter().find(|p| p.matches(path)) {
            out.push_bounded(&p.text);
            return Outcome::Route;
        }
        if self.replace.is_empty() {
            self.segments_or_bounded(path, out);
        } else {
            let mut owned = std::borrow::Cow::Borrowed(path);
            for (re, with) in &self.replace {
                if let std::borrow::Cow::Owned(s) = re.replace_all(&owned, with.as_str()) {
                    owned = std::borrow::Cow::Owned(s);
                }
            }
            self.segments_or_bounded(&owned, out);
        }
        Outcome::Route
    }

    /// No drop rules, patterns or rewrites (the default): the route follows from the path's
    /// segments alone.
    #[inline]
    fn is_plain(&self) -> bool {
        self.drop.is_empty() && self.patterns.is_empty() && self.replace.is_empty()
    }

    /// What the StatKeeper calls on every transaction: whether `path` is printable ASCII
    /// (the validation rule of [`crate::validate`]) and, if so, its route. For the common case
    /// (the default configuration, a path of at most [`SHORT_PATH`] bytes) the check is
    /// fused into the quantizer's pass over the bytes, which reads every byte anyway.
    #[inline]
    pub(crate) fn route_checked(&self, path: &str, out: &mut RouteBuf) -> Checked {
        if self.is_plain() && path.len() <= SHORT_PATH && path.starts_with('/') {
            out.len = 0;
            out.padded = false;
            return if route_short(path.as_bytes(), self.heuristic, out) {
                Checked::Route
            } else {
                Checked::NonPrintable
            };
        }
        if !is_printable(path) {
            return Checked::NonPrintable;
        }
        match self.route_into(path, out) {
            Outcome::Route => Checked::Route,
            Outcome::Dropped => Checked::Dropped,
        }
    }

    fn segments_or_bounded(&self, path: &str, out: &mut RouteBuf) {
        if !path.starts_with('/') {
            // `*` (OPTIONS) or something odd: keep as is, bounded.
            out.push_bounded(path);
            return;
        }
        self.segments(path.as_bytes(), false, out);
    }

    /// The segments of `b` (which starts with '/'), id-like ones as `*`; up to a '?' or '#'
    /// when `stop_at_query`.
    #[inline]
    fn segments(&self, b: &[u8], stop_at_query: bool, out: &mut RouteBuf) {
        let heuristic = self.heuristic;
        for_each_segment(b, stop_at_query, |start, end, digits| {
            if heuristic && is_id_counted(&b[start..end], digits) {
                out.push_piece(b"*", 0, 1)
            } else {
                out.push_piece(b, start, end)
            }
        });
    }
}

/// What [`Quantizer::route_checked`] made of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Printable; the route was written to the output buffer.
    Route,
    /// Printable; a drop rule matched.
    Dropped,
    /// A byte is not printable ASCII (`0x21..=0x7e`); nothing useful was written.
    NonPrintable,
}

/// Whether every byte of `path` is printable ASCII other than space (`0x21..=0x7e`).
#[inline]
pub(crate) fn is_printable(path: &str) -> bool {
    // `fold` rather than `all`: no early exit, so the loop is vectorized (valid paths, the
    // common case, are scanned to the end either way).
    path.bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x21) < 0x5e))
}

/// The longest path [`route_short`] takes: one bit per byte in a `u64`.
pub(crate) const SHORT_PATH: usize = 64;

/// What [`masks16`] finds in 16 bytes: one bit per byte (bit `i` for byte `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Masks {
    /// Set when any byte is not printable ASCII (`0x21..=0x7e`); when set, the other masks
    /// are unspecified.
    bad: bool,
    /// '/' bytes.
    slash: u32,
    /// '?' and '#' bytes.
    query: u32,
    /// ASCII digits.
    digit: u32,
    /// What a version is made of: digits, '.', 'v' and 'V'.
    version: u32,
}

/// The bytes of `lo` then `hi` (little-endian words) classified 16 at a time with SSE2, which
/// every x86_64 CPU has: a compare per class and a `movemask`, ~20 instructions for 16
/// bytes, where the same with 8-byte SWAR words took ~80.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn masks16(lo: u64, hi: u64) -> Masks {
    #[inline]
    #[target_feature(enable = "sse2")]
    fn sse2(lo: u64, hi: u64) -> Masks {
        use std::arch::x86_64::*;
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
        // Signed compares: bytes from 0x80 up are negative, so neither printable nor digits.
        let within = |lo: u8, hi: u8| {
            _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(lo as i8 - 1)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(hi as i8 + 1)),
            )
        };
        Masks {
            bad: _mm_movemask_epi8(within(0x21, 0x7e)) != 0xffff,
            slash: _mm_movemask_epi8(eq(b'/')) as u32,
            query: _mm_movemask_epi8(_mm_or_si128(eq(b'?'), eq(b'#'))) as u32,
            digit: _mm_movemask_epi8(within(b'0', b'9')) as u32,
            version: _mm_movemask_epi8(_mm_or_si128(
                within(b'0', b'9'),
                _mm_or_si128(
                    eq(b'.'),
                    _mm_cmpeq_epi8(
                        _mm_or_si128(v, _mm_set1_epi8(0x20)),
                        _mm_set1_epi8(b'v' as i8),
                    ),
                ),
            )) as u32,
        }
    }
    // SAFETY: `sse2` needs SSE2, which this build's target has (the `cfg` above).
    unsafe { sse2(lo, hi) }
}

/// [`masks16`] elsewhere: 8-byte SWAR words.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn masks16(lo: u64, hi: u64) -> Masks {
    masks16_swar(lo, hi)
}

/// [`masks16`] with 8-byte SWAR words (the portable version, and the reference the SSE2 one
/// is tested against).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn masks16_swar(lo: u64, hi: u64) -> Masks {
    let eight = |w: u64| {
        (
            bytes_unprintable(w) != 0,
            gather(bytes_equal(w, b'/')),
            gather(bytes_equal(w, b'?') | bytes_equal(w, b'#')),
            gather(bytes_digit(w)),
            gather(bytes_digit(w) | bytes_equal(w, b'.') | bytes_equal(w | splat(0x20), b'v')),
        )
    };
    let (b0, s0, q0, d0, v0) = eight(lo);
    let (b1, s1, q1, d1, v1) = eight(hi);
    Masks {
        bad: b0 | b1,
        slash: (s0 | s1 << 8) as u32,
        query: (q0 | q1 << 8) as u32,
        digit: (d0 | d1 << 8) as u32,
        version: (v0 | v1 << 8) as u32,
    }
}

/// The high bit of each byte set where a byte of `w` is not printable ASCII (`0x21..=0x7e`),
/// exact for whether any is: below the lowest such byte nothing borrows or carries, and that
/// byte has its high bit set, or gets it from `- 0x21` (below `0x21`) or `+ 1` (`0x7f`).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn bytes_unprintable(w: u64) -> u64 {
    (w.wrapping_sub(splat(0x21)) | w.wrapping_add(splat(1)) | w) & HIGH
}

/// One bit per byte (bit `i` for byte `i`) from a `bytes_*` mask: the multiply moves byte
/// `i`'s bit 0 to bit `56 + i` without two partial products meeting.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn gather(m: u64) -> u64 {
    (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// The low `n` bits set (`n <= 64`).
#[inline(always)]
fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The default quantizer's route of a path of at most [`SHORT_PATH`] bytes that starts with
/// '/', and the printable check, in one pass: each 8-byte word is checked and its '/', '?',
/// '#' and digit bytes gathered into one bit per byte of the path; then the segments are
/// walked on those bit masks (the next '/' is a `trailing_zeros`, whether a segment has
/// digits, one digit or only digits a mask test) and copied by whole words, with the '/'
/// before them, from a padded copy of the path. False when a byte is not printable. (Longer
/// paths take [`for_each_segment`], which needs no masks as wide as the path.)
#[inline]
fn route_short(b: &[u8], heuristic: bool, out: &mut RouteBuf) -> bool {
    let len = b.len();
    debug_assert!(len <= SHORT_PATH && b.first() == Some(&b'/'));
    // The path, then room for a 16-byte copy from any offset in it.
    let mut src = [0u8; SHORT_PATH + 16];
    let mut bad = false;
    let (mut slash, mut query, mut digit, mut version) = (0u64, 0u64, 0u64, 0u64);
    // Sixteen bytes at `at`.
    let mut scan = |at: usize, lo: u64, hi: u64| {
        src[at..at + 8].copy_from_slice(&lo.to_le_bytes());
        src[at + 8..at + 16].copy_from_slice(&hi.to_le_bytes());
        let m = masks16(lo, hi);
        bad |= m.bad;
        slash |= u64::from(m.slash) << at;
        query |= u64::from(m.query) << at;
        digit |= u64::from(m.digit) << at;
        version |= u64::from(m.version) << at;
    };
    if len >= 16 {
        let mut at = 0;
        while at + 16 < len {
            scan(at, word(b, at), word(b, at + 8));
            at += 16;
        }
        // The last sixteen bytes, overlapping the previous ones (equal bytes, equal bits).
        scan(len - 16, word(b, len - 16), word(b, len - 8));
    } else if len > 8 {
        // Bytes 8.. are the last eight shifted down, padded with `a` (printable, no
        // separator, no digit).
        let pad = (16 - len) * 8;
        let hi = word(b, len - 8) >> pad | splat(b'a') << (64 - pad);
        scan(0, word(b, 0), hi);
    } else {
        let mut w = [b'a'; 8];
        w[..len].copy_from_slice(b);
        scan(0, u64::from_le_bytes(w), splat(b'a'));
    }
    if bad {
        return false;
    }
    // The route ends at the first '?' or '#'.
    let cut = (query.trailing_zeros() as usize).min(len);
    let in_path = low_bits(cut);
    digit &= in_path;
    // Without a run of 20 bytes between '/'s (which a long word without digits may make an
    // id), only the segments with digits can be ids: the rest of the path is copied as is, in
    // 16-byte pieces, and only those segments are looked at.
    let mut run = !slash & in_path & !1;
    run &= run >> 1;
    run &= run >> 2;
    run &= run >> 4;
    run &= run >> 8;
    run &= run >> 4;
    if run == 0 || !heuristic {
        let mut n = 0;
        // Source bytes `done..` are still to copy; the output is `n` bytes.
        let mut done = 0;
        let copy = |n: usize, from: usize, to: usize, buf: &mut [u8]| {
            let mut i = 0;
            while from + i < to {
                buf[n + i..n + i + 16].copy_from_slice(&src[from + i..from + i + 16]);
                i += 16;
            }
        };
        let mut left = if heuristic { digit } else { 0 };
        while left != 0 {
            let p = left.trailing_zeros() as usize;
            // The segment around the digit at `p`.
            let start = 64 - (slash & low_bits(p)).leading_zeros() as usize;
            let after = slash & !low_bits(p) & in_path;
            let end = if after == 0 {
                cut
            } else {
                after.trailing_zeros() as usize
            };
            let seg = low_bits(end) & !low_bits(start);
            let d = digit & seg;
            left &= !seg;
            let several = d & d.wrapping_sub(1) != 0;
            let all = d == seg;
            // A version's bytes only, or `v` + digits (a pre-release `v1beta1`).
            let maybe_version = (version & seg == seg && !all) || b[start] | 0x20 == b'v';
            let id = if maybe_version || (!several && !all && end - start >= 8) {
                is_id_counted(&b[start..end], if several { 2 } else { 1 })
            } else {
                several || all
            };
            if id {
                copy(n, done, start, &mut out.buf);
                n += start - done;
                out.buf[n] = b'*';
                n += 1;
                done = end;
            }
        }
        copy(n, done, cut, &mut out.buf);
        n += cut - done;
        out.buf[n..n + SHORT_PATH].fill(0);
        out.len = n;
        out.padded = true;
        return true;
    }
    // Segment ends: the '/'s after the first byte, then the cut.
    let mut ends = slash & in_path & !1;
    let mut start = 1;
    let mut n = 0;
    loop {
        let end = if ends == 0 {
            cut
        } else {
            ends.trailing_zeros() as usize
        };
        // Bits `start..end` (`1 <= end <= 64`; an empty segment at 64 gets a wrong mask,
        // unused).
        let seg = (u64::MAX >> (64 - end)) & (u64::MAX << (start & 63));
        let d = digit & seg;
        let n_seg = end - start;
        // The rules of `is_id_counted` on the masks, without branches for the common
        // segments: only digits, an id; several digits and a byte that no version has, an
        // id; no digits and shorter than 20 bytes, a name. The others (a possible version,
        // one digit in a word of 8 bytes or more, a long run of letters) take the rules in
        // full.
        let several = d & d.wrapping_sub(1) != 0;
        let all = d == seg;
        // A version's bytes only, or `v` + digits (a pre-release `v1beta1`).
        let maybe_version = (version & seg == seg && !all) || (d != 0 && b[start] | 0x20 == b'v');
        let slow = (d != 0 && maybe_version)
            || (d != 0 && !several && !all && n_seg >= 8)
            || (d == 0 && n_seg >= 20);
        let id = heuristic
            && n_seg > 0
            && if slow {
                is_id_counted(
                    &b[start..end],
                    if several { 2 } else { 1 } * usize::from(d != 0),
                )
            } else {
                d != 0 && (several || all)
            };
        // The piece with the '/' before it (what lies past it is overwritten later or past
        // `len`), then `/*` over it for an id.
        let from = start - 1;
        let pn = end - from;
        out.buf[n..n + 16].copy_from_slice(&src[from..from + 16]);
        let mut i = 16;
        while i < pn {
            out.buf[n + i..n + i + 8].copy_from_slice(&src[from + i..from + i + 8]);
            i += 8;
        }
        let head = if id {
            *b"/*"
        } else {
            [src[from], src[from + 1]]
        };
        out.buf[n..n + 2].copy_from_slice(&head);
        n += if id { 2 } else { pn };
        if ends == 0 {
            break;
        }
        ends &= ends - 1;
        start = end + 1;
    }
    // Zero the rest of the first `SHORT_PATH` bytes (the copies above wrote at most 16
    // bytes past a piece's source end, so nothing past `SHORT_PATH + 16`).
    out.buf[n..n + SHORT_PATH].fill(0);
    out.len = n;
    out.padded = true;
    true
}

/// A route being built, in a fixed buffer: pieces are copied eight bytes at a time, with no
/// growth check and no `memcpy` call per segment (those were a tenth of the quantizer's
/// instructions when it wrote into a `String`).
#[derive(Clone)]
pub(crate) struct RouteBuf {
    len: usize,
    /// Whether `buf` is zero from `len` to [`SHORT_PATH`] (set by [`route_short`]).
    padded: bool,
    /// Room for the longest route, its `"/…"` mark, and an 8-byte copy past the end.
    buf: [u8; MAX_ROUTE_BYTES + 16],
}

impl std::fmt::Debug for RouteBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RouteBuf").field(&self.as_str()).finish()
    }
}

impl RouteBuf {
    pub(crate) fn new() -> Self {
        RouteBuf {
            len: 0,
            padded: false,
            buf: [0; MAX_ROUTE_BYTES + 16],
        }
    }

    /// The route's bytes: UTF-8, since they are pieces of a `&str` cut at ASCII bytes, plus
    /// ASCII and the whole `…`.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The route as [`SHORT_PATH`] bytes, zero-padded, when the short-path pass wrote it
    /// (no longer then): a fixed-size value that the keeper's route cache compares and
    /// hashes without a length-dependent loop.
    #[inline]
    pub(crate) fn short(&self) -> Option<[u64; SHORT_PATH / 8]> {
        self.padded
            .then(|| std::array::from_fn(|i| word(&self.buf, i * 8)))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Never fails (see `as_bytes`); the lossless fallback keeps this free of `unsafe`.
        std::str::from_utf8(self.as_bytes()).unwrap_or("/…")
    }

    /// Appends `/` and `src[start..end]` (cut at an ASCII byte or at the ends of a `str`), or
    /// `/…` and returns false when the route would grow past [`MAX_ROUTE_BYTES`].
    #[inline]
    fn push_piece(&mut self, src: &[u8], start: usize, end: usize) -> bool {
        let n = end - start;
        if self.len + 1 + n > MAX_ROUTE_BYTES {
            self.buf[self.len..self.len + 4].copy_from_slice("/…".as_bytes());
            self.len += 4;
            return false;
        }
        let at = self.len + 1;
        self.buf[self.len] = b'/';
        if n >= 8 {
            // Whole words from the start, then the piece's last eight bytes (overlapping the
            // previous word): every read stays inside the piece.
            let mut i = 0;
            while i + 8 < n {
                copy8(&mut self.buf, at + i, src, start + i);
                i += 8;
            }
            copy8(&mut self.buf, at + n - 8, src, end - 8);
        } else if start + 8 <= src.len() {
            // A short piece with eight readable bytes: copy them all; what lies past the
            // piece is overwritten later or past `len`.
            copy8(&mut self.buf, at, src, start);
        } else if end >= 8 && n > 0 {
            // A short piece near the end: the eight bytes that end it, shifted down.
            let w = word(src, end - 8) >> ((8 - n) * 8);
            self.buf[at..at + 8].copy_from_slice(&w.to_le_bytes());
        } else {
            self.buf[at..at + n].copy_from_slice(&src[start..end]);
        }
        self.len = at + n;
        true
    }

    /// Appends `s`, cut at [`MAX_ROUTE_BYTES`] on a character boundary.
    fn push_bounded(&mut self, s: &str) {
        let mut end = s.len().min(MAX_ROUTE_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        self.len = end;
    }
}

#[inline(always)]
fn copy8(dst: &mut [u8], at: usize, src: &[u8], from: usize) {
    dst[at..at + 8].copy_from_slice(&src[from..from + 8]);
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

const fn splat(c: u8) -> u64 {
    c as u64 * 0x0101_0101_0101_0101
}

/// The high bit of each byte of the result is set iff that byte of `w` is `c` (exact: no carry
/// crosses a byte).
#[inline]
fn bytes_equal(w: u64, c: u8) -> u64 {
    let x = w ^ splat(c);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The high bit of each byte of the result is set iff that byte of `w` is an ASCII digit.
#[inline]
fn bytes_digit(w: u64) -> u64 {
    let t = w & LOW7;
    (t + splat(0x80 - b'0')) & !(t + splat(0x80 - b'9' - 1)) & !w & HIGH
}

/// How many bytes of a `bytes_*` result are set (a multiply rather than `count_ones`, which
/// is a long bit-twiddling sequence on x86_64 without the `popcnt` feature).
#[inline]
fn bytes_count(m: u64) -> usize {
    ((m >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize
}

/// Calls `f(start, end, digits)` for every segment `b[start..end]` of a path that starts with
/// '/', with the number of ASCII digits in it, until `f` returns false; with `stop_at_query`,
/// the path ends at its first '?' or '#'. One pass over the bytes, eight at a time (SWAR: the
/// separators and the digits of a `u64` word found with a few arithmetic operations), instead
/// of `split` plus several scans per segment, or a branch per byte; the last partial word is
/// the path's last eight bytes shifted, not a byte loop. (An SSE2 version that built a bit
/// mask per byte class, 16 bytes at a time, measured slower on the bench's mix.)
#[inline]
fn for_each_segment(b: &[u8], stop_at_query: bool, mut f: impl FnMut(usize, usize, usize) -> bool) {
    let len = b.len();
    let mut start = 1;
    loop {
        let mut end = start;
        let mut digits = 0;
        // Whether the segment ended at a '/' (else at the path's end, or at '?' or '#').
        let more;
        loop {
            let (w, valid) = if end + 8 <= len {
                (word(b, end), 8)
            } else if end >= len {
                more = false;
                break;
            } else if len >= 8 {
                // The unread tail, in the low bytes; the high bytes are zero (no separator,
                // no digit).
                let rest = len - end;
                (word(b, len - 8) >> ((8 - rest) * 8), rest)
            } else {
                let w = b[end..]
                    .iter()
                    .rev()
                    .fold(0u64, |w, &c| w << 8 | u64::from(c));
                (w, len - end)
            };
            let mut stops = bytes_equal(w, b'/');
            if stop_at_query {
                stops |= bytes_equal(w, b'?') | bytes_equal(w, b'#');
            }
            let digit = bytes_digit(w);
            if stops == 0 {
                digits += bytes_count(digit);
                end += valid;
                if valid < 8 {
                    more = false;
                    break;
                }
                continue;
            }
            let before = stops.trailing_zeros() as usize / 8;
            digits += bytes_count(digit & ((1u64 << (before * 8)) - 1));
            end += before;
            more = b[end] == b'/';
            break;
        }
        if !f(start, end, digits) || !more {
            return;
        }
        start = end + 1;
    }
}

#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Cuts the query and fragment, and the scheme and authority of an absolute-form target.
fn strip_target(path: &str) -> &str {
    let mut p = path;
    for scheme in ["http://", "https://"] {
        if let Some(rest) = p.strip_prefix(scheme) {
            p = rest.find('/').map_or("/", |i| &rest[i..]);
            break;
        }
    }
    match memchr::memchr2(b'?', b'#', p.as_bytes()) {
        Some(i) => &p[..i],
        None => p,
    }
}

/// `v2`, `V10`, `v1.2`, `2.0`, `1.2.3`: at most three numeric parts of at most four digits;
/// and Kubernetes-style pre-release API versions, `v1beta1`, `v2alpha1`, `v1rc2`, `v3beta`.
fn is_version(b: &[u8]) -> bool {
    let (rest, prefixed) = match b.first() {
        Some(b'v' | b'V') => (&b[1..], true),
        _ => (b, false),
    };
    if rest.is_empty() {
        return false;
    }
    if prefixed {
        // `v` + 1-4 digits + `alpha` / `beta` / `rc` (any case) + at most 4 digits.
        let major = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let tail = &rest[major..];
        let word = tail.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        if (1..=4).contains(&major) && word > 0 {
            let (stage, num) = tail.split_at(word);
            return [&b"alpha"[..], b"beta", b"rc"]
                .iter()
                .any(|w| stage.eq_ignore_ascii_case(w))
                && num.len() <= 4
                && num.iter().all(u8::is_ascii_digit);
        }
    }
    let mut parts = 0;
    for part in rest.split(|&c| c == b'.') {
        parts += 1;
        if part.is_empty() || part.len() > 4 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    parts <= 3 && (prefixed || parts >= 2)
}

/// `8-4-4-4-12` hex digits (the plain rule; [`is_uuid_shape`] is what the quantizer runs).
#[cfg(test)]
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

// Byte classes for the one-pass segment scan.
const DIGIT: u8 = 1;
const HEX: u8 = 2;
/// ASCII alphanumeric, `-` or `_`.
const TOKEN: u8 = 4;
/// ASCII letter, `-` or `_` (what a random-letters token is made of).
const LETTERS: u8 = 8;
/// Digit, `.`, `v` or `V` (what a version is made of).
const VERSION: u8 = 16;
/// Hex digit or `-` (what a UUID is made of).
const UUID: u8 = 32;
/// Every class: what an empty segment has.
const ALL: u8 = DIGIT | HEX | TOKEN | LETTERS | VERSION | UUID;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = 0;
        if c.is_ascii_digit() {
            k |= DIGIT | VERSION;
        }
        if c.is_ascii_hexdigit() {
            k |= HEX | UUID;
        }
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            k |= TOKEN;
        }
        if c.is_ascii_alphabetic() || c == b'-' || c == b'_' {
            k |= LETTERS;
        }
        if c == b'.' || c == b'v' || c == b'V' {
            k |= VERSION;
        }
        if c == b'-' {
            k |= UUID;
        }
        t[i] = k;
        i += 1;
    }
    t
};

/// The classes all bytes of `b` share (a table lookup per byte).
#[inline]
fn classes(b: &[u8]) -> u8 {
    b.iter().fold(ALL, |all, &c| all & CLASS[c as usize])
}

/// The rules of [`is_id`] for a segment with `digits` ASCII digits. Most segments of real
/// paths are words without digits, which only the (rare, long) random-letters rule can make
/// ids: for them the first scan, which found the segment's end and counted digits, is the
/// only one. The others get one more scan for their byte classes, and the rules that need
/// another look at the bytes (versions, UUIDs, random letters) run only when the classes
/// allow them.
#[inline]
fn is_id_counted(b: &[u8], digits: usize) -> bool {
    if b.is_empty() {
        return false;
    }
    if digits == 0 {
        return b.len() >= 20 && classes(b) & LETTERS != 0 && is_random_letters(b);
    }
    let all = classes(b);
    // Every byte a version's, or `v` first (a pre-release version such as `v1beta1`).
    if (all & VERSION != 0 || b[0] | 0x20 == b'v') && is_version(b) {
        return false;
    }
    if digits == b.len()
        || (b.len() >= 8 && all & HEX != 0)
        || (b.len() == 36 && all & UUID != 0 && is_uuid_shape(b))
    {
        return true;
    }
    // A single digit in a word is a name (`oauth2`, `s3`, `html5`) unless the segment is a
    // long token (dotted RPC names such as `grpc.health.v1.Health` are names).
    digits >= 2 || (b.len() >= 16 && all & TOKEN != 0)
}

/// [`is_uuid`] for a segment of 36 bytes that are all hex digits or `-`: the dashes are where
/// a UUID has them and nowhere else (a branch-free count instead of a branch per byte).
#[inline]
fn is_uuid_shape(b: &[u8]) -> bool {
    debug_assert!(b.len() == 36);
    b[8] == b'-'
        && b[13] == b'-'
        && b[18] == b'-'
        && b[23] == b'-'
        && b.iter().map(|&c| usize::from(c == b'-')).sum::<usize>() == 4
}

/// Whether a path segment looks like an identifier rather than a name.
pub fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    is_id_counted(b, digits)
}

/// A long run of letters whose case flips as often as a random token's does (camelCase words
/// flip about once per word, a random base-62 token about every other character).
fn is_random_letters(b: &[u8]) -> bool {
    if b.len() < 20
        || !b
            .iter()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'_'))
    {
        return false;
    }
    let flips = b
        .windows(2)
        .filter(|w| {
            w[0].is_ascii_alphabetic()
                && w[1].is_ascii_alphabetic()
                && w[0].is_ascii_uppercase() != w[1].is_ascii_uppercase()
        })
        .count();
    flips * 10 >= b.len() * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(path: &str) -> String {
        let mut out = String::new();
        assert_eq!(Quantizer::heuristic().route(path, &mut out), Outcome::Route);
        out
    }

    #[test]
    fn heuristic_table() {
        let cases = [
            ("/", "/"),
            ("/users/42", "/users/*"),
            ("/users/42/orders/7", "/users/*/orders/*"),
            ("/api/v2/users/1234", "/api/v2/users/*"),
            // Kubernetes API groups keep their pre-release versions.
            (
                "/apis/batch/v1beta1/namespaces/default/jobs",
                "/apis/batch/v1beta1/namespaces/default/jobs",
            ),
            (
                "/apis/autoscaling/v2alpha1/horizontalpodautoscalers",
                "/apis/autoscaling/v2alpha1/horizontalpodautoscalers",
            ),
            ("/api/V1RC2/items/77", "/api/V1RC2/items/*"),
            (
                "/apis/apps/v1beta1x/deployments",
                "/apis/apps/*/deployments",
            ),
            ("/v12beta34/x", "/v12beta34/x"),
            ("/v1gamma1/x", "/*/x"),
            ("/api/v1.1/items", "/api/v1.1/items"),
            ("/api/2.0/items", "/api/2.0/items"),
            ("/api/hello.world", "/api/hello.world"),
            (
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Check",
            ),
            (
                "/twirp/example.haberdasher.Haberdasher/MakeHat",
                "/twirp/example.haberdasher.Haberdasher/MakeHat",
            ),
            ("/orders/3f2b8c1e-9d4a-4b6e-8f0a-1c2d3e4f5a6b", "/orders/*"),
            ("/blobs/deadbeef00112233", "/blobs/*"),
            ("/commits/9fceb02", "/commits/*"),
            ("/oauth2/token", "/oauth2/token"),
            ("/s3/buckets", "/s3/buckets"),
            ("/files/report-2024-01-31.pdf", "/files/*"),
            ("/static/app.js", "/static/app.js"),
            ("/static/main.a1b2c3d4.js", "/static/*"),
            ("/reset/aZkQpLmNoPqRsTuVwXyZaB", "/reset/*"),
            ("/reset/Xk9fP2qLm8NzR4tW7yBv", "/reset/*"),
            ("/api/getUserAccountSettings", "/api/getUserAccountSettings"),
            ("/users/42?expand=orders", "/users/*"),
            ("/page#frag", "/page"),
            ("http://example.com/users/42", "/users/*"),
            ("http://example.com", "/"),
            ("*", "*"),
            ("/a//b/", "/a//b/"),
            ("/ip/192.168.1.1", "/ip/*"),
            ("/search/hello%20world", "/search/*"),
            ("/facade/feed", "/facade/feed"),
        ];
        for (path, want) in cases {
            assert_eq!(q(path), want, "path {path}");
        }
    }

    #[test]
    fn patterns_win_and_rules_apply() {
        let cfg = RouteConfig {
            patterns: vec!["/users/{id}/orders".into(), "/shop/*/cart".into()],
            replace: vec![ReplaceRule {
                pattern: "^/legacy/[^/]+".into(),
                with: "/legacy/{x}".into(),
            }],
            drop: vec!["^/health".into()],
            no_heuristic: false,
        };
        let qz = Quantizer::new(&cfg).unwrap();
        let mut out = String::new();
        assert_eq!(qz.route("/users/alice/orders", &mut out), Outcome::Route);
        assert_eq!(out, "/users/{id}/orders");
        qz.route("/shop/berlin/cart?x=1", &mut out);
        assert_eq!(out, "/shop/*/cart");
        qz.route("/users/alice/orders/5", &mut out);
        assert_eq!(out, "/users/alice/orders/*");
        qz.route("/legacy/abc123xyz/page7", &mut out);
        assert_eq!(out, "/legacy/{x}/page7");
        assert_eq!(qz.route("/healthz", &mut out), Outcome::Dropped);
    }

    #[test]
    fn bad_config_is_an_error() {
        let cfg = RouteConfig {
            drop: vec!["(".into()],
            ..RouteConfig::default()
        };
        assert!(matches!(
            Quantizer::new(&cfg),
            Err(RouteError::Regex { .. })
        ));
        let cfg = RouteConfig {
            patterns: vec!["users/{id}".into()],
            ..RouteConfig::default()
        };
        assert!(matches!(Quantizer::new(&cfg), Err(RouteError::Pattern(_))));
    }

    /// The id rules written the plain way (several scans per segment), as the one-pass
    /// classifier was first written; the fast one must agree with it on every segment.
    fn is_id_reference(seg: &str) -> bool {
        let b = seg.as_bytes();
        if b.is_empty() {
            return false;
        }
        let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
        let hex = b.iter().all(u8::is_ascii_hexdigit);
        let token = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if digits == 0 {
            return is_random_letters(b);
        }
        if is_version(b) {
            return false;
        }
        if digits == b.len() || (b.len() >= 8 && hex) || is_uuid(b) {
            return true;
        }
        digits >= 2 || (b.len() >= 16 && token)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn one_pass_classifier_agrees_with_reference(
            seg in "[0-9a-fvVxyzXYZ._%-]{0,40}",
        ) {
            proptest::prop_assert_eq!(is_id(&seg), is_id_reference(&seg), "segment {}", seg);
        }

        /// Against the previous quantizer's way (split, then a `String` with the length
        /// check per piece), on paths long enough to be cut at [`MAX_ROUTE_BYTES`] (up to 40
        /// segments of up to 24 bytes), with a query after them now and then.
        #[test]
        fn one_pass_route_agrees_with_split(
            segs in proptest::collection::vec("[0-9a-fvVkK._-]{0,24}", 0..40),
            query in proptest::option::of("[?#][0-9a-z/=&?#]{0,12}"),
        ) {
            let path = format!("/{}", segs.join("/"));
            let mut want = String::new();
            for s in path[1..].split('/') {
                let piece = if is_id_reference(s) { "*" } else { s };
                if want.len() + 1 + piece.len() > MAX_ROUTE_BYTES {
                    want.push_str("/…");
                    break;
                }
                want.push('/');
                want.push_str(piece);
            }
            let full = format!("{path}{}", query.unwrap_or_default());
            proptest::prop_assert_eq!(q(&full), want, "path {}", full);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn word_at_a_time_split_agrees_with_bytes(path in "/(\\PC|[/0-9a-f.-]){0,90}") {
            let b = path.as_bytes();
            let mut got = Vec::new();
            for_each_segment(b, false, |s, e, d| {
                got.push((s, e, d));
                true
            });
            let mut want = Vec::new();
            let mut start = 1;
            for seg in path[1..].split('/') {
                let end = start + seg.len();
                want.push((start, end, seg.bytes().filter(u8::is_ascii_digit).count()));
                start = end + 1;
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// The default quantizer's one pass (segments split and the query cut together,
        /// pieces copied by words) against the general path (`strip_target`, then the
        /// segments), which a rewrite rule that never matches forces.
        #[test]
        fn fused_pass_agrees_with_strip_then_split(
            path in "/(\\PC|[/0-9a-fvV?#._-]|/[0-9]{1,12}|/deadbeef[0-9a-f]{0,30}){0,70}",
        ) {
            let general = Quantizer::new(&RouteConfig {
                replace: vec![ReplaceRule { pattern: "\\A\\z".into(), with: "x".into() }],
                ..RouteConfig::default()
            })
            .unwrap();
            let mut want = String::new();
            general.route(&path, &mut want);
            proptest::prop_assert_eq!(q(&path), want, "path {}", path);
        }
    }

    #[test]
    fn fused_pass_edge_cases() {
        let general = Quantizer::new(&RouteConfig {
            replace: vec![ReplaceRule {
                pattern: "\\A\\z".into(),
                with: "x".into(),
            }],
            ..RouteConfig::default()
        })
        .unwrap();
        let long = format!("/{}", "abcdefg/".repeat(40));
        let cases = [
            "/",
            "/?",
            "/#",
            "/a",
            "/ab?c/d",
            "/abcdefg",
            "/abcdefgh",
            "/abcdefghi",
            "/abcdefgh/",
            "/a/b/c/d/e/f/g/h",
            "/x?a/b",
            "/users/42#x/1",
            "/1234567?",
            "/12345678",
            "/v1/users/12345678901234567890?q=1",
            "//",
            "/a//b/",
            long.as_str(),
        ];
        for path in cases {
            let mut want = String::new();
            general.route(path, &mut want);
            assert_eq!(q(path), want, "path {path}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// The SSE2 classifier against the SWAR one (the portable build's), on any bytes:
        /// the same verdict on printability and, for printable ones, the same masks.
        #[test]
        fn masks16_agree_with_swar(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::sample::select(b"/?#0123456789 !~\x7f:.".to_vec()),
                ],
                16,
            ),
        ) {
            let lo = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            let hi = u64::from_le_bytes(bytes[8..].try_into().unwrap());
            let (fast, swar) = (masks16(lo, hi), masks16_swar(lo, hi));
            let bad = !bytes.iter().all(|&c| (0x21..=0x7e).contains(&c));
            proptest::prop_assert_eq!(fast.bad, bad);
            proptest::prop_assert_eq!(swar.bad, bad);
            if !bad {
                proptest::prop_assert_eq!(fast, swar);
                let bits = |f: &dyn Fn(u8) -> bool| {
                    bytes.iter().enumerate().map(|(i, &c)| u32::from(f(c)) << i).sum::<u32>()
                };
                proptest::prop_assert_eq!(fast.slash, bits(&|c| c == b'/'));
                proptest::prop_assert_eq!(fast.query, bits(&|c| c == b'?' || c == b'#'));
                proptest::prop_assert_eq!(fast.digit, bits(&|c| c.is_ascii_digit()));
            }
        }

        /// The keeper's fused check: non-printable exactly when `is_printable` says so, and
        /// the route as `route` gives it otherwise, on paths of every length around the
        /// short-path limit, with controls, spaces, DEL and non-ASCII now and then.
        #[test]
        fn fused_printable_check_agrees(
            path in "/(\\PC|[/0-9a-f?#]|[ \x00-\x20\x7f]|é){0,80}",
        ) {
            let qz = Quantizer::heuristic();
            let mut buf = RouteBuf::new();
            let got = qz.route_checked(&path, &mut buf);
            if is_printable(&path) {
                proptest::prop_assert_eq!(got, Checked::Route);
                proptest::prop_assert_eq!(buf.as_str(), q(&path));
            } else {
                proptest::prop_assert_eq!(got, Checked::NonPrintable);
            }
        }
    }

    #[test]
    fn no_heuristic_keeps_the_path_short_or_long() {
        let qz = Quantizer::new(&RouteConfig {
            no_heuristic: true,
            ..RouteConfig::default()
        })
        .unwrap();
        let long = format!("/users/42/{}", "x".repeat(80));
        for (path, want) in [
            ("/users/42?x=1", "/users/42"),
            (
                "/a/3f2b8c1e-9d4a-4b6e-8f0a-1c2d3e4f5a6b#f",
                "/a/3f2b8c1e-9d4a-4b6e-8f0a-1c2d3e4f5a6b",
            ),
            (long.as_str(), long.as_str()),
        ] {
            let mut out = String::new();
            qz.route(path, &mut out);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn fused_printable_check_each_byte() {
        // Every byte value at every position of a short path and a long one.
        let qz = Quantizer::heuristic();
        for base in ["/users/12345/orders/678/items?q=1#x", &"/abcdefg".repeat(8)] {
            for at in 1..base.len() {
                for c in 0..=0x7fu8 {
                    let mut p = base.as_bytes().to_vec();
                    p[at] = c;
                    let path = String::from_utf8(p).unwrap();
                    let mut buf = RouteBuf::new();
                    let want = if (0x21..=0x7e).contains(&c) {
                        Checked::Route
                    } else {
                        Checked::NonPrintable
                    };
                    assert_eq!(qz.route_checked(&path, &mut buf), want, "{path:?}");
                }
            }
        }
    }

    #[test]
    fn classifier_edge_cases() {
        for seg in [
            "3f2b8c1e-9d4a-4b6e-8f0a-1c2d3e4f5a6b",
            "3f2b8c1e-9d4a-4b6e-8f0a-1c2d3e4f5a6",
            "3f2b8c1e99d4a-4b6e-8f0a-1c2d3e4f5a6b",
            "v1.2.3",
            "v1.2.3.4",
            "v1beta1",
            "v2alpha1",
            "v1rc",
            "v1beta12345",
            "vbeta1",
            "V10",
            "12345",
            "1.2",
            "aZkQpLmNoPqRsTuVwXyZaB",
            "getUserAccountSettings",
            "abcdefghij_klmnopqrstu",
            "deadbeef",
            "deadbee",
            "a1b2",
            "abcdefghijklmnop1",
        ] {
            assert_eq!(is_id(seg), is_id_reference(seg), "{seg}");
        }
    }

    #[test]
    fn routes_are_bounded() {
        let long = "/seg".repeat(200);
        let r = q(&long);
        assert!(r.len() <= MAX_ROUTE_BYTES + "/…".len());
        assert!(r.ends_with("/…"));
        let odd = "é".repeat(400);
        assert!(q(&odd).len() <= MAX_ROUTE_BYTES);
    }
}
