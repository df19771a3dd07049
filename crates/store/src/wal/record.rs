//! The WAL's on-disk framing: the segment header and the record frame.
//!
//! A segment file is `MAGIC` (6 bytes) + format version (u16 LE), followed by
//! records. A record is payload length (u32 LE) + CRC-32 of the payload
//! (u32 LE) + payload (see [`super::codec`]). This module turns bytes into
//! frames and back; it does no I/O and never decides what to do about a bad
//! frame — [`super::replay`] does.

use crate::store::StoreError;

/// The first bytes of every segment file.
pub(crate) const MAGIC: [u8; 6] = *b"CTWAL\n";
/// The segment format version this build writes and reads.
pub(crate) const VERSION: u16 = 1;
/// Bytes in the segment header.
pub(crate) const HEADER_LEN: u64 = 8;
/// Bytes in a record frame before the payload.
pub(crate) const FRAME_LEN: u64 = 8;
/// The largest payload one record may carry. Far below `u32::MAX` so that a
/// garbage length can never make replay allocate gigabytes, yet well above
/// any sane export batch.
pub(crate) const MAX_PAYLOAD: u64 = 256 * 1024 * 1024;

/// The segment header bytes.
pub(crate) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..6].copy_from_slice(&MAGIC);
    h[6..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    /// A valid header of this version.
    Valid,
    /// Fewer bytes than a header, all matching its start: the file was being
    /// created when the process died.
    Torn,
    /// Our magic, another version.
    OtherVersion(u16),
    /// Not our magic at all.
    NotAWalSegment,
}

/// Checks the header at the start of `bytes` (the whole file).
pub(crate) fn check_header(bytes: &[u8]) -> HeaderCheck {
    let want = header();
    if bytes.len() < want.len() {
        if want.starts_with(bytes) {
            return HeaderCheck::Torn;
        }
        return HeaderCheck::NotAWalSegment;
    }
    if bytes[..6] != MAGIC {
        return HeaderCheck::NotAWalSegment;
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version == VERSION {
        HeaderCheck::Valid
    } else {
        HeaderCheck::OtherVersion(version)
    }
}

/// A framed, ready-to-write WAL record holding one encoded batch.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    bytes: Vec<u8>,
}

impl Record {
    /// Frames `payload` for `spans` spans (the count is for error messages).
    pub(crate) fn frame(payload: &[u8], spans: usize) -> Result<Record, StoreError> {
        let len = payload.len() as u64;
        if len > MAX_PAYLOAD {
            return Err(StoreError::BatchTooLarge {
                spans,
                bytes: len,
                limit: MAX_PAYLOAD,
            });
        }
        let mut bytes = Vec::with_capacity(FRAME_LEN as usize + payload.len());
        // Cannot truncate: len <= MAX_PAYLOAD < u32::MAX.
        bytes.extend_from_slice(&(len as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
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
        let h = header();
        assert_eq!(check_header(&h), HeaderCheck::Valid);
        assert_eq!(check_header(&h[..3]), HeaderCheck::Torn);
        assert_eq!(check_header(&[]), HeaderCheck::Torn);
        assert_eq!(check_header(b"PAR1xxxx"), HeaderCheck::NotAWalSegment);
        let mut v2 = h;
        v2[6] = 2;
        assert_eq!(check_header(&v2), HeaderCheck::OtherVersion(2));
    }
}
