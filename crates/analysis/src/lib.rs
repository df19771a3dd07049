//! Analysis of traces: plain functions from [`chaintrace_model::Trace`]s to
//! plain data that the API, the CLI and the web UI render alike. This crate
//! depends only on the model and does no I/O.
//!
//! Per trace:
//! - [`critical_path`] — what the root waited for: the [`CriticalPath::chain`]
//!   (root → last-finishing child → …) and the full walk-back
//!   [`CriticalPath::segments`]; [`self_times`]. Children are clamped into
//!   their parents first (clock skew, async work outliving its parent), and
//!   the result says so.
//! - [`fully_parallel_bound`] and [`what_if_parallel`] — how long the root
//!   would take with siblings overlapped.
//! - [`llm_view`] / [`llm_spans`] — model, tokens, prompt, completion and
//!   [`Cost`] from the OpenTelemetry GenAI, OpenInference or plain
//!   attributes, priced by a [`PriceTable`].
//! - [`gantt::layout`] — the one Gantt layout, with critical-path marks;
//!   [`sibling_groups`] — runs of same-named siblings and folded retries.
//! - [`analyze`] — all of the above as the API's [`TraceAnalysis`].
//!
//! Across traces: [`operation_stats`], [`model_stats`], [`top_bottlenecks`],
//! [`operation_series`] and [`error_groups`].
//!
//! ```
//! # use chaintrace_model::*;
//! # fn span(id: u8, parent: Option<u8>, name: &str, start: u64, end: u64) -> Span {
//! #     Span { trace_id: TraceId([1; 16]), span_id: SpanId([id; 8]),
//! #         parent_span_id: parent.map(|p| SpanId([p; 8])), name: name.into(),
//! #         kind: SpanKind::Internal, start: UnixNanos(start), end: UnixNanos(end),
//! #         status: Status::default(), attributes: vec![], events: vec![], links: vec![],
//! #         resource: Default::default(), scope: Default::default() }
//! # }
//! use chaintrace_analysis::{analyze, PriceTable};
//! let trace = Trace::new(TraceId([1; 16]), vec![
//!     span(1, None, "process_query", 0, 1200),
//!     span(2, Some(1), "fetch_context", 0, 250),
//!     span(3, Some(1), "llm_call", 250, 1200),
//! ]);
//! let a = analyze(&trace, &PriceTable::builtin(), None).unwrap();
//! assert_eq!(a.fully_parallel_bound_nano, 950);
//! ```

mod aggregates;
mod analyze;
mod compare;
mod critical_path;
mod errors;
pub mod gantt;
mod llm;
mod prices;
mod rollup;
mod sessions;
mod sibling_groups;
mod tree;
mod what_if;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod test_support;

pub use aggregates::{
    model_stats, operation_series, operation_stats, top_bottlenecks, Aggregates, ModelStats,
    OperationStats, SeriesAggregates, SeriesBucket,
};
pub use analyze::{analyze, AnalysisError, TraceAnalysis};
pub use compare::{compare, Comparison, LoneSpan, MatchedSpan};
pub use critical_path::{critical_path, self_times, CriticalPath, PathSegment, PathSpan};
pub use errors::{error_groups, error_type, ErrorGroup, ErrorGroups, ErrorType, ErrorTypeSource};
pub use llm::{
    answer_text, last_user_text, llm_spans, llm_view, LlmSpan, LlmTotals, LlmView, TokenUsage,
};
pub use prices::{Cost, ModelPrice, PriceError, PriceTable};
pub use rollup::RollupFigures;
pub use sessions::{session_turns, SessionGroups, SessionSummary, SessionTurn, MAX_TURN_IDS};
pub use sibling_groups::{parent_rows, sibling_groups, GroupKind, SiblingGroup, MIN_RUN};
pub use what_if::{fully_parallel_bound, what_if_parallel, WhatIf, WhatIfError};
