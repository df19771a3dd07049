//! `ExportLogsServiceRequest` wire bytes → model log records, read like
//! the traces request: the same reader, memory budget, resource, scope and
//! attribute decoding, and the same agreement with prost on every input
//! (`logs_agree_with_prost` checks it).

use std::mem::size_of;
use std::sync::Arc;

use chaintrace_model::{AnyValue, KeyValue, LogRecord, Resource, Scope, UnixNanos};

use super::reader::{self, Reader, WireError};
use super::{any_value, each_field, push_key_value, resource, scope, Message, RECURSION_LIMIT};
use crate::otlp::decode::DecodeError;
use crate::otlp::logs::{log_ids, log_time, severity_number, DecodedLogs, LogPos};

/// The most one body byte can become decoded, as the decoder charges it:
/// as for traces ([`super::PROTOBUF_BYTES_PER_BODY_BYTE`]), except that a
/// kept log record may be an empty 2-byte message (a record needs no ids),
/// so each 2 bytes may become a whole record, twice over (its slot in a
/// doubling vector, then its charge).
pub(crate) const LOG_BYTES_PER_BODY_BYTE: usize =
    reader::MESSAGE_BYTES / 2 + super::LARGEST_SLOT + size_of::<LogRecord>() + 2;

/// Parses a protobuf `ExportLogsServiceRequest` within about
/// `max_decoded_bytes`; returns the records and an upper bound of the
/// bytes they took.
pub(crate) fn decode_logs_within(
    body: &[u8],
    max_decoded_bytes: usize,
) -> Result<(DecodedLogs, usize), DecodeError> {
    decode_logs_within_at(body, max_decoded_bytes, UnixNanos::now())
}

/// [`decode_logs_within`] with `now` as the time of records that carry
/// none.
pub(crate) fn decode_logs_within_at(
    body: &[u8],
    max_decoded_bytes: usize,
    now: UnixNanos,
) -> Result<(DecodedLogs, usize), DecodeError> {
    let budget = max_decoded_bytes.saturating_sub(body.len());
    let (decoded, charged) = reader::with_memory_budget(budget, || {
        let mut out = DecodedLogs::default();
        request(Reader::new(body), now, &mut out).map(|()| out)
    });
    match decoded {
        Ok(decoded) => Ok((decoded, charged.saturating_add(body.len()))),
        Err(e) if e.over_budget() => Err(DecodeError::TooLarge(format!(
            "{}; send smaller batches",
            e.into_prost()
        ))),
        Err(e) => Err(DecodeError::Protobuf(e.into_prost())),
    }
}

fn request(r: Reader<'_>, now: UnixNanos, out: &mut DecodedLogs) -> Result<(), WireError> {
    let budget = RECURSION_LIMIT;
    let mut ri = 0;
    each_field(r, Message::LogsRequest, |tag, wire, r| match tag {
        1 => {
            let index = ri;
            ri += 1;
            r.message(wire, budget)
                .and_then(|(body, inner)| resource_logs(body, inner, index, now, out))
                .map_err(|e| e.index(index))
        }
        _ => r.skip(tag, wire, budget),
    })
}

/// One `ResourceLogs`, in two passes as `resource_spans`: its resource may
/// come after its records, and more than once.
fn resource_logs(
    r: Reader<'_>,
    budget: u32,
    ri: usize,
    now: UnixNanos,
    out: &mut DecodedLogs,
) -> Result<(), WireError> {
    let mut attributes = Vec::new();
    each_field(r, Message::ResourceLogs, |tag, wire, r| match tag {
        1 => {
            let (body, inner) = r.message(wire, budget)?;
            resource(body, inner, &mut attributes)
        }
        2 => r.frame(wire, budget).map(drop),
        3 => r.string(wire).map(drop),
        _ => r.skip(tag, wire, budget),
    })?;
    let resource = Arc::new(Resource { attributes });
    let mut si = 0;
    each_field(r, Message::ResourceLogs, |tag, wire, r| match tag {
        2 => {
            let index = si;
            si += 1;
            r.message(wire, budget)
                .and_then(|(body, inner)| scope_logs(body, inner, ri, index, now, &resource, out))
                .map_err(|e| e.index(index))
        }
        _ => r.skip(tag, wire, budget),
    })
}

fn scope_logs(
    r: Reader<'_>,
    budget: u32,
    ri: usize,
    si: usize,
    now: UnixNanos,
    resource: &Arc<Resource>,
    out: &mut DecodedLogs,
) -> Result<(), WireError> {
    let (mut name, mut version) = ("", "");
    each_field(r, Message::ScopeLogs, |tag, wire, r| match tag {
        1 => {
            let (body, inner) = r.message(wire, budget)?;
            scope(body, inner, &mut name, &mut version)
        }
        2 => r.frame(wire, budget).map(drop),
        3 => r.string(wire).map(drop),
        _ => r.skip(tag, wire, budget),
    })?;
    let scope = Arc::new(Scope {
        name: name.into(),
        version: version.into(),
    });
    let mut li = 0;
    each_field(r, Message::ScopeLogs, |tag, wire, r| match tag {
        2 => {
            let pos = LogPos {
                resource: ri,
                scope: si,
                record: li,
            };
            li += 1;
            r.message(wire, budget)
                .and_then(|(body, inner)| log_record(body, inner, pos, now, resource, &scope, out))
                .map_err(|e| e.index(pos.record))
        }
        _ => r.skip(tag, wire, budget),
    })
}

fn log_record(
    r: Reader<'_>,
    budget: u32,
    pos: LogPos,
    now: UnixNanos,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    out: &mut DecodedLogs,
) -> Result<(), WireError> {
    let (mut time, mut observed) = (0, 0);
    let mut severity = 0;
    let (mut severity_text, mut event_name) = ("", "");
    let mut body = AnyValue::Empty;
    let mut attributes: Vec<KeyValue> = Vec::new();
    let (mut dropped, mut flags) = (0, 0);
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    each_field(r, Message::LogRecord, |tag, wire, r| {
        match tag {
            1 => time = r.fixed64(wire)?,
            // prost's enum is an int32: the low 32 bits of the varint.
            2 => severity = r.varint(wire)? as i32,
            3 => severity_text = r.string(wire)?,
            5 => {
                let (b, inner) = r.message(wire, budget)?;
                any_value(b, inner, &mut body)?;
            }
            6 => push_key_value(r, wire, budget, &mut attributes)?,
            7 => dropped = r.varint(wire)? as u32,
            8 => flags = r.fixed32(wire)?,
            9 => trace_id = r.bytes(wire)?,
            10 => span_id = r.bytes(wire)?,
            11 => observed = r.fixed64(wire)?,
            12 => event_name = r.string(wire)?,
            _ => r.skip(tag, wire, budget)?,
        }
        Ok(())
    })?;
    let (trace_id, span_id) = match log_ids(trace_id, span_id) {
        Ok(ids) => ids,
        Err(reason) => {
            out.reject(pos, &reason);
            return Ok(());
        }
    };
    reader::charge_push(&out.logs)?;
    reader::charge(size_of::<LogRecord>())?;
    out.logs.push(LogRecord {
        time: log_time(time, observed, now),
        observed_time: UnixNanos(observed),
        severity_number: severity_number(severity),
        severity_text: severity_text.into(),
        body,
        attributes,
        trace_id,
        span_id,
        flags,
        event_name: event_name.into(),
        dropped_attributes_count: dropped,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    });
    Ok(())
}
