//! Gantt layout: the rows of a trace in tree order with their position on a
//! time axis that starts at the trace's first span.
//!
//! The layout never assumes a child lies inside its parent (clock skew and
//! millisecond-precision SDKs make children overhang): bars show the times
//! the spans reported, while the critical-path marks and self times come from
//! intervals clamped into their parents (see [`crate::critical_path`]). It
//! survives broken input: spans whose parent is missing become extra roots,
//! and a parent cycle cannot loop forever.

use chaintrace_model::{SpanId, Trace, UnixNanos};
use serde::Serialize;

use crate::critical_path::{chain, critical_nanos};
use crate::tree::SpanTree;

/// One row of the chart: one span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GanttRow {
    /// Index of the span in `trace.spans`.
    pub span_index: usize,
    /// The span's id.
    pub span_id: SpanId,
    /// Nesting depth: 0 for roots.
    pub depth: usize,
    /// Span name.
    pub name: String,
    /// `service.name` of the span's resource.
    pub service: String,
    /// Nanoseconds from the trace start to the span start.
    pub offset_nano: u64,
    /// Span duration in nanoseconds.
    pub duration_nano: u64,
    /// Whether the span's status is ERROR.
    pub is_error: bool,
    /// Whether this span's parent id names a span that is not in the trace.
    pub orphan: bool,
    /// Whether the span is on the critical path: the root, its
    /// last-finishing child, that child's last-finishing child, …
    pub on_critical_path: bool,
    /// Time the span's own work contributes to the walk-back critical path;
    /// non-zero for every step the root waited on (see
    /// [`crate::CriticalPath::segments`]).
    pub critical_nano: u64,
    /// Duration minus the union of its children's intervals.
    pub self_nano: u64,
}

/// A whole chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GanttLayout {
    /// Time of the earliest span start: the chart's zero.
    pub start: UnixNanos,
    /// From the earliest start to the latest end; the axis length.
    pub total_nano: u64,
    /// Rows in depth-first tree order, siblings by start time.
    pub rows: Vec<GanttRow>,
}

impl GanttRow {
    /// Bar position in character cells: `(first_cell, cell_count)` for a
    /// chart `width` cells wide. Every span gets at least one cell.
    pub fn cells(&self, total_nano: u64, width: usize) -> (usize, usize) {
        cells(self.offset_nano, self.duration_nano, total_nano, width)
    }
}

/// Cells of a bar from `offset_nano` lasting `duration_nano` on an axis of
/// `total_nano` drawn `width` cells wide: `(first_cell, cell_count)`, at
/// least one cell.
pub fn cells(
    offset_nano: u64,
    duration_nano: u64,
    total_nano: u64,
    width: usize,
) -> (usize, usize) {
    if width == 0 {
        return (0, 0);
    }
    let total = total_nano.max(1) as f64;
    let scale = width as f64 / total;
    let first = ((offset_nano as f64 * scale).floor() as usize).min(width - 1);
    let end = (((offset_nano.saturating_add(duration_nano)) as f64 * scale).ceil() as usize)
        .clamp(first + 1, width);
    (first, end - first)
}

/// Lays out `trace` as a Gantt chart.
pub fn layout(trace: &Trace) -> GanttLayout {
    layout_with(trace, &SpanTree::build(trace))
}

/// The Gantt layout, critical path and LLM calls of one trace from one
/// span tree: what the web UI's chart needs, each computed once (the tree
/// is most of the cost at 100 000 spans).
pub fn chart(trace: &Trace, prices: &crate::PriceTable) -> Chart {
    let tree = SpanTree::build(trace);
    Chart {
        layout: layout_with(trace, &tree),
        path: crate::critical_path::critical_path_with(trace, &tree, &tree.interval),
        calls: crate::llm::calls::llm_spans_with(trace, &tree, prices),
    }
}

/// See [`chart`].
#[derive(Debug, Clone)]
pub struct Chart {
    /// As [`layout`] gives it.
    pub layout: GanttLayout,
    /// As [`crate::critical_path`] gives it.
    pub path: crate::CriticalPath,
    /// As [`crate::llm_spans`] gives them.
    pub calls: Vec<crate::LlmSpan>,
}

fn layout_with(trace: &Trace, tree: &SpanTree) -> GanttLayout {
    let spans = &trace.spans;
    let self_nano = tree.self_times(&tree.interval);
    let critical_nano = critical_nanos(tree);
    let mut on_chain = vec![false; spans.len()];
    if let Some(root) = tree.root {
        for i in chain(tree, &tree.interval, root) {
            on_chain[i] = true;
        }
    }
    let start = spans.iter().map(|s| s.start).min().unwrap_or_default();
    let end = spans.iter().map(|s| s.end).max().unwrap_or_default();

    // The tree's parents and children (siblings by start): built once for
    // layout, critical path and LLM calls.
    let children = &tree.children;
    let roots: Vec<usize> = (0..spans.len())
        .filter(|&i| tree.parent[i].is_none())
        .collect();

    let mut rows = Vec::with_capacity(spans.len());
    let mut visited = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    loop {
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut visited[i], true) {
                continue;
            }
            let span = &spans[i];
            rows.push(GanttRow {
                span_index: i,
                span_id: span.span_id,
                depth,
                name: span.name.to_string(),
                service: span.service_name().to_string(),
                offset_nano: span.start.since(start).0,
                duration_nano: span.duration().0,
                is_error: span.is_error(),
                orphan: tree.orphan[i],
                on_critical_path: on_chain[i],
                critical_nano: critical_nano[i],
                self_nano: self_nano[i],
            });
            stack.extend(children[i].iter().rev().map(|&c| (c, depth + 1)));
        }
        // Spans caught in a parent cycle were never reached from a root.
        match visited.iter().position(|v| !v) {
            Some(i) => stack.push((i, 0)),
            None => break,
        }
    }

    GanttLayout {
        start,
        total_nano: end.since(start).0,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaintrace_model::{Resource, Span, SpanKind, Status, StatusCode, TraceId};

    use super::*;

    fn span(id: u8, parent: Option<u8>, name: &str, start_ms: u64, end_ms: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            name: name.into(),
            kind: SpanKind::Internal,
            start: UnixNanos(1_000_000_000_000 + start_ms * 1_000_000),
            end: UnixNanos(1_000_000_000_000 + end_ms * 1_000_000),
            status: Status::default(),
            attributes: vec![],
            events: vec![],
            links: vec![],
            resource: Arc::new(Resource::default()),
            scope: Default::default(),
        }
    }

    #[test]
    fn tree_order_depths_and_offsets() {
        let mut failing = span(7, Some(5), "api_call", 210, 1200);
        failing.status.code = StatusCode::Error;
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                failing,
                span(1, None, "process_query", 0, 1200),
                span(3, Some(1), "embed_query", 50, 150),
                span(2, Some(1), "fetch_context", 0, 50),
                span(5, Some(1), "llm_call", 250, 1200),
                span(4, Some(1), "vector_search", 150, 200),
                span(6, Some(5), "prompt_assembly", 250, 260),
            ],
        );
        let g = layout(&trace);
        let names: Vec<(&str, usize)> = g.rows.iter().map(|r| (r.name.as_str(), r.depth)).collect();
        assert_eq!(
            names,
            [
                ("process_query", 0),
                ("fetch_context", 1),
                ("embed_query", 1),
                ("vector_search", 1),
                ("llm_call", 1),
                ("api_call", 2),
                ("prompt_assembly", 2),
            ]
        );
        assert_eq!(g.total_nano, 1_200_000_000);
        let api = &g.rows[5];
        assert_eq!(api.offset_nano, 210_000_000);
        assert!(api.is_error);
        assert_eq!(api.cells(g.total_nano, 120), (21, 99));
        assert_eq!(g.rows[0].cells(g.total_nano, 40), (0, 40));
    }

    #[test]
    fn orphans_and_cycles_are_still_shown_once() {
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, Some(9), "orphan", 0, 10),
                span(2, Some(3), "a", 5, 6),
                span(3, Some(2), "b", 6, 7),
            ],
        );
        let g = layout(&trace);
        assert_eq!(g.rows.len(), 3);
        assert!(g.rows[0].orphan);
        let mut ids: Vec<_> = g.rows.iter().map(|r| r.span_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn critical_path_marks_and_self_times() {
        let g = layout(&crate::test_support::founding());
        let marks: Vec<(&str, bool, u64, u64)> = g
            .rows
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.on_critical_path,
                    r.critical_nano / 1_000_000,
                    r.self_nano / 1_000_000,
                )
            })
            .collect();
        assert_eq!(
            marks,
            [
                ("process_query", true, 50, 50),
                ("fetch_context", false, 50, 50),
                ("embed_query", false, 100, 100),
                ("vector_search", false, 50, 50),
                ("llm_call", true, 20, 20),
                ("prompt_assembly", false, 10, 10),
                ("api_call", true, 920, 920),
            ]
        );
    }

    #[test]
    fn skewed_child_keeps_its_reported_bar_but_is_clamped_for_marks() {
        // api_call reports a start 40 ms before its parent llm_call.
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "process_query", 0, 1200),
                span(5, Some(1), "llm_call", 250, 1200),
                span(7, Some(5), "api_call", 210, 1200),
            ],
        );
        let g = layout(&trace);
        let api = &g.rows[2];
        assert_eq!(api.offset_nano, 210_000_000);
        assert_eq!(api.duration_nano, 990_000_000);
        assert!(api.on_critical_path);
        assert_eq!(api.critical_nano, 950_000_000);
        assert_eq!(g.rows[1].self_nano, 0);
    }

    #[test]
    fn snapshot_founding_example() {
        insta::assert_json_snapshot!("gantt_founding", layout(&crate::test_support::founding()));
    }

    #[test]
    fn snapshot_concurrent_variant() {
        insta::assert_json_snapshot!(
            "gantt_concurrent",
            layout(&crate::test_support::founding_concurrent())
        );
    }

    #[test]
    fn tiny_spans_get_one_cell() {
        let trace = Trace::new(
            TraceId([1; 16]),
            vec![
                span(1, None, "root", 0, 1000),
                span(2, Some(1), "blip", 999, 999),
            ],
        );
        let g = layout(&trace);
        assert_eq!(g.rows[1].cells(g.total_nano, 10), (9, 1));
    }
}
