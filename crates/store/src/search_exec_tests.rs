//! Soundness of the embedded store's search: over random traces spread
//! across blocks and the head, with random filters, search hands over
//! exactly the traces that brute force (read every trace, test the filter)
//! finds, each once and whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use chaintrace_model::{Event, KeyValue, Resource, StatusCode, Trace, TraceId, UnixNanos};
use proptest::prelude::*;

use crate::search::{SearchRequest, SpanClause, TraceFilter};
use crate::store::{Store, TraceListQuery};
use crate::test_support::span;
use crate::{EmbeddedConfig, EmbeddedStore};

/// One generated span: which trace, where it is stored (0..3 a block cut
/// after that part, 3 the head), and what it looks like.
#[derive(Debug, Clone)]
struct GenSpan {
    trace: u8,
    part: u8,
    name: u8,
    service: u8,
    error: bool,
    class: u8,
    start: u64,
}

fn gen_span() -> impl Strategy<Value = GenSpan> {
    (
        0..8u8,
        0..4u8,
        0..3u8,
        0..2u8,
        any::<bool>(),
        0..7u8,
        0..100u64,
    )
        .prop_map(
            |(trace, part, name, service, error, class, start)| GenSpan {
                trace,
                part,
                name,
                service,
                error,
                class,
                start,
            },
        )
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn clause_pool() -> Vec<SpanClause> {
    vec![
        SpanClause::SpanName(set(&["llm_call"])),
        SpanClause::SpanName(set(&["api_call", "chain"])),
        SpanClause::Service(set(&["rag"])),
        SpanClause::Service(set(&["nowhere"])),
        SpanClause::StatusError,
        SpanClause::ErrorType(set(&["RateLimitError"])),
        SpanClause::ErrorType(set(&["mod.RateLimitError"])),
        SpanClause::ErrorType(set(&["Timeout"])),
    ]
}

/// Builds the span; error classes come in every spelling, some agreeing
/// with each other and some not, some on the resource.
fn build(g: &GenSpan, n: u8) -> chaintrace_model::Span {
    let names = ["chain", "llm_call", "api_call"];
    let services = ["rag", "billing"];
    let start = 1_000 + g.start;
    let mut s = span(
        g.trace + 1,
        n + 1,
        (n > 0).then_some(1),
        services[usize::from(g.service)],
        names[usize::from(g.name)],
        start,
        start + 10,
    );
    if g.error {
        s.status.code = StatusCode::Error;
    }
    let exception = |class: &str| Event {
        time: UnixNanos(start),
        name: "exception".into(),
        attributes: vec![KeyValue::new("exception.type", class)],
    };
    match g.class {
        1 => s
            .attributes
            .push(KeyValue::new("error_type", "RateLimitError")),
        2 => s
            .attributes
            .push(KeyValue::new("error.type", "mod.RateLimitError")),
        3 => s.events.push(exception("Timeout")),
        4 => {
            // Disagreeing spellings: the hot column keeps only error.type.
            s.attributes.push(KeyValue::new("error.type", "Timeout"));
            s.events.push(exception("mod.RateLimitError"));
        }
        5 => {
            s.resource = Arc::new(Resource {
                attributes: vec![
                    KeyValue::new("service.name", services[usize::from(g.service)]),
                    KeyValue::new("error_type", "RateLimitError"),
                ],
            })
        }
        6 => s
            .attributes
            .push(KeyValue::new("exception.type", "Timeout")),
        _ => {}
    }
    s
}

async fn run_search(store: &EmbeddedStore, request: SearchRequest) -> Vec<Trace> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    store
        .search(
            request,
            Box::new(move |t| {
                sink.lock().unwrap_or_else(PoisonError::into_inner).push(t);
                true
            }),
        )
        .await
        .unwrap();
    let out = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn search_never_misses_a_trace_brute_force_finds(
        spans in prop::collection::vec(gen_span(), 1..40),
        filters in prop::collection::vec(
            (prop::collection::vec(0..8usize, 0..4), prop::option::of(0..100u64)),
            1..6,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        // Span numbers per trace, so every span id in a trace is distinct.
        let mut next: BTreeMap<u8, u8> = BTreeMap::new();
        let mut parts: BTreeMap<u8, Vec<chaintrace_model::Span>> = BTreeMap::new();
        for g in &spans {
            let n = next.entry(g.trace).or_default();
            parts.entry(g.part).or_default().push(build(g, *n));
            *n += 1;
        }
        for (part, batch) in parts {
            runtime.block_on(store.append(batch)).unwrap();
            if part < 3 {
                store.flush().unwrap();
            }
        }
        let all: Vec<Trace> = runtime.block_on(async {
            let list = store
                .recent_traces(&TraceListQuery { limit: 1000, ..Default::default() })
                .await
                .unwrap();
            let mut out = Vec::new();
            for s in list {
                out.push(store.trace(s.trace_id).await.unwrap().unwrap());
            }
            out
        });
        let pool = clause_pool();
        for (picks, since) in filters {
            let filter = TraceFilter { clauses: picks.iter().map(|i| pool[*i].clone()).collect() };
            let start = since.map(|s| UnixNanos(1_000 + s));
            let want: BTreeSet<TraceId> = all
                .iter()
                .filter(|t| filter.admits(t))
                .filter(|t| start.is_none_or(|s| t.spans.iter().map(|x| x.start).min() >= Some(s)))
                .map(|t| t.trace_id)
                .collect();
            let request = SearchRequest { filter: filter.clone(), start, end: None, max_inspected: 0 };
            let got = runtime.block_on(run_search(&store, request));
            let ids: Vec<TraceId> = got.iter().map(|t| t.trace_id).collect();
            let unique: BTreeSet<TraceId> = ids.iter().copied().collect();
            prop_assert_eq!(unique.len(), ids.len(), "a trace was visited twice");
            prop_assert_eq!(&unique, &want, "filter {:?} from {:?}", filter, start);
            for t in &got {
                prop_assert!(all.contains(t), "trace {} is not whole", t.trace_id);
            }
        }
    }
}
