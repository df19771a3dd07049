//! Log records: kept in a write-ahead log of their own and read from it.
//!
//! Logs are written once and read by trace (the span they belong to) or by
//! time, never updated or merged, so their WAL segments are their storage:
//! no head, no blocks. A batch is acknowledged once its record is fsynced
//! in `<dir>/logs/` (the same writer, group commit and replay repairs as
//! spans, in segments of version 4 that hold payload layout 4,
//! [`codec`]). Each record begins with a summary (time range, distinct
//! trace ids), so replay at open reads summaries, not records, and a lookup
//! decodes only the records that can match. In memory the store keeps, per
//! segment, its time range and the set of its trace ids — enough to pick
//! the segments a query must open. Retention deletes whole segments whose
//! newest record is older than the cutoff.
//!
//! It knows nothing of spans, the head or blocks.

pub(crate) mod codec;

use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use chaintrace_model::{LogRecord, TraceId, UnixNanos};
use foldhash::fast::RandomState;

use crate::store::{LogPage, LogQuery, StoreError};
use crate::wal::record::{read_frame, Record, WalKind, FRAME_LEN, HEADER_LEN};
use crate::wal::{Disk, ReplayReport, SegmentSeq, Wal};

use self::codec::Summary;

/// What a search decodes at most before it answers with what it found
/// (`truncated`): bounds the time and memory of a query over a large store.
pub(crate) const MAX_INSPECTED: u64 = 2_000_000;

/// The index of one segment, kept in memory.
#[derive(Debug, Default)]
struct SegmentIndex {
    /// Earliest and latest record time in the segment.
    min_time: u64,
    max_time: u64,
    /// Records (log lines) in it.
    records: u64,
    /// The first 8 bytes of every trace id in it: enough to rule a segment
    /// out, and half the memory of whole ids.
    traces: HashSet<u64, RandomState>,
}

impl SegmentIndex {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.records > 0 && self.max_time >= start && self.min_time <= end
    }
}

fn prefix(id: &TraceId) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Counters describing the stored logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogStats {
    /// Records held.
    pub(crate) records: u64,
    /// Bytes of their segment files.
    pub(crate) bytes: u64,
    /// Segment files.
    pub(crate) segments: u64,
}

/// The log store: a WAL of log batches and its in-memory index.
pub(crate) struct LogStore {
    wal: Wal,
    dir: PathBuf,
    /// Shared with the WAL writer's callbacks, which add each durable
    /// record's summary before its append is answered.
    index: Arc<RwLock<BTreeMap<SegmentSeq, SegmentIndex>>>,
}

impl LogStore {
    /// Opens (creating if needed) the log store in `dir`, replaying the
    /// summaries of its records into the index.
    pub(crate) fn open(
        dir: &Path,
        disk: Disk,
        segment_bytes: u64,
    ) -> Result<(LogStore, ReplayReport), StoreError> {
        let mut index: BTreeMap<SegmentSeq, SegmentIndex> = BTreeMap::new();
        let (wal, report) = Wal::open_kind(
            dir,
            disk,
            segment_bytes,
            0,
            WalKind::Logs,
            &|payload| {
                let summary = Summary::read(payload)?;
                // Replay checks the batch itself decodes only when a query
                // reads it; here the summary must at least be whole.
                Ok((u64::from(summary.records), IndexEntry::from(&summary)))
            },
            &mut |seq, entry: IndexEntry| index.entry(seq).or_default().merge(entry),
        )?;
        Ok((
            LogStore {
                wal,
                dir: dir.to_path_buf(),
                index: Arc::new(RwLock::new(index)),
            },
            report,
        ))
    }

    /// Stores `logs` durably: on `Ok` they survive `kill -9` and a power
    /// cut, and queries see them.
    pub(crate) async fn append(&self, logs: Vec<LogRecord>) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let count = logs.len();
        let payload = codec::encode_logs_after(&logs, FRAME_LEN as usize).map_err(|reason| {
            StoreError::Encode {
                spans: count,
                reason,
            }
        })?;
        drop(logs);
        let entry = {
            let summary = Summary::read(&payload[FRAME_LEN as usize..]).map_err(|reason| {
                StoreError::Encode {
                    spans: count,
                    reason,
                }
            })?;
            IndexEntry::from(&summary)
        };
        let record = Record::frame_in_place(payload, count)?;
        let index = Arc::clone(&self.index);
        let on_durable = Box::new(move |position: crate::wal::WalPosition| {
            index
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(position.segment)
                .or_default()
                .merge(entry);
        });
        let answer = self.wal.submit(record, Some(on_durable))?;
        answer
            .await
            .map_err(|_| StoreError::Closed("the log WAL writer stopped before answering"))?
            .map(drop)
    }

    /// The records matching `query`, newest first, at most `query.limit`
    /// of them. Blocking: reads segment files.
    pub(crate) fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let start = query.start.map_or(0, |t| t.0);
        let end = query.end.map_or(u64::MAX, |t| t.0);
        let limit = query.effective_limit();
        // Newest segments first: the latest records usually sit there, and
        // once `limit` records are held, a segment whose newest record is
        // older than all of them cannot change the answer.
        let mut candidates: Vec<(SegmentSeq, u64)> = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            index
                .iter()
                .filter(|(_, s)| s.overlaps(start, end))
                .filter(|(_, s)| {
                    query
                        .trace_id
                        .is_none_or(|id| s.traces.contains(&prefix(&id)))
                })
                .map(|(seq, s)| (*seq, s.max_time))
                .collect()
        };
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let mut kept = Newest::new(limit);
        let mut page = LogPage::default();
        for (seq, max_time) in candidates {
            if kept.full() && kept.oldest().is_some_and(|oldest| max_time < oldest) {
                break;
            }
            if page.inspected >= MAX_INSPECTED {
                page.truncated = true;
                break;
            }
            self.read_segment(seq, query, start, end, &mut kept, &mut page)?;
        }
        page.logs = kept.into_newest_first();
        Ok(page)
    }

    /// Reads the records of segment `seq` that may match into `kept`.
    fn read_segment(
        &self,
        seq: SegmentSeq,
        query: &LogQuery,
        start: u64,
        end: u64,
        kept: &mut Newest,
        page: &mut LogPage,
    ) -> Result<(), StoreError> {
        let path = self.wal.segment_path(seq);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Deleted by retention since the index was read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("read log segment", path, e)),
        };
        let mut offset = HEADER_LEN as usize;
        // The open segment may end in a record being written: reading stops
        // at the first frame that is not whole, as replay would.
        while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
            let Ok((payload, used)) = read_frame(rest) else {
                break;
            };
            offset += used as usize;
            let Ok(summary) = Summary::read(payload) else {
                tracing::warn!(path = %path.display(), offset, "log record without a readable summary; skipped");
                continue;
            };
            if summary.records == 0
                || summary.max_time.0 < start
                || summary.min_time.0 > end
                || query.trace_id.is_some_and(|id| !summary.has_trace(&id))
                || kept.full() && kept.oldest().is_some_and(|o| summary.max_time.0 < o)
            {
                continue;
            }
            let logs = match summary.decode() {
                Ok(logs) => logs,
                Err(reason) => {
                    tracing::warn!(path = %path.display(), offset, %reason, "log record does not decode; skipped");
                    continue;
                }
            };
            page.inspected += logs.len() as u64;
            for log in logs {
                if (start..=end).contains(&log.time.0) && query.matches(&log) {
                    page.matched += 1;
                    kept.push(log);
                }
            }
            if page.inspected >= MAX_INSPECTED {
                page.truncated = true;
                break;
            }
        }
        Ok(())
    }

    /// Deletes the oldest segments while all their records are older than
    /// `cutoff`, never the one being written. Returns the records deleted.
    pub(crate) fn retain(&self, cutoff: UnixNanos) -> Result<u64, StoreError> {
        let (through, records) = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            let newest = index.keys().next_back().copied();
            let mut through = None;
            let mut records = 0;
            for (seq, segment) in index.iter() {
                if Some(*seq) == newest || segment.max_time >= cutoff.0 {
                    break;
                }
                through = Some(*seq);
                records += segment.records;
            }
            (through, records)
        };
        let Some(through) = through else {
            return Ok(0);
        };
        self.wal.remove_through(through)?;
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|seq, _| *seq > through);
        tracing::info!(dir = %self.dir.display(), through, records, "retention deleted log segments");
        Ok(records)
    }

    /// Counters for stats and `/metrics`.
    pub(crate) fn stats(&self) -> LogStats {
        let wal = self.wal.stats();
        let records = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|s| s.records)
            .sum();
        LogStats {
            records,
            bytes: wal.bytes,
            segments: wal.segments,
        }
    }

    /// Commits what is queued and stops the writer. Idempotent.
    pub(crate) fn close(&self) {
        self.wal.close();
    }
}

/// A record's summary, owned, on its way into the index.
#[derive(Debug, Default)]
struct IndexEntry {
    min_time: u64,
    max_time: u64,
    records: u64,
    traces: Vec<u64>,
}

impl From<&Summary<'_>> for IndexEntry {
    fn from(summary: &Summary<'_>) -> Self {
        IndexEntry {
            min_time: summary.min_time.0,
            max_time: summary.max_time.0,
            records: u64::from(summary.records),
            traces: summary.trace_ids().map(|id| prefix(&id)).collect(),
        }
    }
}

impl SegmentIndex {
    fn merge(&mut self, entry: IndexEntry) {
        if entry.records == 0 {
            return;
        }
        if self.records == 0 {
            self.min_time = entry.min_time;
            self.max_time = entry.max_time;
        } else {
            self.min_time = self.min_time.min(entry.min_time);
            self.max_time = self.max_time.max(entry.max_time);
        }
        self.records += entry.records;
        self.traces.extend(entry.traces);
    }
}

/// The newest `limit` records seen: a min-heap by time.
struct Newest {
    limit: usize,
    /// Ordered by (time, arrival) reversed, so the heap's top is the oldest.
    heap: BinaryHeap<std::cmp::Reverse<ByTime>>,
    arrivals: u64,
}

struct ByTime(u64, u64, LogRecord);

impl PartialEq for ByTime {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for ByTime {}
impl PartialOrd for ByTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

impl Newest {
    fn new(limit: usize) -> Newest {
        Newest {
            limit,
            heap: BinaryHeap::new(),
            arrivals: 0,
        }
    }

    fn full(&self) -> bool {
        self.heap.len() >= self.limit
    }

    fn oldest(&self) -> Option<u64> {
        self.heap.peek().map(|r| r.0 .0)
    }

    fn push(&mut self, log: LogRecord) {
        self.arrivals += 1;
        let item = std::cmp::Reverse(ByTime(log.time.0, self.arrivals, log));
        if !self.full() {
            self.heap.push(item);
        } else if self.heap.peek().is_some_and(|oldest| item < *oldest) {
            // `Reverse`: smaller means newer.
            self.heap.pop();
            self.heap.push(item);
        }
    }

    fn into_newest_first(self) -> Vec<LogRecord> {
        // `into_sorted_vec` is ascending in `Reverse` order: newest first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0 .2)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
