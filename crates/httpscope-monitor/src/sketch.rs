//! A DDSketch of latencies in nanoseconds, at 1% relative accuracy.
//!
//! Why our own and not the `sketches-ddsketch` crate: that crate allocates its bin store for
//! every sketch, including the many endpoints that see a single request per interval, and it
//! does not let callers walk the bins, which the Prometheus and OTLP exporters need to turn a
//! sketch into histogram buckets. This one keeps the first sample inline (no allocation until
//! a second sample arrives), stores bins densely (`u32` per bin, from the lowest to the highest
//! key seen), caps the number of bins by folding the lowest ones together (as DDSketch's
//! collapsing store does), and exposes bucket counts.
//!
//! The mapping is DDSketch's logarithmic one: a value `v` goes to bin `ceil(ln v / ln γ)` with
//! `γ = (1 + α) / (1 - α)`, `α = 0.01`, and a bin is reported by the value `2γ^k / (γ + 1)`, which
//! is within `α` of every value in it.

/// The relative accuracy of quantiles.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// The most bins one sketch keeps; with `α = 1%` this spans 1 ns to over 10^17 ns, so folding
/// only happens for absurd inputs.
pub const MAX_BINS: usize = 2048;

const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

#[inline]
fn inv_ln_gamma() -> f64 {
    // A `const` cannot call `ln`; the compiler folds this anyway.
    1.0 / GAMMA.ln()
}

/// The least value of each bin: `lower_bounds()[k]` is the smallest `ns >= 1` whose
/// [`key_of`] is at least `k` (about 2,200 entries, 18 KiB, computed once by binary search).
fn lower_bounds() -> &'static [u64] {
    static BOUNDS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        (0..=key_of(u64::MAX))
            .map(|k| {
                let (mut lo, mut hi) = (1u64, u64::MAX);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if key_of(mid) >= k {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                lo
            })
            .collect()
    })
}

/// Sub-buckets per power of two in [`start_bins`]: `1/64` of an octave is narrower than a bin
/// (`log2(1 + 1/64) = 0.022 < log2(γ) = 0.029`), so each holds at most one bin bound.
const SUB_BITS: u32 = 6;

/// The sub-bucket of `v >= 1`: its power of two and the next [`SUB_BITS`] bits below the top
/// one (integer operations only).
#[inline]
fn sub_bucket(v: u64) -> usize {
    let exp = 63 - v.leading_zeros();
    // The top `SUB_BITS + 1` bits: `2^SUB_BITS..2^(SUB_BITS + 1)`.
    let top = ((u128::from(v) << SUB_BITS) >> exp) as usize;
    ((exp as usize) << SUB_BITS) + top - (1 << SUB_BITS)
}

/// The bin ([`key_of`]) of the least integer in each [`sub_bucket`] (0 for the sub-buckets
/// of small powers of two that hold no integer), 8 KiB, computed once.
fn start_bins() -> &'static [u16] {
    static START: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    START.get_or_init(|| {
        let mut t = vec![0u16; 64 << SUB_BITS];
        for exp in 0..64u32 {
            for sub in 0..1u64 << SUB_BITS {
                // The least integer whose top bits are `1, sub`.
                let v = if exp >= SUB_BITS {
                    ((1 << SUB_BITS) | sub) << (exp - SUB_BITS)
                } else {
                    // Only sub-buckets holding an integer matter.
                    let v = ((1 << SUB_BITS) | sub).div_ceil(1 << (SUB_BITS - exp));
                    if sub_bucket(v) != ((exp as usize) << SUB_BITS) + sub as usize {
                        continue;
                    }
                    v
                };
                t[sub_bucket(v)] = key_of(v) as u16;
            }
        }
        t
    })
}

/// [`key_of`], the same bin for every value, without a logarithm call: a table gives the bin
/// of the least value of the value's sub-bucket (a 64th of its power of two, found with
/// integer operations), and the table of bin bounds says whether the value is past the one
/// bound that sub-bucket can hold. (`ln` and `ceil`, a libm call without SSE4.1, were about 6%
/// of the StatKeeper's time; a quadratic estimate of `log2` from the float's bits then
/// corrected both ways, ~65 instructions, came next.)
#[inline]
pub(crate) fn bin_key(ns: u64) -> i32 {
    let v = ns.max(1);
    let bounds = lower_bounds();
    let mut k = usize::from(start_bins()[sub_bucket(v)]);
    // At most once (see `SUB_BITS`); a loop all the same, which the tests hold to `key_of`.
    while k + 1 < bounds.len() && v >= bounds[k + 1] {
        k += 1;
    }
    k as i32
}

/// The bin of a value (values below 1 ns are clamped to 1 ns, bin 0).
#[inline]
fn key_of(ns: u64) -> i32 {
    let v = ns.max(1) as f64;
    (v.ln() * inv_ln_gamma()).ceil() as i32
}

/// The value a bin stands for: within [`RELATIVE_ACCURACY`] of every value in the bin.
#[inline]
fn value_of(key: i32) -> f64 {
    2.0 * GAMMA.powi(key) / (GAMMA + 1.0)
}

/// The bin counts, dense from the lowest to the highest key seen. Counts start as `u16` (half
/// the memory and cache lines of `u32`: the bin array is the one cache miss per transaction
/// that the StatKeeper cannot avoid) and the whole store is widened to `u32` the first time a
/// bin would overflow.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Store {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

/// Grows `v` so that index `idx` exists, with a little slack (a quarter, at least 8 bins)
/// rather than `Vec`'s doubling: ranges grow a few times per sketch, and memory per key is
/// what bounds the keeper.
#[inline]
fn grow_to<T: Copy + Default>(v: &mut Vec<T>, idx: usize) {
    if idx >= v.capacity() {
        let want = (idx + 1 + (idx + 1) / 4).clamp(8, MAX_BINS);
        v.reserve_exact(want.max(idx + 1) - v.len());
    }
    v.resize(idx + 1, T::default());
}

/// Puts `grow` zero bins in front of `v`.
fn grow_front<T: Copy + Default>(v: &mut Vec<T>, grow: usize) {
    let len = v.len();
    if len + grow > v.capacity() {
        let want = (len + grow + (len + grow) / 4).min(MAX_BINS);
        v.reserve_exact(want.max(len + grow) - len);
    }
    v.splice(0..0, std::iter::repeat_n(T::default(), grow));
}

trait Count: Copy + Default + Into<u64> {
    /// `self + n`, `None` on overflow.
    fn checked_add_u64(self, n: u64) -> Option<Self>;
}

impl Count for u16 {
    #[inline]
    fn checked_add_u64(self, n: u64) -> Option<Self> {
        u16::try_from(n).ok().and_then(|n| self.checked_add(n))
    }
}

impl Count for u32 {
    #[inline]
    fn checked_add_u64(self, n: u64) -> Option<Self> {
        Some(self.saturating_add(n.min(u32::MAX as u64) as u32))
    }
}

/// Adds `n` at `key` to the dense counts `v` whose first key is `*offset`; `Err(())` when a
/// `u16` bin would overflow, with `n` not added (the counts may have been folded, which keeps
/// their sum).
#[inline]
fn add_to<T: Count>(v: &mut Vec<T>, offset: &mut i32, key: i32, n: u64) -> Result<(), ()> {
    if v.is_empty() {
        *offset = key;
        v.reserve_exact(8);
        v.push(T::checked_add_u64(T::default(), n).ok_or(())?);
        return Ok(());
    }
    if key < *offset {
        let grow = (*offset - key) as usize;
        if v.len() + grow > MAX_BINS {
            // The new value is far below everything else: fold it into the lowest bin.
            v[0] = v[0].checked_add_u64(n).ok_or(())?;
            return Ok(());
        }
        let first = T::checked_add_u64(T::default(), n).ok_or(())?;
        grow_front(v, grow);
        *offset = key;
        v[0] = first;
        return Ok(());
    }
    let idx = (key - *offset) as usize;
    if let Some(c) = v.get_mut(idx) {
        *c = c.checked_add_u64(n).ok_or(())?;
        return Ok(());
    }
    if idx < MAX_BINS {
        let c = T::checked_add_u64(T::default(), n).ok_or(())?;
        grow_to(v, idx);
        v[idx] = c;
        return Ok(());
    }
    // Fold the lowest bins together so that `key` fits.
    let fold = (idx + 1 - MAX_BINS).min(v.len());
    let folded: u64 = v[..fold].iter().map(|&c| c.into()).sum::<u64>();
    if fold == v.len() {
        let c = T::checked_add_u64(T::default(), folded + n).ok_or(())?;
        v.clear();
        *offset = key;
        v.push(c);
        return Ok(());
    }
    let low = v[fold].checked_add_u64(folded).ok_or(())?;
    v.drain(..fold);
    *offset += fold as i32;
    v[0] = low;
    let idx = (key - *offset) as usize;
    grow_to(v, idx);
    v[idx] = v[idx].checked_add_u64(n).ok_or(())?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Bins {
    /// The key of the first count.
    offset: i32,
    store: Store,
}

impl Default for Bins {
    fn default() -> Self {
        Bins {
            offset: 0,
            store: Store::Narrow(Vec::new()),
        }
    }
}

impl Bins {
    #[inline]
    fn add(&mut self, key: i32, n: u64) {
        if let Store::Narrow(v) = &mut self.store {
            if add_to(v, &mut self.offset, key, n).is_ok() {
                return;
            }
            // A bin would overflow: widen every count (once per sketch at most).
            let wide = v.iter().map(|&c| u32::from(c)).collect();
            self.store = Store::Wide(wide);
        }
        if let Store::Wide(v) = &mut self.store {
            let _ = add_to(v, &mut self.offset, key, n);
        }
    }

    fn is_empty(&self) -> bool {
        match &self.store {
            Store::Narrow(v) => v.is_empty(),
            Store::Wide(v) => v.is_empty(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match &self.store {
            Store::Narrow(v) => v.len(),
            Store::Wide(v) => v.len(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match &self.store {
            Store::Narrow(v) => v.capacity() * 2,
            Store::Wide(v) => v.capacity() * 4,
        }
    }

    fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let (narrow, wide): (&[u16], &[u32]) = match &self.store {
            Store::Narrow(v) => (v, &[]),
            Store::Wide(v) => (&[], v),
        };
        let offset = self.offset;
        narrow
            .iter()
            .map(|&c| u64::from(c))
            .chain(wide.iter().map(|&c| u64::from(c)))
            .enumerate()
            .filter(|&(_, c)| c > 0)
            .map(move |(i, c)| (offset + i as i32, c))
    }
}

/// Latency distribution of one endpoint: count, sum, min, max and a DDSketch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sketch {
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    /// Empty (no allocation) while at most one sample was added (it is `min_ns == max_ns`).
    /// Kept inline rather than boxed, so that reaching a bin is one pointer away from the
    /// keeper's table entry.
    bins: Bins,
}

impl Sketch {
    /// An empty sketch; costs no allocation.
    pub const fn new() -> Self {
        Sketch {
            count: 0,
            sum_ns: 0,
            min_ns: 0,
            max_ns: 0,
            bins: Bins {
                offset: 0,
                store: Store::Narrow(Vec::new()),
            },
        }
    }

    /// Adds one latency in nanoseconds.
    #[inline]
    pub fn add(&mut self, ns: u64) {
        self.add_binned(ns, bin_key(ns));
    }

    /// [`Sketch::add`] with the value's bin computed by the caller ([`bin_key`]).
    #[inline]
    pub(crate) fn add_binned(&mut self, ns: u64, bin: i32) {
        debug_assert_eq!(bin, key_of(ns));
        if self.count == 0 {
            self.count = 1;
            self.sum_ns = ns as u128;
            self.min_ns = ns;
            self.max_ns = ns;
            return;
        }
        if self.bins.is_empty() {
            // The first sample was kept inline; it now moves into the bins.
            self.bins.add(bin_key(self.min_ns), self.count);
        }
        self.bins.add(bin, 1);
        self.count += 1;
        self.sum_ns += ns as u128;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The sketch of `count` samples whose sum, least and greatest are given and whose bins
    /// from key `offset` up are `bins` (empty: one sample, `min_ns`); what the StatKeeper's
    /// compact entries become in a snapshot. The result is the sketch that adding the same
    /// samples one by one makes.
    pub(crate) fn from_parts(
        count: u64,
        sum_ns: u128,
        min_ns: u64,
        max_ns: u64,
        offset: i32,
        bins: &[u16],
    ) -> Sketch {
        debug_assert!(bins.len() <= MAX_BINS);
        debug_assert!(bins.is_empty() || bins.iter().map(|&c| u64::from(c)).sum::<u64>() == count);
        Sketch {
            count,
            sum_ns,
            min_ns,
            max_ns,
            bins: Bins {
                offset: if bins.is_empty() { 0 } else { offset },
                store: Store::Narrow(bins.to_vec()),
            },
        }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all samples, in nanoseconds.
    pub fn sum_ns(&self) -> u128 {
        self.sum_ns
    }

    /// Smallest sample (exact), `None` when empty.
    pub fn min_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min_ns)
    }

    /// Largest sample (exact), `None` when empty.
    pub fn max_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_ns)
    }

    /// Whether the sketch has allocated its bins (more than one sample).
    pub fn is_allocated(&self) -> bool {
        !self.bins.is_empty()
    }

    /// Heap bytes held by this sketch.
    pub fn heap_bytes(&self) -> usize {
        self.bins.heap_bytes()
    }

    /// The `q`-quantile (`0.0..=1.0`) in nanoseconds, within 1% of the true value; `None` when
    /// empty. The true value is the nearest-rank one (as HdrHistogram reports percentiles):
    /// the smallest sample that at least a fraction `q` of the samples do not exceed, so the
    /// p99 of a few samples is their maximum, not the second largest.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        if self.bins.is_empty() {
            return Some(self.min_ns as f64);
        }
        let bins = &self.bins;
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        if q == 0.0 {
            return Some(self.min_ns as f64);
        }
        if q == 1.0 {
            return Some(self.max_ns as f64);
        }
        // 0-based rank of the nearest-rank sample.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count) - 1;
        let mut seen = 0u64;
        let mut last = bins.offset;
        for (key, c) in bins.iter() {
            seen += c;
            last = key;
            if seen > rank {
                break;
            }
        }
        Some(value_of(last).clamp(self.min_ns as f64, self.max_ns as f64))
    }

    /// Adds every sample of `other` into `self`.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        if self.bins.is_empty() {
            self.bins.add(bin_key(self.min_ns), self.count);
        }
        if other.bins.is_empty() {
            self.bins.add(bin_key(other.min_ns), other.count);
        } else {
            for (k, c) in other.bins.iter() {
                self.bins.add(k, c);
            }
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// How many samples fall in each bucket of a histogram with the given upper bounds
    /// (nanoseconds, ascending): `bounds.len() + 1` counts, the last one for `+Inf`. A bin is
    /// placed by the value it stands for, so a sample may land one bucket off when it is
    /// within 1% of a bound.
    pub fn bucket_counts(&self, bounds_ns: &[f64]) -> Vec<u64> {
        let mut out = vec![0u64; bounds_ns.len() + 1];
        if self.count == 0 {
            return out;
        }
        let place = |v: f64| bounds_ns.partition_point(|&b| b < v);
        if self.bins.is_empty() {
            out[place(self.min_ns as f64)] += self.count;
        } else {
            for (k, c) in self.bins.iter() {
                let v = value_of(k).clamp(self.min_ns as f64, self.max_ns as f64);
                out[place(v)] += c;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_bin_key_is_the_logarithms_bin() {
        let bounds = lower_bounds();
        assert_eq!(bounds[0], 1);
        for (k, &b) in bounds.iter().enumerate() {
            // Small keys hold no integer (bins 1..=34 lie between 1 ns and 2 ns).
            assert!(key_of(b) >= k as i32, "bound of {k}");
            assert!(b == 1 || key_of(b - 1) < k as i32, "bound of {k}");
            for v in [b.saturating_sub(1), b, b.saturating_add(1)] {
                assert_eq!(bin_key(v), key_of(v), "{v}");
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Log-uniform over the whole range.
            let v = x >> (x % 64);
            assert_eq!(bin_key(v), key_of(v), "{v}");
        }
        for v in [0, 1, 2, 3, u64::MAX, u64::MAX - 1, 1 << 53, (1 << 53) + 1] {
            assert_eq!(bin_key(v), key_of(v), "{v}");
        }
        // Every sub-bucket's first and last values, and their neighbours.
        for exp in 0..64u32 {
            for sub in 0..1u64 << SUB_BITS {
                let first = ((1u128 << SUB_BITS | u128::from(sub)) << exp) >> SUB_BITS;
                let last = (((1u128 << SUB_BITS | u128::from(sub)) + 1) << exp) >> SUB_BITS;
                for v in [first, first + 1, last.saturating_sub(1), last] {
                    let v = v.min(u128::from(u64::MAX)) as u64;
                    assert_eq!(bin_key(v), key_of(v), "{v}");
                }
            }
        }
    }

    #[test]
    fn first_sample_does_not_allocate() {
        let mut s = Sketch::new();
        s.add(1_500_000);
        assert!(!s.is_allocated());
        assert_eq!(s.heap_bytes(), 0);
        assert_eq!(s.quantile_ns(0.5), Some(1_500_000.0));
        assert_eq!(s.quantile_ns(0.99), Some(1_500_000.0));
        s.add(2_000_000);
        assert!(s.is_allocated());
        assert_eq!(s.count(), 2);
        assert_eq!(s.min_ns(), Some(1_500_000));
        assert_eq!(s.max_ns(), Some(2_000_000));
    }

    #[test]
    fn quantiles_within_one_percent() {
        let mut s = Sketch::new();
        let mut values: Vec<u64> = (1..=10_000u64).map(|i| i * i * 37 + 1000).collect();
        for &v in &values {
            s.add(v);
        }
        values.sort_unstable();
        for q in [0.01, 0.1, 0.5, 0.9, 0.99, 0.999] {
            let exact = values[((q * values.len() as f64).ceil() as usize).max(1) - 1] as f64;
            let got = s.quantile_ns(q).unwrap();
            assert!(
                (got - exact).abs() <= exact * RELATIVE_ACCURACY,
                "q={q} exact={exact} got={got}"
            );
        }
        assert_eq!(s.quantile_ns(0.0), Some(values[0] as f64));
        assert_eq!(s.quantile_ns(1.0), Some(*values.last().unwrap() as f64));
    }

    #[test]
    fn percentiles_of_few_samples_are_nearest_rank() {
        let mut s = Sketch::new();
        for v in [79_000u64, 149_000, 136_000] {
            s.add(v);
        }
        let near = |got: f64, want: f64| (got - want).abs() <= want * RELATIVE_ACCURACY;
        assert!(near(s.quantile_ns(0.5).unwrap(), 136_000.0));
        assert!(near(s.quantile_ns(0.9).unwrap(), 149_000.0));
        assert!(near(s.quantile_ns(0.99).unwrap(), 149_000.0));
        assert!(near(s.quantile_ns(0.33).unwrap(), 79_000.0));
        assert!(near(s.quantile_ns(0.34).unwrap(), 136_000.0));
    }

    #[test]
    fn merge_equals_adding_everything() {
        let mut a = Sketch::new();
        let mut b = Sketch::new();
        let mut all = Sketch::new();
        for i in 1..500u64 {
            let v = i * 7919 % 100_000 + 1;
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        let mut one = Sketch::new();
        one.add(42);
        a.merge(&b);
        a.merge(&one);
        all.add(42);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.sum_ns(), all.sum_ns());
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(a.quantile_ns(q), all.quantile_ns(q));
        }
    }

    #[test]
    fn extreme_values_stay_bounded() {
        let mut s = Sketch::new();
        s.add(0);
        s.add(1);
        s.add(u64::MAX);
        s.add(u64::MAX / 3);
        for i in 0..64 {
            s.add(1u64 << i);
        }
        assert_eq!(s.count(), 68);
        let bins = &s.bins;
        assert!(bins.len() <= MAX_BINS);
        assert_eq!(bins.iter().map(|(_, c)| c).sum::<u64>(), 68);
        assert!(s.quantile_ns(0.5).unwrap() > 0.0);
    }

    #[test]
    fn narrow_counts_widen_on_overflow() {
        let mut s = Sketch::new();
        for _ in 0..70_000 {
            s.add(1_000_000);
        }
        s.add(10);
        s.add(50_000_000);
        assert!(matches!(s.bins.store, Store::Wide(_)));
        assert_eq!(s.bins.iter().map(|(_, c)| c).sum::<u64>(), 70_002);
        let p50 = s.quantile_ns(0.5).unwrap();
        assert!((p50 - 1e6).abs() <= 1e6 * RELATIVE_ACCURACY, "{p50}");
        // Merging a big narrow sketch into another widens it too, and loses nothing.
        let mut a = Sketch::new();
        let mut b = Sketch::new();
        for i in 0..40_000u64 {
            a.add(2_000 + i % 3);
            b.add(2_000 + i % 3);
        }
        assert!(matches!(a.bins.store, Store::Narrow(_)));
        a.merge(&b);
        assert!(matches!(a.bins.store, Store::Wide(_)));
        assert_eq!(a.count(), 80_000);
        assert_eq!(a.bins.iter().map(|(_, c)| c).sum::<u64>(), 80_000);
    }

    #[test]
    fn quantiles_of_random_latencies_against_exact() {
        // Latencies spread over six orders of magnitude in random order (so the bin range
        // grows at both ends many times), against the exact quantiles of the same samples.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut values = Vec::new();
        let mut s = Sketch::new();
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1_000 + (x % 1_000) * (x >> 20) % 1_000_000_000;
            values.push(v);
            s.add(v);
        }
        values.sort_unstable();
        for q in [0.0, 0.001, 0.05, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            let exact = values[((q * values.len() as f64).ceil() as usize).max(1) - 1] as f64;
            let got = s.quantile_ns(q).unwrap();
            assert!(
                (got - exact).abs() <= exact * RELATIVE_ACCURACY,
                "q={q} exact={exact} got={got}"
            );
        }
        assert_eq!(s.bins.iter().map(|(_, c)| c).sum::<u64>(), 50_000);
        // Dense `u16` counts with modest slack: well under 2 bytes per bin spanned plus slack.
        assert!(s.heap_bytes() <= 2 * MAX_BINS, "{}", s.heap_bytes());
    }

    #[test]
    fn buckets_sum_to_count() {
        let mut s = Sketch::new();
        for v in [
            1_000u64,
            2_000_000,
            4_000_000,
            30_000_000,
            900_000_000,
            20_000_000_000,
        ] {
            s.add(v);
        }
        let bounds = [5e6, 1e7, 1e9];
        let b = s.bucket_counts(&bounds);
        assert_eq!(b, vec![3, 0, 2, 1]);
        let mut one = Sketch::new();
        one.add(7_000_000);
        assert_eq!(one.bucket_counts(&bounds), vec![0, 1, 0, 0]);
    }
}
