//! From a TraceQL query's [`TraceHints`] to the store's [`TraceFilter`].
//!
//! The store must not know TraceQL and the query crate must not know the
//! store, so the mapping lives here, where both meet. It must stay sound:
//! every trace the query matches passes the filter (the tests below check
//! this against the evaluator).

use chaintrace_query::{HintScope, Query, TraceHints};
use chaintrace_store::{AttributeMatch, SpanClause, TraceFilter};

/// The store filter every trace matching `hints`' query passes.
pub fn trace_filter(hints: &TraceHints) -> TraceFilter {
    let mut clauses = Vec::new();
    clauses.extend(hints.span_names.iter().cloned().map(SpanClause::SpanName));
    clauses.extend(hints.service_names.iter().cloned().map(SpanClause::Service));
    if hints.status_error {
        clauses.push(SpanClause::StatusError);
    }
    clauses.extend(hints.error_types.iter().cloned().map(SpanClause::ErrorType));
    clauses.extend(hints.attributes.iter().map(|set| {
        SpanClause::Attribute(
            set.iter()
                .map(|a| AttributeMatch {
                    on_span: a.scope != HintScope::Resource,
                    on_resource: a.scope != HintScope::Span,
                    key: a.key.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        )
    }));
    TraceFilter { clauses }
}

/// The store filter for an optional query: none, no requirement.
pub fn query_filter(query: Option<&Query>) -> TraceFilter {
    query.map_or_else(TraceFilter::default, |q| trace_filter(&q.trace_hints()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaintrace_model::{
        Event, KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode, Trace, TraceId,
        UnixNanos,
    };
    use proptest::prelude::*;

    use super::*;

    /// Queries whose hints produce every kind of clause, and combinations.
    const QUERIES: [&str; 12] = [
        r#"{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }"#,
        r#"{ resource.service.name = "support-bot" }"#,
        r#"{ .error_type = "RateLimitError" }"#,
        r#"{ .exception.type = "mod.RateLimitError" && status = error }"#,
        r#"{ span.error.type = "Timeout" || name = "api_call" }"#,
        r#"{ status = error } > { name = "api_call" }"#,
        r#"{ rootServiceName = "billing" } && { span.exception.type = "Timeout" }"#,
        r#"{ rootName = "chain" } ~ { status = error }"#,
        r#"{ name = "api_call" || name = "llm_call" } | count() > 1"#,
        r#"{ status = error } | { span.error_type = "RateLimitError" }"#,
        r#"{ !(status = error) && .error_type = "RateLimitError" }"#,
        r#"{ status = error } || { .error.type = "Timeout" }"#,
    ];

    #[derive(Debug, Clone)]
    struct GenSpan {
        name: u8,
        service: u8,
        error: bool,
        class: u8,
        parent: u8,
    }

    fn gen_span() -> impl Strategy<Value = GenSpan> {
        (0..3u8, 0..3u8, any::<bool>(), 0..8u8, 0..8u8).prop_map(
            |(name, service, error, class, parent)| GenSpan {
                name,
                service,
                error,
                class,
                parent,
            },
        )
    }

    fn build(spans: &[GenSpan]) -> Trace {
        let names = ["chain", "llm_call", "api_call"];
        let classes = [
            "RateLimitError",
            "mod.RateLimitError",
            "Timeout",
            "x.Timeout",
        ];
        let out = spans
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut resource = vec![];
                if g.service < 2 {
                    let svc = ["support-bot", "billing"][usize::from(g.service)];
                    resource.push(KeyValue::new("service.name", svc));
                }
                let class = classes[usize::from(g.class % 4)];
                let mut attributes = vec![];
                let mut events = vec![];
                match g.class / 2 {
                    0 => attributes.push(KeyValue::new("error_type", class)),
                    1 => attributes.push(KeyValue::new("error.type", class)),
                    2 => events.push(Event {
                        time: UnixNanos(1),
                        name: "exception".into(),
                        attributes: vec![KeyValue::new("exception.type", class)],
                    }),
                    _ => resource.push(KeyValue::new("error_type", class)),
                }
                Span {
                    trace_id: TraceId([7; 16]),
                    span_id: SpanId([i as u8 + 1; 8]),
                    parent_span_id: (i > 0)
                        .then(|| SpanId([(usize::from(g.parent) % i) as u8 + 1; 8])),
                    name: names[usize::from(g.name)].into(),
                    kind: SpanKind::Internal,
                    start: UnixNanos(i as u64),
                    end: UnixNanos(100),
                    status: Status {
                        code: if g.error {
                            StatusCode::Error
                        } else {
                            StatusCode::Unset
                        },
                        message: String::new(),
                    },
                    attributes,
                    events,
                    links: vec![],
                    resource: Arc::new(Resource {
                        attributes: resource,
                    }),
                    scope: Default::default(),
                }
            })
            .collect();
        Trace::new(TraceId([7; 16]), out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_matching_trace_passes_the_filter(spans in prop::collection::vec(gen_span(), 1..7)) {
            let trace = build(&spans);
            for text in QUERIES {
                let q = chaintrace_query::parse(text).unwrap();
                if q.matches(&trace) {
                    let filter = query_filter(Some(&q));
                    prop_assert!(filter.admits(&trace), "{} matches but {:?} refuses", text, filter);
                }
            }
        }
    }

    #[test]
    fn the_founding_query_needs_a_name_an_error_status_and_an_error_class() {
        let q = chaintrace_query::parse(QUERIES[0]).unwrap();
        let filter = query_filter(Some(&q));
        assert_eq!(filter.clauses.len(), 3);
        assert!(filter.clauses.contains(&SpanClause::StatusError));
        assert!(query_filter(None).clauses.is_empty());
    }
}
