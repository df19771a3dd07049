//! Tests of the WAL payload codec: round trips, resource sharing, layout-1
//! payloads from older builds, and damaged payloads.

use super::*;
use crate::test_support::span;
use chaintrace_model::AnyValue;
use proptest::prelude::*;
use serde::ser::{SerializeSeq, Serializer};

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", service),
            KeyValue::new("telemetry.sdk.language", "python"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.version", "1.45.2"),
        ],
    })
}

/// A span with every field set to something unusual.
fn full_span() -> Span {
    let mut full = span(1, 2, Some(1), "rag", "llm_call", 100, 250);
    full.kind = SpanKind::Client;
    full.status = Status {
        code: StatusCode::Error,
        message: "RateLimitError".into(),
    };
    full.attributes = vec![
        KeyValue::new("empty", AnyValue::Empty),
        KeyValue::new("s", ""),
        KeyValue::new("b", true),
        KeyValue::new("i", -7i64),
        KeyValue::new("d", 0.5f64),
        KeyValue::new("bytes", AnyValue::Bytes(vec![0, 255])),
        KeyValue::new(
            "arr",
            AnyValue::Array(vec![AnyValue::Int(1), AnyValue::from("x")]),
        ),
        KeyValue::new("kv", AnyValue::KvList(vec![KeyValue::new("k", "v")])),
    ];
    full.events = vec![
        Event {
            time: UnixNanos(120),
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", "RateLimitError")],
        },
        Event {
            time: UnixNanos(130),
            name: String::new(),
            attributes: vec![],
        },
    ];
    full.links = vec![Link {
        trace_id: TraceId([9; 16]),
        span_id: SpanId([8; 8]),
        attributes: vec![],
    }];
    full.scope = Arc::new(Scope {
        name: "openai".into(),
        version: Default::default(),
    });
    full
}

/// Spans A, B, A, C, B, A, D: three shared resources interleaved (one of
/// them with no attributes at all), and an equal-but-separate one last.
fn interleaved_batch() -> Vec<Span> {
    let a = resource("rag-chain");
    let b = Arc::new(Resource::default());
    let c = resource("search-api");
    let mut batch = vec![
        full_span(),
        span(1, 3, None, "rag", "", 0, 0),
        span(1, 4, Some(2), "rag", "embed", 5, 6),
        span(2, 1, None, "db", "query", 7, 9),
        span(2, 2, Some(1), "db", "fetch", 8, 9),
        span(3, 1, None, "x", "y", 1, 2),
        span(3, 2, Some(1), "x", "z", 1, 2),
    ];
    for (s, r) in batch.iter_mut().zip([&a, &b, &a, &c, &b, &a]) {
        s.resource = Arc::clone(r);
    }
    batch[6].resource = resource("summarizer");
    batch
}

#[test]
fn round_trip_every_field() {
    // The minimal span (index 1) has every optional string empty: exactly
    // what the model's own derives cannot round-trip through postcard.
    let batch = interleaved_batch();
    let bytes = encode_spans(&batch).unwrap();
    assert!(bytes.starts_with(&LAYOUT_3_PREFIX));
    let back = decode_spans(&bytes).unwrap();
    assert_eq!(back, batch);
}

#[test]
fn layout_2_payloads_from_an_older_build_decode_with_shared_scopes() {
    let batch = interleaved_batch();
    let old = encode_layout_2(&batch);
    assert!(old.starts_with(&LAYOUT_2_PREFIX));
    let back = decode_spans(&old).unwrap();
    assert_eq!(back, batch);
    // Consecutive spans of one scope share it again after the replay.
    let big = scoped_batch(&"s".repeat(4096), 50);
    let back = decode_spans(&encode_layout_2(&big)).unwrap();
    assert_eq!(back, big);
    assert!(back.iter().all(|s| Arc::ptr_eq(&s.scope, &back[0].scope)));
}

/// `n` spans of one trace sharing one scope named `name`.
fn scoped_batch(name: &str, n: u8) -> Vec<Span> {
    let scope = Arc::new(Scope {
        name: name.into(),
        version: "1.0".into(),
    });
    (0..n)
        .map(|i| {
            let mut s = span(1, i + 1, None, "rag", "step", 0, 1);
            s.scope = Arc::clone(&scope);
            s
        })
        .collect()
}

#[test]
fn a_long_scope_shared_by_many_spans_is_written_once_and_decodes_to_one_arc() {
    let batch = scoped_batch(&"s".repeat(96 * 1024), 200);
    let bytes = encode_spans(&batch).unwrap();
    // 96 KiB once plus about 40 bytes per span, not 19 MiB.
    assert!(bytes.len() < 96 * 1024 + 200 * 64, "{} bytes", bytes.len());
    let (written, _) =
        postcard::take_from_bytes::<BatchIn>(&bytes[LAYOUT_3_PREFIX.len()..]).unwrap();
    assert_eq!(written.scopes.len(), 1);
    let back = decode_spans(&bytes).unwrap();
    assert_eq!(back, batch);
    assert!(back.iter().all(|s| Arc::ptr_eq(&s.scope, &back[0].scope)));
    assert_eq!(Arc::strong_count(&back[0].scope), 200);
}

#[test]
fn shared_resources_are_written_once_and_decode_to_one_arc() {
    let batch = interleaved_batch();
    let bytes = encode_spans(&batch).unwrap();
    let (written, _) =
        postcard::take_from_bytes::<BatchIn>(&bytes[LAYOUT_3_PREFIX.len()..]).unwrap();
    assert_eq!(written.resources.len(), 4);
    let indexes: Vec<u32> = written.spans.iter().map(|s| s.resource).collect();
    assert_eq!(indexes, [0, 1, 0, 2, 1, 0, 3]);

    let back = decode_spans(&bytes).unwrap();
    let shared = |i: usize, j: usize| Arc::ptr_eq(&back[i].resource, &back[j].resource);
    assert!(shared(0, 2) && shared(0, 5));
    assert!(shared(1, 4));
    assert!(!shared(0, 1) && !shared(0, 3) && !shared(1, 3) && !shared(5, 6));
    // One Arc per resource: the batch holds every reference to it.
    assert_eq!(Arc::strong_count(&back[0].resource), 3);
}

#[test]
fn separate_equal_consecutive_resources_share_one_arc() {
    // Each test span has its own `Arc`; consecutive equal ones are shared
    // again, as layout 1's decoder did.
    let batch = vec![
        span(1, 1, None, "rag", "a", 0, 1),
        span(1, 2, Some(1), "rag", "b", 0, 1),
        span(1, 3, Some(1), "db", "c", 0, 1),
    ];
    let back = decode_spans(&encode_spans(&batch).unwrap()).unwrap();
    assert_eq!(back, batch);
    assert!(Arc::ptr_eq(&back[0].resource, &back[1].resource));
    assert!(!Arc::ptr_eq(&back[1].resource, &back[2].resource));
}

#[test]
fn many_resources_round_trip() {
    // More distinct resources than the pointer scan looks back over: a
    // resource seen long ago is written again, and still decodes right.
    let resources: Vec<_> = (0..40).map(|i| resource(&format!("svc-{i}"))).collect();
    let batch: Vec<Span> = (0..200u8)
        .map(|i| {
            let mut s = span(i, 1, None, "x", "op", 0, 1);
            s.resource = Arc::clone(&resources[(usize::from(i) * 7) % resources.len()]);
            s
        })
        .collect();
    let back = decode_spans(&encode_spans(&batch).unwrap()).unwrap();
    assert_eq!(back, batch);
}

#[test]
fn empty_batch_round_trips() {
    let bytes = encode_spans(&[]).unwrap();
    assert_eq!(decode_spans(&bytes).unwrap(), vec![]);
}

/// What the layout-1 encoder (before layout 2) wrote for [`golden_batch`],
/// captured from that build.
const LAYOUT_1_GOLDEN: &str =
    "030101010101010101010101010101010101010101010101010004726f6f74010a5a\
    00000104737465700104726f6f74011401650000010c736572766963652e6e616d650103726167000001010101\
    010101010101010101010101020202020202020201010101010101010105656d62656401141e00000104737465\
    700105656d6265640000010c736572766963652e6e616d65010372616700000202020202020202020202020202\
    02020101010101010101000571756572790128320000010473746570010571756572790000010c736572766963\
    652e6e616d65010264620000";

fn golden_batch() -> Vec<Span> {
    let mut root = span(1, 1, None, "rag", "root", 10, 90);
    root.events = vec![Event {
        time: UnixNanos(20),
        name: "e".into(),
        attributes: vec![],
    }];
    vec![
        root,
        span(1, 2, Some(1), "rag", "embed", 20, 30),
        span(2, 1, None, "db", "query", 40, 50),
    ]
}

fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn layout_1_payload_from_an_older_build_decodes() {
    let old = unhex(LAYOUT_1_GOLDEN);
    assert_eq!(old.len(), 226);
    let back = decode_spans(&old).unwrap();
    assert_eq!(back, golden_batch());
    assert!(Arc::ptr_eq(&back[0].resource, &back[1].resource));
    // The tests' layout-1 encoder is byte for byte the old one, so the
    // tests below that use it stand for old WAL files too.
    assert_eq!(encode_layout_1(&golden_batch()), old);
}

#[test]
fn layout_1_round_trip_every_field() {
    let batch = interleaved_batch();
    let old = encode_layout_1(&batch);
    assert!(!old.starts_with(&MARKER));
    assert_eq!(decode_spans(&old).unwrap(), batch);
    // Even a layout-1 batch of 128 spans, whose count starts with 0x80.
    let big: Vec<Span> = (0..128u8)
        .map(|i| span(i, 1, None, "x", "op", 0, 1))
        .collect();
    let old = encode_layout_1(&big);
    assert_eq!(old[..2], [0x80, 0x01]);
    assert_eq!(decode_spans(&old).unwrap(), big);
}

/// Serializes as a sequence of `n` elements with none written: exactly the
/// span count a layout-1 payload of `n` spans starts with.
struct SpanCount(usize);

impl Serialize for SpanCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(self.0))?.end()
    }
}

fn count_bytes(n: usize) -> Vec<u8> {
    postcard::to_allocvec(&SpanCount(n)).unwrap()
}

#[test]
fn marker_is_no_layout_1_span_count() {
    for n in (0..1 << 16).chain([1 << 21, 1 << 28, 1 << 35, usize::MAX]) {
        assert!(!count_bytes(n).starts_with(&MARKER), "count {n}");
    }
    assert_eq!(count_bytes(128), [0x80, 0x01]);
}

#[test]
fn payload_layout_reads_the_prefix_only() {
    let batch = [span(1, 1, None, "x", "op", 0, 1)];
    assert_eq!(payload_layout(&encode_layout_1(&batch)).unwrap(), 1);
    assert_eq!(payload_layout(&encode_spans(&batch).unwrap()).unwrap(), 3);
    assert_eq!(payload_layout(&encode_layout_2(&batch)).unwrap(), 2);
    assert_eq!(payload_layout(&[0x80, 0x00, 3]).unwrap(), 3);
    assert_eq!(payload_layout(&[]).unwrap(), 1);
    assert!(matches!(
        payload_layout(&MARKER),
        Err(PayloadError::TruncatedMarker)
    ));
}

#[test]
fn bad_markers_and_indexes_are_errors() {
    assert!(matches!(
        decode_spans(&MARKER),
        Err(PayloadError::TruncatedMarker)
    ));
    assert!(matches!(
        decode_spans(&[0x80, 0x00, 4, 0, 0]),
        Err(PayloadError::UnknownLayout(4))
    ));
    let spans = [span(1, 1, None, "x", "op", 0, 1)];
    let r = Resource::default();
    let scope = ScopeOut::new(&spans[0].scope);
    let bad = BatchOut {
        resources: &[&r],
        scopes: &[scope],
        spans: &[SpanOut::new(&spans[0], 5, 0)],
    };
    let payload = postcard::to_extend(&bad, LAYOUT_3_PREFIX.to_vec()).unwrap();
    let err = decode_spans(&payload).unwrap_err();
    assert!(matches!(
        err,
        PayloadError::ResourceIndex {
            span: 0,
            index: 5,
            resources: 1
        }
    ));
    assert_eq!(
        err.to_string(),
        "span 0 refers to resource 5, but the payload holds 1 resources"
    );
    let bad = BatchOut {
        resources: &[&r],
        scopes: &[scope],
        spans: &[SpanOut::new(&spans[0], 0, 2)],
    };
    let payload = postcard::to_extend(&bad, LAYOUT_3_PREFIX.to_vec()).unwrap();
    assert_eq!(
        decode_spans(&payload).unwrap_err().to_string(),
        "span 0 refers to scope 2, but the payload holds 1 scopes"
    );
    let mut trailing = encode_spans(&spans).unwrap();
    trailing.push(0);
    assert!(matches!(
        decode_spans(&trailing),
        Err(PayloadError::TrailingBytes(3, 1))
    ));
    let mut trailing = encode_layout_2(&spans);
    trailing.push(0);
    assert!(matches!(
        decode_spans(&trailing),
        Err(PayloadError::TrailingBytes(2, 1))
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(decode_spans(&[]).is_err());
    assert!(decode_spans(&[5, 1, 2, 3]).is_err());
    assert!(decode_spans(&[0x80]).is_err());
}

#[test]
fn every_truncation_is_an_error() {
    let payload = encode_spans(&interleaved_batch()).unwrap();
    for cut in 0..payload.len() {
        assert!(decode_spans(&payload[..cut]).is_err(), "cut at {cut}");
    }
}

/// `n` spans in seven-span chains, the chains' resources taken in turn from
/// five, like `examples/store_profile.rs` appends.
fn chains(n: usize) -> Vec<Span> {
    let services = [
        "rag-chain",
        "support-bot",
        "code-agent",
        "search-api",
        "summarizer",
    ];
    let resources: Vec<_> = services.iter().map(|s| resource(s)).collect();
    let steps: [(&str, &[(&str, &str)]); 7] = [
        ("process_query", &[("user_id", "user_42")]),
        (
            "fetch_context",
            &[("user_id", "user_42"), ("context_size_bytes", "4096")],
        ),
        (
            "embed_query",
            &[
                ("model", "text-embedding-3-small"),
                ("gen_ai.operation.name", "embeddings"),
            ],
        ),
        (
            "vector_search",
            &[("database", "pinecone"), ("results_found", "8")],
        ),
        ("llm_call", &[("model", "claude-3-opus-20250219")]),
        ("prompt_assembly", &[("prompt_length", "2048")]),
        (
            "api_call",
            &[
                ("gen_ai.system", "anthropic"),
                ("gen_ai.request.model", "claude-3-opus-20250219"),
                ("input_tokens", "1250"),
                ("output_tokens", "340"),
                ("stop_reason", "end_turn"),
            ],
        ),
    ];
    (0..n)
        .map(|i| {
            let chain = i / 7;
            let (name, attrs) = steps[i % 7];
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&(chain as u64).to_be_bytes());
            let start = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
            Span {
                trace_id: TraceId(id),
                span_id: SpanId((i as u64 + 1).to_be_bytes()),
                parent_span_id: (i % 7 != 0).then(|| SpanId((chain as u64 * 7 + 1).to_be_bytes())),
                name: name.into(),
                kind: SpanKind::Internal,
                start: UnixNanos(start),
                end: UnixNanos(start + 50_000_000),
                status: Status::default(),
                attributes: attrs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect(),
                events: Vec::new(),
                links: Vec::new(),
                resource: Arc::clone(&resources[chain % resources.len()]),
                scope: std::sync::Arc::new(Scope {
                    name: "chaintrace-gen".into(),
                    version: "0.1.0".into(),
                }),
            }
        })
        .collect()
}

#[test]
fn hand_encoding_is_postcard_on_the_fixed_batches() {
    for batch in [
        vec![full_span()],
        interleaved_batch(),
        golden_batch(),
        chains(40),
        Vec::new(),
    ] {
        assert_eq!(encode_spans(&batch).unwrap(), encode_with_postcard(&batch));
    }
}

#[test]
fn shared_resources_shrink_the_payload() {
    let batch = chains(2000);
    let old = encode_layout_1(&batch).len();
    let new = encode_spans(&batch).unwrap().len();
    // Sizes, not timing: run with --nocapture to see them.
    println!(
        "2000-span batch, 7-span chains, 5 resources: layout 1 {old} bytes, layout 2 {new} bytes"
    );
    assert!(new < old);
    assert_eq!(decode_spans(&encode_spans(&batch).unwrap()).unwrap(), batch);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipped_bytes_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4)) {
        let mut payload = encode_spans(&interleaved_batch()).unwrap();
        for (at, mask) in flips {
            let i = at.index(payload.len());
            payload[i] ^= mask;
        }
        // Any answer but a panic will do: replay truncates at an error.
        let _ = decode_spans(&payload);
    }

    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_spans(&body);
        for prefix in [LAYOUT_2_PREFIX, LAYOUT_3_PREFIX] {
            let mut payload = prefix.to_vec();
            payload.extend_from_slice(&body);
            let _ = decode_spans(&payload);
        }
    }

    /// The hand encoder writes exactly postcard's bytes, on every field,
    /// value type and id the block round-trip strategy makes, with resources
    /// shared and not.
    #[test]
    fn hand_encoding_is_postcard(spans in crate::block::testing::spans(24), share in any::<bool>()) {
        let mut spans = spans;
        if share {
            let shared = Arc::clone(&spans[0].resource);
            let scope = Arc::clone(&spans[0].scope);
            for s in spans.iter_mut().step_by(2) {
                s.resource = Arc::clone(&shared);
                s.scope = Arc::clone(&scope);
            }
        }
        prop_assert_eq!(encode_spans(&spans).unwrap(), encode_with_postcard(&spans));
        prop_assert_eq!(decode_spans(&encode_spans(&spans).unwrap()).unwrap(), spans);
    }

    #[test]
    fn no_span_count_starts_with_the_marker(n in any::<u64>()) {
        // usize is 64 bits wherever the store runs.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        prop_assert!(!count_bytes(n).starts_with(&MARKER));
    }
}

/// Found by fuzzing (`fuzz/` target `wal_record`, by hand past its input
/// cap): a layout-2 payload whose resource attribute is 200 000 arrays
/// nested in each other overflowed the stack in postcard's recursion. A
/// tampered record with a good CRC is the only way to it; it is now an
/// error (`model::MAX_VALUE_DEPTH`).
#[test]
fn a_payload_nesting_values_two_hundred_thousand_deep_is_an_error_not_a_stack_overflow() {
    let mut payload = vec![0x80, 0, 2, 1, 1, 0];
    for _ in 0..200_000 {
        payload.extend_from_slice(&[6, 1]);
    }
    payload.extend_from_slice(&[0, 0]);
    // postcard reports any custom error as "Serde Deserialization Error".
    let err = decode_spans(&payload).unwrap_err().to_string();
    assert!(err.starts_with("layout 2 payload:"), "{err}");
}
