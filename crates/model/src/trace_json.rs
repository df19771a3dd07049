//! The JSON document of a whole [`Trace`]: each resource and scope once.
//!
//! Spans of one export share one [`Resource`] and spans of one scope batch
//! one [`Scope`] (each an `Arc`), and either can be large (hundreds of
//! attributes, long values, a 96 KiB scope name). Serialised inside every
//! span, a 400 KB request became a 295 MB answer. So a trace is written as
//!
//! ```json
//! {"trace_id": "…", "resources": [{"attributes": […]}, …],
//!  "scopes": [{"name": "…", "version": "…"}, …],
//!  "spans": [{"span_id": "…", …, "resource": 0, "scope": 0}, …]}
//! ```
//!
//! with each distinct resource and scope once and every span naming its own
//! by index, and read back into spans that share them again. Everything else
//! in a span is written as [`Span`] writes it.

use std::collections::HashMap;
use std::sync::Arc;

use compact_str::CompactString;
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
    scope: usize,
}

/// A span written with its resource's and scope's indexes (the same fields
/// as [`DocSpanIn`], borrowed).
struct DocSpanOut<'a>(&'a Span, usize, usize);

impl Serialize for DocSpanOut<'_> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeStruct;
        let (s, resource, scope) = (self.0, self.1, self.2);
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
        out.serialize_field("scope", &scope)?;
        out.end()
    }
}

#[derive(Serialize)]
struct DocOut<'a> {
    trace_id: TraceId,
    resources: Vec<&'a Resource>,
    scopes: Vec<&'a Scope>,
    spans: Vec<DocSpanOut<'a>>,
}

#[derive(Deserialize)]
struct DocIn {
    trace_id: TraceId,
    resources: Vec<Arc<Resource>>,
    scopes: Vec<Arc<Scope>>,
    spans: Vec<DocSpanIn>,
}

/// The distinct values of shared parts (resources, scopes) in first-use
/// order: by pointer first (spans of one batch share the `Arc`), then by
/// value, so equal values in different `Arc`s are written once too.
pub(crate) struct Distinct<'a, T> {
    by_ptr: HashMap<*const T, usize>,
    pub(crate) values: Vec<&'a T>,
}

impl<'a, T: PartialEq> Distinct<'a, T> {
    pub(crate) fn new() -> Self {
        Distinct {
            by_ptr: HashMap::new(),
            values: Vec::new(),
        }
    }

    /// The index of `value`, added if it is new.
    pub(crate) fn index_of(&mut self, value: &'a Arc<T>) -> usize {
        let values = &mut self.values;
        *self.by_ptr.entry(Arc::as_ptr(value)).or_insert_with(|| {
            match values.iter().position(|v| **v == **value) {
                Some(i) => i,
                None => {
                    values.push(value);
                    values.len() - 1
                }
            }
        })
    }
}

/// Entry `index` of a shared table read back, or an error naming the span.
fn shared<T, E: serde::de::Error>(
    table: &[Arc<T>],
    index: usize,
    span: usize,
    what: &str,
) -> Result<Arc<T>, E> {
    table.get(index).cloned().ok_or_else(|| {
        E::custom(format!(
            "span {span} names {what} {index}, but the trace has {} {what}s",
            table.len()
        ))
    })
}

impl Serialize for Trace {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut resources = Distinct::new();
        let mut scopes = Distinct::new();
        let spans = self
            .spans
            .iter()
            .map(|span| {
                DocSpanOut(
                    span,
                    resources.index_of(&span.resource),
                    scopes.index_of(&span.scope),
                )
            })
            .collect();
        DocOut {
            trace_id: self.trace_id,
            resources: resources.values,
            scopes: scopes.values,
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
            let resource = shared(&doc.resources, s.resource, i, "resource")?;
            let scope = shared(&doc.scopes, s.scope, i, "scope")?;
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
                resource,
                scope,
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
            scope: Default::default(),
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
        assert_eq!(doc["scopes"], serde_json::json!([{}]));
        assert_eq!(doc["spans"][51]["scope"], 0);
        assert_eq!(doc["spans"][0]["name"], "step_1");

        let back: Trace = serde_json::from_str(&json).unwrap();
        assert_eq!(back, trace);
        assert!(Arc::ptr_eq(
            &back.spans[0].resource,
            &back.spans[50].resource
        ));
    }

    #[test]
    fn each_scope_is_written_once_and_read_back_shared() {
        let r = resource("rag", 1);
        let long = Arc::new(Scope {
            name: "s".repeat(10_000).into(),
            version: "1.0".into(),
        });
        let mut spans: Vec<Span> = (1..=40).map(|n| span(n, &r)).collect();
        for s in &mut spans[..30] {
            s.scope = Arc::clone(&long);
        }
        // Equal in value, another Arc: still written once.
        spans[35].scope = Arc::new((*long).clone());
        let trace = Trace::new(TraceId([1; 16]), spans);
        let json = serde_json::to_string(&trace).unwrap();
        // 10 000 bytes of scope once (twice would pass 30 000).
        assert!(json.len() < 25_000, "{} bytes", json.len());
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["scopes"].as_array().unwrap().len(), 2);
        let back: Trace = serde_json::from_str(&json).unwrap();
        assert_eq!(back, trace);
        let first = back
            .spans
            .iter()
            .position(|s| s.scope.name.len() > 1)
            .unwrap();
        let sharing = back
            .spans
            .iter()
            .filter(|s| Arc::ptr_eq(&s.scope, &back.spans[first].scope))
            .count();
        assert_eq!(sharing, 31);

        let mut doc = doc;
        doc["spans"][0]["scope"] = 9.into();
        let err = serde_json::from_value::<Trace>(doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("span 0 names scope 9, but the trace has 2 scopes"),
            "{err}"
        );
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
