//! What any trace matching a query must contain, for pruning before evaluation.
//!
//! A store keeps, per block, the span names and service names it holds, and
//! hot columns of status and error class. If a query can only match traces
//! with a span named `llm_call`, blocks without that name need not be read.
//! The hints here are conservative: every trace the query matches satisfies
//! them, but satisfying them proves nothing. They do not depend on the time
//! range.

use std::collections::BTreeSet;

use serde::Serialize;

use chaintrace_model::StatusCode;

use crate::ast::{
    Attribute, AttributeScope, CompareOp, Field, FieldExpr, Intrinsic, Literal, Query, SpansetExpr,
    SpansetOp, Stage,
};
use crate::eval::{ERROR_TYPE_KEYS, EXCEPTION_EVENT_KEYS};

/// More clauses than this after distributing an `||` are dropped (no hint).
const MAX_CLAUSES: usize = 32;

/// Requirements on a trace's spans, in conjunctive form: for each set in
/// `span_names`, the trace has a span whose name is in that set; likewise
/// for `service_names` (the `service.name` of a span's resource,
/// `unknown_service` when absent) and `error_types` (a span has an error
/// class name — `error_type`, `error.type` or `exception.type`, on the span,
/// its first `exception` event or its resource — that equals one of the set
/// or whose last dotted segment equals a dotless one). `status_error`: the
/// trace has a span with status ERROR. Empty lists and `false` require
/// nothing. Each requirement may be met by a different span.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TraceHints {
    /// Each set: the trace has a span named one of these.
    pub span_names: Vec<BTreeSet<String>>,
    /// Each set: the trace has a span from one of these services.
    pub service_names: Vec<BTreeSet<String>>,
    /// Each set: the trace has a span whose error class answers one of these.
    pub error_types: Vec<BTreeSet<String>>,
    /// The trace has a span with status ERROR.
    pub status_error: bool,
    /// Each set: the trace has a span with one of these attribute values
    /// (string equality; `span.`, `resource.` or unscoped).
    pub attributes: Vec<BTreeSet<AttributeEquals>>,
}

/// Where an attribute hint looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum HintScope {
    /// The span's own attributes.
    Span,
    /// Its resource's attributes.
    Resource,
    /// Either (an unscoped `.key`).
    Either,
}

/// A span whose attribute `key` (where `scope` says) is the string `value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AttributeEquals {
    /// Where to look.
    pub scope: HintScope,
    /// The attribute key.
    pub key: String,
    /// The string it equals.
    pub value: String,
}

impl TraceHints {
    /// Whether the hints require nothing (every trace may match).
    pub fn is_empty(&self) -> bool {
        self.span_names.is_empty()
            && self.service_names.is_empty()
            && self.error_types.is_empty()
            && !self.status_error
            && self.attributes.is_empty()
    }

    /// Whether a block (or trace) holding the names and services answered by
    /// the two predicates may contain a matching trace, as far as names and
    /// services tell (`error_types` and `status_error` are not consulted).
    pub fn admits(
        &self,
        has_span_name: impl Fn(&str) -> bool,
        has_service: impl Fn(&str) -> bool,
    ) -> bool {
        self.span_names
            .iter()
            .all(|set| set.iter().any(|n| has_span_name(n)))
            && self
                .service_names
                .iter()
                .all(|set| set.iter().any(|s| has_service(s)))
    }

    /// Both sets of requirements hold.
    fn and(mut self, other: TraceHints) -> TraceHints {
        for clause in other.span_names {
            if !self.span_names.contains(&clause) {
                self.span_names.push(clause);
            }
        }
        for clause in other.service_names {
            if !self.service_names.contains(&clause) {
                self.service_names.push(clause);
            }
        }
        for clause in other.error_types {
            if !self.error_types.contains(&clause) {
                self.error_types.push(clause);
            }
        }
        self.status_error |= other.status_error;
        for clause in other.attributes {
            if !self.attributes.contains(&clause) {
                self.attributes.push(clause);
            }
        }
        self
    }

    /// One of the two holds: distribute, `(a1 ∧ a2) ∨ (b1) ⇒ (a1 ∨ b1) ∧ (a2 ∨ b1)`.
    fn or(self, other: TraceHints) -> TraceHints {
        TraceHints {
            span_names: distribute(&self.span_names, &other.span_names),
            service_names: distribute(&self.service_names, &other.service_names),
            error_types: distribute(&self.error_types, &other.error_types),
            status_error: self.status_error && other.status_error,
            attributes: distribute(&self.attributes, &other.attributes),
        }
    }

    fn span_name(name: &str) -> TraceHints {
        TraceHints {
            span_names: vec![BTreeSet::from([name.to_string()])],
            ..TraceHints::default()
        }
    }

    fn service(name: &str) -> TraceHints {
        TraceHints {
            service_names: vec![BTreeSet::from([name.to_string()])],
            ..TraceHints::default()
        }
    }

    fn error_type(class: &str) -> TraceHints {
        TraceHints {
            error_types: vec![BTreeSet::from([class.to_string()])],
            ..TraceHints::default()
        }
    }
}

fn distribute<T: Ord + Clone>(a: &[BTreeSet<T>], b: &[BTreeSet<T>]) -> Vec<BTreeSet<T>> {
    if a.len() * b.len() > MAX_CLAUSES {
        return Vec::new();
    }
    let mut out: Vec<BTreeSet<T>> = Vec::new();
    for x in a {
        for y in b {
            let clause: BTreeSet<T> = x.union(y).cloned().collect();
            if !out.contains(&clause) {
                out.push(clause);
            }
        }
    }
    out
}

impl Query {
    /// Span names, services, error classes and error status that any trace
    /// matching this query must contain; see [`TraceHints`]. Derived from
    /// `=` comparisons on `name`, `rootName`, `rootServiceName`,
    /// `resource.service.name`, `status` (`= error`) and the error class
    /// attributes (`span.` or unscoped `error_type`, `error.type`,
    /// `exception.type`) that every match depends on.
    ///
    /// ```
    /// let q = chaintrace_query::parse(r#"{ name = "llm_call" } > { name = "api_call" || name = "retry" }"#)?;
    /// let hints = q.trace_hints();
    /// assert_eq!(hints.span_names.len(), 2);
    /// assert!(hints.admits(|n| n == "llm_call" || n == "retry", |_| true));
    /// assert!(!hints.admits(|n| n == "llm_call", |_| true));
    /// # Ok::<(), chaintrace_query::ParseError>(())
    /// ```
    pub fn trace_hints(&self) -> TraceHints {
        spanset_hints(&self.expr)
    }
}

fn spanset_hints(expr: &SpansetExpr) -> TraceHints {
    match expr {
        SpansetExpr::Filter(f) => f
            .condition
            .as_ref()
            .map(condition_hints)
            .unwrap_or_default(),
        SpansetExpr::Binary { op, lhs, rhs } => {
            let (l, r) = (spanset_hints(lhs), spanset_hints(rhs));
            match op {
                SpansetOp::Or => l.or(r),
                // `&&` and every structural operator need both sides non-empty.
                _ => l.and(r),
            }
        }
        SpansetExpr::Pipeline { input, stages } => {
            let mut hints = spanset_hints(input);
            for stage in stages {
                if let Stage::Filter(f) = stage {
                    if let Some(c) = &f.condition {
                        hints = hints.and(condition_hints(c));
                    }
                }
            }
            hints
        }
    }
}

fn condition_hints(expr: &FieldExpr) -> TraceHints {
    match expr {
        FieldExpr::And(l, r) => condition_hints(l).and(condition_hints(r)),
        FieldExpr::Or(l, r) => condition_hints(l).or(condition_hints(r)),
        FieldExpr::Compare(c) if c.op == CompareOp::Eq => match (&c.field, &c.value) {
            (Field::Intrinsic(Intrinsic::Name | Intrinsic::RootName), Literal::String(s)) => {
                TraceHints::span_name(s)
            }
            (Field::Intrinsic(Intrinsic::RootServiceName), Literal::String(s)) => {
                TraceHints::service(s)
            }
            (
                Field::Attribute(Attribute {
                    scope: AttributeScope::Resource,
                    name,
                }),
                Literal::String(s),
            ) if name == "service.name" => TraceHints::service(s),
            (Field::Intrinsic(Intrinsic::Status), Literal::Status(StatusCode::Error)) => {
                TraceHints {
                    status_error: true,
                    ..TraceHints::default()
                }
            }
            (
                Field::Attribute(Attribute {
                    scope: AttributeScope::Span | AttributeScope::Any,
                    name,
                }),
                Literal::String(s),
            ) if ERROR_TYPE_KEYS.contains(&name.as_str()) => TraceHints::error_type(s),
            // Any other attribute equal to a string: the span (or its
            // resource) holds that string under that key. Not the keys the
            // evaluator also reads from exception events.
            (Field::Attribute(Attribute { scope, name }), Literal::String(s))
                if !ERROR_TYPE_KEYS.contains(&name.as_str())
                    && !EXCEPTION_EVENT_KEYS.contains(&name.as_str()) =>
            {
                let scope = match scope {
                    AttributeScope::Span => HintScope::Span,
                    AttributeScope::Resource => HintScope::Resource,
                    AttributeScope::Any => HintScope::Either,
                };
                TraceHints {
                    attributes: vec![BTreeSet::from([AttributeEquals {
                        scope,
                        key: name.clone(),
                        value: s.clone(),
                    }])],
                    ..TraceHints::default()
                }
            }
            _ => TraceHints::default(),
        },
        // `!`, `!=`, ranges and regexes give no requirement.
        _ => TraceHints::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::parse;

    fn names(query: &str) -> Vec<BTreeSet<String>> {
        parse(query).unwrap().trace_hints().span_names
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hints_follow_the_query_structure() {
        assert_eq!(
            names(r#"{ name = "a" && status = error }"#),
            vec![set(&["a"])]
        );
        assert_eq!(
            names(r#"{ name = "a" || name = "b" }"#),
            vec![set(&["a", "b"])]
        );
        assert_eq!(
            names(r#"{ name = "a" || status = error }"#),
            vec![] as Vec<BTreeSet<String>>
        );
        assert_eq!(
            names(r#"{ !(name = "a") }"#),
            vec![] as Vec<BTreeSet<String>>
        );
        assert_eq!(names(r#"{ name != "a" }"#), vec![] as Vec<BTreeSet<String>>);
        assert_eq!(
            names(r#"{ name = "a" } >> { name = "b" } | count() > 1"#),
            vec![set(&["a"]), set(&["b"])]
        );
        assert_eq!(
            names(r#"{ name = "a" } || { name = "b" }"#),
            vec![set(&["a", "b"])]
        );
        assert_eq!(names(r#"{ } | { rootName = "r" }"#), vec![set(&["r"])]);
        let hints = parse(r#"{ resource.service.name = "rag" } && { rootServiceName = "gw" }"#)
            .unwrap()
            .trace_hints();
        assert_eq!(hints.service_names, vec![set(&["rag"]), set(&["gw"])]);
        assert!(hints.admits(|_| false, |s| s == "rag" || s == "gw"));
        assert!(!hints.admits(|_| false, |s| s == "rag"));
        assert!(parse("{ duration > 1s }").unwrap().trace_hints().is_empty());
    }

    #[test]
    fn attribute_values_are_hints_where_sound() {
        let attrs = |q: &str| parse(q).unwrap().trace_hints().attributes;
        let eq = |scope, key: &str, value: &str| super::AttributeEquals {
            scope,
            key: key.into(),
            value: value.into(),
        };
        use super::HintScope::*;
        assert_eq!(
            attrs(r#"{ span.user_id = "u-123" }"#),
            vec![BTreeSet::from([eq(Span, "user_id", "u-123")])]
        );
        assert_eq!(
            attrs(r#"{ resource.deployment = "canary" && duration > 2s }"#),
            vec![BTreeSet::from([eq(Resource, "deployment", "canary")])]
        );
        assert_eq!(
            attrs(r#"{ .customer = "a" || .customer = "b" }"#),
            vec![BTreeSet::from([
                eq(Either, "customer", "a"),
                eq(Either, "customer", "b")
            ])]
        );
        // Not from `!=`, numbers, regexes, an `||` with a branch without
        // one, or the keys exception events also answer.
        for q in [
            r#"{ span.user_id != "u" }"#,
            r#"{ span.n = 3 }"#,
            r#"{ span.user_id =~ "u.*" }"#,
            r#"{ span.user_id = "u" || name = "x" }"#,
            r#"{ span.exception.message = "boom" }"#,
            r#"{ !(span.user_id = "u") }"#,
        ] {
            assert!(attrs(q).is_empty(), "{q}");
        }
    }

    #[test]
    fn error_class_and_status_hints() {
        let hints = parse(
            r#"{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }"#,
        )
        .unwrap()
        .trace_hints();
        assert_eq!(hints.span_names, vec![set(&["llm_call"])]);
        assert!(hints.status_error);
        assert_eq!(hints.error_types, vec![set(&["RateLimitError"])]);
        let hints = parse(r#"{ .error.type = "A" || .exception.type = "b.B" }"#)
            .unwrap()
            .trace_hints();
        assert_eq!(hints.error_types, vec![set(&["A", "b.B"])]);
        // Only where sound: another scope, another key, `!=`, or an `||`
        // with a branch that needs no error.
        for q in [
            r#"{ resource.error_type = "A" }"#,
            r#"{ span.error_kind = "A" }"#,
            r#"{ span.error_type != "A" }"#,
            r#"{ span.error_type = "A" || name = "x" }"#,
            r#"{ status = error || name = "x" }"#,
            r#"{ status != error }"#,
            r#"{ status = ok }"#,
            r#"{ !(status = error) }"#,
        ] {
            let hints = parse(q).unwrap().trace_hints();
            assert!(
                hints.error_types.is_empty() && !hints.status_error,
                "{q}: {hints:?}"
            );
        }
        assert!(
            parse(r#"{ status = error } || { status = error && name = "a" }"#)
                .unwrap()
                .trace_hints()
                .status_error
        );
    }
}
