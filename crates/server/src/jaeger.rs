//! The Jaeger HTTP query API's JSON shapes, and the conversion of chaintrace
//! traces into them.
//!
//! Grafana's Jaeger data source and the Jaeger UI read exactly these shapes.
//! The mapping follows what Jaeger's own OTLP translator does: span kind
//! becomes tag `span.kind`, the instrumentation scope `otel.scope.name` /
//! `otel.scope.version`, status ERROR `error=true` plus `otel.status_code` /
//! `otel.status_description`, events become `logs` whose first field is
//! `event`, links become `FOLLOWS_FROM` references. Empty lists are `[]`,
//! never `null`: Jaeger clients crash on null.

use std::collections::BTreeMap;

use chaintrace_model::{
    AnyValue, KeyValue, LogRecord, Resource, Span, SpanKind, StatusCode, Trace,
};
use serde::Serialize;

/// The envelope every Jaeger API answer comes in.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    /// The payload; `null` on errors.
    pub data: Option<T>,
    /// Number of items in `data`.
    pub total: usize,
    /// Always 0 (Jaeger's API does not page).
    pub limit: usize,
    /// Always 0.
    pub offset: usize,
    /// `null` when all went well.
    pub errors: Option<Vec<EnvelopeError>>,
}

/// One error in a Jaeger envelope.
#[derive(Debug, Serialize)]
pub struct EnvelopeError {
    /// HTTP-like code, e.g. 404.
    pub code: u16,
    /// What went wrong.
    pub msg: String,
}

/// A trace as the Jaeger API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JaegerTrace {
    /// Lowercase hex trace id.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// All spans.
    pub spans: Vec<JaegerSpan>,
    /// Processes by id (`p1`, `p2`, ...), referenced by `processID`.
    pub processes: BTreeMap<String, JaegerProcess>,
    /// Always present, usually empty.
    pub warnings: Vec<String>,
}

/// A span in Jaeger's shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JaegerSpan {
    /// Lowercase hex trace id.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Lowercase hex span id.
    #[serde(rename = "spanID")]
    pub span_id: String,
    /// The span name.
    pub operation_name: String,
    /// Parent (`CHILD_OF`) and links (`FOLLOWS_FROM`).
    pub references: Vec<JaegerReference>,
    /// Jaeger flags; 1 = sampled.
    pub flags: u32,
    /// Start, microseconds since the epoch.
    pub start_time: u64,
    /// Duration in microseconds.
    pub duration: u64,
    /// Attributes plus the mapped intrinsics.
    pub tags: Vec<JaegerTag>,
    /// Span events.
    pub logs: Vec<JaegerLog>,
    /// Key into the trace's `processes`.
    #[serde(rename = "processID")]
    pub process_id: String,
    /// Always present, usually empty.
    pub warnings: Vec<String>,
}

/// A reference from a span to another span.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JaegerReference {
    /// `CHILD_OF` or `FOLLOWS_FROM`.
    pub ref_type: &'static str,
    /// Hex trace id of the referenced span.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Hex span id of the referenced span.
    #[serde(rename = "spanID")]
    pub span_id: String,
}

/// A typed key/value tag.
#[derive(Debug, Serialize, PartialEq)]
pub struct JaegerTag {
    /// Tag name.
    pub key: String,
    /// `string`, `bool`, `int64`, `float64` or `binary`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The value, as a JSON value of the matching type.
    pub value: serde_json::Value,
}

/// A timestamped set of fields (a span event).
#[derive(Debug, Serialize)]
pub struct JaegerLog {
    /// Microseconds since the epoch.
    pub timestamp: u64,
    /// `event` (the event name) first, then the event attributes.
    pub fields: Vec<JaegerTag>,
}

/// A process: the service and its resource attributes.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JaegerProcess {
    /// `service.name`.
    pub service_name: String,
    /// The other resource attributes.
    pub tags: Vec<JaegerTag>,
}

fn tag(key: &str, value: &AnyValue) -> JaegerTag {
    let (kind, value) = match value {
        AnyValue::String(s) => ("string", serde_json::Value::from(s.as_str())),
        AnyValue::Bool(b) => ("bool", serde_json::Value::from(*b)),
        AnyValue::Int(i) => ("int64", serde_json::Value::from(*i)),
        AnyValue::Double(d) => ("float64", serde_json::Value::from(*d)),
        AnyValue::Bytes(b) => ("binary", serde_json::Value::from(hex_of(b))),
        // Jaeger has no list or map tag: Jaeger's own translator writes them as JSON text.
        other => ("string", serde_json::Value::from(json_text(other))),
    };
    JaegerTag {
        key: key.to_string(),
        kind,
        value,
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_text(value: &AnyValue) -> String {
    fn to_json(v: &AnyValue) -> serde_json::Value {
        match v {
            AnyValue::Empty => serde_json::Value::Null,
            AnyValue::String(s) => s.as_str().into(),
            AnyValue::Bool(b) => (*b).into(),
            AnyValue::Int(i) => (*i).into(),
            AnyValue::Double(d) => (*d).into(),
            AnyValue::Bytes(b) => hex_of(b).into(),
            AnyValue::Array(items) => items.iter().map(to_json).collect(),
            AnyValue::KvList(kvs) => kvs
                .iter()
                .map(|kv| (kv.key.to_string(), to_json(&kv.value)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
    to_json(value).to_string()
}

fn tags_of(attrs: &[KeyValue]) -> Vec<JaegerTag> {
    attrs.iter().map(|kv| tag(&kv.key, &kv.value)).collect()
}

fn process_of(resource: &Resource) -> JaegerProcess {
    JaegerProcess {
        service_name: resource.service_name().to_string(),
        tags: tags_of(
            &resource
                .attributes
                .iter()
                .filter(|kv| kv.key != "service.name")
                .cloned()
                .collect::<Vec<_>>(),
        ),
    }
}

fn span_tags(span: &Span) -> Vec<JaegerTag> {
    let mut tags = tags_of(&span.attributes);
    if span.kind != SpanKind::Unspecified {
        tags.push(tag("span.kind", &span.kind.as_str().into()));
    }
    if !span.scope.name.is_empty() {
        tags.push(tag("otel.scope.name", &span.scope.name.as_str().into()));
    }
    if !span.scope.version.is_empty() {
        tags.push(tag(
            "otel.scope.version",
            &span.scope.version.as_str().into(),
        ));
    }
    match span.status.code {
        StatusCode::Unset => {}
        StatusCode::Ok => tags.push(tag("otel.status_code", &"OK".into())),
        StatusCode::Error => {
            tags.push(tag("error", &AnyValue::Bool(true)));
            tags.push(tag("otel.status_code", &"ERROR".into()));
            if !span.status.message.is_empty() {
                tags.push(tag(
                    "otel.status_description",
                    &span.status.message.as_str().into(),
                ));
            }
        }
    }
    tags
}

/// A log record as a Jaeger span log (see the module docs).
fn log_of(record: &LogRecord) -> JaegerLog {
    let event = if record.event_name.is_empty() {
        "log"
    } else {
        record.event_name.as_str()
    };
    let level = if record.severity_text.is_empty() {
        record.severity().map_or("", |s| s.as_str())
    } else {
        record.severity_text.as_str()
    };
    let mut fields = vec![
        tag("event", &event.into()),
        tag("message", &record.message().into()),
    ];
    if !level.is_empty() {
        fields.push(tag("level", &level.into()));
    }
    fields.push(tag("otel.log_record", &AnyValue::Bool(true)));
    if record.severity_number != 0 {
        fields.push(tag(
            "otel.log.severity_number",
            &AnyValue::Int(i64::from(record.severity_number)),
        ));
    }
    fields.extend(tags_of(&record.attributes));
    JaegerLog {
        timestamp: record.time.as_micros(),
        fields,
    }
}

/// [`to_jaeger`], with `logs` (records of this trace) as span logs of the
/// spans they were written in; see the module docs.
pub fn to_jaeger_with_logs(trace: &Trace, logs: &[LogRecord]) -> JaegerTrace {
    let mut out = to_jaeger(trace);
    if logs.is_empty() || out.spans.is_empty() {
        return out;
    }
    let by_id: std::collections::HashMap<_, _> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let root = trace
        .spans
        .iter()
        .position(|s| s.parent_span_id.is_none_or(|p| !by_id.contains_key(&p)))
        .unwrap_or(0);
    let mut touched = Vec::new();
    for record in logs {
        let at = record
            .span_id
            .and_then(|id| by_id.get(&id).copied())
            .unwrap_or(root);
        out.spans[at].logs.push(log_of(record));
        touched.push(at);
    }
    touched.sort_unstable();
    touched.dedup();
    for at in touched {
        out.spans[at].logs.sort_by_key(|l| l.timestamp);
    }
    out
}

/// Converts a trace into Jaeger's shape; one process per distinct resource.
pub fn to_jaeger(trace: &Trace) -> JaegerTrace {
    let mut processes: Vec<JaegerProcess> = Vec::new();
    let mut spans = Vec::with_capacity(trace.spans.len());
    for span in &trace.spans {
        let process = process_of(&span.resource);
        let index = match processes.iter().position(|p| *p == process) {
            Some(i) => i,
            None => {
                processes.push(process);
                processes.len() - 1
            }
        };
        let mut references = Vec::new();
        if let Some(parent) = span.parent_span_id {
            references.push(JaegerReference {
                ref_type: "CHILD_OF",
                trace_id: span.trace_id.to_hex(),
                span_id: parent.to_hex(),
            });
        }
        for link in &span.links {
            references.push(JaegerReference {
                ref_type: "FOLLOWS_FROM",
                trace_id: link.trace_id.to_hex(),
                span_id: link.span_id.to_hex(),
            });
        }
        let logs = span
            .events
            .iter()
            .map(|event| {
                let mut fields = vec![tag("event", &event.name.as_str().into())];
                fields.extend(tags_of(&event.attributes));
                JaegerLog {
                    timestamp: event.time.as_micros(),
                    fields,
                }
            })
            .collect();
        spans.push(JaegerSpan {
            trace_id: span.trace_id.to_hex(),
            span_id: span.span_id.to_hex(),
            operation_name: span.name.to_string(),
            references,
            flags: 1,
            start_time: span.start.as_micros(),
            duration: span.duration().as_micros(),
            tags: span_tags(span),
            logs,
            process_id: format!("p{}", index + 1),
            warnings: Vec::new(),
        });
    }
    JaegerTrace {
        trace_id: trace.trace_id.to_hex(),
        spans,
        processes: processes
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("p{}", i + 1), p))
            .collect(),
        warnings: Vec::new(),
    }
}
