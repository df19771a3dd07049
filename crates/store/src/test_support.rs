//! Span builders shared by this crate's unit tests.

use std::sync::Arc;

use chaintrace_model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId, UnixNanos};

/// The trace id made of sixteen `n` bytes.
pub(crate) fn trace_id(n: u8) -> TraceId {
    TraceId([n; TraceId::LEN])
}

/// A span of trace `trace` with id `span` (eight `span` bytes), optional
/// parent, the given `service.name`, name and times.
pub(crate) fn span(
    trace: u8,
    span: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: trace_id(trace),
        span_id: SpanId([span; SpanId::LEN]),
        parent_span_id: parent.map(|p| SpanId([p; SpanId::LEN])),
        name: name.into(),
        kind: SpanKind::Internal,
        start: UnixNanos(start),
        end: UnixNanos(end),
        status: Status::default(),
        attributes: vec![KeyValue::new("step", name)],
        events: Vec::new(),
        links: Vec::new(),
        resource: Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", service)],
        }),
        scope: Default::default(),
    }
}

/// Milliseconds after an arbitrary epoch, as Unix nanoseconds.
pub(crate) fn at_ms(ms: u64) -> u64 {
    1_000_000_000_000 + ms * 1_000_000
}

/// A store in `dir` with four generations: three cut blocks (the first two
/// compacted into one) and the head. Trace 1's root arrives in every
/// generation, the later copies renamed "second copy" (the first must
/// win); trace 2's `llm` span is from service `gateway` with model
/// `gpt-4o`; trace 9, in the head only, starts ten minutes after the rest.
/// Traces 1, 2, 3, 9 hold 7 spans; 2 later copies meet the first.
pub(crate) async fn generations_with_retries(dir: &std::path::Path) -> crate::EmbeddedStore {
    use crate::Store;
    let mut config = crate::EmbeddedConfig::new(dir);
    config.compaction_min_blocks = 2;
    config.compaction_fresh_blocks = 1;
    let (store, _) = crate::EmbeddedStore::open(config).unwrap();
    let t = at_ms;
    let mut llm = span(2, 2, Some(1), "gateway", "llm", t(20), t(40));
    llm.attributes
        .push(KeyValue::new("gen_ai.request.model", "gpt-4o"));
    let mut renamed = span(1, 1, None, "rag", "chain", t(0), t(90));
    renamed.name = "second copy".into();
    let rounds = vec![
        vec![
            span(1, 1, None, "rag", "chain", t(0), t(90)),
            span(2, 1, None, "rag", "chain", t(5), t(50)),
        ],
        vec![
            renamed.clone(),
            span(1, 2, Some(1), "rag", "embed", t(10), t(20)),
        ],
        vec![
            renamed.clone(),
            llm,
            span(3, 1, None, "rag", "chain", t(7), t(8)),
        ],
    ];
    for round in rounds {
        store.append(round).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
    }
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    store
        .append(vec![
            renamed,
            span(3, 2, Some(1), "rag", "tool", t(7), t(8)),
            span(9, 1, None, "rag", "late", t(600_000), t(600_010)),
        ])
        .await
        .unwrap();
    store
}

/// splitmix64: a deterministic stream of numbers for tests, no dependency
/// needed.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
