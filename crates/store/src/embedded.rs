//! The embedded store: the WAL and the head put together behind [`Store`].
//!
//! An append is encoded on the caller's task, made durable by the WAL's group
//! commit, and only then inserted into the head — so a query never shows a
//! span that a crash could still take away. This module wires the parts and
//! owns the on-disk layout under [`EmbeddedConfig::dir`]; record formats,
//! replay and indexing belong to [`crate::wal`] and [`crate::head`].

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chaintrace_model::{Span, Trace, TraceId, TraceSummary};

use crate::head::Head;
use crate::store::{Store, StoreError, StoreStats, TraceListQuery};
use crate::wal::{self, ReplayReport, Wal};

/// Where and how the embedded store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Data directory; the WAL lives in `<dir>/wal/`.
    pub dir: PathBuf,
    /// A WAL segment is closed and a new one started once the next record
    /// would take it past this many bytes (a single larger record still gets
    /// a segment of its own).
    pub wal_segment_bytes: u64,
}

impl EmbeddedConfig {
    /// Default size of a WAL segment: 64 MiB.
    pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

    /// The defaults, storing under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            dir: dir.into(),
            wal_segment_bytes: Self::DEFAULT_WAL_SEGMENT_BYTES,
        }
    }

    /// The WAL directory, `<dir>/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }
}

/// chaintrace's single-node store: a write-ahead log in front of an in-memory
/// head. See the [crate docs](crate).
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// What appends in flight share with the store (see [`EmbeddedStore::append`]).
struct Inner {
    config: EmbeddedConfig,
    wal: Wal,
    head: RwLock<Head>,
}

impl Inner {
    // A panic while holding the lock cannot leave the head half-updated in a
    // way that matters more than refusing all further service would, so a
    // poisoned lock is used as is.
    fn head(&self) -> RwLockReadGuard<'_, Head> {
        self.head.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn head_mut(&self) -> RwLockWriteGuard<'_, Head> {
        self.head.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `config.dir` and replays the
    /// WAL into the head. A torn or corrupt WAL tail is truncated with a
    /// warning and reported in [`ReplayReport::truncated_bytes`]; it never
    /// fails the open.
    ///
    /// This is blocking file I/O that may take a while on a large WAL, and it
    /// needs no async runtime: from async code, call it through
    /// `tokio::task::spawn_blocking` (calling it directly also works, but
    /// blocks a runtime thread meanwhile).
    pub fn open(config: EmbeddedConfig) -> Result<(EmbeddedStore, ReplayReport), StoreError> {
        let mut head = Head::default();
        let (wal, report) = Wal::open(&config.wal_dir(), config.wal_segment_bytes, &mut |spans| {
            head.insert(spans);
        })?;
        let stats = head.stats();
        tracing::info!(
            dir = %config.dir.display(),
            segments = report.segments,
            records = report.records,
            spans = stats.spans,
            duplicates = stats.duplicates,
            traces = stats.traces,
            truncated_bytes = report.truncated_bytes,
            "opened embedded store"
        );
        let inner = Inner {
            config,
            wal,
            head: RwLock::new(head),
        };
        Ok((
            EmbeddedStore {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// Stops taking appends (they fail with [`StoreError::Closed`]), commits
    /// everything already queued and stops the WAL writer thread. Queries keep
    /// working. Dropping the store does the same; `close` lets you do it at a
    /// chosen moment, e.g. before the runtime shuts down. Idempotent.
    pub fn close(&self) {
        self.inner.wal.close();
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &EmbeddedConfig {
        &self.inner.config
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    /// Durable on `Ok`; visible to queries from then on, not before.
    ///
    /// Must run inside a tokio runtime. Cancel-safe in the way that matters:
    /// once the batch is queued, the head insert is done by a spawned task,
    /// so a caller that stops waiting cannot leave a durable batch invisible
    /// until the next restart.
    async fn append(&self, spans: Vec<Span>) -> Result<(), StoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        let record = wal::encode_batch(&spans)?;
        let durable = self.inner.wal.submit(record)?;
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move {
            let _position = durable.await.map_err(|_| {
                StoreError::Closed("the WAL writer stopped before confirming the write")
            })??;
            inner.head_mut().insert(spans);
            Ok(())
        });
        task.await
            .map_err(|_| StoreError::Closed("the append task was cancelled by runtime shutdown"))?
    }

    async fn trace(&self, id: TraceId) -> Result<Option<Trace>, StoreError> {
        Ok(self.inner.head().trace(&id))
    }

    async fn recent_traces(&self, query: &TraceListQuery) -> Result<Vec<TraceSummary>, StoreError> {
        Ok(self.inner.head().recent_traces(query))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let head = self.inner.head().stats();
        let wal = self.inner.wal.stats();
        Ok(StoreStats {
            traces: head.traces,
            spans: head.spans,
            wal_bytes: wal.bytes,
            wal_segments: wal.segments,
            head_bytes: head.bytes,
            duplicate_spans: head.duplicates,
            wal_syncs: wal.syncs,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use chaintrace_model::UnixNanos;

    use super::*;
    use crate::test_support::{span, trace_id};

    fn open(dir: &Path) -> (EmbeddedStore, ReplayReport) {
        EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap()
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        paths.sort();
        paths
    }

    /// Offsets of the records in a segment file, read with the real framing.
    fn record_offsets(path: &Path) -> Vec<u64> {
        let bytes = fs::read(path).unwrap();
        let mut offsets = Vec::new();
        let mut offset = 8u64;
        while (offset as usize) < bytes.len() {
            offsets.push(offset);
            let len = u32::from_le_bytes(bytes[offset as usize..][..4].try_into().unwrap());
            offset += 8 + u64::from(len);
        }
        offsets
    }

    /// Three single-span traces, one batch each.
    async fn append_three(store: &EmbeddedStore) {
        for t in 1..=3u8 {
            let start = u64::from(t) * 100;
            store
                .append(vec![span(t, 1, None, "rag", "chain", start, start + 50)])
                .await
                .unwrap();
        }
    }

    async fn trace_ids(store: &EmbeddedStore) -> Vec<u8> {
        let q = TraceListQuery {
            limit: 1000,
            ..Default::default()
        };
        let mut ids: Vec<u8> = store
            .recent_traces(&q)
            .await
            .unwrap()
            .iter()
            .map(|s| s.trace_id.0[0])
            .collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn replay_after_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let (store, report) = open(dir.path());
        assert_eq!(report, ReplayReport::default());
        let batch = vec![
            span(1, 1, None, "rag", "chain", 10, 90),
            span(1, 2, Some(1), "rag", "embed", 20, 30),
        ];
        store.append(batch.clone()).await.unwrap();
        assert_eq!(
            store.trace(trace_id(1)).await.unwrap(),
            Some(Trace::new(trace_id(1), batch.clone()))
        );
        store.close();
        assert!(matches!(
            store
                .append(vec![span(2, 1, None, "rag", "late", 0, 1)])
                .await,
            Err(StoreError::Closed(_))
        ));
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!((report.segments, report.records, report.spans), (1, 1, 2));
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(
            store.trace(trace_id(1)).await.unwrap(),
            Some(Trace::new(trace_id(1), batch))
        );
        assert_eq!(store.trace(trace_id(2)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn replay_after_crash_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        append_three(&store).await;
        // Like kill -9: no close, no Drop, the writer thread is left parked.
        std::mem::forget(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_and_later_appends_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        append_three(&store).await;
        drop(store);
        let path = segments(dir.path()).pop().unwrap();
        let good_len = fs::metadata(&path).unwrap().len();

        // Half of a real record, as a crash mid-write leaves it.
        let record = wal::encode_batch(&[span(9, 1, None, "rag", "torn", 0, 1)]).unwrap();
        let half = &record.as_bytes()[..record.as_bytes().len() / 2];
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(half)
            .unwrap();

        let (store, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(report.truncated_bytes, half.len() as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3]);
        store
            .append(vec![span(4, 1, None, "rag", "after", 400, 450)])
            .await
            .unwrap();
        drop(store);

        // Garbage this time; the append made after the first repair survives.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7])
            .unwrap();
        let (store, report) = open(dir.path());
        assert_eq!(report.records, 4);
        assert_eq!(report.truncated_bytes, 11);
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3, 4]);
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!((report.records, report.truncated_bytes), (4, 0));
        assert_eq!(trace_ids(&store).await, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn corrupt_crc_in_the_middle_keeps_the_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        append_three(&store).await;
        drop(store);
        let path = segments(dir.path()).pop().unwrap();
        let offsets = record_offsets(&path);
        assert_eq!(offsets.len(), 3);
        let mut bytes = fs::read(&path).unwrap();
        // Flip one payload byte of the middle record.
        bytes[offsets[1] as usize + 12] ^= 0x40;
        fs::write(&path, &bytes).unwrap();

        let (store, report) = open(dir.path());
        assert_eq!(report.records, 1);
        assert_eq!(report.truncated_bytes, bytes.len() as u64 - offsets[1]);
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[1]);
        assert_eq!(trace_ids(&store).await, vec![1]);
    }

    #[tokio::test]
    async fn corruption_in_an_older_segment_keeps_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig {
            wal_segment_bytes: 1, // one record per segment
            ..EmbeddedConfig::new(dir.path())
        };
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        append_three(&store).await;
        drop(store);
        let paths = segments(dir.path());
        assert_eq!(paths.len(), 3);
        let mut bytes = fs::read(&paths[1]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&paths[1], &bytes).unwrap();

        let (store, report) = EmbeddedStore::open(config).unwrap();
        assert_eq!(report.segments, 3);
        assert_eq!(report.records, 2);
        assert_eq!(fs::metadata(&paths[1]).unwrap().len(), 8);
        assert_eq!(trace_ids(&store).await, vec![1, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_all_durable() {
        const TASKS: u8 = 50;
        const BATCHES: u8 = 20;
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for b in 0..BATCHES {
                    // Trace per task, one span per batch (span id = batch + 1).
                    let start = u64::from(b) * 10 + 1;
                    let parent = (b > 0).then_some(1);
                    store
                        .append(vec![span(
                            t + 1,
                            b + 1,
                            parent,
                            "rag",
                            "step",
                            start,
                            start + 5,
                        )])
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.spans, u64::from(TASKS) * u64::from(BATCHES));
        assert_eq!(stats.traces, u64::from(TASKS));
        assert!(stats.wal_syncs >= 1);
        // No close: durability must not depend on it.
        std::mem::forget(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.records, u64::from(TASKS) * u64::from(BATCHES));
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.spans, u64::from(TASKS) * u64::from(BATCHES));
        assert_eq!(stats.traces, u64::from(TASKS));
        for t in 1..=TASKS {
            let trace = store.trace(trace_id(t)).await.unwrap().unwrap();
            assert_eq!(trace.spans.len(), usize::from(BATCHES));
        }
    }

    #[tokio::test]
    async fn duplicates_are_visible_once_also_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let root = span(1, 1, None, "rag", "chain", 10, 90);
        let child = span(1, 2, Some(1), "rag", "embed", 20, 30);
        store
            .append(vec![root.clone(), root.clone(), child.clone()])
            .await
            .unwrap();
        // The exporter retried the whole batch.
        store
            .append(vec![root.clone(), child.clone()])
            .await
            .unwrap();
        let expected = Some(Trace::new(trace_id(1), vec![root, child]));
        assert_eq!(store.trace(trace_id(1)).await.unwrap(), expected);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.spans, stats.duplicate_spans), (2, 3));
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.spans, 5);
        assert_eq!(store.trace(trace_id(1)).await.unwrap(), expected);
        let summary = &store
            .recent_traces(&TraceListQuery::default())
            .await
            .unwrap()[0];
        assert_eq!(summary.span_count, 2);
        assert_eq!(store.stats().await.unwrap().spans, 2);
    }

    #[tokio::test]
    async fn recent_traces_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(dir.path());
        let store: Arc<dyn Store> = Arc::new(store);
        store
            .append(vec![
                span(1, 1, None, "rag", "a", 100, 200),
                span(2, 1, None, "billing", "b", 300, 310),
                span(3, 1, None, "rag", "c", 200, 900),
            ])
            .await
            .unwrap();
        let list = |q: TraceListQuery| {
            let store = Arc::clone(&store);
            async move {
                store
                    .recent_traces(&q)
                    .await
                    .unwrap()
                    .iter()
                    .map(|s| s.trace_id.0[0])
                    .collect::<Vec<u8>>()
            }
        };
        assert_eq!(list(TraceListQuery::default()).await, vec![2, 3, 1]);
        let q = TraceListQuery {
            limit: 1,
            service: Some("rag".into()),
            ..Default::default()
        };
        assert_eq!(list(q).await, vec![3]);
        let q = TraceListQuery {
            end: Some(UnixNanos(250)),
            ..Default::default()
        };
        assert_eq!(list(q).await, vec![3, 1]);
        let summary = &store
            .recent_traces(&TraceListQuery::default())
            .await
            .unwrap()[1];
        assert_eq!(summary.root_service.as_deref(), Some("rag"));
        assert_eq!(summary.root_name.as_deref(), Some("c"));
        assert_eq!(summary.duration_nano.0, 700);
    }

    #[tokio::test]
    async fn tiny_segments_rotate_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = EmbeddedConfig {
            wal_segment_bytes: 400,
            ..EmbeddedConfig::new(dir.path())
        };
        let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
        for b in 0..30u8 {
            // Every batch also repeats span 1, so replay order matters for
            // which copy wins: the first one (name "copy 0").
            let start = u64::from(b) * 10 + 1;
            store
                .append(vec![
                    span(1, 1, None, "rag", &format!("copy {b}"), 1, 1000),
                    span(1, b + 2, Some(1), "rag", "step", start, start + 5),
                ])
                .await
                .unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert!(stats.wal_segments > 5, "{stats:?}");
        let on_disk: u64 = segments(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(stats.wal_bytes, on_disk);
        assert_eq!(stats.wal_segments, segments(dir.path()).len() as u64);
        for path in segments(dir.path()) {
            let len = fs::metadata(&path).unwrap().len();
            assert!(len <= 400, "{} has {len} bytes", path.display());
        }
        let before = store.trace(trace_id(1)).await.unwrap();
        drop(store);

        let (store, report) = EmbeddedStore::open(config).unwrap();
        assert_eq!(report.segments, stats.wal_segments);
        assert_eq!(report.records, 30);
        let after = store.trace(trace_id(1)).await.unwrap();
        assert_eq!(after, before);
        let after = after.unwrap();
        assert_eq!(after.spans.len(), 31);
        assert_eq!(after.root().unwrap().name, "copy 0");
        let stats_after = store.stats().await.unwrap();
        assert_eq!(stats_after.wal_bytes, stats.wal_bytes);
        assert_eq!(stats_after.wal_segments, stats.wal_segments);
    }
}
