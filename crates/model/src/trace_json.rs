//! The JSON document of a whole [`Trace`]: each resource once.
//!
//! Spans of one export share one [`Resource`] (an `Arc`), and a resource can
//! be large (hundreds of attributes, long values). Serialised inside every
//! span, a 400 KB request became a 295 MB answer. So a trace is written as
//!
//! ```json
//! {"trace_id": "…", "resources": [{"attributes": […]}, …],
//!  "spans": [{"span_id": "…", …, "resource": 0}, …]}
//! ```
//!
//! with each distinct resource once and every span naming its own by index
//! (`resource`), and read back into spans that share their resources again.
//! Everything else in a span is written as [`Span`] writes it.

use std::collections::HashMap;
use std::sync::Arc;

use compact_str::CompactString;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{SpanId, TraceId};
use crate::span::{Event, KeyValue, Link, Resource, Scope, Span, SpanKind, Status, UnixNanos};
use crate::trace::Trace;

/// A span as the document holds it, read back: [`Span`]'s fields in its
/// order, the resource replaced by its index.
#[derive(Deserialize)]
struct DocSpanIn {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    name: CompactString,
    kind: SpanKind,
    start: UnixNanos,
    end: UnixNanos,
    status: Status,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    links: Vec<Link>,
    resource: usize,
    scope: Scope,
}

/// A span written with its resource's index (the same fields as
/// [`DocSpanIn`], borrowed).
struct DocSpanOut<'a>(&'a Span, usize);

impl Serialize for DocSpanOut<'_> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeStruct;
        let (s, resource) = (self.0, self.1);
        let mut out = serializer.serialize_struct("Span", 13)?;
        out.serialize_field("trace_id", &s.trace_id)?;
        out.serialize_field("span_id", &s.span_id)?;
        out.serialize_field("parent_span_id", &s.parent_span_id)?;
        out.serialize_field("name", &s.name)?;
        out.serialize_field("kind", &s.kind)?;
        out.serialize_field("start", &s.start)?;
        out.serialize_field("end", &s.end)?;
        out.serialize_field("status", &s.status)?;
        out.serialize_field("attributes", &s.attributes)?;
        out.serialize_field("events", &s.events)?;
        out.serialize_field("links", &s.links)?;
        out.serialize_field("resource", &resource)?;
        out.serialize_field("scope", &s.scope)?;
        out.end()
    }
}

#[derive(Serialize)]
struct DocOut<'a> {
    trace_id: TraceId,
    resources: Vec<&'a Resource>,
    spans: Vec<DocSpanOut<'a>>,
}

#[derive(Deserialize)]
struct DocIn {
    trace_id: TraceId,
    resources: Vec<Arc<Resource>>,
    spans: Vec<DocSpanIn>,
}

impl Serialize for Trace {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        // By pointer first (spans of one export share the Arc), then by
        // value, so equal resources in different Arcs are written once too.
        let mut by_ptr: HashMap<*const Resource, usize> = HashMap::new();
        let mut resources: Vec<&Resource> = Vec::new();
        let mut spans = Vec::with_capacity(self.spans.len());
        for span in &self.spans {
            let index =
                *by_ptr
                    .entry(Arc::as_ptr(&span.resource))
                    .or_insert_with(|| {
                        match resources.iter().position(|r| **r == *span.resource) {
                            Some(i) => i,
                            None => {
                                resources.push(&span.resource);
                                resources.len() - 1
                            }
                        }
                    });
            spans.push(DocSpanOut(span, index));
        }
        DocOut {
            trace_id: self.trace_id,
            resources,
            spans,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Trace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Trace, D::Error> {
        let doc = DocIn::deserialize(deserializer)?;
        let mut spans = Vec::with_capacity(doc.spans.len());
        for (i, s) in doc.spans.into_iter().enumerate() {
            let resource = doc.resources.get(s.resource).ok_or_else(|| {
                D::Error::custom(format!(
                    "span {i} names resource {}, but the trace has {} resources",
                    s.resource,
                    doc.resources.len()
                ))
            })?;
            spans.push(Span {
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
                name: s.name,
                kind: s.kind,
                start: s.start,
                end: s.end,
                status: s.status,
                attributes: s.attributes,
                events: s.events,
                links: s.links,
                resource: Arc::clone(resource),
                scope: s.scope,
            });
        }
        Ok(Trace {
            trace_id: doc.trace_id,
            spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::AnyValue;

    fn span(n: u8, resource: &Arc<Resource>) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: (n > 1).then_some(SpanId([1; 8])),
            name: format!("step_{n}").into(),
            kind: SpanKind::Client,
            start: UnixNanos(u64::from(n)),
            end: UnixNanos(u64::from(n) + 10),
            status: Status::default(),
            attributes: vec![KeyValue::new("n", AnyValue::Int(i64::from(n)))],
            events: Vec::new(),
            links: Vec::new(),
            resource: Arc::clone(resource),
            scope: Scope::default(),
        }
    }

    fn resource(service: &str, padding: usize) -> Arc<Resource> {
        Arc::new(Resource {
            attributes: vec![
                KeyValue::new("service.name", service),
                KeyValue::new("host.description", "x".repeat(padding)),
            ],
        })
    }

    #[test]
    fn each_resource_is_written_once_and_read_back_shared() {
        let big = resource("rag", 10_000);
        // Equal to `big` but another Arc: still written once.
        let twin = Arc::new((*big).clone());
        let other = resource("search", 10);
        let mut spans: Vec<Span> = (1..=50).map(|n| span(n, &big)).collect();
        spans.push(span(51, &twin));
        spans.push(span(52, &other));
        let trace = Trace::new(TraceId([1; 16]), spans);
        let json = serde_json::to_string(&trace).unwrap();
        // 10 000 bytes of resource once, not 51 times.
        assert!(json.len() < 40_000, "{} bytes", json.len());
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["resources"].as_array().unwrap().len(), 2);
        assert_eq!(doc["spans"][51]["resource"], 1);
        assert_eq!(doc["spans"][0]["name"], "step_1");

        let back: Trace = serde_json::from_str(&json).unwrap();
        assert_eq!(back, trace);
        assert!(Arc::ptr_eq(
            &back.spans[0].resource,
            &back.spans[50].resource
        ));
    }

    #[test]
    fn a_span_naming_a_missing_resource_is_an_error_that_says_so() {
        let trace = Trace::new(TraceId([1; 16]), vec![span(1, &resource("rag", 1))]);
        let mut doc = serde_json::to_value(&trace).unwrap();
        doc["spans"][0]["resource"] = 3.into();
        let err = serde_json::from_value::<Trace>(doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("span 0 names resource 3, but the trace has 1 resources"),
            "{err}"
        );
    }
}
