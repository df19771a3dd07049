//! Entry points for the `cargo fuzz` targets in `fuzz/` (feature `fuzz`):
//! the WAL record and payload decoders and the block value codec, which are
//! otherwise private to this crate.
//!
//! This module only forwards to the real decoders and encoders, turning
//! their crate-private error types into strings; it must hold no logic of
//! its own, or the fuzzers would test it instead of the store. Nothing
//! outside `fuzz/` should enable the feature.

use chaintrace_model::{AnyValue, Span};

use crate::block::schema::ValueType;
use crate::block::value_codec;
use crate::wal::{codec, record};

/// Reads the WAL record at the start of `bytes` as replay does: checks its
/// length and CRC and returns its payload and the bytes it occupies.
pub fn read_wal_frame(bytes: &[u8]) -> Result<(&[u8], u64), String> {
    record::read_frame(bytes).map_err(|e| e.to_string())
}

/// Decodes one WAL record payload (either layout) into spans.
pub fn decode_wal_payload(payload: &[u8]) -> Result<Vec<Span>, String> {
    codec::decode_spans(payload).map_err(|e| e.to_string())
}

/// Encodes spans as a WAL record payload, as the writer does.
pub fn encode_wal_payload(spans: &[Span]) -> Result<Vec<u8>, String> {
    codec::encode_spans_after(spans, 0).map_err(|e| e.to_string())
}

/// Frames `payload` as a WAL record (length and CRC header), as the writer
/// does: lets a fuzzer reach the payload decoder past the CRC check.
pub fn frame_wal_record(payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0; record::FRAME_LEN as usize];
    bytes.extend_from_slice(payload);
    let rec = record::Record::frame_in_place(bytes, 0).map_err(|e| e.to_string())?;
    Ok(rec.as_bytes().to_vec())
}

/// Decodes a block value: `bytes[0]` is the value's type tag (the
/// attribute's `type` column), the rest its body.
pub fn decode_block_value(bytes: &[u8]) -> Result<AnyValue, String> {
    let (&tag, body) = bytes.split_first().ok_or("no type tag")?;
    let ty = ValueType::from_u8(tag).ok_or_else(|| format!("unknown value tag {tag}"))?;
    value_codec::decode_body(ty, body)
}

/// Encodes a block value as [`decode_block_value`] reads it: type tag, then
/// body. Fails on a value nested too deep to store.
pub fn encode_block_value(value: &AnyValue) -> Result<Vec<u8>, String> {
    let mut out = vec![ValueType::of(value) as u8];
    value_codec::encode_body(value, &mut out)
        .map_err(|_| format!("nested deeper than {} levels", value_codec::MAX_DEPTH))?;
    Ok(out)
}
