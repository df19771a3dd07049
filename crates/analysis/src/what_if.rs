//! Parallelism what-if: how long the root would take if siblings overlapped.
//!
//! Two questions, both answered from the observed (clamped) timeline:
//!
//! - [`fully_parallel_bound`]: the lower bound on the root's duration if all
//!   of the root's steps could overlap — its children *and* its own work
//!   between them. That is the longest of them: the longest child, or the
//!   root's self time if that is longer. Each child is kept whole, as a black
//!   box: the founding example's `llm_call` (prompt assembly, then the API
//!   call) stays 950 ms, so 1200 ms could drop to 950 ms. Recursing into
//!   children would give 920 ms and claim that an API call can start before
//!   its prompt exists.
//! - [`what_if_parallel`]: "run these siblings concurrently". They start
//!   together at the earliest start among them; every later sibling keeps its
//!   gap to whatever ended last before it started (its observed
//!   predecessors), so everything scheduled after them moves earlier by the
//!   time saved; a parent keeps its own work after its last child. The change
//!   propagates up to the root, and the new critical path is reported.
//!
//! This module simulates schedules; it does not decide what is independent
//! of what — the caller names the spans.

use std::collections::BTreeSet;
use std::fmt;

use chaintrace_model::{SpanId, Trace};
use serde::Serialize;

use crate::critical_path::{critical_path_with, PathSegment, PathSpan};
use crate::tree::{Interval, SpanTree};

/// The outcome of running some siblings concurrently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhatIf {
    /// The span names that were overlapped, as given (duplicates removed).
    pub parallel: Vec<String>,
    /// The parents whose children were overlapped: every span that has a
    /// child of each name (a loop's iterations each get the change).
    pub parents: Vec<SpanId>,
    /// The root's duration under the change.
    pub duration_nano: u64,
    /// Observed root duration minus `duration_nano`.
    pub saved_nano: u64,
    /// The critical path under the change (see [`crate::CriticalPath::chain`]).
    pub critical_path: Vec<PathSpan>,
    /// The walk-back segments under the change.
    pub critical_segments: Vec<PathSegment>,
}

/// Why a what-if could not be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhatIfError {
    /// No span names were given.
    NoNames,
    /// The trace has no root to measure (it is empty, or all spans are in a
    /// parent cycle).
    NoRoot,
    /// No span of the trace has this name.
    UnknownSpan {
        /// The name asked for.
        name: String,
    },
    /// No single span has children of all these names.
    NotSiblings {
        /// The names asked for.
        names: Vec<String>,
    },
}

impl fmt::Display for WhatIfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WhatIfError::NoNames => write!(f, "name at least one span to run in parallel"),
            WhatIfError::NoRoot => write!(f, "the trace has no root span to measure"),
            WhatIfError::UnknownSpan { name } => {
                write!(f, "no span named {name:?} in this trace")
            }
            WhatIfError::NotSiblings { names } => write!(
                f,
                "no span has children named {}: a what-if overlaps siblings (spans with the same parent) only",
                names.join(", ")
            ),
        }
    }
}

impl std::error::Error for WhatIfError {}

/// The lower bound on the root's duration if all of its steps could overlap:
/// the longest of its children's (clamped) durations and its own self time.
/// Zero for a trace without a root.
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
///     span(2, Some(1), "fetch_context", 0, 30),
///     span(3, Some(1), "llm_call", 30, 90),
/// ]);
/// assert_eq!(chaintrace_analysis::fully_parallel_bound(&trace), 60);
/// ```
pub fn fully_parallel_bound(trace: &Trace) -> u64 {
    fully_parallel_bound_with(&SpanTree::build(trace))
}

pub(crate) fn fully_parallel_bound_with(tree: &SpanTree) -> u64 {
    let Some(root) = tree.root else {
        return 0;
    };
    let iv = &tree.interval;
    let own = tree.self_times(iv)[root];
    tree.children[root]
        .iter()
        .map(|&c| iv[c].len())
        .fold(own, u64::max)
}

/// Runs the spans named `names` concurrently: under every parent that has a
/// child of each name, those children start together at the earliest start
/// among them, and everything after them moves earlier by the time saved.
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
///     span(2, Some(1), "fetch_context", 0, 30),
///     span(3, Some(1), "embed_query", 30, 50),
///     span(4, Some(1), "llm_call", 50, 100),
/// ]);
/// let w = chaintrace_analysis::what_if_parallel(&trace, &["fetch_context", "embed_query"]).unwrap();
/// assert_eq!((w.duration_nano, w.saved_nano), (80, 20));
/// ```
pub fn what_if_parallel(trace: &Trace, names: &[&str]) -> Result<WhatIf, WhatIfError> {
    what_if_with(trace, &SpanTree::build(trace), names)
}

pub(crate) fn what_if_with(
    trace: &Trace,
    tree: &SpanTree,
    names: &[&str],
) -> Result<WhatIf, WhatIfError> {
    let mut parallel: Vec<String> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !parallel.iter().any(|p| p == name) {
            parallel.push(name.to_string());
        }
    }
    if parallel.is_empty() {
        return Err(WhatIfError::NoNames);
    }
    if let Some(name) = parallel
        .iter()
        .find(|name| !trace.spans.iter().any(|s| s.name == **name))
    {
        return Err(WhatIfError::UnknownSpan { name: name.clone() });
    }
    let root = tree.root.ok_or(WhatIfError::NoRoot)?;

    let subtree = tree.post_order(root);
    let mut in_group = vec![false; trace.spans.len()];
    let mut parents = Vec::new();
    for &p in &subtree {
        let kids = &tree.children[p];
        let present: BTreeSet<&str> = kids.iter().map(|&c| trace.spans[c].name.as_str()).collect();
        if parallel.iter().all(|n| present.contains(n.as_str())) {
            parents.push(trace.spans[p].span_id);
            for &c in kids {
                if parallel.iter().any(|n| *n == trace.spans[c].name) {
                    in_group[c] = true;
                }
            }
        }
    }
    if parents.is_empty() {
        return Err(WhatIfError::NotSiblings { names: parallel });
    }
    parents.sort();

    let intervals = reschedule(tree, &subtree, &in_group);
    let path = critical_path_with(trace, tree, &intervals);
    let duration_nano = intervals[root].len();
    Ok(WhatIf {
        parallel,
        parents,
        duration_nano,
        saved_nano: tree.interval[root].len().saturating_sub(duration_nano),
        critical_path: path.chain,
        critical_segments: path.segments,
    })
}

/// New intervals for the root's subtree (`post_order`, root last) with the
/// spans marked `in_group` overlapped; spans outside the subtree keep theirs.
///
/// Bottom-up, every parent's children are replayed in start order: a group
/// member starts where the first member (in start order) would start; any
/// other child starts at the latest new end among its observed predecessors
/// (siblings that ended before it started) plus its observed gap to them, or
/// keeps its offset if it had none. The parent ends its observed trailing
/// self time after its last child. Top-down, offsets become times.
fn reschedule(tree: &SpanTree, post_order: &[usize], in_group: &[bool]) -> Vec<Interval> {
    let iv = &tree.interval;
    let mut new_len: Vec<u64> = iv.iter().map(|i| i.len()).collect();
    let mut new_off = vec![0u64; iv.len()];
    let mut done = vec![false; iv.len()];

    /// The latest observed end among predecessors and the latest new end
    /// (both relative to the parent's start).
    #[derive(Default, Clone, Copy)]
    struct Preds {
        orig_end: Option<u64>,
        new_end: u64,
    }
    impl Preds {
        fn add(&mut self, orig_end: u64, new_end: u64) {
            self.orig_end = Some(self.orig_end.map_or(orig_end, |e| e.max(orig_end)));
            self.new_end = self.new_end.max(new_end);
        }
        fn start_after(self, orig_start: u64) -> u64 {
            match self.orig_end {
                None => orig_start,
                Some(e) => self.new_end + (orig_start - e),
            }
        }
    }

    for &x in post_order {
        let kids = &tree.children[x];
        if kids.is_empty() {
            continue;
        }
        let base = iv[x].start;
        let rel = |c: usize| (iv[c].start - base, iv[c].end - base);
        let mut by_start = kids.clone();
        by_start.sort_by_key(|&c| (iv[c].start, iv[c].end, c));
        let mut by_end = kids.clone();
        by_end.sort_by_key(|&c| (iv[c].end, iv[c].start, c));

        let (mut all, mut outside_group) = (Preds::default(), Preds::default());
        let mut ptr = 0;
        let mut group_off = None;
        for &c in &by_start {
            let (start, _) = rel(c);
            while let Some(&j) = by_end.get(ptr) {
                if rel(j).1 > start || !done[j] {
                    break;
                }
                let new_end = new_off[j] + new_len[j];
                all.add(rel(j).1, new_end);
                if !in_group[j] {
                    outside_group.add(rel(j).1, new_end);
                }
                ptr += 1;
            }
            new_off[c] = if in_group[c] {
                // Members do not wait for each other.
                *group_off.get_or_insert(outside_group.start_after(start))
            } else {
                all.start_after(start)
            };
            done[c] = true;
        }
        let observed_last = kids.iter().map(|&c| rel(c).1).max().unwrap_or(0);
        let trailing = iv[x].len() - observed_last;
        let new_last = kids
            .iter()
            .map(|&c| new_off[c] + new_len[c])
            .max()
            .unwrap_or(0);
        new_len[x] = new_last + trailing;
    }

    let mut out = iv.clone();
    for &x in post_order.iter().rev() {
        let start = match tree.parent[x] {
            Some(p) if post_order.last() != Some(&x) => out[p].start + new_off[x],
            _ => iv[x].start,
        };
        out[x] = Interval {
            start,
            end: start + new_len[x],
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use chaintrace_model::TraceId;

    use super::*;
    use crate::test_support::*;

    #[test]
    fn founding_example_full_parallel_bound_is_950_ms() {
        assert_eq!(fully_parallel_bound(&founding()), ms(950));
        assert_eq!(fully_parallel_bound(&founding_concurrent()), ms(950));
    }

    #[test]
    fn bound_counts_the_roots_own_work_as_one_more_step() {
        let t = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "root", 0, 100),
                span(2, Some(1), "a", 0, 10),
                span(3, Some(1), "b", 10, 20),
            ],
        );
        assert_eq!(fully_parallel_bound(&t), ms(80));
        let leaf = Trace::new(TraceId([1; 16]), vec![span(1, None, "root", 0, 7)]);
        assert_eq!(fully_parallel_bound(&leaf), ms(7));
        assert_eq!(
            fully_parallel_bound(&Trace::new(TraceId([1; 16]), vec![])),
            0
        );
    }

    #[test]
    fn founding_example_fetch_and_embed_in_parallel_saves_50_ms() {
        let w = what_if_parallel(&founding(), &["fetch_context", "embed_query"]).unwrap();
        assert_eq!(w.parallel, ["fetch_context", "embed_query"]);
        assert_eq!(w.parents, [SpanId([1; 8])]);
        assert_eq!(w.saved_nano, ms(50));
        assert_eq!(w.duration_nano, ms(1150));
        let chain: Vec<_> = w.critical_path.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(chain, ["process_query", "llm_call", "api_call"]);
        // Everything after the pair moved 50 ms earlier.
        let llm = &w.critical_path[1];
        assert_eq!((llm.offset_nano, llm.duration_nano), (ms(150), ms(950)));
        let segs: Vec<_> = w
            .critical_segments
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.offset_nano / ms(1),
                    s.duration_nano / ms(1),
                )
            })
            .collect();
        assert_eq!(
            &segs[..3],
            [
                ("embed_query", 0, 100),
                ("vector_search", 100, 50),
                ("prompt_assembly", 150, 10)
            ]
        );
    }

    #[test]
    fn already_concurrent_pair_saves_nothing() {
        let w =
            what_if_parallel(&founding_concurrent(), &["embed_query", "fetch_context"]).unwrap();
        assert_eq!(w.saved_nano, 0);
        assert_eq!(w.duration_nano, ms(1150));
    }

    #[test]
    fn all_of_the_roots_steps_reach_the_longest_step_plus_trailing_work() {
        let names = ["fetch_context", "embed_query", "vector_search", "llm_call"];
        let w = what_if_parallel(&founding(), &names).unwrap();
        // 950 ms of llm_call, then the root's 50 ms of work after its children.
        assert_eq!(w.duration_nano, ms(1000));
    }

    #[test]
    fn nested_change_propagates_to_the_root() {
        // Overlap prompt_assembly and api_call inside llm_call: llm_call ends
        // 10 ms earlier and so does the root.
        let w = what_if_parallel(&founding(), &["prompt_assembly", "api_call"]).unwrap();
        assert_eq!(w.parents, [SpanId([5; 8])]);
        assert_eq!(w.saved_nano, ms(10));
    }

    #[test]
    fn a_sibling_running_alongside_is_not_moved() {
        // `audit` started while embed_query ran and ends with the root.
        let mut spans = founding_spans();
        spans.push(span(9, Some(1), "audit", 60, 1200));
        let w = what_if_parallel(
            &Trace::new(TraceId([1; 16]), spans),
            &["fetch_context", "embed_query"],
        )
        .unwrap();
        assert_eq!(w.saved_nano, 0);
        let last = w.critical_path.last().unwrap();
        assert_eq!(last.name, "audit");
    }

    #[test]
    fn errors_name_the_problem() {
        let t = founding();
        assert_eq!(what_if_parallel(&t, &[]), Err(WhatIfError::NoNames));
        assert_eq!(what_if_parallel(&t, &[" "]), Err(WhatIfError::NoNames));
        let e = what_if_parallel(&t, &["fetch_context", "rerank"]).unwrap_err();
        assert_eq!(
            e,
            WhatIfError::UnknownSpan {
                name: "rerank".into()
            }
        );
        assert_eq!(e.to_string(), "no span named \"rerank\" in this trace");
        let e = what_if_parallel(&t, &["fetch_context", "api_call"]).unwrap_err();
        assert!(matches!(e, WhatIfError::NotSiblings { .. }));
        assert!(e.to_string().contains("fetch_context, api_call"), "{e}");
        let e = what_if_parallel(&t, &["process_query"]).unwrap_err();
        assert!(matches!(e, WhatIfError::NotSiblings { .. }));
        let cycle = Trace::new(
            TraceId([1; 16]),
            vec![span(2, Some(3), "a", 0, 10), span(3, Some(2), "b", 2, 8)],
        );
        assert_eq!(what_if_parallel(&cycle, &["a"]), Err(WhatIfError::NoRoot));
    }

    #[test]
    fn every_parent_with_the_named_children_gets_the_change() {
        // Two loop iterations, each fetch then embed.
        let t = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "agent", 0, 200),
                span(2, Some(1), "step", 0, 100),
                span(3, Some(2), "fetch", 0, 40),
                span(4, Some(2), "embed", 40, 100),
                span(5, Some(1), "step", 100, 200),
                span(6, Some(5), "fetch", 100, 140),
                span(7, Some(5), "embed", 140, 200),
            ],
        );
        let w = what_if_parallel(&t, &["fetch", "embed"]).unwrap();
        assert_eq!(w.parents.len(), 2);
        assert_eq!(w.duration_nano, ms(120));
    }
}
