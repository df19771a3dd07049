//! Critical path and self time of one trace.
//!
//! Two views of "what the root waited for", both computed on intervals
//! clamped into their parents (see [`CriticalPath::clock_skew_adjusted`]):
//!
//! - [`CriticalPath::chain`] — the spans that set the root's end, one per
//!   level: the root, its last-finishing child, that child's last-finishing
//!   child, and so on. For the founding example this is
//!   `process_query → llm_call → api_call`. It is what the API reports as
//!   `critical_path`.
//! - [`CriticalPath::segments`] — the full walk back from the root's end
//!   (the algorithm of Jaeger and Uber's CRISP): the last-finishing child is
//!   on the path, then the latest-ending child that started before *it*
//!   started (cut at that start if it was still running), and so on,
//!   recursively inside each. The segments partition the root's duration,
//!   so in a sequential chain every step appears (fetch_context, embed_query,
//!   vector_search, …) while of two concurrent children only the one that
//!   gated progress does. Aggregates use it for "share of critical-path time".
//!
//! This module reads spans only; it must not decide how they are shown.

use chaintrace_model::{SpanId, Trace};
use serde::Serialize;

use crate::tree::{Interval, SpanTree};

/// The critical path of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriticalPath {
    /// Root → last-finishing child → its last-finishing child …
    pub chain: Vec<PathSpan>,
    /// The full walk-back path in time order; durations sum to `total_nano`.
    pub segments: Vec<PathSegment>,
    /// The root's duration.
    pub total_nano: u64,
    /// Whether the root is a stand-in: the real root has not arrived, and the
    /// path starts at the earliest span whose parent is missing.
    pub root_missing: bool,
    /// Whether any span had to be clamped into its parent.
    pub clock_skew_adjusted: bool,
    /// The clamped spans: a child that started before its parent or ended
    /// after it — clock skew between services, or async work that outlived
    /// the parent.
    pub adjusted_spans: Vec<SpanId>,
}

/// One span of [`CriticalPath::chain`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathSpan {
    /// Index in `trace.spans`.
    pub span_index: usize,
    /// The span's id.
    pub span_id: SpanId,
    /// Span name.
    pub name: String,
    /// `service.name` of the span.
    pub service: String,
    /// Start, in nanoseconds from the trace's first span start (the Gantt zero).
    pub offset_nano: u64,
    /// Duration after clamping into its parent.
    pub duration_nano: u64,
    /// Duration minus the union of its children's intervals.
    pub self_nano: u64,
}

/// One piece of [`CriticalPath::segments`]: time the root spent waiting on
/// `span`'s own work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathSegment {
    /// Index in `trace.spans`.
    pub span_index: usize,
    /// The span's id.
    pub span_id: SpanId,
    /// Span name.
    pub name: String,
    /// `service.name` of the span.
    pub service: String,
    /// Segment start, in nanoseconds from the trace's first span start.
    pub offset_nano: u64,
    /// Segment length.
    pub duration_nano: u64,
}

/// The critical path of `trace`.
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
/// let trace = Trace::new(TraceId([1; 16]), vec![
///     span(1, None, "process_query", 0, 100),
///     span(2, Some(1), "fetch_context", 0, 40),
///     span(3, Some(1), "llm_call", 40, 100),
/// ]);
/// let path = chaintrace_analysis::critical_path(&trace);
/// let names: Vec<_> = path.chain.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(names, ["process_query", "llm_call"]);
/// assert_eq!(path.segments.len(), 2); // fetch_context, then llm_call
/// ```
pub fn critical_path(trace: &Trace) -> CriticalPath {
    let tree = SpanTree::build(trace);
    critical_path_with(trace, &tree, &tree.interval)
}

/// Self time of every span, indexed like `trace.spans`: its duration minus
/// the union of its children's intervals, both clamped into their parents.
pub fn self_times(trace: &Trace) -> Vec<u64> {
    let tree = SpanTree::build(trace);
    tree.self_times(&tree.interval)
}

/// The critical path over a given set of intervals (the observed, clamped
/// ones, or those a what-if rescheduled).
pub(crate) fn critical_path_with(
    trace: &Trace,
    tree: &SpanTree,
    intervals: &[Interval],
) -> CriticalPath {
    let adjusted_spans: Vec<SpanId> = tree
        .adjusted
        .iter()
        .map(|&i| trace.spans[i].span_id)
        .collect();
    let Some(root) = tree.root else {
        return CriticalPath {
            chain: vec![],
            segments: vec![],
            total_nano: 0,
            root_missing: true,
            clock_skew_adjusted: !adjusted_spans.is_empty(),
            adjusted_spans,
        };
    };
    let self_nano = tree.self_times(intervals);
    let chain = chain(tree, intervals, root)
        .into_iter()
        .map(|i| {
            let s = &trace.spans[i];
            PathSpan {
                span_index: i,
                span_id: s.span_id,
                name: s.name.to_string(),
                service: s.service_name().to_string(),
                offset_nano: intervals[i].start.saturating_sub(tree.origin),
                duration_nano: intervals[i].len(),
                self_nano: self_nano[i],
            }
        })
        .collect();
    let segments = walk_back(tree, intervals, root)
        .into_iter()
        .map(|(i, iv)| {
            let s = &trace.spans[i];
            PathSegment {
                span_index: i,
                span_id: s.span_id,
                name: s.name.to_string(),
                service: s.service_name().to_string(),
                offset_nano: iv.start.saturating_sub(tree.origin),
                duration_nano: iv.len(),
            }
        })
        .collect();
    CriticalPath {
        chain,
        segments,
        total_nano: intervals[root].len(),
        root_missing: tree.root_missing,
        clock_skew_adjusted: !adjusted_spans.is_empty(),
        adjusted_spans,
    }
}

/// Nanoseconds each span contributes to the walk-back path, indexed like the spans.
pub(crate) fn critical_nanos(tree: &SpanTree) -> Vec<u64> {
    let mut out = vec![0; tree.interval.len()];
    if let Some(root) = tree.root {
        for (i, iv) in walk_back(tree, &tree.interval, root) {
            out[i] += iv.len();
        }
    }
    out
}

/// The chain's span indices: root, then repeatedly the last-finishing child
/// with a non-zero duration (ties: the earlier start, then the lower index —
/// the longer of two children that ended together covers more of the wait).
pub(crate) fn chain(tree: &SpanTree, iv: &[Interval], root: usize) -> Vec<usize> {
    let mut out = vec![root];
    let mut seen = vec![false; iv.len()];
    seen[root] = true;
    let mut node = root;
    while let Some(&next) = tree.children[node]
        .iter()
        .filter(|&&c| iv[c].len() > 0 && !seen[c])
        .max_by_key(|&&c| {
            (
                iv[c].end,
                std::cmp::Reverse(iv[c].start),
                std::cmp::Reverse(c),
            )
        })
    {
        seen[next] = true;
        out.push(next);
        node = next;
    }
    out
}

/// The walk-back path from the root's end: `(span index, interval)` segments
/// in time order, adjacent pieces of one span merged.
///
/// At each step the parent waits on the child with the latest end among
/// those that started before the cursor; a child still running at the cursor
/// is cut there (Jaeger instead skips it and charges the time to the parent,
/// which inflates the parent's share when siblings overlap). Iterative, so
/// deep traces cannot overflow the stack.
fn walk_back(tree: &SpanTree, iv: &[Interval], root: usize) -> Vec<(usize, Interval)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    type Key = (u64, Reverse<u64>, Reverse<usize>);
    struct Frame {
        node: usize,
        cursor: u64,
    }
    // Children by end, latest first; zero-length children carry no time.
    // A child that starts at or after the cursor can never be picked again
    // (the cursor only moves back), so it is dropped when it surfaces.
    let heap_of = |node: usize| -> BinaryHeap<Key> {
        tree.children[node]
            .iter()
            .filter(|&&c| iv[c].len() > 0)
            .map(|&c| (iv[c].end, Reverse(iv[c].start), Reverse(c)))
            .collect()
    };
    let mut heaps: Vec<Option<BinaryHeap<Key>>> = vec![None; iv.len()];
    let mut out: Vec<(usize, Interval)> = Vec::new();
    let mut push = |node: usize, start: u64, end: u64| {
        if end <= start {
            return;
        }
        // Segments arrive latest first: extend the previous piece backwards.
        if let Some(last) = out.last_mut() {
            if last.0 == node && last.1.start == end {
                last.1.start = start;
                return;
            }
        }
        out.push((node, Interval { start, end }));
    };
    let mut stack = vec![Frame {
        node: root,
        cursor: iv[root].end,
    }];
    while let Some(f) = stack.pop() {
        let heap = heaps[f.node].get_or_insert_with(|| heap_of(f.node));
        let mut pick = None;
        while let Some(&(end, Reverse(start), Reverse(c))) = heap.peek() {
            heap.pop();
            if start < f.cursor {
                pick = Some((c, start, end.min(f.cursor)));
                break;
            }
        }
        match pick {
            Some((c, start, end)) => {
                push(f.node, end, f.cursor);
                stack.push(Frame {
                    node: f.node,
                    cursor: start,
                });
                stack.push(Frame {
                    node: c,
                    cursor: end,
                });
            }
            None => push(f.node, iv[f.node].start, f.cursor),
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use chaintrace_model::TraceId;

    use super::*;
    use crate::test_support::*;

    fn names(path: &CriticalPath) -> Vec<&str> {
        path.chain.iter().map(|s| s.name.as_str()).collect()
    }

    fn segments(path: &CriticalPath) -> Vec<(&str, u64, u64)> {
        path.segments
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.offset_nano / ms(1),
                    s.duration_nano / ms(1),
                )
            })
            .collect()
    }

    #[test]
    fn founding_example_chain_is_process_query_llm_call_api_call() {
        let path = critical_path(&founding());
        assert_eq!(names(&path), ["process_query", "llm_call", "api_call"]);
        let durations: Vec<_> = path.chain.iter().map(|s| s.duration_nano).collect();
        assert_eq!(durations, [ms(1200), ms(950), ms(920)]);
        let selfs: Vec<_> = path.chain.iter().map(|s| s.self_nano).collect();
        assert_eq!(selfs, [ms(50), ms(20), ms(920)]);
        assert_eq!(path.total_nano, ms(1200));
        assert!(!path.clock_skew_adjusted);
        assert!(!path.root_missing);
    }

    #[test]
    fn founding_example_walk_back_covers_every_sequential_step() {
        let path = critical_path(&founding());
        assert_eq!(
            segments(&path),
            [
                ("fetch_context", 0, 50),
                ("embed_query", 50, 100),
                ("vector_search", 150, 50),
                ("prompt_assembly", 200, 10),
                ("api_call", 210, 920),
                ("llm_call", 1130, 20),
                ("process_query", 1150, 50),
            ]
        );
        let sum: u64 = path.segments.iter().map(|s| s.duration_nano).sum();
        assert_eq!(sum, path.total_nano);
    }

    #[test]
    fn concurrent_children_only_the_gating_one_is_on_the_path() {
        let path = critical_path(&founding_concurrent());
        assert_eq!(names(&path), ["process_query", "llm_call", "api_call"]);
        let on_path: Vec<_> = segments(&path).iter().map(|s| s.0).collect();
        assert!(on_path.contains(&"embed_query"));
        assert!(!on_path.contains(&"fetch_context"), "{on_path:?}");
        assert_eq!(path.total_nano, ms(1150));
    }

    #[test]
    fn self_times_subtract_the_union_of_children() {
        let t = founding();
        let by_name = |n: &str| t.spans.iter().position(|s| s.name == n).unwrap();
        let st = self_times(&t);
        assert_eq!(st[by_name("process_query")], ms(50));
        assert_eq!(st[by_name("llm_call")], ms(20));
        assert_eq!(st[by_name("api_call")], ms(920));
        assert_eq!(st[by_name("fetch_context")], ms(50));

        // Overlapping children count once.
        let t = founding_concurrent();
        let st = self_times(&t);
        assert_eq!(
            st[t.spans
                .iter()
                .position(|s| s.name == "process_query")
                .unwrap()],
            ms(50)
        );
    }

    #[test]
    fn clock_skew_child_starting_before_its_parent_is_clamped_and_flagged() {
        // The LLM gateway's clock runs 5 ms behind: its span starts before llm_call.
        let mut spans = founding_spans();
        let mut api = spans.pop().unwrap();
        api.resource = service("llm-gateway");
        api.start.0 = T0 + ms(195);
        api.end.0 = T0 + ms(1115);
        spans.push(api);
        let t = Trace::new(TraceId([1; 16]), spans);
        let path = critical_path(&t);
        assert!(path.clock_skew_adjusted);
        assert_eq!(path.adjusted_spans, [SpanId([7; 8])]);
        let api = path.chain.last().unwrap();
        assert_eq!(api.name, "api_call");
        assert_eq!(api.service, "llm-gateway");
        assert_eq!(api.offset_nano, ms(200), "clamped to llm_call's start");
        assert_eq!(api.duration_nano, ms(915));
        let sum: u64 = path.segments.iter().map(|s| s.duration_nano).sum();
        assert_eq!(sum, ms(1200));
    }

    #[test]
    fn async_child_outliving_its_parent_is_cut_at_the_parent_end() {
        let t = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "handle", 0, 100),
                span(2, Some(1), "answer", 0, 80),
                span(3, Some(1), "log_feedback", 60, 400),
            ],
        );
        let path = critical_path(&t);
        assert_eq!(path.total_nano, ms(100));
        assert_eq!(path.adjusted_spans, [SpanId([3; 8])]);
        let last = path.chain.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.duration_nano),
            ("log_feedback", ms(40))
        );
        // The parent waited on `answer` until `log_feedback` took over.
        assert_eq!(
            segments(&path),
            [("answer", 0, 60), ("log_feedback", 60, 40)]
        );
        assert_eq!(self_times(&t), [0, ms(80), ms(40)]);
    }

    #[test]
    fn missing_root_starts_at_the_earliest_orphan() {
        let spans: Vec<_> = founding_spans().into_iter().skip(1).collect();
        let t = Trace::new(TraceId([1; 16]), spans);
        let path = critical_path(&t);
        assert!(path.root_missing);
        assert_eq!(path.chain[0].name, "fetch_context");
    }

    #[test]
    fn parent_cycles_terminate() {
        let t = Trace::new(
            TraceId([1; 16]),
            vec![span(2, Some(3), "a", 0, 10), span(3, Some(2), "b", 2, 8)],
        );
        let path = critical_path(&t);
        assert!(path.chain.is_empty());
        assert!(path.root_missing);
        assert_eq!(self_times(&t).len(), 2);

        // A cycle beside a real root does not disturb it.
        let mut spans = founding_spans();
        spans.push(span(8, Some(9), "x", 0, 5));
        spans.push(span(9, Some(8), "y", 1, 4));
        let path = critical_path(&Trace::new(TraceId([1; 16]), spans));
        assert_eq!(names(&path), ["process_query", "llm_call", "api_call"]);
    }

    #[test]
    fn empty_trace_has_an_empty_path() {
        let path = critical_path(&Trace::new(TraceId([1; 16]), vec![]));
        assert!(path.chain.is_empty() && path.segments.is_empty());
        assert_eq!(path.total_nano, 0);
    }

    #[test]
    fn deep_chains_do_not_overflow_the_stack() {
        let mut spans = Vec::new();
        for i in 0..50_000u64 {
            let mut s = span_ns(0, None, "step", T0 + i, T0 + 100_000 - i);
            s.span_id = SpanId((i + 1).to_be_bytes());
            s.parent_span_id = (i > 0).then(|| SpanId(i.to_be_bytes()));
            spans.push(s);
        }
        let path = critical_path(&Trace::new(TraceId([1; 16]), spans));
        assert_eq!(path.chain.len(), 50_000);
        let sum: u64 = path.segments.iter().map(|s| s.duration_nano).sum();
        assert_eq!(sum, 100_000);
    }
}
