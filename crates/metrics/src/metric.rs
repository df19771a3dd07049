//! The three kinds of metric handle: [`Counter`], [`Gauge`] and
//! [`Histogram`]. Each is an `Arc` around atomics: cloning is cheap, every
//! clone updates the same value, and no update takes a lock. They know
//! nothing of names or labels; a [`crate::Registry`] gives them those.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A count that only goes up (requests, spans, bytes).
///
/// ```
/// let requests = chaintrace_metrics::Counter::new();
/// requests.inc();
/// requests.inc_by(2);
/// assert_eq!(requests.get(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A counter at zero, in no registry yet.
    pub fn new() -> Self {
        Counter::default()
    }

    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Follows a total counted elsewhere (e.g. a store's statistics read at
    /// scrape time): the counter becomes `total` unless it is already
    /// higher, so it never goes down.
    pub fn raise_to(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (bytes held, queries running).
///
/// ```
/// let running = chaintrace_metrics::Gauge::new();
/// running.inc();
/// running.add(2.5);
/// running.dec();
/// assert_eq!(running.get(), 2.5);
/// running.set(7.0);
/// assert_eq!(running.get(), 7.0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicF64>);

impl Gauge {
    /// A gauge at zero, in no registry yet.
    pub fn new() -> Self {
        Gauge::default()
    }

    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.store(value);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: f64) {
        self.0.add(delta);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// The value now.
    pub fn get(&self) -> f64 {
        self.0.load()
    }
}

/// A distribution of observations (latencies, sizes) counted into fixed
/// buckets chosen when it is made.
///
/// Each observation lands in one bucket (its first upper bound `le` at or
/// above the value); the cumulative counts Prometheus wants are summed at
/// render time, so an observation costs one binary search over the bounds
/// and two atomic updates.
///
/// ```
/// let latency = chaintrace_metrics::Histogram::new(&[0.01, 0.1, 1.0]);
/// latency.observe(0.05);
/// latency.observe_duration(std::time::Duration::from_secs(3));
/// let snapshot = latency.snapshot();
/// assert_eq!(snapshot.cumulative, vec![0, 1, 1, 2]); // le 0.01, 0.1, 1, +Inf
/// assert_eq!(snapshot.count(), 2);
/// assert_eq!(snapshot.sum, 3.05);
/// ```
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

#[derive(Debug)]
struct HistogramCore {
    /// Upper bounds, finite and strictly increasing; `+Inf` is implied.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative), one more than `bounds`
    /// for `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
}

/// A reading of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// The buckets' upper bounds, without `+Inf`.
    pub bounds: Vec<f64>,
    /// Cumulative counts: one per bound, then the `+Inf` bucket (the total).
    pub cumulative: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// Observations in all: the `+Inf` bucket.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl Histogram {
    /// A histogram with these bucket upper bounds (`+Inf` is added).
    ///
    /// # Panics
    ///
    /// If a bound is not finite or the bounds do not strictly increase:
    /// bounds are chosen in code, so that is a bug to catch in its tests.
    pub fn new(bounds: &[f64]) -> Self {
        assert!(
            bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite and strictly increasing: {bounds:?}"
        );
        Histogram(Arc::new(HistogramCore {
            bounds: bounds.into(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
        }))
    }

    /// Counts one observation of `value`.
    pub fn observe(&self, value: f64) {
        let core = &*self.0;
        // The first bucket whose bound is at or above the value (`le`); a
        // NaN is above none, so it lands in +Inf.
        let bucket = if value.is_nan() {
            core.bounds.len()
        } else {
            core.bounds.partition_point(|&bound| bound < value)
        };
        core.counts[bucket].fetch_add(1, Ordering::Relaxed);
        core.sum.add(value);
    }

    /// Counts a duration, in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// The buckets, cumulative, and the sum now. The count is taken from
    /// the buckets themselves, so `_count` always equals the `+Inf` bucket
    /// even while observations race the reading.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let core = &*self.0;
        let mut total = 0;
        let cumulative = core
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: core.bounds.to_vec(),
            cumulative,
            sum: core.sum.load(),
        }
    }
}

/// An `f64` in an `AtomicU64`, by its bits.
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn store(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    fn add(&self, delta: f64) {
        // A compare-and-swap loop: lock-free, and retried only when another
        // thread added at the same instant.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + delta).to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 2.5, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 6]);
        assert_eq!(s.count(), 6);
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn unordered_bounds_are_a_bug() {
        Histogram::new(&[1.0, 1.0]);
    }

    #[test]
    fn raise_to_never_lowers() {
        let c = Counter::new();
        c.raise_to(5);
        c.raise_to(3);
        assert_eq!(c.get(), 5);
    }

    #[test]
    fn increments_from_many_threads_all_count() {
        let (c, g, h) = (Counter::new(), Gauge::new(), Histogram::new(&[0.5]));
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (c, g, h) = (c.clone(), g.clone(), h.clone());
                scope.spawn(move || {
                    for i in 0..10_000 {
                        c.inc();
                        g.add(1.0);
                        h.observe(if (t + i) % 2 == 0 { 0.25 } else { 1.0 });
                    }
                });
            }
        });
        assert_eq!(c.get(), 80_000);
        assert_eq!(g.get(), 80_000.0);
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![40_000, 80_000]);
        assert_eq!(s.sum, 40_000.0 * 0.25 + 40_000.0);
    }
}
