//! The wire decoder against prost + `decode_request`, which define what it
//! must produce: on random requests, on the same requests re-encoded in
//! ways prost accepts (fields shuffled, unknown fields, split messages), on
//! mutated and arbitrary bytes, and on the captured payloads.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message as _;

use super::test_requests::*;
use super::*;
use crate::otlp::decode_request;
use crate::testing::{fixture, PB_FIXTURE};

/// What the wire decoder must agree with.
fn via_prost(bytes: &[u8]) -> Result<DecodedSpans, prost::DecodeError> {
    ExportTraceServiceRequest::decode(bytes).map(decode_request)
}

/// Equal, counting NaN attribute values as equal to themselves.
fn same(a: &DecodedSpans, b: &DecodedSpans) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

/// Both decoders fail, or both succeed with the same spans.
fn check_same(bytes: &[u8]) -> Result<(), TestCaseError> {
    match (decode_wire(bytes), via_prost(bytes)) {
        (Ok(wire), Ok(prost)) => {
            prop_assert_eq!(wire.spans.len(), prost.spans.len());
            for (w, p) in wire.spans.iter().zip(&prost.spans) {
                prop_assert!(format!("{w:?}") == format!("{p:?}"), "{w:#?}\n!=\n{p:#?}");
            }
            prop_assert!(same(&wire, &prost), "{wire:?}\n!=\n{prost:?}");
        }
        (Err(_), Err(_)) => {}
        (wire, prost) => prop_assert!(
            false,
            "wire {:?}, prost {:?}",
            wire.map(|d| d.spans.len()),
            prost.map(|d| d.spans.len())
        ),
    }
    Ok(())
}

fn assert_same(bytes: &[u8]) {
    if let Err(e) = check_same(bytes) {
        panic!("{e}");
    }
}

proptest! {
    #[test]
    fn random_requests_decode_like_prost(request in arb_request()) {
        let bytes = request.encode_to_vec();
        let wire = decode_wire(&bytes).unwrap();
        prop_assert!(same(&wire, &decode_request(request)));
        check_same(&bytes)?;
    }

    /// The bound a request waits for in the decode gate holds: decoding
    /// within it never stops for lack of budget.
    #[test]
    fn the_protobuf_bound_covers_every_decode(request in arb_request()) {
        let bytes = request.encode_to_vec();
        let bound = crate::otlp::protobuf_bound(bytes.len());
        let decoded = decode_wire_within(&bytes, bound);
        prop_assert!(
            !matches!(decoded, Err(DecodeError::TooLarge(_))),
            "{} bytes, bound {bound}: {decoded:?}",
            bytes.len()
        );
    }

    #[test]
    fn re_encoded_requests_decode_like_prost(request in arb_request(), seed in 1..u64::MAX) {
        let bytes = mangle(&request.encode_to_vec(), Msg::Request, &mut Rng(seed));
        prop_assert!(via_prost(&bytes).is_ok());
        check_same(&bytes)?;
    }

    /// The pre-count that sizes the span list is exact on what exporters
    /// send, so the list never grows while decoding; attribute lists come
    /// out exactly sized too. Re-encoded requests
    /// may hold unknown groups, where the hint stops counting: never more
    /// than was sent, and decoding is the same.
    #[test]
    fn span_count_hint_is_exact(request in arb_request(), seed in 1..u64::MAX) {
        let sent: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        let bytes = request.encode_to_vec();
        prop_assert_eq!(count_nested(Reader::new(&bytes), &[1, 2, 2]), sent);
        let decoded = decode_wire(&bytes).unwrap();
        prop_assert_eq!(decoded.spans.capacity(), sent);
        // Each span's attribute list is exactly as long as it needs to be.
        for s in &decoded.spans {
            prop_assert_eq!(s.attributes.capacity(), s.attributes.len());
        }
        let mangled = mangle(&bytes, Msg::Request, &mut Rng(seed));
        prop_assert!(count_nested(Reader::new(&mangled), &[1, 2, 2]) <= sent);
        check_same(&mangled)?;
    }

    #[test]
    fn mutated_requests_fail_exactly_when_prost_fails(
        request in arb_request(),
        seed in 1..u64::MAX,
        mangled in any::<bool>(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
    ) {
        let mut bytes = request.encode_to_vec();
        if mangled {
            bytes = mangle(&bytes, Msg::Request, &mut Rng(seed));
        }
        for (at, byte, how) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = at.index(bytes.len());
            match how {
                0 => bytes.truncate(at),
                1 => bytes[at] ^= byte.max(1),
                _ => bytes.insert(at, byte),
            }
        }
        check_same(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_fail_exactly_when_prost_fails(bytes in vec(any::<u8>(), 0..64)) {
        check_same(&bytes)?;
        // Each counted span takes at least two bytes of what was sent.
        prop_assert!(count_nested(Reader::new(&bytes), &[1, 2, 2]) <= bytes.len() / 2);
    }

    #[test]
    fn mutated_fixture_fails_exactly_when_prost_fails(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = fixture(PB_FIXTURE);
        let at = at.index(bytes.len());
        if truncate {
            bytes.truncate(at);
        } else {
            bytes[at] ^= byte.max(1);
        }
        check_same(&bytes)?;
    }
}

#[test]
fn captured_payloads_decode_like_prost() {
    for name in [
        PB_FIXTURE,
        "otlp-logs-traces-python.pb",
        // Not trace requests; both decoders must still agree on them.
        "otlp-logs-python.pb",
        "otlp-traces-python-rag-chain.json",
        "jaeger-thrift-compact-emitbatch-python-rag-chain.bin",
    ] {
        assert_same(&fixture(name));
    }
    assert_eq!(decode_wire(&fixture(PB_FIXTURE)).unwrap().spans.len(), 14);
    assert_eq!(
        decode_wire(&fixture("otlp-logs-traces-python.pb"))
            .unwrap()
            .spans
            .len(),
        1
    );
}

#[test]
fn fields_in_reverse_order_decode_like_prost() {
    let body = fixture(PB_FIXTURE);
    let reversed = reversed(&body, Msg::Request);
    assert_ne!(reversed, body);
    assert_same(&reversed);
    // Reversal puts each span's resource and scope after the spans.
    let decoded = decode_wire(&reversed).unwrap();
    assert_eq!(decoded.spans.len(), 14);
    assert!(decoded
        .spans
        .iter()
        .all(|s| s.service_name() == "rag-chain" && s.scope.name == "__main__"));
}

#[test]
fn status_sent_twice_is_merged() {
    let mut span = good_span("s");
    span.status = Some(pt::Status {
        message: "first".into(),
        code: 2,
    });
    let mut bytes = span.encode_to_vec();
    let second = pt::Status {
        message: "second".into(),
        code: 0,
    };
    bytes.extend(len_field(15, &second.encode_to_vec()));
    let body = request_of(&[bytes]);
    assert_same(&body);
    let status = &decode_wire(&body).unwrap().spans[0].status;
    assert_eq!(status.code, StatusCode::Error);
    assert_eq!(status.message, "second");
}

#[test]
fn resource_and_scope_sent_twice_and_after_the_spans_are_merged() {
    let kv = |k: &str| pc::KeyValue {
        key: k.into(),
        ..Default::default()
    };
    let resource = |k: &str| pr::Resource {
        attributes: vec![kv(k)],
        ..Default::default()
    };
    let scope = |name: &str, version: &str| pc::InstrumentationScope {
        name: name.into(),
        version: version.into(),
        ..Default::default()
    };
    let mut scope_spans = len_field(2, &good_span("a").encode_to_vec());
    scope_spans.extend(len_field(1, &scope("lib", "1").encode_to_vec()));
    scope_spans.extend(len_field(2, &good_span("b").encode_to_vec()));
    scope_spans.extend(len_field(1, &scope("", "2").encode_to_vec()));
    let mut resource_spans = len_field(2, &scope_spans);
    resource_spans.extend(len_field(1, &resource("r1").encode_to_vec()));
    resource_spans.extend(len_field(1, &resource("r2").encode_to_vec()));
    let body = len_field(1, &resource_spans);
    assert_same(&body);

    let decoded = decode_wire(&body).unwrap();
    assert_eq!(decoded.spans.len(), 2);
    for span in &decoded.spans {
        // An empty name is not sent, so the first one stays.
        assert_eq!(
            (span.scope.name.as_str(), span.scope.version.as_str()),
            ("lib", "2")
        );
        let keys: Vec<&str> = span
            .resource
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(keys, ["r1", "r2"]);
    }
    assert!(Arc::ptr_eq(
        &decoded.spans[0].resource,
        &decoded.spans[1].resource
    ));
}

#[test]
fn each_resource_spans_shares_one_resource() {
    let resource_spans = pt::ResourceSpans {
        scope_spans: vec![pt::ScopeSpans {
            spans: vec![good_span("a"), good_span("b")],
            ..Default::default()
        }],
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans.clone(), resource_spans],
    };
    let decoded = decode_wire(&request.encode_to_vec()).unwrap();
    let s = &decoded.spans;
    assert!(Arc::ptr_eq(&s[0].resource, &s[1].resource));
    assert!(Arc::ptr_eq(&s[2].resource, &s[3].resource));
    assert!(!Arc::ptr_eq(&s[1].resource, &s[2].resource));
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let body = fixture(PB_FIXTURE);
    for seed in 1..40 {
        let mut rng = Rng(seed);
        let mangled = mangle_unknown_only(&body, Msg::Request, &mut rng);
        assert_same(&mangled);
        assert_eq!(
            decode_wire(&mangled).unwrap(),
            decode_wire(&body).unwrap(),
            "seed {seed}"
        );
    }
}

#[test]
fn any_value_arms_merge_like_prost() {
    let array = |items: &[i64]| {
        let values: Vec<u8> = items
            .iter()
            .flat_map(|i| {
                let int = encode(&[Field {
                    tag: 3,
                    value: Value::Varint(*i as u64),
                }]);
                len_field(1, &int)
            })
            .collect();
        len_field(5, &values)
    };
    let string = len_field(1, b"s");
    let cases: [(Vec<u8>, AnyValue); 4] = [
        (
            [array(&[1]), array(&[2, 3])].concat(),
            AnyValue::Array(vec![AnyValue::Int(1), AnyValue::Int(2), AnyValue::Int(3)]),
        ),
        (
            [array(&[1]), string.clone(), array(&[2])].concat(),
            AnyValue::Array(vec![AnyValue::Int(2)]),
        ),
        ([array(&[1]), string].concat(), AnyValue::String("s".into())),
        (
            [array(&[1]), vec![0x40, 0x07]].concat(),
            AnyValue::Empty, // string_value_strindex
        ),
    ];
    for (value, want) in cases {
        // The value split over two `value` fields after its first arm
        // (whose length fits one byte) merges the same way.
        let first = 2 + usize::from(value[1]);
        let split = [len_field(2, &value[..first]), len_field(2, &value[first..])].concat();
        for kv in [len_field(2, &value), split] {
            let mut span = good_span("s").encode_to_vec();
            span.extend(len_field(9, &[len_field(1, b"k"), kv].concat()));
            let body = request_of(&[span]);
            assert_same(&body);
            assert_eq!(
                decode_wire(&body).unwrap().spans[0].attributes[0].value,
                want
            );
        }
    }
}

#[test]
fn negative_enums_map_like_decode_request() {
    let mut span = good_span("s");
    span.kind = -1;
    span.status = Some(pt::Status {
        message: String::new(),
        code: -7,
    });
    let body = request_of(&[span.encode_to_vec()]);
    assert_same(&body);
    let span = &decode_wire(&body).unwrap().spans[0];
    assert_eq!(
        (span.kind, span.status.code),
        (SpanKind::Unspecified, StatusCode::Unset)
    );
}

#[test]
fn every_field_with_every_wire_type_decodes_like_prost() {
    let values = [
        Value::Varint(1),
        Value::Varint(u64::MAX),
        Value::Fixed64(3),
        Value::Fixed32(4),
        Value::Len(Vec::new()),
        Value::Len(b"\xff".to_vec()),
        Value::Len(vec![0x08, 0x01]),
        Value::Group(Vec::new()),
    ];
    let (mut ok, mut failed) = (0, 0);
    for msg in Msg::ALL {
        for tag in 1..=msg.unknown_tag(1) {
            for value in &values {
                let field = Field {
                    tag,
                    value: value.clone(),
                };
                let body = inside(msg, &encode(&[field]));
                if let Err(e) = check_same(&body) {
                    panic!("{msg:?} field {tag} = {value:?}: {e}");
                }
                match via_prost(&body) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
        }
    }
    // Both outcomes were exercised.
    assert!(ok > 100 && failed > 100, "{ok} ok, {failed} failed");
}

#[test]
fn enum_varints_keep_their_low_32_bits_like_prost() {
    let varint = |tag: u32, v: u64| {
        encode(&[Field {
            tag,
            value: Value::Varint(v),
        }])
    };
    let cases = [
        ((1 << 32) | 2, SpanKind::Server, StatusCode::Error),
        (257, SpanKind::Unspecified, StatusCode::Unset),
        (u64::MAX, SpanKind::Unspecified, StatusCode::Unset),
        ((7 << 60) | 1, SpanKind::Internal, StatusCode::Ok),
    ];
    for (value, kind, code) in cases {
        let status = len_field(15, &varint(3, value));
        let span = [good_span("s").encode_to_vec(), varint(6, value), status].concat();
        let body = request_of(&[span]);
        assert_same(&body);
        let span = &decode_wire(&body).unwrap().spans[0];
        assert_eq!((span.kind, span.status.code), (kind, code), "{value:#x}");
    }
}

/// An attribute value of `depth` arrays around an int, built as bytes:
/// prost's own encoder and `Drop` would recurse once per level.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut value = vec![0x18, 0x01];
    for _ in 0..depth {
        value = len_field(5, &len_field(1, &value));
    }
    let kv = [len_field(1, b"deep"), len_field(2, &value)].concat();
    let span = [good_span("s").encode_to_vec(), len_field(9, &kv)].concat();
    request_of(&[span])
}

#[test]
fn nesting_is_limited_where_prost_limits_it() {
    for depth in 40..=55 {
        assert_same(&nested_arrays(depth));
    }
    // Span fields are 3 messages in; each array level takes 2 more.
    assert!(decode_wire(&nested_arrays(47)).is_ok());
    let err = decode_wire(&nested_arrays(48)).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
    // Far past the limit: an error, not a stack overflow.
    assert!(decode_wire(&nested_arrays(5000)).is_err());
}

#[test]
fn nested_unknown_groups_are_limited_where_prost_limits_them() {
    // Field 9 (unknown in a request) as `depth` nested groups.
    let group = |depth: usize| [vec![0x4b; depth], vec![0x4c; depth]].concat();
    for depth in 95..=105 {
        assert_same(&group(depth));
    }
    assert!(decode_wire(&group(100)).is_ok());
    assert!(decode_wire(&group(101)).is_err());
    assert!(decode_wire(&group(100_000)).is_err());
}

#[test]
fn malformed_bodies_fail_like_prost() {
    let bad_utf8 = b"\xc3\x28".as_slice();
    let span = good_span("s").encode_to_vec();
    let cases: Vec<Vec<u8>> = vec![
        // Strings the model does not keep must still be UTF-8.
        len_field(1, &len_field(3, bad_utf8)),
        request_of(&[[span.clone(), len_field(3, bad_utf8)].concat()]),
        len_field(1, &len_field(1, &len_field(3, &len_field(3, bad_utf8)))),
        len_field(
            1,
            &len_field(2, &len_field(1, &len_field(3, &len_field(1, bad_utf8)))),
        ),
        // A known field with the wrong wire type: kind as fixed32.
        request_of(&[[span.clone(), vec![0x35, 1, 0, 0, 0]].concat()]),
        // Varints of an unknown field: 11 bytes long, 10th byte over 64
        // bits, cut short.
        [vec![0x10], vec![0xff; 10], vec![0x01]].concat(),
        [vec![0x10], vec![0xff; 9], vec![0x02]].concat(),
        vec![0x10, 0xff],
        // Keys: over 32 bits, wire types 6 and 7, field 0, lone end-group.
        [vec![0x80, 0x80, 0x80, 0x80, 0x10], vec![0]].concat(),
        vec![0x0e],
        vec![0x0f],
        vec![0x00, 0x00],
        vec![0x0c],
        vec![0x14],
        // A group closed by another field's end-group.
        vec![0x4b, 0x54],
        // Lengths past the end, of the body and of the enclosing message.
        vec![0x0a, 0x05, 0x01],
        len_field(1, &[0x1a, 0x09, b'a']),
        [len_field(1, &[0x1a, 0x03, b'a']), b"bc".to_vec()].concat(),
        vec![
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    ];
    for body in cases {
        assert!(via_prost(&body).is_err(), "{body:x?}");
        assert!(decode_wire(&body).is_err(), "{body:x?}");
    }
}

#[test]
fn errors_name_the_field_path() {
    let bad = [good_span("ok").encode_to_vec(), len_field(5, b"\xc3\x28")].concat();
    let body = request_of(&[
        good_span("a").encode_to_vec(),
        good_span("b").encode_to_vec(),
        bad,
    ]);
    let err = decode_wire(&body).unwrap_err();
    assert!(matches!(err, DecodeError::Protobuf(_)));
    let text = err.to_string();
    assert!(
        text.starts_with("invalid OTLP protobuf: ")
            && text.contains("resourceSpans[0].scopeSpans[0].spans[2].name: string is not UTF-8"),
        "{text}"
    );

    let text = decode_wire(&[0x0a, 0x05, 0x01]).unwrap_err().to_string();
    assert!(
        text.contains("resourceSpans[0]: the data ends inside this field"),
        "{text}"
    );
}

#[test]
fn bad_ids_are_rejected_and_reported_like_decode_request() {
    let mut spans = [
        good_span("a"),
        good_span("b"),
        good_span("c"),
        good_span("d"),
    ];
    spans[0].span_id = vec![1; 6];
    spans[1].parent_span_id = vec![0; 8];
    spans[2].links = vec![
        pt::span::Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 9],
            ..Default::default()
        },
        pt::span::Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            ..Default::default()
        },
    ];
    // A rejected span's bad links are not reported.
    spans[3].trace_id = vec![0; 16];
    spans[3].links = spans[2].links.clone();
    let body = request_of(&spans.iter().map(|s| s.encode_to_vec()).collect::<Vec<_>>());
    assert_same(&body);
    let decoded = decode_wire(&body).unwrap();
    assert_eq!(
        (decoded.spans.len(), decoded.rejected, decoded.dropped_links),
        (2, 2, 1)
    );
    assert_eq!(
        decoded.errors,
        [
            "resourceSpans[0].scopeSpans[0].spans[0]: spanId has 6 bytes, want 8",
            "resourceSpans[0].scopeSpans[0].spans[2].links[0]: spanId has 9 bytes, want 8 (link dropped, span kept)",
            "resourceSpans[0].scopeSpans[0].spans[3]: traceId is all zeros, which is not a valid id",
        ]
    );
}

/// 16 MiB of empty span messages (2 bytes each, each rejected for its
/// missing ids) reserved a model span apiece, about 2 GB; the reservation
/// is now bounded by what the bytes could hold.
#[test]
fn empty_spans_reserve_by_bytes_not_by_count() {
    let empty_spans = vec![pt::Span::default(); 100_000];
    let request = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            scope_spans: vec![pt::ScopeSpans {
                spans: empty_spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = request.encode_to_vec();
    let decoded = decode_wire(&body).unwrap();
    assert!(decoded.spans.is_empty());
    assert_eq!(decoded.rejected, 100_000);
    assert!(
        decoded.spans.capacity() <= body.len() / MIN_SPAN_WIRE_BYTES,
        "{} spans reserved for {} bytes",
        decoded.spans.capacity(),
        body.len()
    );
}

/// The worst shapes (empty attributes, events, array items and spans, each
/// 2 bytes on the wire) decode within the bound their size gives, and a
/// budget below what they need stops them with `TooLarge`.
#[test]
fn tiny_items_decode_within_their_bound_and_stop_at_a_smaller_budget() {
    let empty_value = pc::AnyValue {
        value: Some(pc::any_value::Value::ArrayValue(pc::ArrayValue {
            values: vec![pc::AnyValue::default(); 20_000],
        })),
    };
    let mut span = pt::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: vec![pc::KeyValue::default(); 20_000],
        events: vec![pt::span::Event::default(); 20_000],
        ..Default::default()
    };
    span.attributes.push(pc::KeyValue {
        key: "array".into(),
        value: Some(empty_value),
        ..Default::default()
    });
    let mut spans = vec![pt::Span::default(); 20_000];
    spans.push(span);
    let request = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            scope_spans: vec![pt::ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();
    let bound = crate::otlp::protobuf_bound(bytes.len());
    let (decoded, used) = decode_wire_within(&bytes, bound).unwrap();
    assert_eq!(decoded.spans.len(), 1);
    assert!(used <= bound, "{used} > {bound}");
    let err = decode_wire_within(&bytes, used / 2).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("send smaller batches"), "{err}");
}
