//! A small Prometheus metrics registry for every chaintrace crate.
//!
//! Handles — [`Counter`], [`Gauge`], [`Histogram`] with fixed buckets —
//! are atomics behind an `Arc`: a component makes or asks for its handles
//! once (at startup, with their labels resolved) and then updates them
//! on its hot paths without a lock. A [`Registry`] names them, holds
//! [`Registry::on_scrape`] hooks for values read from state kept elsewhere,
//! and renders everything in the text exposition format 0.0.4
//! ([`CONTENT_TYPE`]). [`process`] adds the usual `process_…` metrics.
//!
//! This crate depends on nothing and knows no chaintrace metric: each
//! crate names its own and registers them; the binary owns the one
//! registry and serves it.
//!
//! ```
//! use chaintrace_metrics::{Histogram, Registry};
//! let registry = Registry::new();
//! // A component counts from its start…
//! let sync_seconds = Histogram::new(&[0.001, 0.01, 0.1]);
//! sync_seconds.observe(0.004);
//! // …and is shown once the binary has its registry.
//! registry.register("wal_sync_seconds", "Time of one fsync.", &[], sync_seconds);
//! assert!(registry.render().contains("wal_sync_seconds_bucket{le=\"0.01\"} 1\n"));
//! ```

mod metric;
pub mod process;
mod registry;

pub use metric::{Counter, Gauge, Histogram, HistogramSnapshot};
pub use registry::{escape_label_value, Metric, Registry, CONTENT_TYPE};

/// Bucket bounds in seconds for request and I/O latencies: 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
