//! A trace (all spans sharing one trace id) and its one-line summary.

use serde::{Deserialize, Serialize};

use crate::ids::{SpanId, TraceId};
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
        sort_spans(&mut spans);
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

/// Orders `spans` by start, then span id, keeping the given order of equal
/// keys (copies of one span: the first copy must stay first). Sorts small
/// keys and then moves each span once: a stable sort of the spans
/// themselves copied a 100 000-span trace through half its size of scratch.
fn sort_spans(spans: &mut [Span]) {
    if spans.is_sorted_by(|a, b| (a.start, a.span_id) <= (b.start, b.span_id)) {
        return;
    }
    let mut keys: Vec<(UnixNanos, SpanId, usize)> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.start, s.span_id, i))
        .collect();
    // The index breaks ties, so this order is the stable one.
    keys.sort_unstable();
    let mut from: Vec<usize> = keys.into_iter().map(|(_, _, i)| i).collect();
    // Position k takes the span at from[k]: follow each cycle once.
    for i in 0..from.len() {
        let mut at = i;
        loop {
            let src = from[at];
            from[at] = at;
            if src == i || src == at {
                break;
            }
            spans.swap(at, src);
            at = src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_sort_by_start_then_id_and_copies_keep_their_order() {
        let span = |start: u64, id: u8, name: &str| crate::span::test_span(id, name, start);
        // Every arrangement of six spans, two of them copies of one span.
        let base = [
            span(5, 1, "a"),
            span(1, 9, "b"),
            span(5, 1, "a-copy"),
            span(3, 2, "c"),
            span(1, 3, "d"),
            span(9, 0, "e"),
        ];
        let mut order: Vec<usize> = (0..base.len()).collect();
        let mut seen = 0;
        permute(&mut order, 0, &mut |order| {
            seen += 1;
            let spans: Vec<Span> = order.iter().map(|&i| base[i].clone()).collect();
            let copy_first =
                order.iter().position(|&i| i == 2) < order.iter().position(|&i| i == 0);
            let names: Vec<String> = Trace::new(TraceId([1; 16]), spans)
                .spans
                .iter()
                .map(|s| s.name.to_string())
                .collect();
            let copies = if copy_first {
                ["a-copy", "a"]
            } else {
                ["a", "a-copy"]
            };
            assert_eq!(
                names,
                ["d", "b", "c", copies[0], copies[1], "e"],
                "{order:?}"
            );
        });
        assert_eq!(seen, 720);
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }
}
