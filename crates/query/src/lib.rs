//! chaintrace's query language: a subset of Grafana Tempo's TraceQL, parsed
//! into a typed syntax tree and evaluated against one [`Trace`] at a time.
//!
//! Plain code, no I/O: the store decides which traces to read (helped by
//! [`Query::trace_hints`]) and calls [`evaluate`] on each.
//!
//! ```
//! use chaintrace_query::parse;
//!
//! let q = parse(r#"{ name = "llm_call" && status = error } > { .error_type = "RateLimitError" }"#)?;
//! assert_eq!(
//!     q.to_string(),
//!     r#"{ name = "llm_call" && status = error } > { .error_type = "RateLimitError" }"#
//! );
//!
//! let err = parse(r#"{ name "llm_call" }"#).unwrap_err();
//! assert_eq!(err.position, 7);
//! assert_eq!(err.to_string(), r#"at 7: expected a comparison operator (=, !=, >, >=, <, <=, =~, !~), found "llm_call""#);
//! # Ok::<(), chaintrace_query::ParseError>(())
//! ```
//!
//! # The language
//!
//! - **Spanset filters** `{ condition }` select the spans of a trace for which
//!   the condition holds; `{}` selects them all. Conditions compare a field
//!   with a literal using `=`, `!=`, `>`, `>=`, `<`, `<=`, `=~`, `!~` and
//!   combine with `&&`, `||`, `!` and parentheses. As in Tempo, `&&` and `||`
//!   have equal precedence and associate to the left (`a || b && c` is
//!   `(a || b) && c`); the normalised form prints those parentheses.
//! - **Intrinsics** (either spelling): `name` / `span:name`, `status` /
//!   `span:status` (`ok`, `error`, `unset`), `statusMessage` /
//!   `span:statusMessage`, `duration` / `span:duration`, `kind` / `span:kind`
//!   (`server`, `client`, `internal`, `producer`, `consumer`, `unspecified`),
//!   `rootName` / `trace:rootName`, `rootServiceName` / `trace:rootService`,
//!   `traceDuration` / `trace:duration`.
//! - **Attributes**: `span.x`, `resource.x`, and `.x` (the span's attribute,
//!   else its resource's). Names may contain dots (`span.gen_ai.request.model`)
//!   or be quoted (`span."my attr"`).
//! - **Literals**: strings (`"double"` with `\" \\ \n \r \t \uXXXX` escapes, or
//!   `` `raw` `` without escapes, handy for regexes), integers, floats, `true`,
//!   `false`, `nil`, durations (`10ns`, `100us`, `500ms`, `1.5s`, `2m`, `1h`,
//!   also `1m30s`), statuses and kinds.
//! - **Spanset operators**: `&&` (both sides non-empty: their union), `||`
//!   (union), and the structural `>` (right-hand spans whose parent is on the
//!   left), `>>` (… with an ancestor on the left), `<` (… that are the parent
//!   of a left-hand span), `<<` (… an ancestor of one), `~` (… with a sibling,
//!   another span of the same parent, on the left). Structural operators bind
//!   tighter than `&&`/`||`; parentheses group.
//! - **Pipelines**: `| count() > 3`, `| avg(duration) > 1s`, `min`, `max`,
//!   `sum` (over `duration`, `traceDuration` or a numeric attribute, spans
//!   without a number ignored), `| { condition }` (keep the spans that also
//!   satisfy it) and `| select(span.x, name, ...)` (report those fields of each
//!   matched span in [`MatchedSpan::selected`]).
//!
//! # Comparison rules
//!
//! - A missing attribute never matches, `!=` and `!~` included; `= nil` tests
//!   absence and `!= nil` presence. `!(...)` is plain negation, so
//!   `!(span.x = 1)` does match spans without `span.x`.
//! - Integers, floats and durations compare numerically with each other (a
//!   duration counts as nanoseconds); strings compare by code point; values
//!   of other types never match.
//! - `=~` and `!~` must match the whole value, like Tempo (Go RE2 syntax via
//!   the `regex` crate, compiled once when parsing, size-limited).
//!
//! # Bounded regex work
//!
//! A size limit bounds a regex's automaton, not the work of matching it:
//! `[ab]*a[ab]{1000}` over a 2 MiB span name takes seconds. Callers that
//! evaluate queries from outside over stored data use [`evaluate_within`]
//! with a [`RegexBudget`] per search (by default
//! [`DEFAULT_REGEX_WORK_UNITS`]): every match is charged its worst-case
//! work before it runs, and a match that does not fit stops the evaluation
//! with [`RegexBudgetExhausted`] rather than being skipped or cut short. A
//! value is always matched in full or not at all.
//! - Type errors are parse errors with a position: `duration = "abc"`,
//!   `status = 3`, `kind > server`, `name =~ 5`, `span.x = error` (quote it).
//!
//! # Errors as clients record them
//!
//! The question "which `llm_call` spans failed with `RateLimitError`" must
//! not depend on how the client recorded the error. Two rules help, and
//! nothing else is special:
//!
//! 1. **Exception events as attributes.** `span.exception.type` and
//!    `span.exception.message` (also `.exception.type`, `.exception.message`)
//!    resolve to the span's own attribute when it has one, and otherwise to
//!    the attribute of the span's first event named `exception` — where
//!    OpenTelemetry SDKs put a recorded exception.
//! 2. **Qualified error class names.** On the attributes `error_type`,
//!    `error.type` and `exception.type` (see [`ERROR_TYPE_KEYS`]), an `=`
//!    comparison against a name without dots matches either the whole value
//!    or its last dotted segment: `span.exception.type = "RateLimitError"`
//!    matches `__main__.RateLimitError` and `openai.RateLimitError`; `!=` is
//!    its exact negation. A dotted name (`"openai.RateLimitError"`) and
//!    regexes compare the whole value.
//!
//! Queries for the failing `api_call` of the captured fixture, where the
//! client wrote `error_type` and an `exception` event on `api_call`, and the
//! exception propagated to `llm_call` and `process_query`:
//!
//! ```text
//! { name = "llm_call" && status = error } > { .error_type = "RateLimitError" }
//! { name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }
//! { span.error_type = "RateLimitError" || span.exception.type = "RateLimitError" } << { name = "llm_call" }
//! { name = "llm_call" && status = error && span.exception.type = "RateLimitError" }
//! ```
//!
//! The first two return the `api_call` span, the last two the `llm_call` span.
//!
//! # Example: evaluating a trace
//!
//! ```
//! use std::sync::Arc;
//! use chaintrace_model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, Trace, TraceId, UnixNanos};
//! use chaintrace_query::{evaluate, parse};
//!
//! let span = |id: u8, parent: Option<u8>, name: &str, ms: u64| Span {
//!     trace_id: TraceId([7; 16]),
//!     span_id: SpanId([id; 8]),
//!     parent_span_id: parent.map(|p| SpanId([p; 8])),
//!     name: name.into(),
//!     kind: SpanKind::Internal,
//!     start: UnixNanos(0),
//!     end: UnixNanos(ms * 1_000_000),
//!     status: Status::default(),
//!     attributes: vec![KeyValue::new("model", "claude-3-opus")],
//!     events: vec![],
//!     links: vec![],
//!     resource: Arc::new(Resource::default()),
//!     scope: Default::default(),
//! };
//! let trace = Trace::new(TraceId([7; 16]), vec![span(1, None, "llm_call", 950), span(2, Some(1), "api_call", 900)]);
//!
//! let q = parse(r#"{ name = "llm_call" } > { duration > 500ms } | select(span.model)"#)?;
//! let found = evaluate(&q, &trace).expect("matches");
//! assert_eq!(found.matched.len(), 1);
//! assert_eq!(trace.spans[found.matched[0].span_index].name, "api_call");
//! assert_eq!(found.matched[0].selected, vec![("span.model".to_string(), "claude-3-opus".into())]);
//! assert!(evaluate(&parse("{ duration > 1s }")?, &trace).is_none());
//! # Ok::<(), chaintrace_query::ParseError>(())
//! ```

mod ast;
mod budget;
mod error;
mod eval;
mod hints;
mod lexer;
mod parser;
mod pattern;

use std::str::FromStr;

pub use ast::{
    Aggregate, Attribute, AttributeScope, CompareOp, Comparison, Field, FieldExpr, Intrinsic,
    Literal, Query, SpansetExpr, SpansetFilter, SpansetOp, Stage,
};
pub use budget::{RegexBudget, RegexBudgetExhausted, DEFAULT_REGEX_WORK_UNITS};
use chaintrace_model::Trace;
pub use error::ParseError;
pub use eval::{
    evaluate, evaluate_within, MatchedSpan, TraceMatch, ERROR_TYPE_KEYS, EXCEPTION_EVENT_KEYS,
};
pub use hints::{AttributeEquals, HintScope, TraceHints};
pub use parser::{MAX_OPERATORS, MAX_QUERY_BYTES};

/// Parses a TraceQL query; syntax and type errors carry the byte position
/// of the offending token.
///
/// ```
/// let q = chaintrace_query::parse("{ span:duration > 1.5s } | count() > 2")?;
/// assert_eq!(q.to_string(), "{ duration > 1500ms } | count() > 2");
/// let err = chaintrace_query::parse(r#"{ duration = "abc" }"#).unwrap_err();
/// assert_eq!(err.position, 13);
/// # Ok::<(), chaintrace_query::ParseError>(())
/// ```
pub fn parse(text: &str) -> Result<Query, ParseError> {
    parser::parse_query(text)
}

impl FromStr for Query {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Query, ParseError> {
        parse(text)
    }
}

impl Query {
    /// Runs the query over one trace; same as [`evaluate`].
    pub fn evaluate(&self, trace: &Trace) -> Option<TraceMatch> {
        evaluate(self, trace)
    }

    /// Whether the trace satisfies the query.
    pub fn matches(&self, trace: &Trace) -> bool {
        evaluate(self, trace).is_some()
    }

    /// Runs the query over one trace within a regex work budget; same as
    /// [`evaluate_within`].
    pub fn evaluate_within(
        &self,
        trace: &Trace,
        budget: &mut RegexBudget,
    ) -> Result<Option<TraceMatch>, RegexBudgetExhausted> {
        evaluate_within(self, trace, budget)
    }
}
