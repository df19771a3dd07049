//! The decoders, one field at a time, in both formats.

use std::collections::HashMap;
use std::sync::Arc;

use chaintrace_model::{AnyValue, KeyValue, Span, SpanKind, StatusCode};
use prost::Message;

use super::proto::{ListOfSpans, ProtoAnnotation, ProtoEndpoint, ProtoSpan};
use super::*;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

/// One span of every field, as OpenTelemetry's JSON exporter writes an
/// error span with an exception event, plus a remote endpoint.
fn full_json() -> String {
    format!(
        r#"[{{
        "traceId": "{TRACE}", "id": "eee19b7ec3c1b174", "parentId": "0102030405060708",
        "name": "api_call", "kind": "CLIENT",
        "timestamp": 1700000000000123, "duration": 40000,
        "localEndpoint": {{"serviceName": "rag-chain", "ipv4": "10.0.0.7", "port": 8080}},
        "remoteEndpoint": {{"serviceName": "anthropic", "ipv6": "2001:db8::1", "port": 443}},
        "annotations": [
            {{"timestamp": 1700000000000200, "value": "{{\"exception\": {{\"exception.escaped\": false, \"exception.message\": \"Rate limit exceeded\", \"exception.type\": \"RateLimitError\", \"retries\": 3, \"wait\": 0.5, \"codes\": [429, 503]}}}}"}},
            {{"timestamp": 1700000000000300, "value": "ws"}},
            {{"timestamp": 1700000000000400, "value": "{{\"a\": {{}}, \"b\": {{}}}}"}}
        ],
        "tags": {{
            "input_tokens": "1250", "tools": "[\"search\",\"calc\"]",
            "otel.status_code": "ERROR", "error": "RateLimitError: Rate limit exceeded",
            "otel.library.name": "rag_chain_test", "otel.library.version": "0.1.0"
        }},
        "debug": true
    }}]"#
    )
}

fn full_proto() -> Vec<u8> {
    let span = ProtoSpan {
        trace_id: hex::decode(TRACE).unwrap(),
        parent_id: hex::decode("0102030405060708").unwrap(),
        id: hex::decode("eee19b7ec3c1b174").unwrap(),
        kind: 1,
        name: "api_call".into(),
        timestamp: 1_700_000_000_000_123,
        duration: 40_000,
        local_endpoint: Some(ProtoEndpoint {
            service_name: "rag-chain".into(),
            ipv4: vec![10, 0, 0, 7],
            ipv6: vec![],
            port: 8080,
        }),
        remote_endpoint: Some(ProtoEndpoint {
            service_name: "anthropic".into(),
            ipv4: vec![],
            ipv6: "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec(),
            port: 443,
        }),
        annotations: vec![
            ProtoAnnotation {
                timestamp: 1_700_000_000_000_200,
                value: r#"{"exception": {"exception.escaped": false, "exception.message": "Rate limit exceeded", "exception.type": "RateLimitError", "retries": 3, "wait": 0.5, "codes": [429, 503]}}"#.into(),
            },
            ProtoAnnotation {
                timestamp: 1_700_000_000_000_300,
                value: "ws".into(),
            },
            ProtoAnnotation {
                timestamp: 1_700_000_000_000_400,
                value: r#"{"a": {}, "b": {}}"#.into(),
            },
        ],
        tags: HashMap::from([
            ("input_tokens".to_string(), "1250".to_string()),
            ("tools".into(), r#"["search","calc"]"#.into()),
            ("otel.status_code".into(), "ERROR".into()),
            ("error".into(), "RateLimitError: Rate limit exceeded".into()),
            ("otel.library.name".into(), "rag_chain_test".into()),
            ("otel.library.version".into(), "0.1.0".into()),
        ]),
        debug: true,
        shared: false,
    };
    ListOfSpans { spans: vec![span] }.encode_to_vec()
}

/// What both formats must give for the full span.
fn assert_full(span: &Span) {
    assert_eq!(span.trace_id.to_hex(), TRACE);
    assert_eq!(span.span_id.to_hex(), "eee19b7ec3c1b174");
    assert_eq!(
        span.parent_span_id.map(|p| p.to_hex()).as_deref(),
        Some("0102030405060708")
    );
    assert_eq!(span.name, "api_call");
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.start.0, 1_700_000_000_000_123_000);
    assert_eq!(span.end.0 - span.start.0, 40_000_000);

    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message, "RateLimitError: Rate limit exceeded");
    assert_eq!(span.scope.name, "rag_chain_test");
    assert_eq!(span.scope.version, "0.1.0");

    assert_eq!(span.resource.service_name(), "rag-chain");
    assert_eq!(
        span.resource.attributes,
        vec![
            KeyValue::new("service.name", "rag-chain"),
            KeyValue::new(LOCAL_ADDRESS_KEY, "10.0.0.7"),
            KeyValue::new(LOCAL_PORT_KEY, 8080i64),
        ]
    );

    // Tags the exporter wrote for status and scope are gone; the rest
    // stay strings, the array as its JSON text; the remote endpoint follows.
    let mut attributes: Vec<(String, AnyValue)> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.clone()))
        .collect();
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        attributes,
        vec![
            ("input_tokens".to_string(), AnyValue::from("1250")),
            (PEER_ADDRESS_KEY.into(), "2001:db8::1".into()),
            (PEER_PORT_KEY.into(), AnyValue::Int(443)),
            (PEER_SERVICE_KEY.into(), "anthropic".into()),
            ("tools".into(), r#"["search","calc"]"#.into()),
        ]
    );
    assert_eq!(
        span.attr("input_tokens").and_then(AnyValue::as_i64),
        Some(1250)
    );

    assert_eq!(span.events.len(), 3);
    let exception = &span.events[0];
    assert_eq!(exception.name, "exception");
    assert_eq!(exception.time.0, 1_700_000_000_000_200_000);
    let attr = |key: &str| {
        exception
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(attr("exception.type"), Some("RateLimitError".into()));
    assert_eq!(
        attr("exception.message"),
        Some("Rate limit exceeded".into())
    );
    assert_eq!(attr("exception.escaped"), Some(AnyValue::Bool(false)));
    assert_eq!(attr("retries"), Some(AnyValue::Int(3)));
    assert_eq!(attr("wait"), Some(AnyValue::Double(0.5)));
    assert_eq!(
        attr("codes"),
        Some(AnyValue::Array(vec![
            AnyValue::Int(429),
            AnyValue::Int(503)
        ]))
    );
    assert_eq!(span.events[1].name, "ws");
    assert!(span.events[1].attributes.is_empty());
    // Two members: not an OpenTelemetry event, so the text is the name.
    assert_eq!(span.events[2].name, r#"{"a": {}, "b": {}}"#);
}

#[test]
fn every_json_field_maps_and_the_exporters_tags_are_taken_back() {
    let decoded = decode_json(full_json().as_bytes()).unwrap();
    assert_eq!(decoded.rejected, 0, "{:?}", decoded.errors);
    assert_eq!(decoded.spans.len(), 1);
    assert_full(&decoded.spans[0]);
}

#[test]
fn every_protobuf_field_maps_as_json_does() {
    let decoded = decode_protobuf(&full_proto()).unwrap();
    assert_eq!(decoded.rejected, 0, "{:?}", decoded.errors);
    assert_eq!(decoded.spans.len(), 1);
    assert_full(&decoded.spans[0]);
    let json = decode_json(full_json().as_bytes()).unwrap();
    assert_eq!(decoded.spans[0].events, json.spans[0].events);
}

#[test]
fn short_ids_are_left_padded_and_absent_kind_is_internal() {
    let body = br#"[{"traceId":"d269b633813fc60c","id":"1b174","name":"local"},
        {"traceId":"d269b633813fc60c","id":"2","parentId":"0000000000000000"}]"#;
    let decoded = decode_json(body).unwrap();
    let span = &decoded.spans[0];
    assert_eq!(span.trace_id.to_hex(), "0000000000000000d269b633813fc60c");
    assert_eq!(span.span_id.to_hex(), "000000000001b174");
    assert_eq!(span.kind, SpanKind::Internal);
    assert_eq!(span.parent_span_id, None);
    assert_eq!(span.resource.service_name(), "unknown_service");
    assert_eq!(
        decoded.spans[1].parent_span_id, None,
        "a zero parent is root"
    );

    let list = ListOfSpans {
        spans: vec![ProtoSpan {
            trace_id: 0xd269_b633_813f_c60cu64.to_be_bytes().to_vec(),
            id: 7u64.to_be_bytes().to_vec(),
            kind: 4,
            ..Default::default()
        }],
    };
    let decoded = decode_protobuf(&list.encode_to_vec()).unwrap();
    assert_eq!(
        decoded.spans[0].trace_id.to_hex(),
        "0000000000000000d269b633813fc60c"
    );
    assert_eq!(decoded.spans[0].kind, SpanKind::Consumer);
}

#[test]
fn bad_ids_reject_only_their_span_and_are_named() {
    let body = format!(
        r#"[{{"traceId":"{TRACE}","id":"0000000000000001","name":"good"}},
        {{"traceId":"xyz","id":"0000000000000002"}},
        {{"traceId":"{TRACE}","id":"00000000000000000"}},
        {{"traceId":"{TRACE}"}},
        {{"traceId":"00000000000000000000000000000000","id":"0000000000000003"}},
        {{"traceId":"{TRACE}","id":"0000000000000004","parentId":"nothex"}}]"#
    );
    let decoded = decode_json(body.as_bytes()).unwrap();
    assert_eq!(decoded.spans.len(), 1);
    assert_eq!(decoded.spans[0].name, "good");
    assert_eq!(decoded.rejected, 5);
    assert_eq!(
        decoded.errors,
        vec![
            r#"spans[1].traceId: traceId "xyz" is not hex"#.to_string(),
            r#"spans[2].id: id "00000000000000000" has 17 hex digits, want at most 16"#.into(),
            "spans[3].id: spanId is all zeros, which is not a valid id".into(),
            "spans[4].traceId: traceId is all zeros, which is not a valid id".into(),
            r#"spans[5].parentId: parentId "nothex" is not hex"#.into(),
        ]
    );

    let list = ListOfSpans {
        spans: vec![
            ProtoSpan {
                trace_id: vec![1; 12],
                id: vec![1; 8],
                ..Default::default()
            },
            ProtoSpan {
                trace_id: vec![1; 16],
                id: vec![1; 4],
                ..Default::default()
            },
        ],
    };
    let decoded = decode_protobuf(&list.encode_to_vec()).unwrap();
    assert!(decoded.spans.is_empty());
    assert_eq!(decoded.rejected, 2);
    assert_eq!(
        decoded.errors,
        vec![
            "spans[0].traceId: traceId has 12 bytes, want 8 or 16".to_string(),
            "spans[1].id: id has 4 bytes, want 8".into(),
        ]
    );
}

#[test]
fn status_from_otel_status_code_alone_and_description() {
    let body = format!(
        r#"[{{"traceId":"{TRACE}","id":"01","tags":{{"otel.status_code":"OK"}}}},
        {{"traceId":"{TRACE}","id":"02","tags":{{"otel.status_code":"ERROR","otel.status_description":"boom"}}}},
        {{"traceId":"{TRACE}","id":"03","tags":{{"error":""}}}},
        {{"traceId":"{TRACE}","id":"04","tags":{{"otel.status_code":"maybe","otel.status_description":"why"}}}}]"#
    );
    let decoded = decode_json(body.as_bytes()).unwrap();
    let s = &decoded.spans;
    assert_eq!(
        (s[0].status.code, s[0].status.message.as_str()),
        (StatusCode::Ok, "")
    );
    assert_eq!(
        (s[1].status.code, s[1].status.message.as_str()),
        (StatusCode::Error, "boom")
    );
    assert!(s[1].attributes.is_empty(), "{:?}", s[1].attributes);
    // The exporter writes `error` with an empty description: still failed.
    assert_eq!(
        (s[2].status.code, s[2].status.message.as_str()),
        (StatusCode::Error, "")
    );
    // Values the exporters never write stay attributes.
    assert_eq!(s[3].status.code, StatusCode::Unset);
    assert_eq!(
        s[3].attr("otel.status_code"),
        Some(&AnyValue::from("maybe"))
    );
    assert_eq!(
        s[3].attr("otel.status_description"),
        Some(&AnyValue::from("why"))
    );
}

#[test]
fn scope_names_win_over_library_names_and_scopes_and_resources_are_shared() {
    let body = format!(
        r#"[{{"traceId":"{TRACE}","id":"01","localEndpoint":{{"serviceName":"a"}},
            "tags":{{"otel.scope.name":"new","otel.library.name":"old","otel.scope.version":"2"}}}},
        {{"traceId":"{TRACE}","id":"02","localEndpoint":{{"serviceName":"a"}},
            "tags":{{"otel.scope.name":"new","otel.scope.version":"2"}}}},
        {{"traceId":"{TRACE}","id":"03","localEndpoint":{{"serviceName":"b","ipv4":"1.2.3.4","ipv6":"::1"}}}}]"#
    );
    let decoded = decode_json(body.as_bytes()).unwrap();
    let s = &decoded.spans;
    assert_eq!(
        (s[0].scope.name.as_str(), s[0].scope.version.as_str()),
        ("new", "2")
    );
    assert!(s[0].attributes.is_empty(), "{:?}", s[0].attributes);
    assert!(Arc::ptr_eq(&s[0].scope, &s[1].scope));
    assert!(Arc::ptr_eq(&s[0].resource, &s[1].resource));
    assert!(!Arc::ptr_eq(&s[0].resource, &s[2].resource));
    assert_eq!(
        s[2].resource.attributes,
        vec![
            KeyValue::new("service.name", "b"),
            KeyValue::new(LOCAL_ADDRESS_KEY, "1.2.3.4"),
            KeyValue::new(LOCAL_IPV6_KEY, "::1"),
        ]
    );
}

#[test]
fn a_shared_span_gets_its_own_id_under_the_client_half() {
    let client = format!(
        r#"{{"traceId":"{TRACE}","id":"00000000000000aa","parentId":"0000000000000001","kind":"CLIENT","name":"get"}}"#
    );
    let server = format!(
        r#"{{"traceId":"{TRACE}","id":"00000000000000aa","parentId":"0000000000000001","kind":"SERVER","name":"get","shared":true}}"#
    );
    let decoded = decode_json(format!("[{client},{server}]").as_bytes()).unwrap();
    let (c, s) = (&decoded.spans[0], &decoded.spans[1]);
    assert_eq!(c.span_id.to_hex(), "00000000000000aa");
    assert_ne!(s.span_id, c.span_id);
    assert_eq!(s.parent_span_id, Some(c.span_id));
    assert_eq!(
        s.attr(SHARED_SPAN_ID_KEY),
        Some(&AnyValue::from("00000000000000aa"))
    );
    // The same id again: a retry dedupes in the store.
    let again = decode_json(format!("[{server}]").as_bytes()).unwrap();
    assert_eq!(again.spans[0].span_id, s.span_id);
}

#[test]
fn times_saturate_and_tag_scalars_are_kept_as_text() {
    let body = format!(
        r#"[{{"traceId":"{TRACE}","id":"01","timestamp":18446744073709551615,"duration":5,
            "tags":{{"n":7,"b":true,"f":1.5,"gone":null}}}}]"#
    );
    let decoded = decode_json(body.as_bytes()).unwrap();
    let span = &decoded.spans[0];
    assert_eq!(span.start.0, u64::MAX);
    assert_eq!(span.end.0, u64::MAX);
    assert_eq!(span.attr("n"), Some(&AnyValue::from("7")));
    assert_eq!(span.attr("b"), Some(&AnyValue::from("true")));
    assert_eq!(span.attr("f"), Some(&AnyValue::from("1.5")));
    assert_eq!(span.attr("gone"), None);
}

#[test]
fn bad_json_is_refused_naming_the_field_or_position() {
    let cases: [(&[u8], &str); 6] = [
        (
            br#"[{"traceId":"01","id":"02"},{"traceId":"01","id":"02","timestamp":"soon"}]"#,
            "invalid Zipkin v2 JSON: spans[1].timestamp: invalid type: string \"soon\"",
        ),
        (
            br#"[{"traceId":"01","id":"02","kind":"SIDEWAYS"}]"#,
            "invalid Zipkin v2 JSON: spans[0].kind: unknown variant `SIDEWAYS`",
        ),
        (
            br#"[{"traceId":"01","id":"02","localEndpoint":{"port":70000}}]"#,
            "invalid Zipkin v2 JSON: spans[0].localEndpoint.port:",
        ),
        (
            br#"[{"traceId":"01","id":"02","tags":{"a":["x"]}}]"#,
            "invalid Zipkin v2 JSON: spans[0].tags.a: invalid type: sequence, expected a string tag value",
        ),
        (br#"{"traceId":"01"}"#, "invalid Zipkin v2 JSON: invalid type: map, expected a sequence"),
        (br#"[{"traceId":"01","#, "invalid Zipkin v2 JSON: spans[0].?: EOF while parsing a value at line 1 column 17"),
    ];
    for (body, want) in cases {
        let err = decode_json(body).unwrap_err().to_string();
        assert!(err.starts_with(want), "{err}\nwant {want}");
    }
    let err = decode_json(b"[] x").unwrap_err().to_string();
    assert!(err.contains("trailing characters"), "{err}");
}

#[test]
fn a_json_depth_bomb_is_refused_before_parsing() {
    let body = format!(
        r#"[{{"traceId":"01","id":"02","extra":{}{}}}]"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let err = decode_json(body.as_bytes()).unwrap_err();
    assert!(matches!(err, ZipkinError::Json(_)));
    assert!(
        err.to_string().contains("JSON nests deeper than 64 levels"),
        "{err}"
    );
}

#[test]
fn truncated_and_garbage_protobuf_is_refused_naming_the_message() {
    let mut body = full_proto();
    body.truncate(body.len() - 10);
    let err = decode_protobuf(&body).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid Zipkin protobuf: at byte 3: a field runs past the end of its message"
    );

    let err = decode_protobuf(b"\xff\xff\xff\xff")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid Zipkin protobuf: at byte "),
        "{err}"
    );

    // Framing right, a name that is not UTF-8: prost names the field.
    let err = decode_protobuf(&[0x0a, 0x03, 0x2a, 0x01, 0xff])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("invalid Zipkin protobuf: "), "{err}");
    assert!(err.contains("Span.name"), "{err}");
}

#[test]
fn bounds_refuse_bodies_that_could_decode_past_the_budget() {
    // 100 000 empty spans in 200 KB of protobuf.
    let body = [0x0a, 0x00].repeat(100_000);
    let (decoded, used) = decode_protobuf_within(&body, usize::MAX).unwrap();
    assert_eq!(decoded.rejected, 100_000);
    assert_eq!(used, 100_000 * PROTOBUF_SPAN_BYTES + 2 * body.len());
    let err = decode_protobuf_within(&body, 64 << 20).unwrap_err();
    assert!(matches!(err, ZipkinError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("send smaller batches"), "{err}");

    let json = format!("[{}]", vec!["{}"; 100_000].join(","));
    let err = decode_json_within(json.as_bytes(), 16 << 20).unwrap_err();
    assert!(matches!(err, ZipkinError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("send smaller batches"), "{err}");
    // A real span passes at a small budget.
    assert!(decode_json_within(full_json().as_bytes(), 64 << 10).is_ok());
}

/// The bounds count what decoding holds, so a real span costs about ten
/// times its size, not the hundreds of times an empty span could: with
/// the default limits (16 MiB bodies, 192 MiB decoded in flight) a full
/// body of real spans is taken, not refused as too large.
#[test]
fn real_spans_are_bounded_near_their_size() {
    let proto = full_proto();
    let (_, used) = decode_protobuf_within(&proto, usize::MAX).unwrap();
    assert_eq!(
        used,
        PROTOBUF_SPAN_BYTES + 9 * PROTOBUF_ITEM_BYTES + 2 * proto.len(),
        "one span, three annotations, six tags"
    );
    assert!(used / proto.len() <= 12, "{used} for {} bytes", proto.len());
    let json = full_json();
    let (_, used) = decode_json_within(json.as_bytes(), usize::MAX).unwrap();
    assert!(used / json.len() <= 16, "{used} for {} bytes", json.len());
}

#[test]
fn bad_protobuf_framing_is_named_by_the_bound_scan() {
    // A span whose tag (field 11) claims 100 bytes of 3.
    let body = [0x0a, 0x05, 0x5a, 0x64, 0x01, 0x02, 0x03];
    let err = decode_protobuf(&body).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid Zipkin protobuf: at byte 4: a field runs past the end of its message"
    );
}
