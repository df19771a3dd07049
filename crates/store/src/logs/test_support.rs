//! Log records for tests.

use std::sync::Arc;

use chaintrace_model::{
    AnyValue, KeyValue, LogRecord, Resource, Scope, SpanId, TraceId, UnixNanos,
};

/// A record of trace `[t; 16]` and span `[s; 8]` (none when 0) at `time`,
/// severity INFO, service `svc`.
pub(crate) fn log(t: u8, s: u8, time: u64, message: &str) -> LogRecord {
    LogRecord {
        time: UnixNanos(time),
        observed_time: UnixNanos(time + 1),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: AnyValue::from(message),
        attributes: vec![KeyValue::new("code.function", "step")],
        trace_id: (t != 0).then(|| TraceId::from_bytes(&[t; 16]).unwrap()),
        span_id: (s != 0).then(|| SpanId::from_bytes(&[s; 8]).unwrap()),
        flags: 1,
        event_name: "".into(),
        dropped_attributes_count: 0,
        resource: Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", "svc")],
        }),
        scope: Arc::new(Scope {
            name: "logger".into(),
            version: "".into(),
        }),
    }
}
