//! Jaeger's JSON (what `GET /api/traces` answers, and the Jaeger UI's
//! "Download JSON") → model spans, for `chaintrace import`.
//!
//! Each span is turned into the same raw span the Thrift reader builds and
//! converted by the same code, so tags, references and logs map exactly
//! as for the agent and collector (see [`super`]). Tag values are read by
//! their `type` (`string`, `bool`, `int64`, `float64`, `binary` as
//! base64). Ids are hex, leading zeros optional, as Jaeger writes them.

use std::collections::BTreeMap;

use base64::Engine;
use chaintrace_model::{AnyValue, CompactString, KeyValue, Resource};
use serde::Deserialize;
use serde_json::Value;

use super::batch::{log_event, BatchReader, RawRef, RawSpan, CHILD_OF};
use crate::otlp::DecodedSpans;

#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    Envelope { data: Vec<JTrace> },
    Traces(Vec<JTrace>),
    Trace(JTrace),
}

#[derive(Deserialize)]
struct JTrace {
    spans: Vec<JSpan>,
    #[serde(default)]
    processes: BTreeMap<String, JProcess>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(default)]
    operation_name: String,
    #[serde(default)]
    references: Vec<JRef>,
    start_time: i64,
    duration: i64,
    #[serde(default)]
    tags: Vec<JTag>,
    #[serde(default)]
    logs: Vec<JLog>,
    #[serde(rename = "processID", default)]
    process_id: String,
    /// Older Jaeger writes the process into each span.
    #[serde(default)]
    process: Option<JProcess>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JRef {
    ref_type: String,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize, Clone)]
struct JTag {
    key: String,
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct JLog {
    timestamp: i64,
    #[serde(default)]
    fields: Vec<JTag>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct JProcess {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    tags: Vec<JTag>,
}

/// Decodes Jaeger JSON: `{"data": [trace, …]}`, an array of traces, or one
/// trace. Spans with bad ids are rejected one by one; a body of another
/// shape is an error.
///
/// ```
/// let body = br#"{"data": [{"traceID": "1", "spans": [{"traceID": "1", "spanID": "2",
///   "operationName": "llm_call", "startTime": 1767225600000000, "duration": 1500,
///   "tags": [{"key": "span.kind", "type": "string", "value": "client"}],
///   "processID": "p1"}], "processes": {"p1": {"serviceName": "rag"}}}]}"#;
/// let out = chaintrace_ingest::jaeger::decode_jaeger_json(body).unwrap();
/// assert_eq!(out.spans[0].trace_id.to_hex(), "00000000000000000000000000000001");
/// assert_eq!(out.spans[0].resource.service_name(), "rag");
/// assert_eq!(out.spans[0].duration().0, 1_500_000);
/// ```
pub fn decode_jaeger_json(body: &[u8]) -> Result<DecodedSpans, String> {
    chaintrace_model::check_json_depth(body, chaintrace_model::MAX_JSON_DEPTH)
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let traces = match serde_json::from_slice::<Body>(body) {
        Ok(Body::Envelope { data }) => data,
        Ok(Body::Traces(traces)) => traces,
        Ok(Body::Trace(trace)) => vec![trace],
        Err(e) => {
            return Err(format!(
                "not Jaeger JSON (want {{\"data\": [traces]}}, as /api/traces answers): {e}"
            ))
        }
    };
    let mut out = DecodedSpans::default();
    for (t, trace) in traces.into_iter().enumerate() {
        // One reader per process: its resource is the batch's.
        let mut readers: BTreeMap<String, BatchReader> = BTreeMap::new();
        for (s, span) in trace.spans.into_iter().enumerate() {
            let place = format!("data[{t}].spans[{s}]");
            let process = span
                .process
                .clone()
                .or_else(|| trace.processes.get(&span.process_id).cloned())
                .unwrap_or_default();
            let key = if span.process.is_some() {
                place.clone()
            } else {
                span.process_id.clone()
            };
            let reader = readers.entry(key).or_insert_with(|| {
                let mut reader = BatchReader::default();
                reader.resource = resource(process);
                reader
            });
            match raw_span(span) {
                Ok(raw) => match reader.convert(raw, &place) {
                    Ok(span) => reader.out.spans.push(span),
                    Err(reason) => reader.out.reject(&place, &reason),
                },
                Err(reason) => reader.out.reject(&place, &reason),
            }
        }
        for reader in readers.into_values() {
            let part = reader.finish();
            out.spans.extend(part.spans);
            out.rejected += part.rejected;
            out.dropped_links += part.dropped_links;
            for error in part.errors {
                out.note(error);
            }
        }
    }
    Ok(out)
}

fn resource(process: JProcess) -> Resource {
    let mut attributes = Vec::with_capacity(process.tags.len() + 1);
    if !process.service_name.is_empty() {
        attributes.push(KeyValue::new("service.name", process.service_name));
    }
    attributes.extend(process.tags.into_iter().map(tag));
    Resource { attributes }
}

/// A Jaeger hex id (leading zeros optional, at most `2 * N` digits) as
/// big-endian halves.
fn hex_id(text: &str, digits: usize) -> Result<u128, String> {
    if text.is_empty() || text.len() > digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not an id of at most {digits} hex digits"
        ));
    }
    u128::from_str_radix(text, 16).map_err(|e| e.to_string())
}

fn raw_span(span: JSpan) -> Result<RawSpan, String> {
    let trace = hex_id(&span.trace_id, 32).map_err(|e| format!("traceID: {e}"))?;
    let span_id = hex_id(&span.span_id, 16).map_err(|e| format!("spanID: {e}"))?;
    let mut references = Vec::with_capacity(span.references.len());
    for (i, r) in span.references.into_iter().enumerate() {
        let trace = hex_id(&r.trace_id, 32).map_err(|e| format!("references[{i}].traceID: {e}"))?;
        let id = hex_id(&r.span_id, 16).map_err(|e| format!("references[{i}].spanID: {e}"))?;
        references.push(RawRef {
            ref_type: if r.ref_type.eq_ignore_ascii_case("CHILD_OF") {
                CHILD_OF
            } else {
                CHILD_OF + 1
            },
            trace_id_high: (trace >> 64) as u64 as i64,
            trace_id_low: trace as u64 as i64,
            span_id: id as u64 as i64,
        });
    }
    Ok(RawSpan {
        trace_id_high: (trace >> 64) as u64 as i64,
        trace_id_low: trace as u64 as i64,
        span_id: span_id as u64 as i64,
        // The parent comes from the first CHILD_OF reference.
        parent_span_id: 0,
        operation_name: CompactString::from(span.operation_name),
        references,
        start_time: span.start_time,
        duration: span.duration,
        tags: span.tags.into_iter().map(tag).collect(),
        logs: span
            .logs
            .into_iter()
            .map(|log| log_event(log.timestamp, log.fields.into_iter().map(tag).collect()))
            .collect(),
    })
}

/// A tag by its declared type; a value that does not fit its type is kept
/// as the text it was sent as.
fn tag(tag: JTag) -> KeyValue {
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let value = match (tag.ty.as_str(), &tag.value) {
        ("bool", Value::Bool(b)) => AnyValue::Bool(*b),
        ("bool", Value::String(s)) if s == "true" || s == "false" => AnyValue::Bool(s == "true"),
        ("int64", Value::Number(n)) if n.is_i64() => AnyValue::Int(n.as_i64().unwrap_or_default()),
        ("int64", Value::String(s)) if s.parse::<i64>().is_ok() => {
            AnyValue::Int(s.parse().unwrap_or_default())
        }
        ("float64", Value::Number(n)) => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        ("binary", Value::String(s)) => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(bytes) => AnyValue::Bytes(bytes),
            Err(_) => AnyValue::String(CompactString::from(s.as_str())),
        },
        (_, Value::Null) => AnyValue::Empty,
        (_, v) => AnyValue::String(CompactString::from(as_text(v))),
    };
    KeyValue {
        key: CompactString::from(tag.key),
        value,
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{SpanKind, StatusCode};

    use super::*;

    #[test]
    fn jaeger_json_maps_like_thrift() {
        let body = br#"{"data": [{"traceID": "a1b2", "spans": [
          {"traceID": "a1b2", "spanID": "1", "operationName": "process_query",
           "startTime": 1767225600000000, "duration": 2000000, "processID": "p1",
           "tags": [{"key": "span.kind", "type": "string", "value": "server"},
                    {"key": "otel.scope.name", "type": "string", "value": "rag"},
                    {"key": "tokens", "type": "int64", "value": 1250},
                    {"key": "ratio", "type": "float64", "value": 0.5},
                    {"key": "cached", "type": "bool", "value": false},
                    {"key": "blob", "type": "binary", "value": "AAEC"}]},
          {"traceID": "a1b2", "spanID": "2", "operationName": "api_call",
           "references": [{"refType": "CHILD_OF", "traceID": "a1b2", "spanID": "1"},
                          {"refType": "FOLLOWS_FROM", "traceID": "ff", "spanID": "9"}],
           "startTime": 1767225600100000, "duration": 500000, "processID": "p2",
           "tags": [{"key": "error", "type": "bool", "value": true},
                    {"key": "otel.status_description", "type": "string", "value": "RateLimitError"}],
           "logs": [{"timestamp": 1767225600200000, "fields": [
                    {"key": "event", "type": "string", "value": "exception"},
                    {"key": "exception.type", "type": "string", "value": "RateLimitError"}]}]},
          {"traceID": "a1b2", "spanID": "not-hex", "operationName": "bad",
           "startTime": 1, "duration": 1, "processID": "p1"}],
          "processes": {"p1": {"serviceName": "gateway", "tags": [{"key": "host", "type": "string", "value": "a"}]},
                        "p2": {"serviceName": "llm"}}}]}"#;
        let out = decode_jaeger_json(body).unwrap();
        assert_eq!(out.rejected, 1);
        assert!(
            out.errors[0].contains("data[0].spans[2]: spanID"),
            "{:?}",
            out.errors
        );
        let root = out
            .spans
            .iter()
            .find(|s| s.name == "process_query")
            .unwrap();
        let call = out.spans.iter().find(|s| s.name == "api_call").unwrap();
        assert_eq!(root.trace_id.to_hex(), format!("{:032x}", 0xa1b2));
        assert_eq!(root.resource.service_name(), "gateway");
        assert_eq!(root.resource.attributes[1], KeyValue::new("host", "a"));
        assert_eq!(call.resource.service_name(), "llm");
        assert_eq!(root.kind, SpanKind::Server);
        assert_eq!(root.scope.name, "rag");
        assert_eq!(root.attr("tokens"), Some(&AnyValue::Int(1250)));
        assert_eq!(root.attr("ratio"), Some(&AnyValue::Double(0.5)));
        assert_eq!(root.attr("cached"), Some(&AnyValue::Bool(false)));
        assert_eq!(root.attr("blob"), Some(&AnyValue::Bytes(vec![0, 1, 2])));
        assert!(root.attr("span.kind").is_none());
        assert_eq!(root.duration().0, 2_000_000_000);
        assert_eq!(call.parent_span_id, Some(root.span_id));
        assert_eq!(call.links.len(), 1);
        assert_eq!(call.links[0].span_id.to_hex(), "0000000000000009");
        assert_eq!(call.status.code, StatusCode::Error);
        assert_eq!(call.status.message, "RateLimitError");
        assert_eq!(call.events[0].name, "exception");
        assert_eq!(
            call.events[0].attributes,
            vec![KeyValue::new("exception.type", "RateLimitError")]
        );
    }

    #[test]
    fn other_shapes_are_errors_naming_what_was_wanted() {
        let e = decode_jaeger_json(br#"{"resourceSpans": []}"#).unwrap_err();
        assert!(e.starts_with("not Jaeger JSON"), "{e}");
    }
}
