//! Everything the API and the CLI show about one trace, in one value:
//! `GET /api/v1/traces/{id}/analysis[?parallel=a,b]` serializes
//! [`TraceAnalysis`] as is.

use std::fmt;

use chaintrace_model::{SpanId, Trace, TraceId};
use serde::Serialize;

use crate::critical_path::{critical_path_with, PathSegment, PathSpan};
use crate::llm::{llm_spans_with, LlmSpan, LlmTotals};
use crate::prices::PriceTable;
use crate::tree::SpanTree;
use crate::what_if::{fully_parallel_bound_with, what_if_with, WhatIf, WhatIfError};

/// The analysis of one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceAnalysis {
    /// The trace.
    pub trace_id: TraceId,
    /// The root span's duration.
    pub duration_nano: u64,
    /// Root → last-finishing child → … (see [`crate::CriticalPath::chain`]).
    pub critical_path: Vec<PathSpan>,
    /// The full walk-back path, partitioning `duration_nano`.
    pub critical_segments: Vec<PathSegment>,
    /// The root's duration if all its steps overlapped (see [`crate::fully_parallel_bound`]).
    pub fully_parallel_bound_nano: u64,
    /// The named what-if, when one was asked for.
    pub what_if: Option<WhatIf>,
    /// The LLM spans: model, tokens, cost.
    pub llm: Vec<LlmSpan>,
    /// Tokens and cost over the counted LLM calls.
    pub llm_totals: LlmTotals,
    /// Whether any span was clamped into its parent.
    pub clock_skew_adjusted: bool,
    /// The clamped spans.
    pub adjusted_spans: Vec<SpanId>,
    /// Whether the real root has not arrived and the analysis starts at the
    /// earliest span whose parent is missing.
    pub root_missing: bool,
}

/// Why a trace could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalysisError {
    /// The trace has no spans.
    EmptyTrace,
    /// Every span is caught in a parent cycle, so there is no root.
    NoRoot {
        /// Number of spans in the trace.
        span_count: usize,
    },
    /// The `parallel` what-if was not possible.
    WhatIf(WhatIfError),
}

impl fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnalysisError::EmptyTrace => write!(f, "the trace has no spans"),
            AnalysisError::NoRoot { span_count } => write!(
                f,
                "none of the trace's {span_count} spans is a root: their parent ids form a cycle"
            ),
            AnalysisError::WhatIf(e) => write!(f, "parallel what-if: {e}"),
        }
    }
}

impl std::error::Error for AnalysisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AnalysisError::WhatIf(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WhatIfError> for AnalysisError {
    fn from(e: WhatIfError) -> Self {
        AnalysisError::WhatIf(e)
    }
}

/// Analyses `trace`: critical path, self times, the full-parallel bound, the
/// `parallel` what-if when given, LLM tokens and cost priced with `prices`.
///
/// ```
/// # use chaintrace_model::*;
/// # fn span(id: u8, parent: Option<u8>, name: &str, start: u64, end: u64) -> Span {
/// #     Span { trace_id: TraceId([1; 16]), span_id: SpanId([id; 8]),
/// #         parent_span_id: parent.map(|p| SpanId([p; 8])), name: name.into(),
/// #         kind: SpanKind::Internal, start: UnixNanos(start), end: UnixNanos(end),
/// #         status: Status::default(), attributes: vec![], events: vec![], links: vec![],
/// #         resource: Default::default(), scope: Default::default() }
/// # }
/// use chaintrace_analysis::{analyze, PriceTable};
/// let trace = Trace::new(TraceId([1; 16]), vec![
///     span(1, None, "process_query", 0, 100),
///     span(2, Some(1), "fetch_context", 0, 30),
///     span(3, Some(1), "embed_query", 30, 50),
///     span(4, Some(1), "llm_call", 50, 100),
/// ]);
/// let a = analyze(&trace, &PriceTable::builtin(), Some(&["fetch_context", "embed_query"])).unwrap();
/// assert_eq!(a.what_if.unwrap().saved_nano, 20);
/// let json = serde_json::to_value(analyze(&trace, &PriceTable::builtin(), None).unwrap()).unwrap();
/// assert_eq!(json["fully_parallel_bound_nano"], 50);
/// assert!(json["what_if"].is_null());
/// ```
pub fn analyze(
    trace: &Trace,
    prices: &PriceTable,
    parallel: Option<&[&str]>,
) -> Result<TraceAnalysis, AnalysisError> {
    if trace.spans.is_empty() {
        return Err(AnalysisError::EmptyTrace);
    }
    let tree = SpanTree::build(trace);
    if tree.root.is_none() {
        return Err(AnalysisError::NoRoot {
            span_count: trace.spans.len(),
        });
    }
    let what_if = parallel
        .map(|names| what_if_with(trace, &tree, names))
        .transpose()?;
    let path = critical_path_with(trace, &tree, &tree.interval);
    let llm = llm_spans_with(trace, &tree, prices);
    Ok(TraceAnalysis {
        trace_id: trace.trace_id,
        duration_nano: path.total_nano,
        critical_path: path.chain,
        critical_segments: path.segments,
        fully_parallel_bound_nano: fully_parallel_bound_with(&tree),
        what_if,
        llm_totals: LlmTotals::of(&llm),
        llm,
        clock_skew_adjusted: path.clock_skew_adjusted,
        adjusted_spans: path.adjusted_spans,
        root_missing: path.root_missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn founding_example_analysis() {
        let a = analyze(
            &founding(),
            &PriceTable::builtin(),
            Some(&["fetch_context", "embed_query"]),
        )
        .unwrap();
        assert_eq!(a.duration_nano, ms(1200));
        assert_eq!(a.fully_parallel_bound_nano, ms(950));
        let w = a.what_if.as_ref().unwrap();
        assert_eq!((w.duration_nano, w.saved_nano), (ms(1150), ms(50)));
        let names: Vec<_> = a.critical_path.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["process_query", "llm_call", "api_call"]);
        insta::assert_json_snapshot!("analysis_founding", a);
    }

    #[test]
    fn concurrent_variant_analysis() {
        let a = analyze(
            &founding_concurrent(),
            &PriceTable::builtin(),
            Some(&["fetch_context", "embed_query"]),
        )
        .unwrap();
        assert_eq!(a.what_if.as_ref().unwrap().saved_nano, 0);
        insta::assert_json_snapshot!("analysis_concurrent", a);
    }

    #[test]
    fn errors() {
        let p = PriceTable::empty();
        let empty = Trace::new(TraceId([1; 16]), vec![]);
        assert_eq!(analyze(&empty, &p, None), Err(AnalysisError::EmptyTrace));
        let cycle = Trace::new(
            TraceId([1; 16]),
            vec![span(2, Some(3), "a", 0, 10), span(3, Some(2), "b", 2, 8)],
        );
        let e = analyze(&cycle, &p, None).unwrap_err();
        assert_eq!(e, AnalysisError::NoRoot { span_count: 2 });
        assert_eq!(
            e.to_string(),
            "none of the trace's 2 spans is a root: their parent ids form a cycle"
        );
        let e = analyze(&founding(), &p, Some(&["nope"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parallel what-if: no span named \"nope\" in this trace"
        );
    }

    #[test]
    fn wide_traces_are_analysed_whole() {
        // 20 000 sequential siblings named alike: every step is on the path.
        let mut spans = vec![span_ns(0, None, "batch", T0, T0 + 40_000)];
        for i in 0..20_000u64 {
            let mut s = span_ns(0, Some(0), "embed", T0 + 2 * i, T0 + 2 * i + 2);
            s.span_id = SpanId((i + 1).to_be_bytes());
            s.parent_span_id = Some(SpanId([0; 8]));
            spans.push(s);
        }
        spans[0].span_id = SpanId([0; 8]);
        let t = Trace::new(TraceId([1; 16]), spans);
        let a = analyze(&t, &PriceTable::empty(), Some(&["embed"])).unwrap();
        assert_eq!(a.critical_segments.len(), 20_000);
        assert_eq!(a.fully_parallel_bound_nano, 2);
        assert_eq!(a.what_if.unwrap().duration_nano, 2);
    }

    #[test]
    fn unknown_prices_leave_cost_unknown_not_zero() {
        let a = analyze(&founding(), &PriceTable::empty(), None).unwrap();
        assert!(a.llm.iter().all(|s| s.cost.is_none()));
        assert_eq!(a.llm_totals.priced_calls, 0);
        assert_eq!(a.llm_totals.unpriced_calls, 2);
        assert_eq!(a.llm_totals.input_tokens, 1200);
    }
}
