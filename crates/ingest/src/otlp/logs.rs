//! OTLP logs: `ExportLogsServiceRequest` (protobuf or JSON) → model
//! [`LogRecord`]s.
//!
//! Protobuf goes through the same hand-written, memory-budgeted wire reader
//! as traces ([`super::wire`]); JSON through opentelemetry-proto's serde
//! after the same shape check as traces. [`decode_logs_request`] defines
//! the conversion both must agree with. A record with a malformed trace or
//! span id (not 16 / 8 bytes) is rejected alone and reported as OTLP
//! partial success; all-zero ids mean "no trace", as the spec says.

use std::fmt;
use std::sync::Arc;

use chaintrace_model::{LogRecord, Resource, Scope, SpanId, TraceId, UnixNanos};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};

use super::decode::{convert_any_value, convert_attributes, DecodeError, MAX_ERROR_MESSAGES};
use super::json::{json_shape, JsonShape};

/// The log records of one request that passed, and what was rejected.
#[derive(Debug, Default)]
pub struct DecodedLogs {
    /// The records that passed, in request order.
    pub logs: Vec<LogRecord>,
    /// Records rejected for a malformed trace or span id.
    pub rejected: u64,
    /// The first [`MAX_ERROR_MESSAGES`] reasons, each naming the position,
    /// e.g. `resourceLogs[0].scopeLogs[0].logRecords[2]: traceId has 5 bytes, want 16`.
    pub errors: Vec<String>,
}

impl DecodedLogs {
    pub(crate) fn reject(&mut self, pos: LogPos, reason: &str) {
        self.rejected += 1;
        if self.errors.len() < MAX_ERROR_MESSAGES {
            self.errors.push(format!("{pos}: {reason}"));
        }
    }

    /// The OTLP answer: partial success when records were rejected.
    pub fn response(&self) -> ExportLogsServiceResponse {
        let partial_success = (self.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(self.rejected).unwrap_or(i64::MAX),
            error_message: self.errors.join("; "),
        });
        ExportLogsServiceResponse { partial_success }
    }
}

/// Where a record sits in a request, as OTLP/JSON spells the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogPos {
    pub(crate) resource: usize,
    pub(crate) scope: usize,
    pub(crate) record: usize,
}

impl fmt::Display for LogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resourceLogs[{}].scopeLogs[{}].logRecords[{}]",
            self.resource, self.scope, self.record
        )
    }
}

/// A record's ids: empty or all zero is "none"; any other length is wrong.
pub(crate) fn log_ids(
    trace_id: &[u8],
    span_id: &[u8],
) -> Result<(Option<TraceId>, Option<SpanId>), String> {
    fn id<T>(
        bytes: &[u8],
        len: usize,
        what: &str,
        make: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, String> {
        if bytes.is_empty() || (bytes.len() == len && bytes.iter().all(|b| *b == 0)) {
            return Ok(None);
        }
        if bytes.len() != len {
            return Err(format!("{what} has {} bytes, want {len}", bytes.len()));
        }
        Ok(make(bytes))
    }
    let trace = id(trace_id, TraceId::LEN, "traceId", |b| {
        TraceId::from_bytes(b).ok()
    })?;
    let span = id(span_id, SpanId::LEN, "spanId", |b| {
        SpanId::from_bytes(b).ok()
    })?;
    Ok((trace, span))
}

/// A record's time: its own, else when it was observed, else now (the
/// spec lets a sender leave both at 0; a record must sort somewhere).
pub(crate) fn log_time(time: u64, observed: u64, now: UnixNanos) -> UnixNanos {
    match (time, observed) {
        (0, 0) => now,
        (0, observed) => UnixNanos(observed),
        (time, _) => UnixNanos(time),
    }
}

/// An OTLP severity number as the model keeps it: 0 when out of range.
pub(crate) fn severity_number(n: i32) -> u8 {
    u8::try_from(n).ok().filter(|n| *n <= 24).unwrap_or(0)
}

/// Turns an OTLP logs request into model records, rejecting records with
/// malformed ids.
///
/// ```
/// use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
/// let decoded = chaintrace_ingest::otlp::decode_logs_request(ExportLogsServiceRequest::default());
/// assert!(decoded.logs.is_empty() && decoded.rejected == 0);
/// ```
pub fn decode_logs_request(request: ExportLogsServiceRequest) -> DecodedLogs {
    decode_logs_request_at(request, UnixNanos::now())
}

/// [`decode_logs_request`] with `now` as the time of records that carry
/// none.
pub(crate) fn decode_logs_request_at(
    request: ExportLogsServiceRequest,
    now: UnixNanos,
) -> DecodedLogs {
    let mut out = DecodedLogs::default();
    for (ri, resource_logs) in request.resource_logs.into_iter().enumerate() {
        let resource = Arc::new(Resource {
            attributes: resource_logs
                .resource
                .map(|r| convert_attributes(r.attributes))
                .unwrap_or_default(),
        });
        for (si, scope_logs) in resource_logs.scope_logs.into_iter().enumerate() {
            let scope = Arc::new(
                scope_logs
                    .scope
                    .map(|s| Scope {
                        name: s.name.into(),
                        version: s.version.into(),
                    })
                    .unwrap_or_default(),
            );
            for (li, record) in scope_logs.log_records.into_iter().enumerate() {
                let pos = LogPos {
                    resource: ri,
                    scope: si,
                    record: li,
                };
                let (trace_id, span_id) = match log_ids(&record.trace_id, &record.span_id) {
                    Ok(ids) => ids,
                    Err(reason) => {
                        out.reject(pos, &reason);
                        continue;
                    }
                };
                out.logs.push(LogRecord {
                    time: log_time(record.time_unix_nano, record.observed_time_unix_nano, now),
                    observed_time: UnixNanos(record.observed_time_unix_nano),
                    severity_number: severity_number(record.severity_number),
                    severity_text: record.severity_text.into(),
                    body: record
                        .body
                        .map(convert_any_value)
                        .unwrap_or(chaintrace_model::AnyValue::Empty),
                    attributes: convert_attributes(record.attributes),
                    trace_id,
                    span_id,
                    flags: record.flags,
                    event_name: record.event_name.into(),
                    dropped_attributes_count: record.dropped_attributes_count,
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                });
            }
        }
    }
    out
}

/// Parses a protobuf `ExportLogsServiceRequest` into model records.
pub fn decode_logs_protobuf(body: &[u8]) -> Result<DecodedLogs, DecodeError> {
    super::wire::decode_logs_within(body, usize::MAX).map(|(decoded, _)| decoded)
}

/// Parses an OTLP/JSON `ExportLogsServiceRequest` into model records.
///
/// ```
/// let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
///     "timeUnixNano":"5","severityNumber":13,"severityText":"WARNING",
///     "body":{"stringValue":"rate limited"},
///     "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
/// let decoded = chaintrace_ingest::otlp::decode_logs_json(body).unwrap();
/// assert_eq!(decoded.logs[0].message(), "rate limited");
/// assert_eq!(decoded.logs[0].severity_number, 13);
/// ```
pub fn decode_logs_json(body: &[u8]) -> Result<DecodedLogs, DecodeError> {
    decode_logs_shaped(body, json_shape(body)?, usize::MAX)
}

/// [`decode_logs_json`] for a body whose shape was taken, within
/// `max_decoded_bytes`.
pub(crate) fn decode_logs_shaped(
    body: &[u8],
    shape: JsonShape,
    max_decoded_bytes: usize,
) -> Result<DecodedLogs, DecodeError> {
    shape.check(max_decoded_bytes)?;
    let request: ExportLogsServiceRequest =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(decode_logs_request(request))
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
