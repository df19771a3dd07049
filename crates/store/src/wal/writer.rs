//! The WAL writer: one thread that owns the open segment file and commits
//! queued records in groups.
//!
//! Appenders queue a [`WriteRequest`]; the writer takes everything queued,
//! writes it all, calls `sync_data` once and only then answers every waiter,
//! so concurrent exporters share one fsync. When the segment would grow past
//! its size budget the writer rotates to a new one. This module must not know
//! about spans or the head: it moves framed bytes to disk, through a
//! [`Disk`] (`std::fs` outside tests), never calling `std::fs` itself.
//!
//! The order write → sync → answer is the WAL's promise; the power-cut test
//! (`crate::power_cut_tests`) fails if an answer ever comes before its sync.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use chaintrace_metrics::Histogram;
use tokio::sync::oneshot;

use crate::store::StoreError;

use super::disk::{Disk, SegmentFile};
use super::record::{Record, SegmentVersion, HEADER_LEN};
use super::replay::ReplayedSegment;
use super::segment::{self, SegmentSeq};

/// Stop draining the queue into one group past this many bytes, so that one
/// group's latency stays bounded under a flood.
const MAX_GROUP_BYTES: u64 = 16 * 1024 * 1024;

/// Where a record was written: the future block cutter uses this to know
/// which segments its blocks cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WalPosition {
    /// The segment holding the record.
    pub(crate) segment: SegmentSeq,
    /// Byte offset of the record's frame in that segment.
    pub(crate) offset: u64,
}

/// The writer's answer to one request.
pub(crate) type WriteResult = Result<WalPosition, StoreError>;

/// Runs on the writer thread right after a record is durable and before its
/// waiter is answered. Because one thread runs these in write order, whatever
/// they do (the embedded store inserts into its head) happens in WAL order,
/// and a seal sees every earlier record's effect.
pub(crate) type OnDurable = Box<dyn FnOnce(WalPosition) + Send>;

/// Runs on the writer thread when a seal completes, with the highest sealed
/// segment number; no record of a later segment has been written yet.
pub(crate) type OnSeal = Box<dyn FnOnce(SegmentSeq) + Send>;

/// One record to make durable, and whom to tell when it is.
pub(crate) struct WriteRequest {
    /// The framed record.
    pub(crate) record: Record,
    /// Called once the record is durable, before `done` is answered.
    pub(crate) on_durable: Option<OnDurable>,
    /// Answered once the record is synced (or failed).
    pub(crate) done: oneshot::Sender<WriteResult>,
}

/// A request to close the open segment so that every record written so far
/// lies in sealed segments (the block cutter's starting point).
pub(crate) struct SealRequest {
    /// Called with the highest sealed segment number before `done` is answered.
    pub(crate) on_seal: OnSeal,
    /// Answered with the highest sealed segment number (0: none yet).
    pub(crate) done: oneshot::Sender<Result<SegmentSeq, StoreError>>,
}

/// What the writer thread is asked to do.
pub(crate) enum Command {
    /// Make a record durable.
    Write(WriteRequest),
    /// Seal the open segment.
    Seal(SealRequest),
}

/// Counters shared between the writer thread and whoever reports stats.
#[derive(Debug)]
pub(crate) struct WalCounters {
    /// Bytes in segment files.
    pub(crate) bytes: AtomicU64,
    /// Segment files.
    pub(crate) segments: AtomicU64,
    /// `sync_data` calls made to commit records (segment creation excluded).
    pub(crate) syncs: AtomicU64,
    /// Bytes submitted but not yet written: memory the queue holds.
    pub(crate) queued_bytes: AtomicU64,
    /// How long each of those `sync_data` calls took.
    pub(crate) sync_seconds: Histogram,
}

/// Bounds of [`WalCounters::sync_seconds`]: an fsync takes tens of
/// microseconds on a fast SSD, tens of milliseconds on a disk or a busy
/// cloud volume, and seconds when the device is in trouble.
const SYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

impl Default for WalCounters {
    fn default() -> Self {
        WalCounters {
            bytes: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            sync_seconds: Histogram::new(SYNC_BUCKETS),
        }
    }
}

/// The segment currently appended to.
struct OpenSegment {
    seq: SegmentSeq,
    path: PathBuf,
    file: SegmentFile,
    /// Bytes written, synced or not.
    len: u64,
    /// Bytes known to be on disk.
    synced_len: u64,
}

/// The state the writer thread owns: the open segment and where the next one goes.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    disk: Disk,
    segment_bytes: u64,
    current: Option<OpenSegment>,
    next_seq: SegmentSeq,
    counters: Arc<WalCounters>,
    /// The version of the segments it creates (and may continue).
    version: SegmentVersion,
}

impl SegmentWriter {
    /// A writer for `dir` that continues the last replayed segment when it is
    /// of the version this build writes and has room, and otherwise starts a
    /// new one at the first write. A segment of an older version is never
    /// appended to: a build that reads only that version would open it and
    /// misread the records this build adds.
    ///
    /// New segments are numbered above `used_through` too: numbers that
    /// blocks already claim must never be reused, or a later open would take
    /// the new segment for one already in a block and delete it.
    #[cfg(test)]
    pub(crate) fn new(
        dir: PathBuf,
        disk: Disk,
        segment_bytes: u64,
        last: Option<&ReplayedSegment>,
        used_through: SegmentSeq,
        counters: Arc<WalCounters>,
    ) -> Result<SegmentWriter, StoreError> {
        SegmentWriter::for_version(
            dir,
            disk,
            segment_bytes,
            last,
            used_through,
            counters,
            SegmentVersion::CURRENT,
        )
    }

    /// A writer of segments of `version` (see [`WalKind`](super::WalKind)).
    pub(crate) fn for_version(
        dir: PathBuf,
        disk: Disk,
        segment_bytes: u64,
        last: Option<&ReplayedSegment>,
        used_through: SegmentSeq,
        counters: Arc<WalCounters>,
        version: SegmentVersion,
    ) -> Result<SegmentWriter, StoreError> {
        let mut current = None;
        let appendable = |l: &&ReplayedSegment| l.version == version && l.len < segment_bytes;
        if let Some(last) = last.filter(appendable) {
            // Replay truncated the file to its valid length, so appending
            // continues right after the last good record.
            current = Some(OpenSegment {
                seq: last.seq,
                path: last.path.clone(),
                file: segment::open_for_append(&disk, &last.path)?,
                len: last.len,
                synced_len: last.len,
            });
        }
        Ok(SegmentWriter {
            dir,
            disk,
            segment_bytes,
            current,
            next_seq: last.map_or(1, |l| l.seq + 1).max(used_through + 1),
            counters,
            version,
        })
    }

    /// Writes `records` in order and syncs them: all durable on `Ok`.
    fn write_group(&mut self, records: &[&Record]) -> Result<Vec<WalPosition>, StoreError> {
        let mut positions = Vec::with_capacity(records.len());
        for record in records {
            let seg = self.segment_for(record.len())?;
            let position = WalPosition {
                segment: seg.seq,
                offset: seg.len,
            };
            let written = seg.file.write_all(record.as_bytes());
            if let Err(e) = written {
                return Err(self.abandon_current("write WAL segment", e));
            }
            self.grew(record.len());
            positions.push(position);
        }
        self.sync_current()?;
        Ok(positions)
    }

    /// The segment to write a record of `len` bytes to, rotating first if the
    /// current one would grow past the budget. Every segment takes at least
    /// one record, so an oversized record gets a segment of its own.
    fn segment_for(&mut self, len: u64) -> Result<&mut OpenSegment, StoreError> {
        let full = self
            .current
            .as_ref()
            .is_some_and(|s| s.len > HEADER_LEN && s.len + len > self.segment_bytes);
        if full {
            self.sync_current()?;
            self.current = None;
        }
        let seg = match self.current.take() {
            Some(seg) => seg,
            None => self.create_next()?,
        };
        Ok(self.current.insert(seg))
    }

    /// Syncs and closes the open segment if it holds records; returns the
    /// highest segment number that is sealed now (0 if none), so that every
    /// record written so far lies in a segment at or below it.
    fn seal(&mut self) -> Result<SegmentSeq, StoreError> {
        if self.current.as_ref().is_some_and(|s| s.len > HEADER_LEN) {
            self.sync_current()?;
            self.current = None;
        }
        Ok(match &self.current {
            Some(open) => open.seq - 1,
            None => self.next_seq - 1,
        })
    }

    /// Creates the next segment.
    fn create_next(&mut self) -> Result<OpenSegment, StoreError> {
        // Take the number first: a failed creation must not make every later
        // attempt collide with the half-made file.
        let seq = self.next_seq;
        self.next_seq += 1;
        let (file, path) = segment::create_segment(&self.disk, &self.dir, seq, self.version)?;
        self.counters.segments.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(HEADER_LEN, Ordering::Relaxed);
        tracing::debug!(path = %path.display(), "started WAL segment");
        Ok(OpenSegment {
            seq,
            path,
            file,
            len: HEADER_LEN,
            synced_len: HEADER_LEN,
        })
    }

    /// Accounts for a record just written to the current segment.
    fn grew(&mut self, len: u64) {
        if let Some(seg) = self.current.as_mut() {
            seg.len += len;
        }
        self.counters.bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Syncs what was written to the current segment, if anything.
    fn sync_current(&mut self) -> Result<(), StoreError> {
        let Some(seg) = self.current.as_mut() else {
            return Ok(());
        };
        if seg.len == seg.synced_len {
            return Ok(());
        }
        let started = Instant::now();
        if let Err(e) = seg.file.sync_data() {
            return Err(self.abandon_current("sync WAL segment", e));
        }
        self.counters
            .sync_seconds
            .observe_duration(started.elapsed());
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        if let Some(seg) = self.current.as_mut() {
            seg.synced_len = seg.len;
        }
        Ok(())
    }

    /// Gives up on the current segment after a failed write or sync: cuts off
    /// the unsynced tail if it can and moves on to a fresh segment at the next
    /// write. If the cut fails, replay will find and truncate the tail; since
    /// nothing follows it in this segment, no acknowledged record is lost.
    /// After a failed fsync the page cache cannot be trusted, hence a new file.
    fn abandon_current(&mut self, op: &'static str, error: io::Error) -> StoreError {
        let Some(seg) = self.current.take() else {
            return StoreError::io(op, &self.dir, error);
        };
        if seg.file.set_len(seg.synced_len).is_ok() {
            self.counters
                .bytes
                .fetch_sub(seg.len - seg.synced_len, Ordering::Relaxed);
        }
        tracing::error!(
            path = %seg.path.display(),
            error = %error,
            "cannot {op}; the batches in flight are not acknowledged, continuing in a new segment"
        );
        StoreError::io(op, seg.path, error)
    }
}

/// A copy of `error` for each waiter of a failed group (`io::Error` is not `Clone`).
fn error_for_waiter(error: &StoreError) -> StoreError {
    match error {
        StoreError::Io { op, path, source } => StoreError::Io {
            op,
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::Closed(why) => StoreError::Closed(why),
        other => StoreError::Overloaded(other.to_string()),
    }
}

/// The writer thread's loop: runs until every sender is gone and the queue is
/// empty, so nothing queued before shutdown is dropped. Records queued
/// together are committed as one group with one fsync; a seal ends a group.
pub(crate) fn run(mut writer: SegmentWriter, requests: Receiver<Command>) {
    let mut next: Option<Command> = None;
    loop {
        let first = match next.take() {
            Some(command) => command,
            None => match requests.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        let first = match first {
            Command::Seal(seal) => {
                let result = writer.seal();
                if let Ok(seq) = result {
                    (seal.on_seal)(seq);
                }
                let _ = seal.done.send(result);
                continue;
            }
            Command::Write(first) => first,
        };
        let mut group_bytes = first.record.len();
        let mut group = vec![first];
        while group_bytes < MAX_GROUP_BYTES {
            match requests.try_recv() {
                Ok(Command::Write(more)) => {
                    group_bytes += more.record.len();
                    group.push(more);
                }
                Ok(seal @ Command::Seal(_)) => {
                    next = Some(seal);
                    break;
                }
                Err(_) => break,
            }
        }
        let records: Vec<&Record> = group.iter().map(|r| &r.record).collect();
        let result = writer.write_group(&records);
        writer
            .counters
            .queued_bytes
            .fetch_sub(group_bytes, Ordering::Relaxed);
        match result {
            Ok(positions) => {
                for (request, position) in group.into_iter().zip(positions) {
                    if let Some(on_durable) = request.on_durable {
                        on_durable(position);
                    }
                    // A waiter that stopped waiting is fine: the data is durable.
                    let _ = request.done.send(Ok(position));
                }
            }
            Err(error) => {
                for request in group {
                    let _ = request.done.send(Err(error_for_waiter(&error)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn request(payload: &[u8]) -> (Command, oneshot::Receiver<WriteResult>) {
        let (done, answer) = oneshot::channel();
        let record = Record::frame(payload, 0).unwrap();
        let request = WriteRequest {
            record,
            on_durable: None,
            done,
        };
        (Command::Write(request), answer)
    }

    fn frames_in(dir: &std::path::Path) -> Vec<(SegmentSeq, u64)> {
        let mut out = Vec::new();
        for (seq, path) in segment::list_segments(dir).unwrap() {
            let bytes = std::fs::read(path).unwrap();
            let mut offset = HEADER_LEN;
            while (offset as usize) < bytes.len() {
                let (_, used) =
                    super::super::record::read_frame(&bytes[offset as usize..]).unwrap();
                out.push((seq, offset));
                offset += used;
            }
        }
        out
    }

    #[test]
    fn queued_requests_are_committed_with_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(WalCounters::default());
        let writer = SegmentWriter::new(
            dir.path().into(),
            Disk::Std,
            1 << 20,
            None,
            0,
            Arc::clone(&counters),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let mut answers = Vec::new();
        // Queue everything before the writer runs: it must take all five in
        // one group.
        for i in 0..5u8 {
            let (req, answer) = request(&[i; 10]);
            tx.send(req).unwrap();
            answers.push(answer);
        }
        drop(tx);
        run(writer, rx);

        assert_eq!(counters.syncs.load(Ordering::Relaxed), 1);
        assert_eq!(counters.segments.load(Ordering::Relaxed), 1);
        let positions: Vec<WalPosition> = answers
            .into_iter()
            .map(|mut a| a.try_recv().unwrap().unwrap())
            .collect();
        let on_disk: Vec<(SegmentSeq, u64)> = frames_in(dir.path());
        let answered: Vec<(SegmentSeq, u64)> =
            positions.iter().map(|p| (p.segment, p.offset)).collect();
        assert_eq!(answered, on_disk);
        assert_eq!(on_disk.len(), 5);
        assert_eq!(
            counters.bytes.load(Ordering::Relaxed),
            HEADER_LEN + 5 * (8 + 10)
        );
    }

    #[test]
    fn rotation_inside_a_group_syncs_the_old_segment_first() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(WalCounters::default());
        // Room for two 18-byte records per segment.
        let writer = SegmentWriter::new(
            dir.path().into(),
            Disk::Std,
            HEADER_LEN + 36,
            None,
            0,
            Arc::clone(&counters),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let mut answers = Vec::new();
        for i in 0..5u8 {
            let (req, answer) = request(&[i; 10]);
            tx.send(req).unwrap();
            answers.push(answer);
        }
        drop(tx);
        run(writer, rx);

        let segments: Vec<SegmentSeq> = answers
            .into_iter()
            .map(|mut a| a.try_recv().unwrap().unwrap().segment)
            .collect();
        assert_eq!(segments, vec![1, 1, 2, 2, 3]);
        assert_eq!(counters.syncs.load(Ordering::Relaxed), 3);
        assert_eq!(counters.segments.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn continues_the_last_segment_when_it_has_room() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(WalCounters::default());
        let writer = SegmentWriter::new(
            dir.path().into(),
            Disk::Std,
            1 << 20,
            None,
            0,
            Arc::clone(&counters),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let (req, _answer) = request(b"first");
        tx.send(req).unwrap();
        drop(tx);
        run(writer, rx);

        // Payloads here are not span batches, so replay truncates them as
        // undecodable; look at the segment list only.
        let listed = segment::list_segments(dir.path()).unwrap();
        let last = ReplayedSegment {
            seq: listed[0].0,
            path: listed[0].1.clone(),
            len: std::fs::metadata(&listed[0].1).unwrap().len(),
            version: SegmentVersion::CURRENT,
        };
        let writer = SegmentWriter::new(
            dir.path().into(),
            Disk::Std,
            1 << 20,
            Some(&last),
            0,
            Arc::clone(&counters),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let (req, mut answer) = request(b"second");
        tx.send(req).unwrap();
        drop(tx);
        run(writer, rx);
        let position = answer.try_recv().unwrap().unwrap();
        assert_eq!(position.segment, 1);
        assert_eq!(position.offset, last.len);
        assert_eq!(frames_in(dir.path()).len(), 2);
        // A full last segment is not continued.
        let writer = SegmentWriter::new(
            dir.path().into(),
            Disk::Std,
            last.len,
            Some(&last),
            0,
            Arc::clone(&counters),
        )
        .unwrap();
        assert!(writer.current.is_none());
        assert_eq!(writer.next_seq, 2);
    }

    #[test]
    fn never_continues_a_segment_of_an_older_version() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(WalCounters::default());
        let (_, path) =
            segment::create_segment(&Disk::Std, dir.path(), 7, SegmentVersion::V3).unwrap();
        let old = ReplayedSegment {
            seq: 7,
            path,
            len: HEADER_LEN,
            version: SegmentVersion::V1,
        };
        let writer = SegmentWriter::new(
            dir.path().into(),
            Disk::Std,
            1 << 20,
            Some(&old),
            0,
            counters,
        )
        .unwrap();
        assert!(writer.current.is_none());
        assert_eq!(writer.next_seq, 8);
    }
}
