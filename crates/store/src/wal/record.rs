//! The WAL's on-disk framing: the segment header and the record frame.
//!
//! A segment file is `MAGIC` (6 bytes) + format version (u16 LE), followed by
//! records. A record is payload length (u32 LE) + CRC-32 of the payload
//! (u32 LE) + payload (see [`super::codec`]). This module turns bytes into
//! frames and back; it does no I/O and never decides what to do about a bad
//! frame — [`super::replay`] does.
//!
//! # Versions
//!
//! The framing is the same in every version; the version says which payload
//! layouts the segment may hold ([`SegmentVersion::holds_layout`]). It is the
//! one place an older build looks before reading records, and every build
//! refuses to open a segment whose version it does not know. A build meeting a
//! payload layout it does not know inside a segment it accepts would instead
//! take the record for damage and truncate the segment there, so a new payload
//! layout needs a new segment version.

use crate::store::StoreError;

/// The first bytes of every segment file.
pub(crate) const MAGIC: [u8; 6] = *b"CTWAL\n";
/// Bytes in the segment header.
pub(crate) const HEADER_LEN: u64 = 8;
/// Bytes in a record frame before the payload.
pub(crate) const FRAME_LEN: u64 = 8;
/// The largest payload one record may carry. Far below `u32::MAX` so that a
/// garbage length can never make replay allocate gigabytes, yet well above
/// any sane export batch.
pub(crate) const MAX_PAYLOAD: u64 = 256 * 1024 * 1024;

/// A segment format version this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentVersion {
    /// Payload layout 1, as builds before layout 2 wrote it. Development
    /// builds that wrote layout 2 before version 2 existed appended layout-2
    /// records to these segments too; they are read, never written again.
    V1,
    /// Payload layout 2 only. Builds that know only layout 1 read a layout-2
    /// payload as an empty batch without complaint; this version makes them
    /// refuse the segment instead of silently losing its spans.
    V2,
    /// Payload layout 3 only (scopes shared like resources). Builds that
    /// know layouts 1 and 2 refuse the segment rather than truncate it at
    /// the first record they cannot read.
    V3,
    /// A log segment: payload layout 4 (log records) only. Log segments
    /// live in their own directory ([`WalKind::Logs`]); a build without
    /// logs never looks there, and one that finds a log segment among span
    /// segments refuses it like an unknown version.
    V4,
}

/// What a WAL directory holds: which segment version it writes and which
/// it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalKind {
    /// Span batches: writes version 3, reads 1 to 3.
    Spans,
    /// Log batches: writes and reads version 4.
    Logs,
}

impl WalKind {
    /// The version of the segments this kind of WAL creates.
    pub(crate) fn writes(self) -> SegmentVersion {
        match self {
            WalKind::Spans => SegmentVersion::CURRENT,
            WalKind::Logs => SegmentVersion::V4,
        }
    }

    /// Whether a segment of `version` belongs in this kind of WAL.
    pub(crate) fn reads(self, version: SegmentVersion) -> bool {
        match self {
            WalKind::Spans => version != SegmentVersion::V4,
            WalKind::Logs => version == SegmentVersion::V4,
        }
    }
}

impl SegmentVersion {
    /// The version this build writes to span segments; span appends go
    /// only to segments of it.
    pub(crate) const CURRENT: SegmentVersion = SegmentVersion::V3;
    /// Every version this build reads, oldest first.
    const ALL: [SegmentVersion; 4] = [
        SegmentVersion::V1,
        SegmentVersion::V2,
        SegmentVersion::V3,
        SegmentVersion::V4,
    ];

    /// The number in the header.
    pub(crate) fn number(self) -> u16 {
        match self {
            SegmentVersion::V1 => 1,
            SegmentVersion::V2 => 2,
            SegmentVersion::V3 => 3,
            SegmentVersion::V4 => 4,
        }
    }

    /// Whether a record with payload `layout` may appear in a segment of this
    /// version. Anything else is not what a build wrote, and replay treats it
    /// as damage.
    pub(crate) fn holds_layout(self, layout: u8) -> bool {
        match self {
            SegmentVersion::V1 => matches!(layout, 1 | 2),
            SegmentVersion::V2 => layout == 2,
            SegmentVersion::V3 => layout == 3,
            SegmentVersion::V4 => layout == 4,
        }
    }
}

/// The header bytes of a segment of `version`.
pub(crate) fn header(version: SegmentVersion) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..6].copy_from_slice(&MAGIC);
    h[6..].copy_from_slice(&version.number().to_le_bytes());
    h
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    /// A valid header of a version this build reads.
    Valid(SegmentVersion),
    /// Fewer bytes than a header, all matching its start: the file was being
    /// created when the process died.
    Torn,
    /// Our magic, another version.
    OtherVersion(u16),
    /// Not our magic at all.
    NotAWalSegment,
}

/// Checks the header at the start of `bytes`: the whole file or just its
/// first [`HEADER_LEN`] bytes, as nothing after them is looked at.
pub(crate) fn check_header(bytes: &[u8]) -> HeaderCheck {
    if bytes.len() < HEADER_LEN as usize {
        // Only this build's own version is ever being created, but an older
        // build may have died creating a version-1 segment.
        let torn = SegmentVersion::ALL
            .iter()
            .any(|v| header(*v).starts_with(bytes));
        if torn {
            return HeaderCheck::Torn;
        }
        return HeaderCheck::NotAWalSegment;
    }
    if bytes[..6] != MAGIC {
        return HeaderCheck::NotAWalSegment;
    }
    let found = u16::from_le_bytes([bytes[6], bytes[7]]);
    match SegmentVersion::ALL
        .into_iter()
        .find(|v| v.number() == found)
    {
        Some(version) => HeaderCheck::Valid(version),
        None => HeaderCheck::OtherVersion(found),
    }
}

/// A framed, ready-to-write WAL record holding one encoded batch.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    bytes: Vec<u8>,
}

impl Record {
    /// Frames `payload` for `spans` spans (the count is for error messages).
    #[cfg(test)]
    pub(crate) fn frame(payload: &[u8], spans: usize) -> Result<Record, StoreError> {
        let mut bytes = Vec::with_capacity(FRAME_LEN as usize + payload.len());
        bytes.resize(FRAME_LEN as usize, 0);
        bytes.extend_from_slice(payload);
        Record::frame_in_place(bytes, spans)
    }

    /// Frames the payload that follows [`FRAME_LEN`] bytes of room at the
    /// start of `bytes`, writing the header into that room.
    pub(crate) fn frame_in_place(mut bytes: Vec<u8>, spans: usize) -> Result<Record, StoreError> {
        let header = FRAME_LEN as usize;
        assert!(bytes.len() >= header, "no room for the frame header");
        let len = (bytes.len() - header) as u64;
        if len > MAX_PAYLOAD {
            return Err(StoreError::BatchTooLarge {
                spans,
                bytes: len,
                limit: MAX_PAYLOAD,
            });
        }
        let crc = crc32fast::hash(&bytes[header..]);
        // Cannot truncate: len <= MAX_PAYLOAD < u32::MAX.
        bytes[..4].copy_from_slice(&(len as u32).to_le_bytes());
        bytes[4..header].copy_from_slice(&crc.to_le_bytes());
        Ok(Record { bytes })
    }

    /// The frame and payload, as written to disk.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes on disk.
    pub(crate) fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Why the bytes at some offset are not a whole, valid record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes left than a frame header.
    ShortHeader {
        /// Bytes left.
        remaining: u64,
    },
    /// The length field is over [`MAX_PAYLOAD`].
    TooLong {
        /// The claimed length.
        len: u64,
    },
    /// The payload runs past the end of the file.
    ShortPayload {
        /// The claimed length.
        len: u64,
        /// Bytes left after the frame header.
        remaining: u64,
    },
    /// The payload's CRC does not match.
    Crc {
        /// CRC in the frame.
        stored: u32,
        /// CRC of the bytes read.
        actual: u32,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::ShortHeader { remaining } => {
                write!(
                    f,
                    "only {remaining} bytes left, a record header needs {FRAME_LEN}"
                )
            }
            FrameError::TooLong { len } => {
                write!(f, "record length {len} is over the limit of {MAX_PAYLOAD}")
            }
            FrameError::ShortPayload { len, remaining } => {
                write!(f, "record of {len} bytes but only {remaining} bytes follow")
            }
            FrameError::Crc { stored, actual } => {
                write!(
                    f,
                    "CRC mismatch: stored {stored:08x}, computed {actual:08x}"
                )
            }
        }
    }
}

/// Reads the record at the start of `bytes` (non-empty): its payload and the
/// total bytes it occupies.
pub(crate) fn read_frame(bytes: &[u8]) -> Result<(&[u8], u64), FrameError> {
    let remaining = bytes.len() as u64;
    let (Some(len), Some(crc)) = (bytes.get(0..4), bytes.get(4..8)) else {
        return Err(FrameError::ShortHeader { remaining });
    };
    let len = u64::from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]));
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong { len });
    }
    let end = FRAME_LEN + len;
    let Some(payload) = bytes.get(FRAME_LEN as usize..end as usize) else {
        return Err(FrameError::ShortPayload {
            len,
            remaining: remaining - FRAME_LEN,
        });
    };
    let actual = crc32fast::hash(payload);
    if actual != stored {
        return Err(FrameError::Crc { stored, actual });
    }
    Ok((payload, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let rec = Record::frame(b"hello", 1).unwrap();
        assert_eq!(rec.len(), FRAME_LEN + 5);
        let mut bytes = rec.as_bytes().to_vec();
        bytes.extend_from_slice(b"next");
        let (payload, used) = read_frame(&bytes).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(used, rec.len());
    }

    #[test]
    fn bad_frames_are_reported() {
        let rec = Record::frame(b"hello", 1).unwrap();
        let bytes = rec.as_bytes();
        assert_eq!(
            read_frame(&bytes[..5]),
            Err(FrameError::ShortHeader { remaining: 5 })
        );
        assert_eq!(
            read_frame(&bytes[..10]),
            Err(FrameError::ShortPayload {
                len: 5,
                remaining: 2
            })
        );
        let mut flipped = bytes.to_vec();
        flipped[9] ^= 1;
        assert!(matches!(read_frame(&flipped), Err(FrameError::Crc { .. })));
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(read_frame(&huge), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn header_checks() {
        let v3 = header(SegmentVersion::V3);
        assert_eq!(v3, *b"CTWAL\n\x03\x00");
        assert_eq!(SegmentVersion::CURRENT, SegmentVersion::V3);
        assert_eq!(check_header(&v3), HeaderCheck::Valid(SegmentVersion::V3));
        assert_eq!(check_header(&v3[..7]), HeaderCheck::Torn);
        assert!(SegmentVersion::V3.holds_layout(3) && !SegmentVersion::V3.holds_layout(2));
        let v2 = header(SegmentVersion::V2);
        assert_eq!(v2, *b"CTWAL\n\x02\x00");
        assert_eq!(check_header(&v2), HeaderCheck::Valid(SegmentVersion::V2));
        let v1 = header(SegmentVersion::V1);
        assert_eq!(v1, *b"CTWAL\n\x01\x00");
        assert_eq!(check_header(&v1), HeaderCheck::Valid(SegmentVersion::V1));
        assert_eq!(check_header(&v2[..3]), HeaderCheck::Torn);
        assert_eq!(check_header(&v1[..7]), HeaderCheck::Torn);
        assert_eq!(check_header(&v2[..7]), HeaderCheck::Torn);
        assert_eq!(check_header(&[]), HeaderCheck::Torn);
        assert_eq!(check_header(b"CTWAL\n\x05"), HeaderCheck::NotAWalSegment);
        assert_eq!(check_header(b"CTWAL\n\x04"), HeaderCheck::Torn);
        assert_eq!(
            check_header(b"CTWAL\n\x04\x00"),
            HeaderCheck::Valid(SegmentVersion::V4)
        );
        assert!(SegmentVersion::V4.holds_layout(4) && !SegmentVersion::V4.holds_layout(3));
        assert!(
            WalKind::Logs.reads(SegmentVersion::V4) && !WalKind::Spans.reads(SegmentVersion::V4)
        );
        assert!(!WalKind::Logs.reads(SegmentVersion::V3));
        assert_eq!(check_header(b"PAR1xxxx"), HeaderCheck::NotAWalSegment);
        let mut v5 = v2;
        v5[6] = 5;
        assert_eq!(check_header(&v5), HeaderCheck::OtherVersion(5));
        let mut big = v2;
        big[7] = 1;
        assert_eq!(check_header(&big), HeaderCheck::OtherVersion(258));
    }

    #[test]
    fn version_2_holds_only_layout_2() {
        assert!(SegmentVersion::V1.holds_layout(1));
        assert!(SegmentVersion::V1.holds_layout(2));
        assert!(!SegmentVersion::V1.holds_layout(3));
        assert!(!SegmentVersion::V2.holds_layout(1));
        assert!(SegmentVersion::V2.holds_layout(2));
        assert!(!SegmentVersion::V2.holds_layout(3));
    }
}
