//! Latency measurement: a monotonic recorder and a log-linear histogram.
//!
//! The histogram has microsecond resolution and covers 0 µs to 60 s. Values below 128 µs each
//! get their own bucket (exact); above that, every power-of-two range is split into 128 equal
//! buckets, so a bucket is at most 1/128 (0.78 %) of its values wide. Percentiles report the
//! highest value of their bucket (clamped to the observed min and max), so they are never
//! under-stated and are within 0.78 % of the exact nearest-rank value — the same scheme as
//! HdrHistogram with two significant binary digits more than needed for 1 %.
//!
//! Memory is fixed (2,560 counters, 20 KiB) whatever the number of samples, and histograms from
//! several cases merge exactly.
//!
//! Durations come from [`std::time::Instant`] (monotonic), never from the wall clock.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The largest recordable value, in microseconds (60 s). Larger values are clamped to it and
/// counted in [`Histogram::saturated`].
pub const MAX_US: u64 = 60_000_000;

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Power-of-two ranges above the linear part: 2^7 .. 2^26 (> MAX_US).
const OCTAVES: u64 = 26 - SUB_BITS as u64;
const BUCKETS: usize = (SUB + OCTAVES * SUB) as usize;

fn index_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let magnitude = 63 - us.leading_zeros(); // >= SUB_BITS
    let shift = magnitude - SUB_BITS;
    let sub = (us >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// Inclusive value range of bucket `idx`.
fn bounds_of(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < SUB {
        return (idx, idx);
    }
    let shift = (idx - SUB) / SUB;
    let sub = (idx - SUB) % SUB;
    let low = (SUB + sub) << shift;
    (low, low + (1 << shift) - 1)
}

/// One histogram bucket: `count` samples with values in `low_us..=high_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Smallest value in the bucket, µs.
    pub low_us: u64,
    /// Largest value in the bucket, µs (inclusive).
    pub high_us: u64,
    /// Number of samples.
    pub count: u64,
}

/// Summary statistics of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample, µs (exact).
    pub min_us: u64,
    /// Largest sample, µs (exact).
    pub max_us: u64,
    /// Arithmetic mean, µs (exact).
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
}

/// A log-linear latency histogram (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
    saturated: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
            saturated: 0,
        }
    }

    /// Records a duration, rounded to the nearest microsecond.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_nanos().saturating_add(500) / 1000;
        self.record_us(u64::try_from(us).unwrap_or(u64::MAX));
    }

    /// Records a value in microseconds (values above [`MAX_US`] are clamped and counted as
    /// saturated).
    pub fn record_us(&mut self, us: u64) {
        self.record_n_us(us, 1);
    }

    /// Records `n` samples of the same value.
    pub fn record_n_us(&mut self, us: u64, n: u64) {
        if n == 0 {
            return;
        }
        let us = if us > MAX_US {
            self.saturated = self.saturated.saturating_add(n);
            MAX_US
        } else {
            us
        };
        let c = &mut self.counts[index_of(us)];
        *c = c.saturating_add(n);
        self.count = self.count.saturating_add(n);
        self.min = self.min.min(us);
        self.max = self.max.max(us);
        self.sum = self.sum.saturating_add(u128::from(us) * u128::from(n));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
        self.saturated = self.saturated.saturating_add(other.saturated);
    }

    /// Rebuilds a histogram from a bucket list (e.g. read back from a report). Each bucket's
    /// samples are placed at its midpoint, so min, max and mean are approximate (within a
    /// bucket width) and percentiles stay within the usual error.
    pub fn from_buckets(buckets: &[Bucket]) -> Histogram {
        let mut h = Histogram::new();
        for b in buckets {
            let high = b.high_us.max(b.low_us);
            let mid = b.low_us + (high - b.low_us) / 2;
            h.record_n_us(mid, b.count);
        }
        h
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of samples that exceeded [`MAX_US`] and were clamped.
    pub fn saturated(&self) -> u64 {
        self.saturated
    }

    /// Smallest sample, µs; `None` when empty.
    pub fn min_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest sample, µs; `None` when empty.
    pub fn max_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Mean, µs; `None` when empty.
    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The nearest-rank value at quantile `q` (0.0 ..= 1.0; out-of-range and NaN are clamped),
    /// reported as its bucket's highest value, clamped to the observed min and max.
    /// `None` when empty.
    pub fn value_at_quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                let (_, high) = bounds_of(idx);
                return Some(high.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// count, min, max, mean, p50, p90, p99, p99.9; `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            count: self.count,
            min_us: self.min_us()?,
            max_us: self.max_us()?,
            mean_us: self.mean_us()?,
            p50_us: self.value_at_quantile(0.50)?,
            p90_us: self.value_at_quantile(0.90)?,
            p99_us: self.value_at_quantile(0.99)?,
            p999_us: self.value_at_quantile(0.999)?,
        })
    }

    /// The non-empty buckets in value order, for plotting and for reports.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(idx, &count)| {
                let (low_us, high_us) = bounds_of(idx);
                Bucket {
                    low_us,
                    high_us,
                    count,
                }
            })
            .collect()
    }
}

/// Measures durations with the monotonic clock into a [`Histogram`].
///
/// ```
/// use softbus_harness::timing::LatencyRecorder;
/// let mut rec = LatencyRecorder::new();
/// let t = rec.start();
/// // ... send a frame, wait for the answer ...
/// rec.stop(t);
/// let sum: u64 = rec.time(|| (1..=10).sum());
/// assert_eq!(sum, 55);
/// assert_eq!(rec.histogram().count(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LatencyRecorder {
    hist: Histogram,
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a start time (a plain [`Instant`], so it can cross `.await` points).
    pub fn start(&self) -> Instant {
        Instant::now()
    }

    /// Records the time since `started` and returns it.
    pub fn stop(&mut self, started: Instant) -> Duration {
        let elapsed = started.elapsed();
        self.hist.record(elapsed);
        elapsed
    }

    /// Runs `f`, records how long it took, and returns its result.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.stop(started);
        out
    }

    /// Records an externally measured duration (e.g. from capture timestamps).
    pub fn record(&mut self, d: Duration) {
        self.hist.record(d);
    }

    /// The histogram so far.
    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }

    /// The histogram, consuming the recorder.
    pub fn into_histogram(self) -> Histogram {
        self.hist
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Exact nearest-rank percentile of sorted data.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn check_distribution(name: &str, mut samples: Vec<u64>) {
        let mut h = Histogram::new();
        for &s in &samples {
            h.record_us(s);
        }
        samples.sort_unstable();
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = exact(&samples, q);
            let got = h.value_at_quantile(q).unwrap();
            let err = (got as f64 - want as f64).abs() / (want.max(1) as f64);
            assert!(
                err <= 0.01,
                "{name}: q={q}: got {got}, exact {want}, error {err:.4}"
            );
            assert!(got >= want, "{name}: q={q}: {got} under-states {want}");
        }
        let p = h.percentiles().unwrap();
        assert_eq!(p.count, samples.len() as u64);
        assert_eq!(p.min_us, samples[0]);
        assert_eq!(p.max_us, *samples.last().unwrap());
        let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64;
        assert!((p.mean_us - mean).abs() < 1e-6, "{name}: mean");
    }

    #[test]
    fn bucket_layout_is_consistent_and_within_one_percent() {
        let mut prev_high = None;
        for idx in 0..BUCKETS {
            let (low, high) = bounds_of(idx);
            assert_eq!(index_of(low), idx);
            assert_eq!(index_of(high), idx);
            if let Some(p) = prev_high {
                assert_eq!(low, p + 1, "buckets are contiguous");
            }
            prev_high = Some(high);
            let width = (high - low + 1) as f64;
            assert!(width / (low.max(1) as f64) <= 1.0 / 128.0 + 1e-12 || low < 128);
        }
        assert!(bounds_of(BUCKETS - 1).1 >= MAX_US);
    }

    #[test]
    fn uniform() {
        check_distribution("uniform", (1..=100_000).collect());
    }

    #[test]
    fn constant() {
        let mut h = Histogram::new();
        for _ in 0..1000 {
            h.record_us(12_345);
        }
        let p = h.percentiles().unwrap();
        assert_eq!(
            (p.min_us, p.p50_us, p.p999_us, p.max_us),
            (12_345, 12_345, 12_345, 12_345)
        );
    }

    #[test]
    fn exponential_and_bimodal() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let exp: Vec<u64> = (0..50_000)
            .map(|_| {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                (-u.ln() * 2_000.0) as u64 + 1
            })
            .collect();
        check_distribution("exponential", exp);
        let bimodal: Vec<u64> = (0..20_000)
            .map(|i| {
                if i % 10 == 0 {
                    rng.gen_range(900_000..1_100_000)
                } else {
                    rng.gen_range(150..250)
                }
            })
            .collect();
        check_distribution("bimodal", bimodal);
    }

    #[test]
    fn small_and_huge_values() {
        check_distribution("tiny", vec![0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
        let mut h = Histogram::new();
        h.record(Duration::from_secs(3600));
        h.record(Duration::from_nanos(400));
        assert_eq!(h.saturated(), 1);
        assert_eq!(h.max_us(), Some(MAX_US));
        assert_eq!(h.min_us(), Some(0));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::new();
        assert_eq!(h.percentiles(), None);
        assert_eq!(h.value_at_quantile(0.5), None);
        assert!(h.buckets().is_empty());
    }

    #[test]
    fn merge_and_buckets_round_trip() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 1..=5_000 {
            a.record_us(v);
            b.record_us(v * 3);
        }
        let mut both = a.clone();
        both.merge(&b);
        assert_eq!(both.count(), 10_000);
        assert_eq!(both.max_us(), Some(15_000));
        let rebuilt = Histogram::from_buckets(&both.buckets());
        assert_eq!(rebuilt.count(), both.count());
        for q in [0.5, 0.9, 0.99] {
            let x = both.value_at_quantile(q).unwrap() as f64;
            let y = rebuilt.value_at_quantile(q).unwrap() as f64;
            assert!((x - y).abs() / x <= 0.01, "q={q}: {x} vs {y}");
        }
        assert_eq!(
            both.buckets().iter().map(|b| b.count).sum::<u64>(),
            both.count()
        );
    }

    #[test]
    fn recorder_measures_monotonic_time() {
        let mut rec = LatencyRecorder::new();
        let t = rec.start();
        std::thread::sleep(Duration::from_millis(2));
        let d = rec.stop(t);
        assert!(d >= Duration::from_millis(2));
        assert!(rec.histogram().min_us().unwrap() >= 2_000);
    }
}
