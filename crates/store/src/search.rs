//! What [`Store::search`](crate::Store::search) is asked and answers: a
//! [`TraceFilter`] of span clauses over hot fields, the time range and cap
//! ([`SearchRequest`]), and [`SearchStats`].
//!
//! The filter is a necessary condition, never a sufficient one: the caller
//! (the query API) derives it from a TraceQL query so that every trace the
//! query matches passes it, and evaluates the query on each trace the store
//! hands over. This module knows nothing of TraceQL and must not: the store
//! sits left of the query crate.

use std::collections::BTreeSet;

use chaintrace_model::{error_class_matches, find_attr, AnyValue, Span, Trace, UnixNanos};

/// Attribute keys that name a span's error class, in every spelling clients
/// use; see [`SpanClause::ErrorType`].
pub const ERROR_TYPE_KEYS: [&str; 3] = ["error_type", "error.type", "exception.type"];

/// A condition on one span, over fields a store keeps in hot columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanClause {
    /// The span's name is one of these.
    SpanName(BTreeSet<String>),
    /// The span's resource `service.name` (`unknown_service` when absent,
    /// as [`Span::service_name`] says) is one of these.
    Service(BTreeSet<String>),
    /// The span's status is ERROR.
    StatusError,
    /// One of the span's error class names answers one of these values by
    /// [`error_class_matches`]. The names looked at are the span attributes
    /// [`ERROR_TYPE_KEYS`], the `exception.type` of its first `exception`
    /// event, and the same keys on its resource — every place TraceQL's
    /// `span.error_type`, `.error.type`, `span.exception.type`, … can read.
    ErrorType(BTreeSet<String>),
    /// One of these attribute values: the span (or its resource, as each
    /// says) holds the string under the key. Not a hot column: blocks are
    /// searched by their attribute columns, a needle anywhere in range.
    Attribute(BTreeSet<AttributeMatch>),
}

/// A string attribute value a span or its resource holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttributeMatch {
    /// Look at the span's attributes.
    pub on_span: bool,
    /// Look at its resource's attributes.
    pub on_resource: bool,
    /// The key.
    pub key: String,
    /// The string value.
    pub value: String,
}

impl AttributeMatch {
    /// Whether `span` holds the value where this looks (the first attribute
    /// of the key, as lookups read).
    pub fn admits(&self, span: &Span) -> bool {
        let is = |v: Option<&AnyValue>| v.and_then(AnyValue::as_str) == Some(self.value.as_str());
        (self.on_span && is(find_attr(&span.attributes, &self.key)))
            || (self.on_resource && is(find_attr(&span.resource.attributes, &self.key)))
    }
}

impl SpanClause {
    /// Whether `span` satisfies the clause.
    pub fn admits(&self, span: &Span) -> bool {
        match self {
            SpanClause::SpanName(names) => names.contains(span.name.as_str()),
            SpanClause::Service(services) => services.contains(span.service_name()),
            SpanClause::StatusError => span.is_error(),
            SpanClause::ErrorType(wanted) => error_classes(span)
                .any(|value| wanted.iter().any(|w| error_class_matches(value, w))),
            SpanClause::Attribute(matches) => matches.iter().any(|m| m.admits(span)),
        }
    }
}

/// Every error class name of `span` that [`SpanClause::ErrorType`] looks at.
pub(crate) fn error_classes(span: &Span) -> impl Iterator<Item = &str> {
    let event = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .and_then(|e| find_attr(&e.attributes, "exception.type"));
    let on_span = ERROR_TYPE_KEYS
        .iter()
        .filter_map(|k| find_attr(&span.attributes, k));
    let on_resource = ERROR_TYPE_KEYS
        .iter()
        .filter_map(|k| find_attr(&span.resource.attributes, k));
    on_span
        .chain(event)
        .chain(on_resource)
        .filter_map(AnyValue::as_str)
}

/// Requirements a trace must meet to be worth evaluating: for every clause,
/// some span of the trace satisfies it. No clauses: every trace qualifies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// All must hold, each by some span (not necessarily the same one).
    pub clauses: Vec<SpanClause>,
}

impl TraceFilter {
    /// Whether `trace` meets every clause.
    pub fn admits(&self, trace: &Trace) -> bool {
        self.clauses
            .iter()
            .all(|c| trace.spans.iter().any(|s| c.admits(s)))
    }
}

/// What [`Store::search`](crate::Store::search) walks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// Traces failing it are skipped unread where the store can tell.
    pub filter: TraceFilter,
    /// When set, the trace (all its spans) must start at or after this time.
    pub start: Option<UnixNanos>,
    /// When set, the trace must start at or before this time.
    pub end: Option<UnixNanos>,
    /// Most traces to read whole; 0 means no cap.
    pub max_inspected: usize,
}

/// What one search did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Traces read whole (whether or not they passed the filter).
    pub inspected: usize,
    /// Whether the walk stopped before every candidate was read: the cap was
    /// reached, or the visitor asked to stop.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{Event, KeyValue, Resource, UnixNanos};
    use std::sync::Arc;

    use super::*;
    use crate::test_support::span;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn error_type_reads_every_spelling_and_the_last_segment() {
        let want = SpanClause::ErrorType(set(&["RateLimitError"]));
        let mut s = span(1, 1, None, "rag", "api_call", 0, 1);
        assert!(!want.admits(&s));
        s.events.push(Event {
            time: UnixNanos(1),
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", "__main__.RateLimitError")],
        });
        assert!(want.admits(&s));
        let mut r = span(1, 2, None, "rag", "api_call", 0, 1);
        r.resource = Arc::new(Resource {
            attributes: vec![KeyValue::new("error_type", "x.RateLimitError")],
        });
        assert!(
            want.admits(&r),
            "the unscoped .error_type can read the resource"
        );
        let mut t = span(1, 3, None, "rag", "api_call", 0, 1);
        t.attributes
            .push(KeyValue::new("error.type", "MyRateLimitError"));
        assert!(!want.admits(&t));
        assert!(SpanClause::Service(set(&["rag"])).admits(&t));
        assert!(!SpanClause::StatusError.admits(&t));
        assert!(SpanClause::SpanName(set(&["api_call", "x"])).admits(&t));
    }
}
