//! Payload layout 4: a batch of log records in a WAL record of the log WAL.
//!
//! ```text
//! 0x80 0x00 0x04                      marker + layout (see wal::codec)
//! u64 LE  earliest record time         \
//! u64 LE  latest record time            | the record's summary: read
//! u32 LE  records                       | without decoding the batch
//! u32 LE  n, then n distinct trace ids /  (16 bytes each, sorted)
//! postcard LogBatchOut                 the records
//! ```
//!
//! The summary comes first so that a lookup by trace id or a search by time
//! skips a record by reading a few bytes, and replay at open builds the
//! segment index from summaries alone, never decoding the records. The
//! records are postcard over shapes defined here, not the model's serde
//! derives (those skip empty fields for JSON, which postcard cannot read
//! back); nested values use the model's derives, as layout 3 does.

use std::sync::Arc;

use chaintrace_model::{
    AnyValue, CompactString, KeyValue, LogRecord, Resource, Scope, SpanId, TraceId, UnixNanos,
};
use serde::{Deserialize, Serialize};

/// The first bytes of a layout-4 payload.
pub(crate) const LAYOUT_4_PREFIX: [u8; 3] = [0x80, 0x00, 4];

/// Bytes of the summary after the prefix, before the trace ids.
const SUMMARY_FIXED: usize = 8 + 8 + 4 + 4;

/// What a layout-4 record holds, read without decoding its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary<'a> {
    /// The earliest record time.
    pub(crate) min_time: UnixNanos,
    /// The latest record time.
    pub(crate) max_time: UnixNanos,
    /// Records in the batch.
    pub(crate) records: u32,
    /// The distinct trace ids of its records, sorted, 16 bytes each.
    trace_ids: &'a [u8],
    /// The postcard batch.
    body: &'a [u8],
}

impl<'a> Summary<'a> {
    /// Reads the summary at the start of `payload`.
    pub(crate) fn read(payload: &'a [u8]) -> Result<Summary<'a>, String> {
        let rest = payload
            .strip_prefix(&LAYOUT_4_PREFIX[..])
            .ok_or("it does not start with the layout-4 marker")?;
        let fixed = rest
            .get(..SUMMARY_FIXED)
            .ok_or("it ends inside the log summary")?;
        let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().unwrap_or([0; 4]));
        let ids = u32_at(20) as usize;
        let ids_len = ids.checked_mul(16).ok_or("trace id count overflows")?;
        let after = &rest[SUMMARY_FIXED..];
        if after.len() < ids_len {
            return Err(format!("it names {ids} trace ids but ends before them"));
        }
        let (trace_ids, body) = after.split_at(ids_len);
        Ok(Summary {
            min_time: UnixNanos(u64_at(0)),
            max_time: UnixNanos(u64_at(8)),
            records: u32_at(16),
            trace_ids,
            body,
        })
    }

    /// Whether a record of trace `id` is in the batch.
    pub(crate) fn has_trace(&self, id: &TraceId) -> bool {
        let n = self.trace_ids.len() / 16;
        // Binary search over the sorted 16-byte ids.
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let at = &self.trace_ids[mid * 16..mid * 16 + 16];
            match at.cmp(id.as_bytes().as_slice()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// The batch's distinct trace ids.
    pub(crate) fn trace_ids(&self) -> impl Iterator<Item = TraceId> + '_ {
        self.trace_ids
            .chunks_exact(16)
            .filter_map(|c| TraceId::from_bytes(c).ok())
    }

    /// Decodes the records.
    pub(crate) fn decode(&self) -> Result<Vec<LogRecord>, String> {
        let batch: BatchIn = postcard::from_bytes(self.body).map_err(|e| e.to_string())?;
        let resources: Vec<Arc<Resource>> = batch.resources.into_iter().map(Arc::new).collect();
        let scopes: Vec<Arc<Scope>> = batch
            .scopes
            .into_iter()
            .map(|s| {
                Arc::new(Scope {
                    name: s.name,
                    version: s.version,
                })
            })
            .collect();
        batch
            .logs
            .into_iter()
            .map(|l| {
                let resource = resources
                    .get(l.resource as usize)
                    .cloned()
                    .ok_or_else(|| format!("a record names resource {}", l.resource))?;
                let scope = scopes
                    .get(l.scope as usize)
                    .cloned()
                    .ok_or_else(|| format!("a record names scope {}", l.scope))?;
                Ok(LogRecord {
                    time: l.time,
                    observed_time: l.observed_time,
                    severity_number: l.severity_number,
                    severity_text: l.severity_text,
                    body: l.body,
                    attributes: l.attributes,
                    trace_id: l.trace_id,
                    span_id: l.span_id,
                    flags: l.flags,
                    event_name: l.event_name,
                    dropped_attributes_count: l.dropped_attributes_count,
                    resource,
                    scope,
                })
            })
            .collect()
    }
}

/// Encodes `logs` as a layout-4 payload after `headroom` zero bytes (room
/// for the record frame, filled in place).
pub(crate) fn encode_logs_after(logs: &[LogRecord], headroom: usize) -> Result<Vec<u8>, String> {
    let mut resources: Vec<&Arc<Resource>> = Vec::new();
    let mut scopes: Vec<&Arc<Scope>> = Vec::new();
    let mut out_logs = Vec::with_capacity(logs.len());
    let (mut min_time, mut max_time) = (u64::MAX, 0);
    let mut trace_ids: Vec<[u8; 16]> = Vec::new();
    for log in logs {
        let resource = index_of(&mut resources, &log.resource);
        let scope = index_of(&mut scopes, &log.scope);
        min_time = min_time.min(log.time.0);
        max_time = max_time.max(log.time.0);
        if let Some(id) = log.trace_id {
            trace_ids.push(*id.as_bytes());
        }
        // Destructured without `..`: a new model field fails to compile
        // here instead of being silently left out of the WAL.
        let LogRecord {
            time,
            observed_time,
            severity_number,
            severity_text,
            body,
            attributes,
            trace_id,
            span_id,
            flags,
            event_name,
            dropped_attributes_count,
            resource: _,
            scope: _,
        } = log;
        out_logs.push(LogOut {
            time: *time,
            observed_time: *observed_time,
            severity_number: *severity_number,
            severity_text,
            body,
            attributes,
            trace_id: *trace_id,
            span_id: *span_id,
            flags: *flags,
            event_name,
            dropped_attributes_count: *dropped_attributes_count,
            resource,
            scope,
        });
    }
    if logs.is_empty() {
        min_time = 0;
    }
    trace_ids.sort_unstable();
    trace_ids.dedup();
    let batch = BatchOut {
        resources: resources.iter().map(|r| r.as_ref()).collect(),
        scopes: scopes
            .iter()
            .map(|s| ScopeOut {
                name: &s.name,
                version: &s.version,
            })
            .collect(),
        logs: out_logs,
    };
    let mut payload =
        Vec::with_capacity(headroom + LAYOUT_4_PREFIX.len() + SUMMARY_FIXED + trace_ids.len() * 16);
    payload.resize(headroom, 0);
    payload.extend_from_slice(&LAYOUT_4_PREFIX);
    payload.extend_from_slice(&min_time.to_le_bytes());
    payload.extend_from_slice(&max_time.to_le_bytes());
    let count = u32::try_from(logs.len()).map_err(|_| "more than 4 billion records")?;
    payload.extend_from_slice(&count.to_le_bytes());
    payload.extend_from_slice(&(trace_ids.len() as u32).to_le_bytes());
    for id in &trace_ids {
        payload.extend_from_slice(id);
    }
    postcard::to_extend(&batch, payload).map_err(|e| e.to_string())
}

/// The index of `item` in `table` (by pointer: records of one export share
/// their resource and scope), appending it when new.
fn index_of<'a, T>(table: &mut Vec<&'a Arc<T>>, item: &'a Arc<T>) -> u32 {
    // Exports hold a handful of resources and scopes: a scan from the
    // end (the likeliest match) beats hashing.
    if let Some(i) = table.iter().rposition(|t| Arc::ptr_eq(t, item)) {
        return i as u32;
    }
    table.push(item);
    (table.len() - 1) as u32
}

#[derive(Serialize)]
struct BatchOut<'a> {
    resources: Vec<&'a Resource>,
    scopes: Vec<ScopeOut<'a>>,
    logs: Vec<LogOut<'a>>,
}

#[derive(Deserialize)]
struct BatchIn {
    resources: Vec<Resource>,
    scopes: Vec<ScopeIn>,
    logs: Vec<LogIn>,
}

#[derive(Serialize)]
struct ScopeOut<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Deserialize)]
struct ScopeIn {
    name: CompactString,
    version: CompactString,
}

#[derive(Serialize)]
struct LogOut<'a> {
    time: UnixNanos,
    observed_time: UnixNanos,
    severity_number: u8,
    severity_text: &'a str,
    body: &'a AnyValue,
    attributes: &'a [KeyValue],
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    flags: u32,
    event_name: &'a str,
    dropped_attributes_count: u32,
    resource: u32,
    scope: u32,
}

#[derive(Deserialize)]
struct LogIn {
    time: UnixNanos,
    observed_time: UnixNanos,
    severity_number: u8,
    severity_text: CompactString,
    body: AnyValue,
    attributes: Vec<KeyValue>,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    flags: u32,
    event_name: CompactString,
    dropped_attributes_count: u32,
    resource: u32,
    scope: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::test_support::log;

    #[test]
    fn a_batch_round_trips_with_its_summary() {
        let mut logs = vec![log(3, 1, 500, "second"), log(1, 1, 200, "first")];
        logs.push(LogRecord {
            trace_id: None,
            span_id: None,
            severity_text: "".into(),
            body: AnyValue::KvList(vec![KeyValue::new("k", 1i64)]),
            ..log(0, 0, 900, "")
        });
        let payload = encode_logs_after(&logs, 5).unwrap();
        assert_eq!(&payload[..5], &[0; 5]);
        let summary = Summary::read(&payload[5..]).unwrap();
        assert_eq!(summary.min_time, UnixNanos(200));
        assert_eq!(summary.max_time, UnixNanos(900));
        assert_eq!(summary.records, 3);
        assert!(summary.has_trace(&TraceId::from_bytes(&[1; 16]).unwrap()));
        assert!(summary.has_trace(&TraceId::from_bytes(&[3; 16]).unwrap()));
        assert!(!summary.has_trace(&TraceId::from_bytes(&[2; 16]).unwrap()));
        assert_eq!(summary.trace_ids().count(), 2);
        assert_eq!(summary.decode().unwrap(), logs);
    }

    #[test]
    fn a_cut_or_foreign_payload_is_an_error_not_a_panic() {
        let payload = encode_logs_after(&[log(1, 1, 1, "x")], 0).unwrap();
        for end in 0..payload.len() {
            let cut = &payload[..end];
            if let Ok(summary) = Summary::read(cut) {
                assert!(summary.decode().is_err(), "cut at {end}");
            }
        }
        assert!(Summary::read(b"\x80\x00\x03rest").is_err());
        let mut many = LAYOUT_4_PREFIX.to_vec();
        many.extend_from_slice(&[0; 20]);
        many.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Summary::read(&many).unwrap_err().contains("trace ids"));
    }
}
