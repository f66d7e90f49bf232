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

#[derive(Clone, Debug, PartialEq, Eq)]
struct Bins {
    /// The key of `counts[0]`.
    offset: i32,
    counts: Vec<u32>,
}

impl Bins {
    fn add(&mut self, key: i32, n: u32) {
        if self.counts.is_empty() {
            self.offset = key;
            self.counts.push(n);
            return;
        }
        if key < self.offset {
            let grow = (self.offset - key) as usize;
            let span = self.counts.len() + grow;
            if span > MAX_BINS {
                // The new value is far below everything else: fold it into the lowest bin.
                self.counts[0] = self.counts[0].saturating_add(n);
                return;
            }
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = key;
            self.counts[0] = n;
            return;
        }
        let idx = (key - self.offset) as usize;
        if idx >= self.counts.len() {
            if idx >= MAX_BINS {
                // Fold the lowest bins together so that `key` fits.
                let fold = idx + 1 - MAX_BINS;
                let fold = fold.min(self.counts.len());
                let folded: u32 = self.counts[..fold]
                    .iter()
                    .fold(0u32, |a, &b| a.saturating_add(b));
                self.counts.drain(..fold);
                self.offset += fold as i32;
                if self.counts.is_empty() {
                    self.offset = key;
                    self.counts.push(folded.saturating_add(n));
                    return;
                }
                self.counts[0] = self.counts[0].saturating_add(folded);
                let idx = (key - self.offset) as usize;
                self.counts.resize(idx + 1, 0);
                self.counts[idx] = self.counts[idx].saturating_add(n);
                return;
            }
            self.counts.resize(idx + 1, 0);
        }
        self.counts[idx] = self.counts[idx].saturating_add(n);
    }

    fn iter(&self) -> impl Iterator<Item = (i32, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(move |(i, &c)| (self.offset + i as i32, c))
    }
}

/// Latency distribution of one endpoint: count, sum, min, max and a DDSketch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sketch {
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    /// `None` while at most one sample was added (it is `min_ns == max_ns`).
    bins: Option<Box<Bins>>,
}

impl Sketch {
    /// An empty sketch; costs no allocation.
    pub const fn new() -> Self {
        Sketch {
            count: 0,
            sum_ns: 0,
            min_ns: 0,
            max_ns: 0,
            bins: None,
        }
    }

    /// Adds one latency in nanoseconds.
    #[inline]
    pub fn add(&mut self, ns: u64) {
        if self.count == 0 {
            self.count = 1;
            self.sum_ns = ns as u128;
            self.min_ns = ns;
            self.max_ns = ns;
            return;
        }
        let bins = match &mut self.bins {
            Some(b) => b,
            None => {
                let mut b = Box::new(Bins {
                    offset: 0,
                    counts: Vec::new(),
                });
                // The first sample was kept inline; it now moves into the bins.
                b.add(key_of(self.min_ns), self.count as u32);
                self.bins.insert(b)
            }
        };
        bins.add(key_of(ns), 1);
        self.count += 1;
        self.sum_ns += ns as u128;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
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
        self.bins.is_some()
    }

    /// Heap bytes held by this sketch.
    pub fn heap_bytes(&self) -> usize {
        self.bins.as_ref().map_or(0, |b| {
            std::mem::size_of::<Bins>() + b.counts.capacity() * std::mem::size_of::<u32>()
        })
    }

    /// The `q`-quantile (`0.0..=1.0`) in nanoseconds, within 1% of the true value; `None` when
    /// empty.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let Some(bins) = &self.bins else {
            return Some(self.min_ns as f64);
        };
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        if q == 0.0 {
            return Some(self.min_ns as f64);
        }
        if q == 1.0 {
            return Some(self.max_ns as f64);
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        let mut last = bins.offset;
        for (key, c) in bins.iter() {
            seen += c as u64;
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
        let bins = match &mut self.bins {
            Some(b) => b,
            None => {
                let mut b = Box::new(Bins {
                    offset: 0,
                    counts: Vec::new(),
                });
                b.add(key_of(self.min_ns), self.count as u32);
                self.bins.insert(b)
            }
        };
        match &other.bins {
            Some(ob) => {
                for (k, c) in ob.iter() {
                    bins.add(k, c);
                }
            }
            None => bins.add(key_of(other.min_ns), other.count as u32),
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
        match &self.bins {
            None => out[place(self.min_ns as f64)] += self.count,
            Some(bins) => {
                for (k, c) in bins.iter() {
                    let v = value_of(k).clamp(self.min_ns as f64, self.max_ns as f64);
                    out[place(v)] += c as u64;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize] as f64;
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
        let bins = s.bins.as_ref().unwrap();
        assert!(bins.counts.len() <= MAX_BINS);
        assert_eq!(bins.iter().map(|(_, c)| c as u64).sum::<u64>(), 68);
        assert!(s.quantile_ns(0.5).unwrap() > 0.0);
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
