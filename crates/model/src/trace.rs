//! A trace (all spans sharing one trace id) and its one-line summary.

use serde::{Deserialize, Serialize};

use crate::ids::TraceId;
use crate::span::{DurationNanos, Span, UnixNanos};

/// All known spans of one trace, sorted by start time (then span id).
///
/// Its JSON form writes each resource once (see `trace_json.rs`).
#[derive(Debug, Clone, PartialEq)]
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
        root_of(&self.spans)
    }

    /// When the trace started: its earliest span's start (0 without spans).
    pub fn start(&self) -> UnixNanos {
        self.spans.iter().map(|s| s.start).min().unwrap_or_default()
    }

    /// The one-line summary used by trace lists.
    pub fn summary(&self) -> TraceSummary {
        TraceSummary::of(self.trace_id, &self.spans)
    }
}

/// [`Trace::root`] over spans held elsewhere, given in canonical order.
pub fn root_of<'a, I>(spans: I) -> Option<&'a Span>
where
    I: IntoIterator<Item = &'a Span>,
    I::IntoIter: Clone,
{
    let spans = spans.into_iter();
    let true_root = spans.clone().find(|s| s.parent_span_id.is_none());
    true_root.or_else(|| {
        let ids: std::collections::HashSet<_> = spans.clone().map(|s| s.span_id).collect();
        spans
            .clone()
            .find(|s| s.parent_span_id.is_some_and(|p| !ids.contains(&p)))
    })
}

impl TraceSummary {
    /// The summary of trace `trace_id` made of `spans`, given in canonical
    /// order (start, then span id); the same as [`Trace::summary`] without
    /// owning the spans.
    pub fn of<'a, I>(trace_id: TraceId, spans: I) -> TraceSummary
    where
        I: IntoIterator<Item = &'a Span>,
        I::IntoIter: Clone,
    {
        let spans = spans.into_iter();
        let mut start: Option<UnixNanos> = None;
        let mut end = UnixNanos::default();
        let (mut count, mut errors) = (0u64, 0u64);
        for s in spans.clone() {
            start = Some(start.map_or(s.start, |t| t.min(s.start)));
            end = end.max(s.end);
            count += 1;
            errors += u64::from(s.is_error());
        }
        let start = start.unwrap_or_default();
        let root = root_of(spans);
        TraceSummary {
            trace_id,
            root_service: root.map(|r| r.service_name().to_string()),
            root_name: root.map(|r| r.name.to_string()),
            start_unix_nano: start,
            duration_nano: end.since(start),
            span_count: count,
            error_count: errors,
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
