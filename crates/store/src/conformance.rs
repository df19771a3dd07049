//! The store conformance suite: what every [`Store`] must do, written once
//! and run against each implementation (the embedded store now, the
//! ClickHouse store later).
//!
//! An implementation provides a [`Harness`] that opens its store on the same
//! location again and again, moves everything to long-term storage
//! ([`Harness::persist`]: blocks for the embedded store) and applies
//! retention. [`run_all`] then checks ingest, trace by id across recent and
//! persisted data and across reopen, duplicates, listing with time ranges,
//! limits and services, search by filter over traces split between recent
//! and persisted data, and retention.

use std::sync::Arc;

use std::collections::BTreeSet;
use std::sync::Mutex;

use chaintrace_model::{
    Event, KeyValue, Resource, Span, SpanId, SpanKind, Status, StatusCode, Trace, TraceId,
    UnixNanos,
};

use crate::search::{SearchRequest, SearchStats, SpanClause, TraceFilter};
use crate::store::{Store, StoreError, TraceListQuery};

/// How the suite drives one store implementation.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// The store under test.
    type S: Store;
    /// Opens the store on the harness's location, keeping what earlier
    /// opens stored. The store it returns is dropped before the next open.
    async fn open(&self) -> Self::S;
    /// Moves everything stored into long-term storage (the embedded store
    /// cuts its head into blocks).
    async fn persist(&self, store: &Self::S);
    /// Applies retention: traces whose spans all ended more than 7 days ago
    /// (persisted apart from newer data) must be gone afterwards; newer ones
    /// must stay. Stores delete by whole blocks or partitions, as Tempo and
    /// ClickHouse TTLs do.
    async fn retain(&self, store: &Self::S);
}

/// Runs every check; panics with a message naming the failed one.
pub async fn run_all<H: Harness>(harness: &H) {
    let store = harness.open().await;
    ingest_and_trace_by_id(&store).await;
    trace_across_persist_and_reopen(harness, store).await;
    let store = harness.open().await;
    duplicates_are_never_visible(harness, &store).await;
    first_copy_wins_everywhere(harness, &store).await;
    listing_ranges_limits_services(harness, &store).await;
    search_reads_whole_traces_across_storage(harness, &store).await;
    scan_spans_by_trace_start(harness, &store).await;
    retention_by_age(harness, &store).await;
}

/// Nanoseconds in an hour.
const HOUR: u64 = 3_600_000_000_000;

fn now() -> u64 {
    UnixNanos::now().0
}

/// A span of trace `t` with span number `n` (0 = root), of `service`,
/// starting `start` and lasting `dur` nanoseconds.
pub fn span(t: u64, n: u64, service: &str, name: &str, start: u64, dur: u64) -> Span {
    let mut trace = [0x5a; 16];
    trace[8..].copy_from_slice(&t.to_be_bytes());
    let id = |n: u64| {
        let mut b = (t << 20 | n).to_be_bytes();
        b[0] |= 0x80;
        SpanId(b)
    };
    Span {
        trace_id: TraceId(trace),
        span_id: id(n),
        parent_span_id: (n > 0).then(|| id(0)),
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(start),
        end: UnixNanos(start + dur),
        status: Status::default(),
        attributes: vec![KeyValue::new("n", n as i64)],
        events: vec![],
        links: vec![],
        resource: Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", service)],
        }),
        scope: Default::default(),
    }
}

fn tid(t: u64) -> TraceId {
    span(t, 0, "x", "x", 0, 0).trace_id
}

async fn span_ids(store: &impl Store, t: u64) -> Vec<SpanId> {
    match store.trace(tid(t)).await.expect("trace by id") {
        Some(trace) => trace.spans.iter().map(|s| s.span_id).collect(),
        None => vec![],
    }
}

async fn ingest_and_trace_by_id(store: &impl Store) {
    let base = now() - HOUR;
    let mut root = span(1, 0, "rag", "process_query", base, 1_000_000);
    root.status.code = StatusCode::Error;
    store
        .append(vec![
            root,
            span(1, 1, "rag", "fetch_context", base + 10, 50),
        ])
        .await
        .expect("append");
    store
        .append(vec![span(1, 2, "rag", "llm_call", base + 100, 500)])
        .await
        .expect("append");
    let trace = store
        .trace(tid(1))
        .await
        .expect("trace")
        .expect("ingest: trace 1 is found");
    let names: Vec<&str> = trace.spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["process_query", "fetch_context", "llm_call"],
        "ingest: spans in start order"
    );
    assert_eq!(
        trace.spans[0].status.code,
        StatusCode::Error,
        "ingest: status kept"
    );
    assert_eq!(
        trace.spans[2].attr("n"),
        Some(&2i64.into()),
        "ingest: attributes kept"
    );
    assert!(
        store.trace(tid(999)).await.expect("trace").is_none(),
        "ingest: unknown id is None"
    );
}

async fn trace_across_persist_and_reopen<H: Harness>(harness: &H, store: H::S) {
    let base = now() - HOUR;
    store
        .append(vec![span(2, 0, "rag", "root", base, 10_000)])
        .await
        .expect("append");
    harness.persist(&store).await;
    store
        .append(vec![span(2, 1, "rag", "late_child", base + 5, 10)])
        .await
        .expect("append");
    assert_eq!(
        span_ids(&store, 2).await.len(),
        2,
        "a trace split across persisted and recent data comes back whole"
    );
    let list = store
        .recent_traces(&TraceListQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    let t2 = list
        .iter()
        .find(|s| s.trace_id == tid(2))
        .expect("trace 2 listed");
    assert_eq!(
        t2.span_count, 2,
        "a split trace is listed once with all its spans"
    );
    assert_eq!(t2.root_name.as_deref(), Some("root"));
    drop(store);
    let store = harness.open().await;
    assert_eq!(
        span_ids(&store, 2).await.len(),
        2,
        "a split trace survives reopen whole"
    );
    assert_eq!(
        span_ids(&store, 1).await.len(),
        3,
        "earlier data survives reopen"
    );
}

async fn duplicates_are_never_visible<H: Harness>(harness: &H, store: &H::S) {
    let base = now() - HOUR;
    let batch = vec![
        span(3, 0, "rag", "root", base, 100),
        span(3, 1, "rag", "child", base + 1, 10),
    ];
    store.append(batch.clone()).await.expect("append");
    store.append(batch.clone()).await.expect("append retry");
    assert_eq!(
        span_ids(store, 3).await.len(),
        2,
        "a retried batch is visible once"
    );
    harness.persist(store).await;
    store
        .append(batch.clone())
        .await
        .expect("append retry after persist");
    assert_eq!(
        span_ids(store, 3).await.len(),
        2,
        "a retry after persist is visible once"
    );
    harness.persist(store).await;
    let mut ids = span_ids(store, 3).await;
    ids.dedup();
    assert_eq!(
        ids.len(),
        2,
        "duplicates in two persisted parts are visible once"
    );
    let list = store
        .recent_traces(&TraceListQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        list.iter().filter(|s| s.trace_id == tid(3)).count(),
        1,
        "listed once"
    );
    assert_eq!(
        list.iter()
            .find(|s| s.trace_id == tid(3))
            .map(|s| s.span_count),
        Some(2),
        "counted once"
    );
}

/// A later copy of a stored span, whatever it says, never replaces the
/// first one: not in trace by id, search or scans, whether the copies sit in
/// recent data, in persisted data, or one in each.
async fn first_copy_wins_everywhere<H: Harness>(harness: &H, store: &H::S) {
    let base = now() - HOUR / 3;
    let first = vec![
        span(8, 0, "rag", "root", base, 100),
        span(8, 1, "rag", "first-child", base + 1, 10),
    ];
    let mut second = first.clone();
    second[1].name = "second-child".into();
    second[1].end = UnixNanos(base + 90);
    second[1].status.code = StatusCode::Error;

    let check = |when: &'static str| async move {
        let trace = store.trace(tid(8)).await.expect("trace").expect("stored");
        let names: Vec<&str> = trace.spans.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["root", "first-child"], "trace by id, {when}");
        assert_eq!(
            trace.spans[1].end,
            UnixNanos(base + 11),
            "trace by id, {when}"
        );
        let (found, _) = search(store, vec![], (Some(base), Some(base + 10)), 0, 100).await;
        let found: Vec<&Trace> = found.iter().filter(|t| t.trace_id == tid(8)).collect();
        assert_eq!(found.len(), 1, "search, {when}");
        assert_eq!(&found[0].spans, &trace.spans, "search, {when}");
        let errors = SpanClause::StatusError;
        let (failed, _) = search(store, vec![errors], (Some(base), Some(base + 10)), 0, 100).await;
        assert!(
            failed.iter().all(|t| t.trace_id != tid(8)),
            "search by the later copy's status, {when}"
        );
        let mut scanned: Vec<Span> = store
            .scan_spans(Some(UnixNanos(base)), Some(UnixNanos(base + 10)), 100)
            .await
            .expect("scan")
            .into_iter()
            .filter(|s| s.trace_id == tid(8))
            .collect();
        scanned.sort_by_key(|s| s.span_id);
        let mut want = trace.spans.clone();
        want.sort_by_key(|s| s.span_id);
        assert_eq!(scanned, want, "scan_spans, {when}");
    };

    store.append(first.clone()).await.expect("append");
    store
        .append(second.clone())
        .await
        .expect("append a changed retry");
    check("both recent").await;
    harness.persist(store).await;
    check("both persisted together").await;
    store.append(second.clone()).await.expect("append again");
    check("first persisted, second recent").await;
    harness.persist(store).await;
    check("in two persisted parts").await;
}

async fn listing_ranges_limits_services<H: Harness>(harness: &H, store: &H::S) {
    let base = now() - 10 * HOUR;
    // Traces 10..20, one per hour from 10 h ago, alternating services;
    // half persisted, half recent.
    for i in 0..10u64 {
        let service = if i % 2 == 0 { "alpha" } else { "beta" };
        store
            .append(vec![span(
                10 + i,
                0,
                service,
                "op",
                base + i * HOUR / 2,
                1000,
            )])
            .await
            .expect("append");
        if i == 4 {
            harness.persist(store).await;
        }
    }
    let q = |start: Option<u64>, end: Option<u64>, service: Option<&str>, limit: usize| {
        TraceListQuery {
            limit,
            service: service.map(str::to_string),
            start: start.map(UnixNanos),
            end: end.map(UnixNanos),
        }
    };
    let window = store
        .recent_traces(&q(Some(base), Some(base + 5 * HOUR), None, 100))
        .await
        .expect("list");
    let ids: Vec<TraceId> = window.iter().map(|s| s.trace_id).collect();
    let want: Vec<TraceId> = (10..20u64).rev().map(tid).collect();
    assert_eq!(
        ids, want,
        "time window lists exactly its traces, newest first"
    );
    let narrow = store
        .recent_traces(&q(Some(base + HOUR), Some(base + 2 * HOUR), None, 100))
        .await
        .expect("list");
    let ids: Vec<TraceId> = narrow.iter().map(|s| s.trace_id).collect();
    assert_eq!(
        ids,
        vec![tid(14), tid(13), tid(12)],
        "start/end bounds are inclusive"
    );
    let top = store
        .recent_traces(&q(Some(base), Some(base + 5 * HOUR), None, 3))
        .await
        .expect("list");
    assert_eq!(
        top.iter().map(|s| s.trace_id).collect::<Vec<_>>(),
        vec![tid(19), tid(18), tid(17)],
        "limit keeps the newest"
    );
    let beta = store
        .recent_traces(&q(Some(base), Some(base + 5 * HOUR), Some("beta"), 100))
        .await
        .expect("list");
    assert_eq!(
        beta.iter().map(|s| s.trace_id).collect::<Vec<_>>(),
        vec![tid(19), tid(17), tid(15), tid(13), tid(11)],
        "service filter"
    );
    assert!(beta
        .iter()
        .all(|s| s.root_service.as_deref() == Some("beta")));
}

async fn retention_by_age<H: Harness>(harness: &H, store: &H::S) {
    let day = 24 * HOUR;
    harness.persist(store).await;
    store
        .append(vec![span(40, 0, "old", "op", now() - 30 * day, 1000)])
        .await
        .expect("append");
    harness.persist(store).await;
    store
        .append(vec![span(41, 0, "new", "op", now() - day, 1000)])
        .await
        .expect("append");
    harness.persist(store).await;
    harness.retain(store).await;
    assert!(
        span_ids(store, 40).await.is_empty(),
        "retention deletes traces older than the retention age"
    );
    assert_eq!(
        span_ids(store, 41).await.len(),
        1,
        "retention keeps newer traces"
    );
    assert_eq!(
        span_ids(store, 1).await.len(),
        3,
        "retention keeps recent traces"
    );
}

/// Runs a search, returning the visited traces in visit order.
async fn search(
    store: &impl Store,
    clauses: Vec<SpanClause>,
    range: (Option<u64>, Option<u64>),
    max_inspected: usize,
    stop_after: usize,
) -> (Vec<Trace>, SearchStats) {
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let request = SearchRequest {
        filter: TraceFilter { clauses },
        start: range.0.map(UnixNanos),
        end: range.1.map(UnixNanos),
        max_inspected,
    };
    let stats = store
        .search(
            request,
            Box::new(move |trace| {
                let mut seen = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                seen.push(trace);
                seen.len() < stop_after
            }),
        )
        .await
        .expect("search");
    let traces = std::mem::take(
        &mut *seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    (traces, stats)
}

fn ids_of(traces: &[Trace]) -> BTreeSet<TraceId> {
    traces.iter().map(|t| t.trace_id).collect()
}

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn search_reads_whole_traces_across_storage<H: Harness>(harness: &H, store: &H::S) {
    let base = now() - HOUR / 2;
    let failing = |mut s: Span| {
        s.status.code = StatusCode::Error;
        s
    };
    let rate_limited = |mut s: Span, class: &str| {
        s.status.code = StatusCode::Error;
        s.events.push(Event {
            time: s.end,
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", class)],
        });
        s
    };
    // Persisted: trace 50's failing llm_call, all of healthy trace 51, and
    // trace 53's api_call that failed with RateLimitError.
    store
        .append(vec![
            span(50, 0, "rag", "process_query", base, 1000),
            failing(span(50, 1, "rag", "llm_call", base + 10, 500)),
            span(51, 0, "rag", "process_query", base + 100, 1000),
            span(51, 1, "rag", "llm_call", base + 110, 500),
            rate_limited(
                span(53, 2, "rag", "api_call", base + 320, 50),
                "RateLimitError",
            ),
        ])
        .await
        .expect("append");
    harness.persist(store).await;
    // Recent: trace 50's api_call with a qualified class, trace 53's
    // llm_call, and trace 52 of another service failing otherwise.
    let mut timeout = failing(span(52, 0, "billing", "llm_call", base + 200, 100));
    timeout
        .attributes
        .push(KeyValue::new("error.type", "Timeout"));
    store
        .append(vec![
            rate_limited(
                span(50, 2, "rag", "api_call", base + 20, 400),
                "__main__.RateLimitError",
            ),
            timeout,
            failing(span(53, 0, "rag", "process_query", base + 300, 1000)),
            failing(span(53, 1, "rag", "llm_call", base + 310, 500)),
        ])
        .await
        .expect("append");

    let founding = vec![
        SpanClause::SpanName(names(&["llm_call"])),
        SpanClause::StatusError,
        SpanClause::ErrorType(names(&["RateLimitError"])),
    ];
    let (traces, stats) = search(store, founding, (None, None), 0, usize::MAX).await;
    assert_eq!(
        ids_of(&traces),
        BTreeSet::from([tid(50), tid(53)]),
        "search: every clause met by some span, wherever the spans are stored"
    );
    assert_eq!(traces.len(), 2, "search: each trace once");
    assert!(!stats.truncated, "search: nothing left unread");
    for trace in &traces {
        assert_eq!(
            Some(trace),
            store.trace(trace.trace_id).await.expect("trace").as_ref(),
            "search: traces are whole, as trace by id returns them"
        );
    }
    let (traces, _) = search(
        store,
        vec![SpanClause::Service(names(&["billing"]))],
        (None, None),
        0,
        usize::MAX,
    )
    .await;
    assert_eq!(
        ids_of(&traces),
        BTreeSet::from([tid(52)]),
        "search: by service"
    );
    let (traces, _) = search(
        store,
        vec![SpanClause::ErrorType(names(&[
            "Timeout",
            "__main__.RateLimitError",
        ]))],
        (None, None),
        0,
        usize::MAX,
    )
    .await;
    assert_eq!(
        ids_of(&traces),
        BTreeSet::from([tid(50), tid(52)]),
        "search: a qualified class matches only itself"
    );
    let (traces, _) = search(
        store,
        vec![SpanClause::SpanName(names(&["llm_call"]))],
        (Some(base + 50), Some(base + 250)),
        0,
        usize::MAX,
    )
    .await;
    assert_eq!(
        ids_of(&traces),
        BTreeSet::from([tid(51), tid(52)]),
        "search: the trace's start (its earliest span) must lie in the range"
    );
    let (traces, stats) = search(
        store,
        vec![SpanClause::StatusError],
        (Some(base), None),
        0,
        1,
    )
    .await;
    assert_eq!(traces.len(), 1, "search: the visitor stops the walk");
    assert!(stats.truncated, "search: a stopped walk says so");
    let (traces, stats) = search(store, vec![], (Some(base), None), 2, usize::MAX).await;
    assert_eq!(
        stats.inspected, 2,
        "search: at most max_inspected traces read"
    );
    assert!(traces.len() <= 2);
    assert!(stats.truncated, "search: a capped walk says so");
}

/// `scan_spans` returns whole traces that start in the range, wherever
/// their spans are stored (two blocks and the recent data), and nothing of
/// traces starting outside it; too much data is an error, not a cut.
async fn scan_spans_by_trace_start<H: Harness>(harness: &H, store: &H::S) {
    let base = now() - HOUR / 4;
    let ms = 1_000_000;
    store
        .append(vec![
            span(70, 0, "rag", "root", base, 10 * ms),
            span(70, 1, "rag", "child", base + ms, ms),
            span(71, 0, "rag", "root", base + 60_000 * ms, ms),
        ])
        .await
        .expect("append");
    harness.persist(store).await;
    store
        .append(vec![
            span(70, 2, "rag", "late", base + 120_000 * ms, ms),
            span(72, 0, "rag", "root", base + 121_000 * ms, ms),
        ])
        .await
        .expect("append");
    harness.persist(store).await;
    store
        .append(vec![
            span(70, 3, "rag", "later", base + 180_000 * ms, ms),
            span(73, 0, "rag", "root", base + 2 * ms, ms),
        ])
        .await
        .expect("append");

    let scan = |from: u64, to: u64, max: usize| {
        store.scan_spans(Some(UnixNanos(from)), Some(UnixNanos(to)), max)
    };
    let mut got: Vec<(TraceId, SpanId)> = scan(base - ms, base + 5 * ms, 100)
        .await
        .expect("scan")
        .iter()
        .map(|s| (s.trace_id, s.span_id))
        .collect();
    got.sort_unstable();
    let mut want: Vec<(TraceId, SpanId)> = [(70, 0), (70, 1), (70, 2), (70, 3), (73, 0)]
        .iter()
        .map(|&(t, n)| {
            let s = span(t, n, "rag", "x", 0, 0);
            (s.trace_id, s.span_id)
        })
        .collect();
    want.sort_unstable();
    assert_eq!(got, want, "scan_spans: whole traces starting in range");

    let only_71: Vec<TraceId> = scan(base + 59_000 * ms, base + 61_000 * ms, 100)
        .await
        .expect("scan")
        .iter()
        .map(|s| s.trace_id)
        .collect();
    assert_eq!(
        only_71,
        vec![tid(71)],
        "scan_spans: a range holding one trace"
    );

    assert!(
        matches!(
            scan(base - ms, base + 5 * ms, 2).await,
            Err(StoreError::TooMuchData { .. })
        ),
        "scan_spans: more than max_spans is an error"
    );
}
