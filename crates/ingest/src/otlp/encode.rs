//! Model spans → an OTLP `ExportTraceServiceRequest`: the way out, for
//! `chaintrace export --format otlp-json` and for sending spans read from
//! other formats (`chaintrace import` of Jaeger JSON) to an OTLP receiver.
//! Spans sharing a resource and scope are grouped under one
//! `ResourceSpans` / `ScopeSpans`, as an SDK sends them.

use std::sync::Arc;

use chaintrace_model::{AnyValue, KeyValue, Resource, Scope, Span, SpanKind, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;

/// Spans of one scope, and the scopes of one resource.
type ScopeGroup = (Arc<Scope>, Vec<trace::Span>);
type ResourceGroup = (Arc<Resource>, Vec<ScopeGroup>);

/// `spans` as one OTLP export request.
pub fn to_otlp(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut groups: Vec<ResourceGroup> = Vec::new();
    for span in spans {
        let r = match groups
            .iter()
            .position(|(r, _)| Arc::ptr_eq(r, &span.resource) || **r == *span.resource)
        {
            Some(i) => i,
            None => {
                groups.push((Arc::clone(&span.resource), Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[r].1;
        let s = match scopes
            .iter()
            .position(|(s, _)| Arc::ptr_eq(s, &span.scope) || **s == *span.scope)
        {
            Some(i) => i,
            None => {
                scopes.push((Arc::clone(&span.scope), Vec::new()));
                scopes.len() - 1
            }
        };
        scopes[s].1.push(otlp_span(span));
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(r, scopes)| trace::ResourceSpans {
                resource: Some(resource::Resource {
                    attributes: key_values(&r.attributes),
                    ..Default::default()
                }),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| trace::ScopeSpans {
                        scope: Some(common::InstrumentationScope {
                            name: scope.name.to_string(),
                            version: scope.version.to_string(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    }
}

fn otlp_span(span: &Span) -> trace::Span {
    trace::Span {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        parent_span_id: span.parent_span_id.map_or_else(Vec::new, |p| p.0.to_vec()),
        name: span.name.to_string(),
        kind: match span.kind {
            SpanKind::Unspecified => trace::span::SpanKind::Unspecified,
            SpanKind::Internal => trace::span::SpanKind::Internal,
            SpanKind::Server => trace::span::SpanKind::Server,
            SpanKind::Client => trace::span::SpanKind::Client,
            SpanKind::Producer => trace::span::SpanKind::Producer,
            SpanKind::Consumer => trace::span::SpanKind::Consumer,
        } as i32,
        start_time_unix_nano: span.start.0,
        end_time_unix_nano: span.end.0,
        attributes: key_values(&span.attributes),
        events: span
            .events
            .iter()
            .map(|e| trace::span::Event {
                time_unix_nano: e.time.0,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                ..Default::default()
            })
            .collect(),
        links: span
            .links
            .iter()
            .map(|l| trace::span::Link {
                trace_id: l.trace_id.0.to_vec(),
                span_id: l.span_id.0.to_vec(),
                attributes: key_values(&l.attributes),
                ..Default::default()
            })
            .collect(),
        status: (span.status.code != StatusCode::Unset || !span.status.message.is_empty()).then(
            || trace::Status {
                message: span.status.message.clone(),
                code: match span.status.code {
                    StatusCode::Unset => trace::status::StatusCode::Unset,
                    StatusCode::Ok => trace::status::StatusCode::Ok,
                    StatusCode::Error => trace::status::StatusCode::Error,
                } as i32,
            },
        ),
        ..Default::default()
    }
}

fn key_values(attributes: &[KeyValue]) -> Vec<common::KeyValue> {
    attributes
        .iter()
        .map(|kv| common::KeyValue {
            key: kv.key.to_string(),
            value: Some(any_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

fn any_value(value: &AnyValue) -> common::AnyValue {
    use common::any_value::Value;
    common::AnyValue {
        value: match value {
            AnyValue::Empty => None,
            AnyValue::String(s) => Some(Value::StringValue(s.to_string())),
            AnyValue::Bool(b) => Some(Value::BoolValue(*b)),
            AnyValue::Int(i) => Some(Value::IntValue(*i)),
            AnyValue::Double(d) => Some(Value::DoubleValue(*d)),
            AnyValue::Bytes(b) => Some(Value::BytesValue(b.clone())),
            AnyValue::Array(items) => Some(Value::ArrayValue(common::ArrayValue {
                values: items.iter().map(any_value).collect(),
            })),
            AnyValue::KvList(kvs) => Some(Value::KvlistValue(common::KeyValueList {
                values: key_values(kvs),
            })),
        },
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::testing::{fixture, PB_FIXTURE};

    #[test]
    fn encoding_decoded_spans_gives_the_same_spans_back() {
        let spans = crate::otlp::decode_protobuf(&fixture(PB_FIXTURE))
            .unwrap()
            .spans;
        let request = to_otlp(&spans);
        // One resource and one scope, shared as the SDK sent them.
        assert_eq!(request.resource_spans.len(), 1);
        assert_eq!(request.resource_spans[0].scope_spans.len(), 1);
        let again = crate::otlp::decode_protobuf(&request.encode_to_vec())
            .unwrap()
            .spans;
        assert_eq!(again, spans);
        // And through OTLP/JSON, as `chaintrace export --format otlp-json`
        // writes it.
        let json = serde_json::to_vec(&request).unwrap();
        let from_json = crate::otlp::decode_json(&json).unwrap().spans;
        assert_eq!(from_json, spans);
    }
}
