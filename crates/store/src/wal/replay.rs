//! Replay: reading every segment at open, handing each batch to the caller,
//! and repairing what a crash left behind.
//!
//! Damage is never fatal. A torn or corrupt record (short read, bad CRC,
//! undecodable payload) ends its segment: the file is truncated there with a
//! warning naming the file and offset, and replay goes on with the next
//! segment. A file whose header is not ours is set aside, not deleted. The one
//! refusal is a segment of a format version this build does not read, which a
//! newer build may still read: every header is checked before anything is
//! deleted or repaired, so a refused directory is left as it was. This module
//! writes nothing but those repairs, and makes them through a [`Disk`]; it
//! reads with `std::fs`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

use super::codec::payload_layout;
use super::disk::Disk;
use super::record::{check_header, read_frame, HeaderCheck, SegmentVersion, WalKind, HEADER_LEN};
use super::segment::{self, SegmentSeq};
use super::DecodePayload;

/// What replaying the write-ahead log found at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segment files read.
    pub segments: u64,
    /// Whole, valid records replayed.
    pub records: u64,
    /// Spans in those records, duplicates included (log records, in the
    /// log WAL's report).
    pub spans: u64,
    /// Bytes not replayed: cut from torn or corrupt segment tails, or in
    /// unreadable files set aside as `*.corrupt`.
    pub truncated_bytes: u64,
}

/// A segment as it stands after replay (and any repair).
#[derive(Debug, Clone)]
pub(crate) struct ReplayedSegment {
    /// Its sequence number.
    pub(crate) seq: SegmentSeq,
    /// Its file.
    pub(crate) path: PathBuf,
    /// Its length in bytes, all of it valid.
    pub(crate) len: u64,
    /// Its format version: only a segment of [`SegmentVersion::CURRENT`] may
    /// be appended to.
    pub(crate) version: SegmentVersion,
}

/// Replays every segment in `dir`, oldest first, calling `on_batch` with each
/// record's segment and batch (read by `decode`, which also counts its
/// items for the report) in write order. Segments numbered up to
/// `covered_through` hold spans that are already in blocks (a crash came
/// between writing the block and deleting them): they are deleted, not
/// replayed. Returns the report and the segments left.
pub(crate) fn replay_kind<T>(
    disk: &Disk,
    dir: &Path,
    covered_through: SegmentSeq,
    kind: WalKind,
    decode: &DecodePayload<T>,
    on_batch: &mut dyn FnMut(SegmentSeq, T),
) -> Result<(ReplayReport, Vec<ReplayedSegment>), StoreError> {
    let mut report = ReplayReport::default();
    let mut kept = Vec::new();
    let mut listed = segment::list_segments(dir)?;
    for (_, path) in &listed {
        refuse_unknown_version(path, kind)?;
    }
    let mut removed = false;
    listed.retain(|(seq, path)| {
        if *seq > covered_through {
            return true;
        }
        match disk.remove_file(path) {
            Ok(()) => removed = true,
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete a WAL segment already in a block"),
        }
        false
    });
    if removed {
        segment::sync_dir(disk, dir)?;
    }
    let count = listed.len();
    for (i, (seq, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let mut on_record = |batch: T| on_batch(seq, batch);
        let replayed = replay_segment(
            disk,
            dir,
            &path,
            is_last,
            kind,
            decode,
            &mut on_record,
            &mut report,
        )?;
        if let Some((len, version)) = replayed {
            kept.push(ReplayedSegment {
                seq,
                path,
                len,
                version,
            });
        }
    }
    Ok((report, kept))
}

/// Fails if the segment at `path` has a header of a version this build does
/// not read. Reads the header only.
fn refuse_unknown_version(path: &Path, kind: WalKind) -> Result<(), StoreError> {
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    File::open(path)
        .and_then(|file| file.take(HEADER_LEN).read_to_end(&mut header))
        .map_err(|e| StoreError::io("read WAL segment header", path, e))?;
    match check_header(&header) {
        HeaderCheck::OtherVersion(found) => Err(unsupported_version(path, found, kind)),
        HeaderCheck::Valid(version) if !kind.reads(version) => {
            Err(unsupported_version(path, version.number(), kind))
        }
        HeaderCheck::Valid(_) | HeaderCheck::Torn | HeaderCheck::NotAWalSegment => Ok(()),
    }
}

/// The refusal of a segment of version `found` in a WAL of `kind`.
fn unsupported_version(path: &Path, found: u16, kind: WalKind) -> StoreError {
    StoreError::UnsupportedWalVersion {
        path: path.to_path_buf(),
        found,
        supported: kind.writes().number(),
    }
}

/// Replays one segment; returns its valid length and version, or `None` if
/// it was deleted or set aside.
#[allow(clippy::too_many_arguments)]
fn replay_segment<T>(
    disk: &Disk,
    dir: &Path,
    path: &Path,
    is_last: bool,
    kind: WalKind,
    decode: &DecodePayload<T>,
    on_batch: &mut dyn FnMut(T),
    report: &mut ReplayReport,
) -> Result<Option<(u64, SegmentVersion)>, StoreError> {
    let bytes = fs::read(path).map_err(|e| StoreError::io("read WAL segment", path, e))?;
    let file_len = bytes.len() as u64;
    let version = match check_header(&bytes) {
        HeaderCheck::Valid(version) if kind.reads(version) => version,
        HeaderCheck::Valid(version) => {
            return Err(unsupported_version(path, version.number(), kind))
        }
        HeaderCheck::Torn => {
            // It holds no record. Deleting it (rather than rewriting its
            // header) also works on a full disk, where a rewrite could fail
            // and keep the store from opening.
            tracing::warn!(
                path = %path.display(),
                bytes = file_len,
                "WAL segment has a torn header (the process died while creating it); deleting it"
            );
            disk.remove_file(path)
                .map_err(|e| StoreError::io("delete torn WAL segment", path, e))?;
            report.truncated_bytes += file_len;
            return Ok(None);
        }
        // Refused before replay began; met here only if the file changed since.
        HeaderCheck::OtherVersion(found) => return Err(unsupported_version(path, found, kind)),
        HeaderCheck::NotAWalSegment => {
            let aside = segment::set_aside(disk, dir, path)?;
            tracing::warn!(
                path = %path.display(),
                moved_to = %aside.display(),
                bytes = file_len,
                "file in the WAL directory does not start with a WAL header; set it aside and skipped it"
            );
            report.truncated_bytes += file_len;
            return Ok(None);
        }
    };

    let mut offset = HEADER_LEN;
    let mut damage = None;
    // `offset` only grows by frames that fit, so it never passes `file_len`.
    while let Some(rest) = bytes.get(offset as usize..).filter(|r| !r.is_empty()) {
        let (payload, used) = match read_frame(rest) {
            Ok(frame) => frame,
            Err(e) => {
                damage = Some(e.to_string());
                break;
            }
        };
        match decode_record(payload, version, decode) {
            Ok((items, batch)) => {
                report.records += 1;
                report.spans += items;
                on_batch(batch);
                offset += used;
            }
            Err(e) => {
                damage = Some(format!(
                    "record of {} bytes passes its CRC but does not decode: {e}",
                    payload.len()
                ));
                break;
            }
        }
    }
    if let Some(reason) = damage {
        let cut = file_len - offset;
        tracing::warn!(
            path = %path.display(),
            offset,
            cut_bytes = cut,
            last_segment = is_last,
            %reason,
            "WAL segment has a torn or corrupt record; truncating the segment at this offset \
             (records after it in this segment are lost, later segments are still replayed)"
        );
        segment::truncate(disk, path, offset)?;
        report.truncated_bytes += cut;
    }
    report.segments += 1;
    Ok(Some((offset, version)))
}

/// Decodes a record's payload, which must be of a layout that a segment of
/// `version` holds: no build writes any other there.
fn decode_record<T>(
    payload: &[u8],
    version: SegmentVersion,
    decode: &DecodePayload<T>,
) -> Result<(u64, T), String> {
    let layout = payload_layout(payload).map_err(|e| e.to_string())?;
    if !version.holds_layout(layout) {
        return Err(format!(
            "it has payload layout {layout}, which a version {} segment does not hold",
            version.number()
        ));
    }
    decode(payload)
}
