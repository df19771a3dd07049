//! A trace (all spans sharing one trace id) and its one-line summary.

use serde::{Deserialize, Serialize};

use crate::ids::TraceId;
use crate::span::{DurationNanos, Span, UnixNanos};

/// All known spans of one trace, sorted by start time (then span id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace id.
    pub trace_id: TraceId,
    /// Its spans, ordered by start time, then span id.
    pub spans: Vec<Span>,
}

impl Trace {
    /// Builds a trace, sorting the spans into the canonical order.
    pub fn new(trace_id: TraceId, mut spans: Vec<Span>) -> Trace {
        spans.sort_by(|a, b| a.start.cmp(&b.start).then(a.span_id.cmp(&b.span_id)));
        Trace { trace_id, spans }
    }

    /// The root span: the earliest span without a parent, or, when the real
    /// root has not arrived (yet), the earliest span whose parent is missing.
    pub fn root(&self) -> Option<&Span> {
        let true_root = self.spans.iter().find(|s| s.parent_span_id.is_none());
        true_root.or_else(|| {
            let ids: std::collections::HashSet<_> = self.spans.iter().map(|s| s.span_id).collect();
            self.spans
                .iter()
                .find(|s| s.parent_span_id.is_some_and(|p| !ids.contains(&p)))
        })
    }

    /// The one-line summary used by trace lists.
    pub fn summary(&self) -> TraceSummary {
        let start = self.spans.iter().map(|s| s.start).min().unwrap_or_default();
        let end = self.spans.iter().map(|s| s.end).max().unwrap_or_default();
        let root = self.root();
        TraceSummary {
            trace_id: self.trace_id,
            root_service: root.map(|r| r.service_name().to_string()),
            root_name: root.map(|r| r.name.clone()),
            start_unix_nano: start,
            duration_nano: end.since(start),
            span_count: self.spans.len() as u64,
            error_count: self.spans.iter().filter(|s| s.is_error()).count() as u64,
        }
    }
}

/// What a trace list shows of each trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// The trace id.
    pub trace_id: TraceId,
    /// `service.name` of the root span; `None` while no root is known.
    pub root_service: Option<String>,
    /// Name of the root span; `None` while no root is known.
    pub root_name: Option<String>,
    /// Earliest span start.
    pub start_unix_nano: UnixNanos,
    /// From the earliest start to the latest end of any span.
    pub duration_nano: DurationNanos,
    /// Number of spans.
    pub span_count: u64,
    /// Number of spans with status ERROR.
    pub error_count: u64,
}
