//! The head: recent spans in memory, indexed by trace id, queryable at once.
//!
//! Plain data structure, no I/O and no locking (the embedded store wraps it in
//! a lock). Per trace it keeps the spans, the set of their ids (the first copy
//! of a span wins, later copies are dropped and counted) and a summary kept up
//! to date on every insert — start, end, counts, root — so that listing
//! traces never rebuilds them. A `(start, trace id)` index serves
//! newest-first listing. Memory use is estimated per span, for the budget and
//! the block cutter that come next.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};

use foldhash::fast::RandomState;
use std::mem::size_of;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, CompactString, Event, KeyValue, Link, Resource, Scope, Span, SpanId, TraceId,
    TraceSummary, UnixNanos,
};

use crate::search::SpanClause;
use crate::store::TraceListQuery;

/// Bookkeeping bytes per trace beyond its spans: the map entry (with the
/// map's spare capacity), the start index entry, the summary and the
/// allocator headers of the trace's span list and id set.
const TRACE_OVERHEAD: u64 =
    ((size_of::<HeadTrace>() + size_of::<TraceId>()) * 2 + size_of::<TraceId>() * 3 + 96) as u64;
/// Bookkeeping bytes per span beyond the span itself: its id in the set
/// (with spare capacity) and, on average, the span list's unused capacity
/// (it grows by doubling: about a quarter of a span per span).
const SPAN_OVERHEAD: u64 = (size_of::<SpanId>() * 3 + size_of::<Span>() / 4) as u64;

/// Counters describing the head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeadStats {
    /// Traces held.
    pub(crate) traces: u64,
    /// Spans held.
    pub(crate) spans: u64,
    /// Estimated memory held, in bytes.
    pub(crate) bytes: u64,
    /// Duplicate spans dropped since the head was created.
    pub(crate) duplicates: u64,
}

/// What one [`Head::insert`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InsertOutcome {
    /// Spans added.
    pub(crate) inserted: u64,
    /// Spans dropped because a span with the same trace and span id was held.
    pub(crate) duplicates: u64,
}

/// In-memory spans, by trace.
#[derive(Debug, Default)]
pub(crate) struct Head {
    traces: HashMap<TraceId, HeadTrace, RandomState>,
    /// Every trace, ordered by its start: the newest-first listing walks it backwards.
    by_start: BTreeSet<(UnixNanos, TraceId)>,
    spans: u64,
    bytes: u64,
    duplicates: u64,
}

impl Head {
    /// Adds a batch, dropping spans already held.
    pub(crate) fn insert(&mut self, spans: Vec<Span>) -> InsertOutcome {
        let mut outcome = InsertOutcome::default();
        // Spans of one export share their resource and scope: their share
        // of the estimate is worked out once per run of equal ones.
        let mut resource: Option<(*const Resource, u64)> = None;
        let mut scope: Option<(*const Scope, u64)> = None;
        let mut spans = spans.into_iter();
        while let Some(span) = spans.next() {
            let trace_id = span.trace_id;
            let share = match resource {
                Some((r, share)) if r == Arc::as_ptr(&span.resource) => share,
                _ => {
                    let share = resource_share(&span.resource);
                    resource = Some((Arc::as_ptr(&span.resource), share));
                    share
                }
            };
            let scope_share = match scope {
                Some((s, share)) if s == Arc::as_ptr(&span.scope) => share,
                _ => {
                    let share = scope_share(&span.scope);
                    scope = Some((Arc::as_ptr(&span.scope), share));
                    share
                }
            };
            let bytes = own_bytes(&span) + share + scope_share + SPAN_OVERHEAD;
            match self.traces.entry(trace_id) {
                Entry::Occupied(entry) => {
                    let trace = entry.into_mut();
                    let old_start = trace.start;
                    if !trace.add(span) {
                        outcome.duplicates += 1;
                        continue;
                    }
                    if trace.start != old_start {
                        self.by_start.remove(&(old_start, trace_id));
                        self.by_start.insert((trace.start, trace_id));
                    }
                }
                Entry::Vacant(entry) => {
                    // Exporters send a trace's spans together: room for
                    // the run at once, instead of growing (and copying)
                    // the list span by span.
                    let run = spans
                        .as_slice()
                        .iter()
                        .take_while(|s| s.trace_id == trace_id)
                        .count();
                    let trace = HeadTrace::new(span, run);
                    self.by_start.insert((trace.start, trace_id));
                    entry.insert(trace);
                    self.bytes += TRACE_OVERHEAD;
                }
            }
            self.bytes += bytes;
            outcome.inserted += 1;
        }
        self.spans += outcome.inserted;
        self.duplicates += outcome.duplicates;
        outcome
    }

    /// Summaries of the traces matching `query`, newest start first.
    ///
    /// Walks the start index from `query.end` backwards, so a time window
    /// costs only the traces inside it; a service filter still looks at every
    /// trace in the window until `limit` are found.
    pub(crate) fn recent_traces(&self, query: &TraceListQuery) -> Vec<TraceSummary> {
        let from = query.start.unwrap_or(UnixNanos(0));
        let to = query.end.unwrap_or(UnixNanos(u64::MAX));
        if from > to {
            return Vec::new();
        }
        let range = (from, TraceId([0; TraceId::LEN]))..=(to, TraceId([0xff; TraceId::LEN]));
        self.by_start
            .range(range)
            .rev()
            .filter_map(|(_, id)| self.traces.get(id).map(|t| (id, t)))
            .filter(|(_, t)| {
                query
                    .service
                    .as_deref()
                    .is_none_or(|want| t.root().map(Span::service_name) == Some(want))
            })
            .take(query.effective_limit())
            .map(|(id, t)| t.summary(*id))
            .collect()
    }

    /// The ids of the traces whose spans may start in `[start, end]`
    /// (`None`: open): those whose own span range meets it. Sorted.
    pub(crate) fn trace_ids_meeting(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
    ) -> Vec<TraceId> {
        let mut ids: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, t)| start.is_none_or(|s| t.end >= s) && end.is_none_or(|e| t.start <= e))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// A copy of the spans of trace `id`, in arrival order.
    pub(crate) fn spans_of(&self, id: &TraceId) -> Vec<Span> {
        self.traces
            .get(id)
            .map(|t| t.spans.clone())
            .unwrap_or_default()
    }

    /// Whether the head holds no span.
    pub(crate) fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Every held trace: its id and its spans in arrival order.
    pub(crate) fn traces(&self) -> impl Iterator<Item = (TraceId, &[Span])> {
        self.traces.iter().map(|(id, t)| (*id, t.spans.as_slice()))
    }

    /// Every held span, trace by trace: what a block is cut from.
    pub(crate) fn all_spans(&self) -> Vec<&Span> {
        let mut out = Vec::with_capacity(self.spans as usize);
        for trace in self.traces.values() {
            out.extend(trace.spans.iter());
        }
        out
    }

    /// The head's counters.
    pub(crate) fn stats(&self) -> HeadStats {
        HeadStats {
            traces: self.traces.len() as u64,
            spans: self.spans,
            bytes: self.bytes,
            duplicates: self.duplicates,
        }
    }

    /// The traces that have a span satisfying `clause` (every trace when
    /// `None`) and start at or after `since`, as (start, id), newest first.
    /// Spans are tested where they lie; nothing is cloned.
    pub(crate) fn search_candidates(
        &self,
        clause: Option<&SpanClause>,
        since: Option<UnixNanos>,
    ) -> Vec<(UnixNanos, TraceId)> {
        let from = (since.unwrap_or(UnixNanos(0)), TraceId([0; TraceId::LEN]));
        self.by_start
            .range(from..)
            .rev()
            .filter(|(_, id)| {
                clause.is_none_or(|c| {
                    self.traces
                        .get(id)
                        .is_some_and(|t| t.spans.iter().any(|s| c.admits(s)))
                })
            })
            .copied()
            .collect()
    }
}

/// One trace in the head, with its summary kept current.
#[derive(Debug)]
struct HeadTrace {
    /// Spans in arrival order.
    spans: Vec<Span>,
    /// The ids of `spans`, once there are more than [`SCAN_SPANS`]; a
    /// scan of a few spans is cheaper than hashing.
    span_ids: Option<HashSet<SpanId, RandomState>>,
    start: UnixNanos,
    end: UnixNanos,
    errors: u64,
    /// Index in `spans` of the root as [`Trace::root`] defines it.
    root: Option<usize>,
    /// Whether `root` has no parent (rather than a parent not yet arrived).
    root_is_true: bool,
}

/// The canonical order of spans in a trace: by start, then span id.
/// Up to this many spans, a trace finds a span id by scanning.
const SCAN_SPANS: usize = 16;

fn order_key(span: &Span) -> (UnixNanos, SpanId) {
    (span.start, span.span_id)
}

impl HeadTrace {
    /// A trace of `span`, with room for `more` spans after it.
    fn new(span: Span, more: usize) -> HeadTrace {
        let mut trace = HeadTrace {
            spans: Vec::with_capacity(1 + more),
            span_ids: None,
            start: span.start,
            end: span.end,
            errors: 0,
            root: None,
            root_is_true: false,
        };
        trace.add(span);
        trace
    }

    /// Whether a span with id `id` is held.
    fn holds(&self, id: SpanId) -> bool {
        match &self.span_ids {
            Some(ids) => ids.contains(&id),
            None => self.spans.iter().any(|s| s.span_id == id),
        }
    }

    /// Adds `span` unless its id is held; returns whether it was added.
    fn add(&mut self, span: Span) -> bool {
        if self.holds(span.span_id) {
            return false;
        }
        match &mut self.span_ids {
            Some(ids) => {
                ids.insert(span.span_id);
            }
            None if self.spans.len() >= SCAN_SPANS => {
                let mut ids: HashSet<SpanId, RandomState> =
                    self.spans.iter().map(|s| s.span_id).collect();
                ids.insert(span.span_id);
                self.span_ids = Some(ids);
            }
            None => {}
        }
        self.start = self.start.min(span.start);
        self.end = self.end.max(span.end);
        self.errors += u64::from(span.is_error());
        self.spans.push(span);
        self.update_root(self.spans.len() - 1);
        true
    }

    /// Keeps `root` equal to what [`Trace::root`] would pick, after the span
    /// at `added` arrived: the earliest span without a parent, else the
    /// earliest span whose parent is not held.
    fn update_root(&mut self, added: usize) {
        let span = &self.spans[added];
        let earlier_than_root =
            |root: Option<usize>| root.is_none_or(|r| order_key(span) < order_key(&self.spans[r]));
        match span.parent_span_id {
            None => {
                if !self.root_is_true || earlier_than_root(self.root) {
                    self.root = Some(added);
                    self.root_is_true = true;
                }
            }
            Some(_) if self.root_is_true => {}
            Some(parent) => {
                let root_lost_orphan_status = self
                    .root
                    .is_some_and(|r| self.spans[r].parent_span_id == Some(span.span_id));
                if root_lost_orphan_status {
                    // The fallback root's parent just arrived; rare, so a scan is fine.
                    self.root = self.earliest_orphan();
                } else if !self.holds(parent) && earlier_than_root(self.root) {
                    self.root = Some(added);
                }
            }
        }
    }

    /// The earliest span whose parent is not held.
    fn earliest_orphan(&self) -> Option<usize> {
        self.spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.parent_span_id.is_some_and(|p| !self.holds(p)))
            .min_by_key(|(_, s)| order_key(s))
            .map(|(i, _)| i)
    }

    fn root(&self) -> Option<&Span> {
        self.root.and_then(|r| self.spans.get(r))
    }

    fn summary(&self, trace_id: TraceId) -> TraceSummary {
        let root = self.root();
        TraceSummary {
            trace_id,
            root_service: root.map(|r| r.service_name().to_string()),
            root_name: root.map(|r| r.name.to_string()),
            start_unix_nano: self.start,
            duration_nano: self.end.since(self.start),
            span_count: self.spans.len() as u64,
            error_count: self.errors,
        }
    }
}

/// What the allocator really takes for a heap block of `len` bytes: glibc
/// malloc adds an 8-byte header, rounds to 16 and never hands out less
/// than 32. Without this the estimate of a span made of many small strings
/// comes out at about half of the memory it holds.
fn heap(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        ((len + 8 + 15) & !15).max(32)
    }
}

/// An estimate of the heap and inline bytes a span holds, allocator
/// overhead included. A resource or scope shared by several spans is
/// charged to each in proportion.
pub(crate) fn estimate_span_bytes(span: &Span) -> u64 {
    own_bytes(span) + resource_share(&span.resource) + scope_share(&span.scope)
}

/// The share of [`estimate_span_bytes`] charged to a span holding `scope`.
fn scope_share(scope: &Arc<Scope>) -> u64 {
    let bytes =
        heap(size_of_val(&**scope) + 16) + text_bytes(&scope.name) + text_bytes(&scope.version);
    (bytes / Arc::strong_count(scope).max(1)) as u64
}

/// The share of [`estimate_span_bytes`] charged to a span holding
/// `resource`: its bytes over the number of holders.
fn resource_share(resource: &Arc<Resource>) -> u64 {
    let bytes = heap(size_of_val(&**resource) + 16) + attributes_bytes(&resource.attributes);
    (bytes / Arc::strong_count(resource).max(1)) as u64
}

/// [`estimate_span_bytes`] without the span's resource and scope.
fn own_bytes(span: &Span) -> u64 {
    let events: usize = heap(size_of::<Event>() * span.events.capacity())
        + span
            .events
            .iter()
            .map(|e| heap(e.name.len()) + attributes_bytes(&e.attributes))
            .sum::<usize>();
    let links: usize = heap(size_of::<Link>() * span.links.capacity())
        + span
            .links
            .iter()
            .map(|l| attributes_bytes(&l.attributes))
            .sum::<usize>();
    let total = size_of::<Span>()
        + text_bytes(&span.name)
        + heap(span.status.message.len())
        + attributes_bytes(&span.attributes)
        + events
        + links;
    total as u64
}

/// The list's own buffer plus each pair's key and value.
fn attributes_bytes(attributes: &[KeyValue]) -> usize {
    heap(size_of_val(attributes))
        + attributes
            .iter()
            .map(|kv| text_bytes(&kv.key) + value_bytes(&kv.value))
            .sum::<usize>()
}

/// Heap bytes of a value (its inline size is counted by its container).
/// Heap bytes of a compact string: none when it is held inline.
fn text_bytes(text: &CompactString) -> usize {
    if text.is_heap_allocated() {
        heap(text.len())
    } else {
        0
    }
}

fn value_bytes(value: &AnyValue) -> usize {
    match value {
        AnyValue::String(s) => text_bytes(s),
        AnyValue::Bytes(b) => heap(b.len()),
        AnyValue::Array(items) => {
            heap(size_of_val(items.as_slice())) + items.iter().map(value_bytes).sum::<usize>()
        }
        AnyValue::KvList(kvs) => attributes_bytes(kvs),
        AnyValue::Empty | AnyValue::Bool(_) | AnyValue::Int(_) | AnyValue::Double(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{span, trace_id};
    use chaintrace_model::{Status, StatusCode, Trace};

    fn listed(head: &Head, query: TraceListQuery) -> Vec<u8> {
        head.recent_traces(&query)
            .iter()
            .map(|s| s.trace_id.0[0])
            .collect()
    }

    #[test]
    fn duplicates_are_dropped_first_copy_wins() {
        let mut head = Head::default();
        let first = span(1, 1, None, "rag", "first", 10, 20);
        let again = span(1, 1, None, "rag", "second copy", 10, 20);
        let outcome = head.insert(vec![first.clone(), again.clone()]);
        assert_eq!(
            outcome,
            InsertOutcome {
                inserted: 1,
                duplicates: 1
            }
        );
        let outcome = head.insert(vec![again, span(1, 2, Some(1), "rag", "child", 12, 15)]);
        assert_eq!(outcome.inserted, 1);
        assert_eq!(outcome.duplicates, 1);
        let trace = Trace::new(trace_id(1), head.spans_of(&trace_id(1)));
        assert_eq!(trace.spans.len(), 2);
        assert_eq!(trace.spans[0], first);
        let stats = head.stats();
        assert_eq!((stats.traces, stats.spans, stats.duplicates), (1, 2, 2));
        assert_eq!(
            head.recent_traces(&TraceListQuery::default())[0].span_count,
            2
        );
    }

    #[test]
    fn summary_is_kept_current_and_matches_a_rebuilt_trace() {
        // Child spans arrive before their parents, in several orders; the
        // incremental summary must equal what `Trace::summary` computes.
        let mut error = span(7, 4, Some(3), "llm", "api_call", 50, 400);
        error.status = Status {
            code: StatusCode::Error,
            message: "RateLimitError".into(),
        };
        let spans = [
            span(7, 1, None, "rag", "chain", 10, 500),
            span(7, 2, Some(1), "rag", "fetch_context", 20, 60),
            span(7, 3, Some(1), "llm", "llm_call", 40, 450),
            error,
            span(7, 5, Some(9), "db", "stray", 5, 6),
        ];
        let orders: [[usize; 5]; 6] = [
            [0, 1, 2, 3, 4],
            [4, 3, 2, 1, 0],
            [3, 2, 1, 4, 0],
            [1, 3, 4, 2, 0],
            [2, 3, 1, 0, 4],
            [3, 1, 2, 0, 4],
        ];
        for order in orders {
            let mut head = Head::default();
            let mut so_far = Vec::new();
            for &i in &order {
                head.insert(vec![spans[i].clone()]);
                so_far.push(spans[i].clone());
                let expected = Trace::new(trace_id(7), so_far.clone()).summary();
                let got = head.recent_traces(&TraceListQuery::default());
                assert_eq!(got, vec![expected], "insertion order {order:?}");
            }
        }
    }

    #[test]
    fn listing_is_newest_first_with_limit_and_filters() {
        let mut head = Head::default();
        head.insert(vec![
            span(1, 1, None, "rag", "a", 100, 200),
            span(2, 1, None, "billing", "b", 300, 310),
            span(3, 1, None, "rag", "c", 200, 900),
            span(4, 1, None, "rag", "d", 400, 401),
        ]);
        // A late child that starts earlier moves trace 4 back in the order.
        head.insert(vec![span(4, 2, Some(1), "db", "early child", 50, 60)]);

        assert_eq!(listed(&head, TraceListQuery::default()), vec![2, 3, 1, 4]);
        let q = TraceListQuery {
            limit: 2,
            ..Default::default()
        };
        assert_eq!(listed(&head, q), vec![2, 3]);
        let q = TraceListQuery {
            service: Some("rag".into()),
            ..Default::default()
        };
        assert_eq!(listed(&head, q), vec![3, 1, 4]);
        let q = TraceListQuery {
            start: Some(UnixNanos(100)),
            end: Some(UnixNanos(300)),
            ..Default::default()
        };
        assert_eq!(listed(&head, q), vec![2, 3, 1]);
        let q = TraceListQuery {
            service: Some("rag".into()),
            start: Some(UnixNanos(150)),
            limit: 1,
            ..Default::default()
        };
        assert_eq!(listed(&head, q), vec![3]);
        let q = TraceListQuery {
            start: Some(UnixNanos(500)),
            end: Some(UnixNanos(100)),
            ..Default::default()
        };
        assert!(listed(&head, q).is_empty());
        assert!(head.spans_of(&trace_id(9)).is_empty());
    }

    #[test]
    fn memory_estimate_grows_with_content() {
        let mut head = Head::default();
        head.insert(vec![span(1, 1, None, "rag", "a", 0, 1)]);
        let small = head.stats().bytes;
        assert!(small > size_of::<Span>() as u64);
        let mut big = span(1, 2, Some(1), "rag", "b", 0, 1);
        big.attributes
            .push(KeyValue::new("gen_ai.prompt", "x".repeat(10_000)));
        head.insert(vec![big]);
        assert!(head.stats().bytes > small + size_of::<Span>() as u64 + 10_000);
    }
}
