//! What the embedded store shows in `/metrics`: the WAL's fsyncs and their
//! latency, the head, the blocks, cuts, compactions and retention.
//!
//! Most values are the store's own statistics ([`StoreStats`], the same as
//! `/api/v1/stats`), read when the registry is scraped; only the latencies
//! (fsync, compaction merge) are histograms the WAL writer and the
//! compactor fill as they work. This module names the metrics; it must not
//! change what the store does.

use std::sync::{Arc, Weak};

use chaintrace_metrics::{Counter, Gauge, Registry};

use crate::embedded::Inner;
use crate::sampling::{Policy, SamplingStats};
use crate::store::StoreStats;

/// Bounds of the compaction merge histogram: a merge of a few small blocks
/// takes a fraction of a second, of 2 M-span blocks minutes.
pub(crate) const COMPACTION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Reads one figure of the store's statistics.
type Read = fn(&StoreStats) -> u64;

/// Reads one figure of tail sampling's statistics.
type SampledRead = fn(&SamplingStats) -> u64;

/// Registers the store's metrics in `registry`; values are read from
/// `inner` at each scrape for as long as the store is open.
pub(crate) fn register(inner: &Arc<Inner>, registry: &Registry) {
    registry.register(
        "chaintrace_wal_sync_duration_seconds",
        "Time of one write-ahead-log fsync that committed records (one per group commit).",
        &[],
        inner.wal.sync_seconds().clone(),
    );
    registry.register(
        "chaintrace_compaction_duration_seconds",
        "Time of one compaction merge.",
        &[],
        inner.compaction_seconds.clone(),
    );
    let counter = |name, help| registry.counter(name, help, &[]);
    let gauge = |name, help| registry.gauge(name, help, &[]);
    let totals: [(Counter, Read); 5] = [
        (
            counter(
                "chaintrace_wal_syncs_total",
                "Write-ahead-log fsyncs that committed records.",
            ),
            |s| s.wal_syncs,
        ),
        (
            counter(
                "chaintrace_block_cuts_total",
                "Blocks cut from the in-memory head.",
            ),
            |s| s.blocks_cut,
        ),
        (
            counter("chaintrace_compactions_total", "Compaction merges."),
            |s| s.compactions,
        ),
        (
            counter(
                "chaintrace_retention_deleted_blocks_total",
                "Blocks deleted by retention (--retention, --max-disk).",
            ),
            |s| s.blocks_deleted,
        ),
        (
            counter(
                "chaintrace_duplicate_spans_total",
                "Duplicate spans (same trace and span id) received and dropped.",
            ),
            |s| s.duplicate_spans,
        ),
    ];
    let levels: [(Gauge, Read); 10] = [
        (
            gauge(
                "chaintrace_head_bytes",
                "Estimated memory of the spans not yet in blocks.",
            ),
            |s| s.head_bytes,
        ),
        (
            gauge("chaintrace_head_spans", "Spans not yet in blocks."),
            |s| s.spans,
        ),
        (
            gauge(
                "chaintrace_head_traces",
                "Traces with spans not yet in blocks.",
            ),
            |s| s.traces,
        ),
        (
            gauge(
                "chaintrace_wal_bytes",
                "Bytes in write-ahead-log segment files.",
            ),
            |s| s.wal_bytes,
        ),
        (
            gauge("chaintrace_wal_segments", "Write-ahead-log segment files."),
            |s| s.wal_segments,
        ),
        (gauge("chaintrace_blocks", "Blocks on disk."), |s| s.blocks),
        (
            gauge("chaintrace_block_bytes", "Bytes of all block files."),
            |s| s.block_bytes,
        ),
        (gauge("chaintrace_block_spans", "Spans in blocks."), |s| {
            s.block_spans
        }),
        (
            gauge("chaintrace_log_records", "OTLP log records stored."),
            |s| s.log_records,
        ),
        (
            gauge(
                "chaintrace_log_bytes",
                "Bytes of the log records' segment files.",
            ),
            |s| s.log_bytes,
        ),
    ];
    let compacting = gauge(
        "chaintrace_compacting",
        "1 while a compaction pass runs, else 0.",
    );
    // Tail sampling's decisions, when it is on.
    let sampled: Vec<(Counter, Policy)> = if inner.sampler.is_some() {
        Policy::ALL
            .iter()
            .map(|&p| {
                let c = registry.counter(
                    "chaintrace_sampling_traces_total",
                    "Traces decided by tail sampling: the policy that kept them, or dropped.",
                    &[("policy", p.name())],
                );
                (c, p)
            })
            .collect()
    } else {
        Vec::new()
    };
    let sampled_spans: Vec<(Counter, SampledRead)> = if inner.sampler.is_some() {
        vec![
            (
                counter(
                    "chaintrace_sampling_spans_kept_total",
                    "Spans tail sampling wrote to blocks.",
                ),
                |s| s.spans_kept,
            ),
            (
                counter(
                    "chaintrace_sampling_spans_dropped_total",
                    "Spans tail sampling dropped.",
                ),
                |s| s.spans_dropped,
            ),
            (
                counter(
                    "chaintrace_sampling_late_spans_total",
                    "Spans that arrived after their trace was decided, and followed it.",
                ),
                |s| s.late_spans,
            ),
        ]
    } else {
        Vec::new()
    };
    // Weak: the registry must not keep a closed store's memory alive.
    let inner: Weak<Inner> = Arc::downgrade(inner);
    registry.on_scrape(move || {
        let Some(inner) = inner.upgrade() else { return };
        let stats = inner.stats_blocking();
        for (counter, read) in &totals {
            counter.raise_to(read(&stats));
        }
        for (gauge, read) in &levels {
            gauge.set(read(&stats) as f64);
        }
        compacting.set(if stats.compacting { 1.0 } else { 0.0 });
        if let Some(sampling) = &stats.sampling {
            for (counter, policy) in &sampled {
                counter.raise_to(sampling.traces(*policy));
            }
            for (counter, read) in &sampled_spans {
                counter.raise_to(read(sampling));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chaintrace_model::UnixNanos;

    use crate::test_support::span;
    use crate::{EmbeddedConfig, EmbeddedStore, Store};

    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len() + 1..].parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_follow_appends_cuts_and_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmbeddedConfig::new(dir.path());
        config.compaction_min_blocks = 2;
        config.compaction_fresh_blocks = 0;
        config.retention = None;
        // Only the test cuts and compacts.
        config.maintenance_interval = Duration::from_secs(3600);
        let (store, _) = EmbeddedStore::open(config).unwrap();
        let registry = chaintrace_metrics::Registry::new();
        store.register_metrics(&registry);

        let now = UnixNanos::now().0;
        for trace in 1..=2u8 {
            let spans = vec![
                span(trace, 1, None, "rag", "root", now, now + 10),
                span(trace, 2, Some(1), "rag", "llm_call", now + 1, now + 9),
            ];
            store.append(spans).await.unwrap();
        }
        let text = registry.render();
        assert_eq!(value(&text, "chaintrace_head_spans"), 4.0);
        let syncs = value(&text, "chaintrace_wal_syncs_total");
        assert!(syncs >= 1.0, "{text}");
        assert_eq!(
            value(&text, "chaintrace_wal_sync_duration_seconds_count"),
            syncs
        );

        use tokio::task::block_in_place as blocking;
        blocking(|| store.flush()).unwrap();
        store
            .append(vec![span(3, 1, None, "rag", "root", now, now + 5)])
            .await
            .unwrap();
        blocking(|| store.flush()).unwrap();
        blocking(|| store.compact()).unwrap();
        let text = registry.render();
        assert_eq!(value(&text, "chaintrace_head_spans"), 0.0);
        assert_eq!(value(&text, "chaintrace_block_cuts_total"), 2.0);
        assert_eq!(value(&text, "chaintrace_compactions_total"), 1.0);
        assert_eq!(
            value(&text, "chaintrace_compaction_duration_seconds_count"),
            1.0
        );
        assert_eq!(value(&text, "chaintrace_blocks"), 1.0);
        assert_eq!(value(&text, "chaintrace_block_spans"), 5.0);
        assert!(value(&text, "chaintrace_block_bytes") > 0.0);
        assert_eq!(
            value(&text, "chaintrace_retention_deleted_blocks_total"),
            0.0
        );

        // A closed store leaves the last values; scraping still works.
        drop(store);
        assert!(registry.render().contains("chaintrace_blocks 1\n"));
    }
}
