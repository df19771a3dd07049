//! Test inputs for the block tests: a proptest [`Strategy`] for arbitrary
//! spans, and the demo RAG chain of `chaintrace demo` as model spans.

use std::sync::Arc;

use chaintrace_model::{
    AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode,
    TraceId, UnixNanos,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), any::<String>(), "[a-z._]{1,12}"]
}

/// Any attribute value, nested arrays and kvlists included; no NaN (it is
/// not equal to itself; `value_codec` tests NaN bits separately).
pub(crate) fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        Just(AnyValue::Empty),
        text().prop_map(AnyValue::from),
        any::<bool>().prop_map(AnyValue::Bool),
        any::<i64>().prop_map(AnyValue::Int),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
            .prop_map(AnyValue::Double),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(AnyValue::Bytes),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(AnyValue::Array),
            prop::collection::vec((text(), inner), 0..4).prop_map(|kvs| {
                AnyValue::KvList(
                    kvs.into_iter()
                        .map(|(key, value)| KeyValue::new(key, value))
                        .collect(),
                )
            }),
        ]
    })
}

pub(crate) fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (text(), any_value()).prop_map(|(key, value)| KeyValue::new(key, value)),
        0..5,
    )
}

fn kind() -> impl Strategy<Value = SpanKind> {
    prop_oneof![
        Just(SpanKind::Unspecified),
        Just(SpanKind::Internal),
        Just(SpanKind::Server),
        Just(SpanKind::Client),
        Just(SpanKind::Producer),
        Just(SpanKind::Consumer),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    let code = prop_oneof![
        Just(StatusCode::Unset),
        Just(StatusCode::Ok),
        Just(StatusCode::Error)
    ];
    (code, text()).prop_map(|(code, message)| Status { code, message })
}

/// A span of one of four traces; ids and times arbitrary, the span id made
/// unique by the caller (see [`spans`]).
fn span() -> impl Strategy<Value = Span> {
    let ids = (0u8..4, any::<[u8; 8]>(), prop::option::of(any::<[u8; 8]>()));
    let body = (text(), kind(), any::<u64>(), any::<u64>(), status());
    let events = prop::collection::vec(
        (any::<u64>(), text(), attributes()).prop_map(|(t, name, attributes)| Event {
            time: UnixNanos(t),
            name,
            attributes,
        }),
        0..3,
    );
    let links = prop::collection::vec(
        (any::<[u8; 16]>(), any::<[u8; 8]>(), attributes()).prop_map(|(t, s, attributes)| Link {
            trace_id: TraceId(t),
            span_id: SpanId(s),
            attributes,
        }),
        0..3,
    );
    let context = (attributes(), (text(), text()));
    (ids, body, attributes(), events, links, context).prop_map(
        |(
            (trace, span, parent),
            (name, kind, start, end, status),
            attributes,
            events,
            links,
            (resource, (scope_name, scope_version)),
        )| Span {
            trace_id: TraceId([trace.wrapping_mul(61); 16]),
            span_id: SpanId(span),
            parent_span_id: parent.map(SpanId),
            name: name.into(),
            kind,
            start: UnixNanos(start),
            end: UnixNanos(end),
            status,
            attributes,
            events,
            links,
            resource: Arc::new(Resource {
                attributes: resource,
            }),
            scope: std::sync::Arc::new(Scope {
                name: scope_name.into(),
                version: scope_version.into(),
            }),
        },
    )
}

/// 1 to `max` spans with distinct (trace id, span id): the span id's first
/// bytes become the span's index.
pub(crate) fn spans(max: usize) -> impl Strategy<Value = Vec<Span>> {
    prop::collection::vec(span(), 1..max).prop_map(|mut spans| {
        for (i, s) in spans.iter_mut().enumerate() {
            s.span_id.0[..4].copy_from_slice(&(i as u32).to_be_bytes());
        }
        spans
    })
}

/// The order a block stores spans in.
pub(crate) fn block_order(spans: &mut [Span]) {
    spans.sort_by_key(|s| (s.trace_id, s.start, s.span_id));
}

/// xorshift, as in `chaintrace demo`.
pub(crate) struct Jitter(pub u64);

impl Jitter {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `base_ms` ± up to 20 %, in whole milliseconds, as nanoseconds.
    fn ms(&mut self, base_ms: u64) -> u64 {
        let spread = base_ms / 5 + 1;
        (base_ms - spread / 2 + self.next() % spread) * 1_000_000
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
        out
    }
}

/// The three chains of `chaintrace demo`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    Sequential,
    Concurrent,
    RateLimited,
}

fn api_call_attrs(input: i64, output: i64) -> Vec<KeyValue> {
    vec![
        KeyValue::new("model", "claude-3-opus-20250219"),
        KeyValue::new("gen_ai.system", "anthropic"),
        KeyValue::new("gen_ai.request.model", "claude-3-opus-20250219"),
        KeyValue::new("gen_ai.request.max_tokens", 1024i64),
        KeyValue::new("gen_ai.request.temperature", 0.7f64),
        KeyValue::new("input_tokens", input),
        KeyValue::new("output_tokens", output),
        KeyValue::new("gen_ai.usage.input_tokens", input),
        KeyValue::new("gen_ai.usage.output_tokens", output),
        KeyValue::new("stop_reason", "end_turn"),
    ]
}

/// The spans of one demo trace under construction.
struct DemoTrace {
    trace_id: TraceId,
    resource: Arc<Resource>,
    spans: Vec<Span>,
}

impl DemoTrace {
    fn add(
        &mut self,
        j: &mut Jitter,
        parent: Option<SpanId>,
        name: &str,
        kind: SpanKind,
        (start, end): (u64, u64),
        attributes: Vec<KeyValue>,
    ) -> SpanId {
        let id = SpanId(j.bytes());
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: id,
            parent_span_id: parent,
            name: name.into(),
            kind,
            start: UnixNanos(start),
            end: UnixNanos(end),
            status: Status::default(),
            attributes,
            events: Vec::new(),
            links: Vec::new(),
            resource: self.resource.clone(),
            scope: std::sync::Arc::new(Scope {
                name: "chaintrace.demo".into(),
                version: "0.1.0".into(),
            }),
        });
        id
    }
}

/// One demo trace ending at `end_of_trace`, with the attributes, events,
/// resource and scope `chaintrace demo` sends (crates/cli/src/demo.rs).
pub(crate) fn demo_trace(
    shape: Shape,
    end_of_trace: u64,
    j: &mut Jitter,
    resource: &Arc<Resource>,
) -> Vec<Span> {
    let mut b = DemoTrace {
        trace_id: TraceId(j.bytes()),
        resource: resource.clone(),
        spans: Vec::new(),
    };
    use SpanKind::{Client, Internal, Server};
    let (fetch, embed, search) = (j.ms(50), j.ms(100), j.ms(50));
    let (fetch_start, embed_start) = match shape {
        Shape::Concurrent => (0, 0),
        _ => (0, fetch),
    };
    let search_start = (fetch_start + fetch).max(embed_start + embed);
    let llm_start = search_start + search;
    let prompt = j.ms(10);
    let user = || KeyValue::new("user_id", "user_42");
    let root = b.add(j, None, "process_query", Server, (0, 0), vec![user()]);
    let ctx = vec![user(), KeyValue::new("context_size_bytes", 4096i64)];
    b.add(
        j,
        Some(root),
        "fetch_context",
        Internal,
        (fetch_start, fetch_start + fetch),
        ctx,
    );
    let emb = vec![
        KeyValue::new("model", "text-embedding-3-small"),
        KeyValue::new("gen_ai.request.model", "text-embedding-3-small"),
        KeyValue::new("gen_ai.operation.name", "embeddings"),
        KeyValue::new("embedding_dim", 1536i64),
    ];
    b.add(
        j,
        Some(root),
        "embed_query",
        Client,
        (embed_start, embed_start + embed),
        emb,
    );
    let vs = vec![
        KeyValue::new("database", "pinecone"),
        KeyValue::new("results_found", 8i64),
    ];
    b.add(
        j,
        Some(root),
        "vector_search",
        Client,
        (search_start, llm_start),
        vs,
    );
    let model = vec![KeyValue::new("model", "claude-3-opus-20250219")];
    let llm = b.add(j, Some(root), "llm_call", Internal, (llm_start, 0), model);
    let pl = vec![KeyValue::new("prompt_length", 2048i64)];
    b.add(
        j,
        Some(llm),
        "prompt_assembly",
        Internal,
        (llm_start, llm_start + prompt),
        pl,
    );
    let mut t = llm_start + prompt;
    if shape == Shape::RateLimited {
        let failed = j.ms(120);
        let message = "Rate limit exceeded: 50 requests per minute";
        let mut attrs = api_call_attrs(1250, 0);
        attrs.extend([
            KeyValue::new("status", "error"),
            KeyValue::new("error_type", "RateLimitError"),
            KeyValue::new("error.type", "RateLimitError"),
            KeyValue::new("error_message", message),
        ]);
        b.add(j, Some(llm), "api_call", Client, (t, t + failed), attrs);
        let sp = b.spans.last_mut().expect("just pushed");
        sp.status = Status {
            code: StatusCode::Error,
            message: format!("RateLimitError: {message}"),
        };
        sp.events.push(Event {
            time: UnixNanos(t + failed),
            name: "exception".into(),
            attributes: vec![
                KeyValue::new("exception.type", "RateLimitError"),
                KeyValue::new("exception.message", message),
                KeyValue::new(
                    "exception.stacktrace",
                    format!("Traceback (most recent call last):\n  File \"chain.py\", line 88, in api_call\n    raise RateLimitError(\"{message}\")\nRateLimitError: {message}"),
                ),
            ],
        });
        t += failed + j.ms(200);
    }
    let api = j.ms(920);
    let mut attrs = api_call_attrs(1250, 340);
    if shape == Shape::RateLimited {
        attrs.push(KeyValue::new("retry_attempt", 1i64));
    }
    b.add(j, Some(llm), "api_call", Client, (t, t + api), attrs);
    b.spans.last_mut().expect("just pushed").events.push(Event {
        time: UnixNanos(t + 1_000_000),
        name: "API request sent".into(),
        attributes: Vec::new(),
    });
    let end = t + api;
    let shift = end_of_trace - end;
    let mut spans = b.spans;
    for sp in &mut spans {
        if sp.end.0 == 0 {
            sp.end.0 = end;
        }
        sp.start.0 += shift;
        sp.end.0 += shift;
        for ev in &mut sp.events {
            ev.time.0 += shift;
        }
    }
    spans
}

/// `traces` demo traces, the three shapes in turn, ending about 1 ms apart
/// (with nanosecond jitter) after `t0`: a steady 1000 traces/s.
pub(crate) fn demo_spans(traces: usize, t0: u64) -> Vec<Span> {
    let resource = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "rag-chain"),
            KeyValue::new("service.version", "1.4.0"),
            KeyValue::new("deployment.environment", "demo"),
            KeyValue::new("telemetry.sdk.name", "chaintrace-demo"),
        ],
    });
    let mut j = Jitter(0x9e37_79b9_7f4a_7c15);
    let shapes = [Shape::Sequential, Shape::Concurrent, Shape::RateLimited];
    let mut out = Vec::with_capacity(traces * 8);
    for i in 0..traces {
        let end = t0 + 2_000_000_000 + i as u64 * 1_000_000 + j.next() % 1_000_000;
        out.extend(demo_trace(shapes[i % 3], end, &mut j, &resource));
    }
    out
}

/// Three resources as SDKs send them, one with an array attribute.
fn fixture_resources() -> Vec<Arc<Resource>> {
    ["rag-chain", "retriever", "gateway"]
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let mut attributes = vec![
                KeyValue::new("service.name", *service),
                KeyValue::new("service.instance.id", format!("{service}-{i}")),
                KeyValue::new("host.cores", i as i64 + 2),
                KeyValue::new("telemetry.sdk.language", "python"),
            ];
            if i == 2 {
                attributes.push(KeyValue {
                    key: "process.command_args".into(),
                    value: AnyValue::Array(vec!["gw".into(), "--port".into(), 8080i64.into()]),
                });
            }
            Arc::new(Resource { attributes })
        })
        .collect()
}

/// The spans of the committed `vparquet1` fixture block
/// (`fixtures/v1/b-v1-fixture`): nine demo traces whose spans alternate
/// between three resources within each trace, events from the demo chain,
/// and a link from every root to the previous trace's root. Deterministic:
/// the fixture tests rebuild them and compare.
pub(crate) fn fixture_spans() -> Vec<Span> {
    let resources = fixture_resources();
    let mut j = Jitter(0x2545_f491_4f6c_dd1d);
    let shapes = [Shape::Sequential, Shape::Concurrent, Shape::RateLimited];
    let mut out: Vec<Span> = Vec::new();
    let mut previous_root: Option<(TraceId, SpanId)> = None;
    for i in 0..9 {
        let end = 1_700_000_000_000_000_000 + i as u64 * 1_000_000 + j.next() % 1_000_000;
        let mut trace = demo_trace(shapes[i % 3], end, &mut j, &resources[i % 3]);
        for (k, s) in trace.iter_mut().enumerate() {
            if k % 2 == 1 {
                s.resource = resources[(i + 1) % 3].clone();
            }
        }
        if let Some((t, s)) = previous_root {
            trace[0].links.push(Link {
                trace_id: t,
                span_id: s,
                attributes: vec![KeyValue::new("link.kind", "follows")],
            });
        }
        previous_root = Some((trace[0].trace_id, trace[0].span_id));
        out.extend(trace);
    }
    out
}

/// The spans of the committed `vparquet2` fixture block
/// (`fixtures/v2/b-v2-fixture`): [`fixture_spans`] plus one trace whose
/// span, event, link and resource carry every attribute value type, so
/// that each typed column of the older attribute layout is read back.
pub(crate) fn fixture_spans_v2() -> Vec<Span> {
    let mut out = fixture_spans();
    let every_type = || {
        vec![
            KeyValue::new("empty", AnyValue::Empty),
            KeyValue::new("str", "text é ✓"),
            KeyValue::new("bool", true),
            KeyValue::new("int", -42i64),
            KeyValue::new("double", 0.25f64),
            KeyValue::new("bytes", AnyValue::Bytes(vec![0, 1, 254, 255])),
            KeyValue::new(
                "array",
                AnyValue::Array(vec!["a".into(), 7i64.into(), AnyValue::Double(-1.5)]),
            ),
            KeyValue::new(
                "kvlist",
                AnyValue::KvList(vec![
                    KeyValue::new("inner", false),
                    KeyValue::new("nested", AnyValue::Array(vec![AnyValue::Empty])),
                ]),
            ),
        ]
    };
    let first = &out[0];
    let link = Link {
        trace_id: first.trace_id,
        span_id: first.span_id,
        attributes: every_type(),
    };
    let mut resource_attributes = vec![KeyValue::new("service.name", "every-type")];
    resource_attributes.extend(every_type());
    let start = 1_700_000_000_500_000_000;
    out.push(Span {
        trace_id: TraceId([0xee; 16]),
        span_id: SpanId([0xee; 8]),
        parent_span_id: None,
        name: "every_value_type".into(),
        kind: SpanKind::Client,
        start: UnixNanos(start),
        end: UnixNanos(start + 1_000),
        status: Status {
            code: StatusCode::Error,
            message: "all of them".to_string(),
        },
        attributes: every_type(),
        events: vec![Event {
            time: UnixNanos(start + 10),
            name: "typed".to_string(),
            attributes: every_type(),
        }],
        links: vec![link],
        resource: Arc::new(Resource {
            attributes: resource_attributes,
        }),
        scope: std::sync::Arc::new(Scope {
            name: "fixture".into(),
            version: "2".into(),
        }),
    });
    out
}
