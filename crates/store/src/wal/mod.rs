//! The write-ahead log: append-only segment files that make a batch durable
//! before it is acknowledged, and that are replayed at open.
//!
//! Layout: `<dir>/00000000000000000001.wal`, ... Each segment starts with a
//! magic + version header ([`record`]), followed by records framed as
//! length + CRC-32 + payload; the payload is a postcard-encoded batch of spans
//! ([`codec`]). The header's version says which payload layouts a segment
//! holds; new records go only to segments of the version this build writes,
//! so a build too old to read them refuses the segment instead of misreading
//! it. One writer thread ([`writer`]) owns the open segment and commits
//! queued records in groups with one fsync each; [`replay`] reads the segments
//! back and repairs torn tails. Every change to a file goes through [`disk`],
//! plain `std::fs` outside tests; under test, `power_cut` can stand in for
//! it and lose whatever was not synced.
//!
//! [`Wal`] is the whole interface: encode a batch with [`encode_batch`], hand
//! it to [`Wal::submit`], await the answer. The WAL knows nothing of the head
//! or of queries; it calls back with replayed batches and that is all.

pub(crate) mod codec;
mod disk;
#[cfg(test)]
pub(crate) mod power_cut;
pub(crate) mod record;
mod replay;
mod segment;
mod writer;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use chaintrace_model::Span;
use tokio::sync::oneshot;

use crate::store::StoreError;

pub(crate) use disk::Disk;
pub(crate) use record::{Record, WalKind};
pub use replay::ReplayReport;
pub(crate) use segment::SegmentSeq;
pub(crate) use writer::{OnDurable, OnSeal, WalPosition, WriteResult};

use writer::{Command, SealRequest, SegmentWriter, WalCounters, WriteRequest};

/// Encodes and frames a batch, ready for [`Wal::submit`]. Plain CPU work:
/// call it on the appender's side, not on the writer thread.
pub(crate) fn encode_batch(spans: &[Span]) -> Result<Record, StoreError> {
    let framed = codec::encode_spans_after(spans, record::FRAME_LEN as usize)?;
    Record::frame_in_place(framed, spans.len())
}

/// The segment files in `dir`, oldest first (for tests elsewhere in the crate).
#[cfg(test)]
pub(crate) fn tests_list_segments(dir: &Path) -> Vec<(SegmentSeq, PathBuf)> {
    segment::list_segments(dir).unwrap()
}

/// Reads one WAL record's payload: the sequence number it covers and what
/// it holds (a span batch, a log batch), or why it cannot.
pub(crate) type DecodePayload<T> = dyn Fn(&[u8]) -> Result<(u64, T), String>;

/// Counters describing the WAL on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WalStats {
    /// Bytes in segment files.
    pub(crate) bytes: u64,
    /// Segment files.
    pub(crate) segments: u64,
    /// fsyncs made to commit records.
    pub(crate) syncs: u64,
    /// Bytes submitted and not yet written.
    pub(crate) queued_bytes: u64,
}

/// An open write-ahead log: a handle to its writer thread.
pub(crate) struct Wal {
    dir: PathBuf,
    /// What segments are deleted through; the writer thread has its own copy.
    disk: Disk,
    requests: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<WalCounters>,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, deletes the segments up
    /// to `covered_through` (their spans are already in blocks), replays every
    /// other segment into `on_batch` in write order, repairs torn tails, and
    /// starts the writer thread. Every file change goes through `disk`.
    /// Blocking; needs no async runtime.
    pub(crate) fn open(
        dir: &Path,
        disk: Disk,
        segment_bytes: u64,
        covered_through: SegmentSeq,
        on_batch: &mut dyn FnMut(SegmentSeq, Vec<Span>),
    ) -> Result<(Wal, ReplayReport), StoreError> {
        Wal::open_kind(
            dir,
            disk,
            segment_bytes,
            covered_through,
            WalKind::Spans,
            &|payload| {
                codec::decode_spans(payload)
                    .map(|spans| (spans.len() as u64, spans))
                    .map_err(|e| e.to_string())
            },
            on_batch,
        )
    }

    /// [`Wal::open`] for a WAL of `kind`, whose record payloads `decode`
    /// reads into the batches `on_batch` gets (with the number of items in
    /// each, for the report).
    pub(crate) fn open_kind<T>(
        dir: &Path,
        disk: Disk,
        segment_bytes: u64,
        covered_through: SegmentSeq,
        kind: WalKind,
        decode: &DecodePayload<T>,
        on_batch: &mut dyn FnMut(SegmentSeq, T),
    ) -> Result<(Wal, ReplayReport), StoreError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create WAL directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(&disk, parent)?;
            }
        }
        let (report, segments) =
            replay::replay_kind(&disk, dir, covered_through, kind, decode, on_batch)?;
        let counters = Arc::new(WalCounters::default());
        counters
            .bytes
            .store(segments.iter().map(|s| s.len).sum(), Ordering::Relaxed);
        counters
            .segments
            .store(segments.len() as u64, Ordering::Relaxed);
        let writer = SegmentWriter::for_version(
            dir.to_path_buf(),
            disk.clone(),
            segment_bytes,
            segments.last(),
            covered_through,
            Arc::clone(&counters),
            kind.writes(),
        )?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("chaintrace-wal".into())
            .spawn(move || writer::run(writer, rx))
            .map_err(|e| StoreError::io("start the WAL writer thread for", dir, e))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            disk,
            requests: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            counters,
        };
        Ok((wal, report))
    }

    /// Queues `record` for the writer; the receiver answers once it is durable
    /// (or failed), after `on_durable` ran on the writer thread. Never blocks.
    /// The write happens even if the receiver is dropped.
    pub(crate) fn submit(
        &self,
        record: Record,
        on_durable: Option<OnDurable>,
    ) -> Result<oneshot::Receiver<WriteResult>, StoreError> {
        let (done, answer) = oneshot::channel();
        let len = record.len();
        // Counted before sending: the writer subtracts it once written.
        self.counters.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let sent = self.send(Command::Write(WriteRequest {
            record,
            on_durable,
            done,
        }));
        if sent.is_err() {
            self.counters.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        sent?;
        Ok(answer)
    }

    /// Asks the writer to seal the open segment after everything queued
    /// before; `on_seal` runs on the writer thread with the highest sealed
    /// segment number, and the receiver answers with it.
    pub(crate) fn seal(
        &self,
        on_seal: OnSeal,
    ) -> Result<oneshot::Receiver<Result<SegmentSeq, StoreError>>, StoreError> {
        let (done, answer) = oneshot::channel();
        self.send(Command::Seal(SealRequest { on_seal, done }))?;
        Ok(answer)
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(requests) = requests.as_ref() else {
            return Err(StoreError::Closed("the WAL was closed"));
        };
        requests
            .send(command)
            .map_err(|_| StoreError::Closed("the WAL writer thread has stopped"))
    }

    /// Deletes the sealed segments numbered up to `seq`, whose spans are now
    /// safely in blocks. Only call it with a number a seal returned.
    pub(crate) fn remove_through(&self, seq: SegmentSeq) -> Result<(), StoreError> {
        let mut removed = false;
        for (n, path) in segment::list_segments(&self.dir)? {
            if n > seq {
                continue;
            }
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.disk
                .remove_file(&path)
                .map_err(|e| StoreError::io("delete WAL segment", &path, e))?;
            self.counters.bytes.fetch_sub(len, Ordering::Relaxed);
            self.counters.segments.fetch_sub(1, Ordering::Relaxed);
            removed = true;
        }
        if removed {
            segment::sync_dir(&self.disk, &self.dir)?;
        }
        Ok(())
    }

    /// The file of segment `seq` (which may have been deleted since).
    pub(crate) fn segment_path(&self, seq: SegmentSeq) -> PathBuf {
        segment::segment_path(&self.dir, seq)
    }

    /// The latency of each fsync that committed records.
    pub(crate) fn sync_seconds(&self) -> &chaintrace_metrics::Histogram {
        &self.counters.sync_seconds
    }

    /// The WAL's counters.
    pub(crate) fn stats(&self) -> WalStats {
        WalStats {
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            segments: self.counters.segments.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            queued_bytes: self.counters.queued_bytes.load(Ordering::Relaxed),
        }
    }

    /// Stops taking writes, lets the writer commit everything already queued,
    /// and waits for it to exit. Idempotent.
    pub(crate) fn close(&self) {
        drop(
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "the WAL writer thread panicked");
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::span;
    use record::{SegmentVersion, FRAME_LEN, HEADER_LEN};

    fn replay_all(dir: &Path) -> (Vec<Vec<Span>>, ReplayReport) {
        let mut batches = Vec::new();
        let (wal, report) =
            Wal::open(dir, Disk::Std, 1 << 20, 0, &mut |_, b| batches.push(b)).unwrap();
        wal.close();
        (batches, report)
    }

    #[tokio::test]
    async fn batches_round_trip_through_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let batch_a = vec![span(1, 1, None, "rag", "root", 10, 90)];
        let batch_b = vec![
            span(1, 2, Some(1), "rag", "embed", 20, 30),
            span(2, 1, None, "db", "query", 40, 50),
        ];
        {
            let (wal, report) =
                Wal::open(dir.path(), Disk::Std, 1 << 20, 0, &mut |_, _| {}).unwrap();
            assert_eq!(report, ReplayReport::default());
            for batch in [&batch_a, &batch_b] {
                let answer = wal.submit(encode_batch(batch).unwrap(), None).unwrap();
                answer.await.unwrap().unwrap();
            }
            assert_eq!(wal.stats().segments, 1);
            assert_eq!(wal.stats().syncs, 2);
        }
        let (batches, report) = replay_all(dir.path());
        assert_eq!(batches, vec![batch_a, batch_b]);
        assert_eq!(
            report,
            ReplayReport {
                segments: 1,
                records: 2,
                spans: 3,
                truncated_bytes: 0
            }
        );
    }

    /// Writes segment `seq` of `version` holding `payloads`; returns its bytes.
    fn write_segment(
        dir: &Path,
        seq: SegmentSeq,
        version: SegmentVersion,
        payloads: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut bytes = record::header(version).to_vec();
        for payload in payloads {
            bytes.extend_from_slice(Record::frame(payload, 0).unwrap().as_bytes());
        }
        fs::write(segment::segment_path(dir, seq), &bytes).unwrap();
        bytes
    }

    /// Every batch replayed from `dir`, with its segment number.
    fn replay_with_segments(dir: &Path) -> Vec<(SegmentSeq, Vec<Span>)> {
        let mut batches = Vec::new();
        let (wal, _) = Wal::open(dir, Disk::Std, 1 << 20, 0, &mut |seq, b| {
            batches.push((seq, b))
        })
        .unwrap();
        wal.close();
        batches
    }

    /// Every file in `dir` with its bytes.
    fn snapshot(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn version_1_segment_replays_and_new_appends_go_to_a_version_3_segment() {
        // A version-1 segment with room left, holding layout 1 as older
        // builds wrote it and layout 2 as development builds appended it.
        let dir = tempfile::tempdir().unwrap();
        let old_batch = vec![
            span(1, 1, None, "rag", "root", 10, 90),
            span(1, 2, Some(1), "rag", "embed", 20, 30),
        ];
        let dev_batch = vec![span(3, 1, None, "rag", "dev", 60, 70)];
        let v1 = write_segment(
            dir.path(),
            1,
            SegmentVersion::V1,
            &[
                codec::encode_layout_1(&old_batch),
                codec::encode_layout_2(&dev_batch),
            ],
        );
        let new_batch = vec![span(2, 1, None, "db", "query", 40, 50)];
        {
            let mut replayed = Vec::new();
            let (wal, report) = Wal::open(dir.path(), Disk::Std, 1 << 20, 0, &mut |seq, b| {
                replayed.push((seq, b))
            })
            .unwrap();
            assert_eq!(
                replayed,
                vec![(1, old_batch.clone()), (1, dev_batch.clone())]
            );
            assert_eq!(report.truncated_bytes, 0);
            let answer = wal.submit(encode_batch(&new_batch).unwrap(), None).unwrap();
            assert_eq!(answer.await.unwrap().unwrap().segment, 2);
            assert_eq!(wal.stats().segments, 2);
        }
        assert_eq!(fs::read(segment::segment_path(dir.path(), 1)).unwrap(), v1);
        let v3 = fs::read(segment::segment_path(dir.path(), 2)).unwrap();
        assert_eq!(
            v3[..HEADER_LEN as usize],
            record::header(SegmentVersion::V3)
        );
        assert_eq!(
            replay_with_segments(dir.path()),
            vec![(1, old_batch), (1, dev_batch), (2, new_batch)]
        );
    }

    #[tokio::test]
    async fn mixed_directory_replays_in_order_and_continues_the_version_3_segment() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<Span>> = (1..=7)
            .map(|i| vec![span(i, 1, None, "rag", "op", i.into(), 100)])
            .collect();
        write_segment(
            dir.path(),
            1,
            SegmentVersion::V1,
            &[codec::encode_layout_1(&batches[0])],
        );
        write_segment(
            dir.path(),
            2,
            SegmentVersion::V1,
            &[codec::encode_layout_2(&batches[1])],
        );
        write_segment(
            dir.path(),
            3,
            SegmentVersion::V2,
            &[
                codec::encode_layout_2(&batches[2]),
                codec::encode_layout_2(&batches[3]),
            ],
        );
        write_segment(
            dir.path(),
            4,
            SegmentVersion::V3,
            &[
                codec::encode_spans(&batches[4]).unwrap(),
                codec::encode_spans(&batches[5]).unwrap(),
            ],
        );
        {
            let mut replayed = Vec::new();
            let (wal, report) = Wal::open(dir.path(), Disk::Std, 1 << 20, 0, &mut |seq, b| {
                replayed.push((seq, b))
            })
            .unwrap();
            assert_eq!(
                replayed,
                vec![
                    (1, batches[0].clone()),
                    (2, batches[1].clone()),
                    (3, batches[2].clone()),
                    (3, batches[3].clone()),
                    (4, batches[4].clone()),
                    (4, batches[5].clone()),
                ]
            );
            assert_eq!(report.segments, 4);
            assert_eq!(report.truncated_bytes, 0);
            let answer = wal
                .submit(encode_batch(&batches[6]).unwrap(), None)
                .unwrap();
            assert_eq!(answer.await.unwrap().unwrap().segment, 4);
        }
        let seqs: Vec<SegmentSeq> = replay_with_segments(dir.path())
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 3, 4, 4, 4]);
    }

    #[test]
    fn layout_1_record_in_a_version_2_segment_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let good = vec![span(1, 1, None, "rag", "root", 10, 90)];
        let old = codec::encode_layout_1(&good);
        let bytes = write_segment(
            dir.path(),
            1,
            SegmentVersion::V2,
            &[codec::encode_layout_2(&good), old.clone()],
        );
        let (batches, report) = replay_all(dir.path());
        assert_eq!(batches, vec![good]);
        let cut = FRAME_LEN + old.len() as u64;
        assert_eq!(report.truncated_bytes, cut);
        assert_eq!(
            fs::metadata(segment::segment_path(dir.path(), 1))
                .unwrap()
                .len(),
            bytes.len() as u64 - cut
        );
    }

    #[test]
    fn layout_2_record_in_a_version_3_segment_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let good = vec![span(1, 1, None, "rag", "root", 10, 90)];
        let old = codec::encode_layout_2(&good);
        write_segment(
            dir.path(),
            1,
            SegmentVersion::V3,
            &[codec::encode_spans(&good).unwrap(), old.clone()],
        );
        let (batches, report) = replay_all(dir.path());
        assert_eq!(batches, vec![good]);
        assert_eq!(report.truncated_bytes, FRAME_LEN + old.len() as u64);
    }

    #[tokio::test]
    async fn submit_after_close_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), Disk::Std, 1 << 20, 0, &mut |_, _| {}).unwrap();
        wal.close();
        let record = encode_batch(&[span(1, 1, None, "rag", "x", 0, 1)]).unwrap();
        assert!(matches!(
            wal.submit(record, None),
            Err(StoreError::Closed(_))
        ));
    }

    #[test]
    fn unknown_version_5_is_refused_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        // Each of these would be changed by a replay that got that far: a
        // segment covered by a block (deleted), a torn tail (truncated), a
        // torn header (deleted).
        write_segment(dir.path(), 1, SegmentVersion::V1, &[b"covered".to_vec()]);
        let mut torn_tail = record::header(SegmentVersion::V1).to_vec();
        torn_tail.extend_from_slice(&[9, 0, 0]);
        fs::write(segment::segment_path(dir.path(), 2), torn_tail).unwrap();
        fs::write(
            segment::segment_path(dir.path(), 3),
            &record::header(SegmentVersion::V2)[..3],
        )
        .unwrap();
        let mut future = record::header(SegmentVersion::V3).to_vec();
        future[6] = 5;
        future.extend_from_slice(b"future data");
        fs::write(segment::segment_path(dir.path(), 4), &future).unwrap();
        let before = snapshot(dir.path());

        let err = Wal::open(dir.path(), Disk::Std, 1 << 20, 1, &mut |_, _| {})
            .err()
            .expect("must refuse");
        assert!(matches!(
            err,
            StoreError::UnsupportedWalVersion {
                found: 5,
                supported: 3,
                ..
            }
        ));
        let message = err.to_string();
        assert!(
            message.contains("00000000000000000004.wal") && message.contains("format version 5"),
            "{message}"
        );
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn torn_header_is_removed_and_foreign_file_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment::segment_path(dir.path(), 1), b"NOTWAL-garbage").unwrap();
        fs::write(
            segment::segment_path(dir.path(), 2),
            &record::header(SegmentVersion::CURRENT)[..3],
        )
        .unwrap();
        let (batches, report) = replay_all(dir.path());
        assert!(batches.is_empty());
        assert_eq!(report.segments, 0);
        assert_eq!(report.truncated_bytes, 14 + 3);
        assert!(dir.path().join("00000000000000000001.wal.corrupt").exists());
        assert!(!segment::segment_path(dir.path(), 2).exists());
    }
}
