//! A mergeable quantile sketch of durations (DDSketch, Masson et al.,
//! VLDB 2019) with a stated relative error: every quantile it answers is
//! within [`RELATIVE_ERROR`] (1 %) of a value at that rank, whatever the
//! distribution, and two sketches merge into the sketch of both inputs.
//! That is what lets analytics add up per-block or per-minute figures
//! (rollups, partitions of a scan) and still answer p50/p99 of the whole.
//!
//! Values are bucketed by the logarithm base `γ = (1 + α) / (1 − α)` of
//! the value: bucket `i` holds `(γ^(i−1), γ^i]`, and its answer is
//! `2γ^i / (γ + 1)`, at most `α` off any value in it. Durations from 1 ns
//! to 10⁴ s take about 1 600 buckets; counts are kept sparse (only
//! buckets that saw a value), so a sketch of one operation with a few
//! distinct latencies is a few dozen bytes. Zero is counted apart. The
//! exact minimum, maximum, count and sum come along.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The relative error of every quantile: 1 %.
pub const RELATIVE_ERROR: f64 = 0.01;

/// `γ` for [`RELATIVE_ERROR`].
fn gamma() -> f64 {
    (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)
}

/// A quantile sketch of non-negative integers (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationSketch {
    /// Values seen.
    count: u64,
    /// Values equal to zero.
    zeros: u64,
    /// Sum of the values (saturating).
    sum: u64,
    /// Smallest value seen (meaningless when `count` is 0).
    min: u64,
    /// Largest value seen.
    max: u64,
    /// Counts per bucket index, only buckets that saw a value.
    buckets: BTreeMap<i32, u64>,
}

impl DurationSketch {
    /// An empty sketch.
    pub fn new() -> DurationSketch {
        DurationSketch::default()
    }

    /// Counts `value` once.
    pub fn add(&mut self, value: u64) {
        self.add_n(value, 1);
    }

    /// Counts `value` `n` times.
    pub fn add_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += n;
        self.sum = self.sum.saturating_add(value.saturating_mul(n));
        if value == 0 {
            self.zeros += n;
        } else {
            *self.buckets.entry(index(value)).or_insert(0) += n;
        }
    }

    /// Adds everything `other` counted: the result is the sketch of both
    /// inputs' values together.
    pub fn merge(&mut self, other: &DurationSketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.zeros += other.zeros;
        self.sum = self.sum.saturating_add(other.sum);
        for (&i, &n) in &other.buckets {
            *self.buckets.entry(i).or_insert(0) += n;
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values counted (saturating at `u64::MAX`).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The largest value counted, exactly (`None` when empty).
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The smallest value counted, exactly (`None` when empty).
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// The value at quantile `q` (0 to 1, clamped), nearest-rank like the
    /// analytics' exact percentiles: within [`RELATIVE_ERROR`] of the value
    /// at rank `⌈q·n⌉` of the sorted values; `None` when empty. Quantile 0
    /// and 1 are the exact minimum and maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        // Nearest rank, 1-based: the smallest value with at least q·n at
        // or below it.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.count {
            return Some(self.max);
        }
        let mut seen = self.zeros;
        if seen >= rank {
            return Some(0);
        }
        for (&i, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let estimate = (2.0 * gamma().powi(i) / (gamma() + 1.0)).round() as u64;
                return Some(estimate.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The bucket of a positive value: `⌈log_γ(value)⌉`.
fn index(value: u64) -> i32 {
    ((value as f64).ln() / gamma().ln()).ceil() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nearest-rank quantile of sorted values, as analytics computes it
    /// exactly.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn within(estimate: u64, exact: u64) -> bool {
        (estimate as f64 - exact as f64).abs() <= RELATIVE_ERROR * exact as f64 + 1.0
    }

    /// A deterministic spread of latencies over six orders of magnitude,
    /// with a heavy tail (xorshift, fixed seed).
    fn latencies(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                // 10 µs to 10 s, log-uniform, plus a few zeros.
                if x.is_multiple_of(97) {
                    0
                } else {
                    (10_000.0 * 1_000_000f64.powf(u)) as u64
                }
            })
            .collect()
    }

    #[test]
    fn quantiles_are_within_the_stated_error_of_the_exact_ones() {
        let values = latencies(200_000, 7);
        let mut sketch = DurationSketch::new();
        for &v in &values {
            sketch.add(v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let (got, want) = (sketch.quantile(q).unwrap(), exact(&sorted, q));
            assert!(within(got, want), "q{q}: {got} vs exact {want}");
        }
        assert_eq!(sketch.count(), 200_000);
        assert_eq!(sketch.sum(), values.iter().sum::<u64>());
        assert_eq!(sketch.min(), sorted.first().copied());
        assert_eq!(sketch.max(), sorted.last().copied());
        // Sparse: a few hundred buckets for six decades, not one per value.
        assert!(sketch.buckets.len() < 1000, "{}", sketch.buckets.len());
    }

    #[test]
    fn merged_sketches_answer_like_one_sketch_of_all_values() {
        let (a, b) = (latencies(50_000, 1), latencies(70_000, 2));
        let (mut sa, mut sb, mut all) = (
            DurationSketch::new(),
            DurationSketch::new(),
            DurationSketch::new(),
        );
        a.iter().for_each(|&v| sa.add(v));
        b.iter().for_each(|&v| sb.add(v));
        a.iter().chain(&b).for_each(|&v| all.add(v));
        sa.merge(&sb);
        assert_eq!(sa, all);
        // Merging into an empty sketch, or merging an empty one, changes nothing.
        let mut empty = DurationSketch::new();
        empty.merge(&all);
        assert_eq!(empty, all);
        all.merge(&DurationSketch::new());
        assert_eq!(empty, all);
    }

    #[test]
    fn small_and_degenerate_inputs() {
        let empty = DurationSketch::new();
        assert_eq!((empty.quantile(0.5), empty.max()), (None, None));
        let mut one = DurationSketch::new();
        one.add(1_234_567);
        for q in [0.0, 0.5, 1.0, f64::NAN, -3.0, 7.0] {
            assert_eq!(one.quantile(q), Some(1_234_567), "q{q}");
        }
        let mut ten = DurationSketch::new();
        (1..=10u64).for_each(|v| ten.add(v * 1_000_000));
        // Nearest rank: p90 of ten values is the ninth smallest (±1 %).
        assert!(within(ten.quantile(0.9).unwrap(), 9_000_000));
        assert_eq!(ten.quantile(0.95), Some(10_000_000));
        let mut zeros = DurationSketch::new();
        zeros.add_n(0, 5);
        zeros.add(u64::MAX);
        assert_eq!(zeros.quantile(0.5), Some(0));
        assert_eq!(zeros.quantile(1.0), Some(u64::MAX));
        assert_eq!(zeros.sum(), u64::MAX);
    }

    #[test]
    fn it_round_trips_through_serde() {
        let mut s = DurationSketch::new();
        latencies(1000, 3).into_iter().for_each(|v| s.add(v));
        let bytes = postcard::to_allocvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<DurationSketch>(&bytes).unwrap(), s);
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    }
}
