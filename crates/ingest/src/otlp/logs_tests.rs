use chaintrace_model::{AnyValue, Severity, UnixNanos};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue as PbValue, KeyValue as PbKv};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as PbLog, ResourceLogs, ScopeLogs};
use prost::Message;

use super::*;
use crate::otlp::wire::decode_logs_within_at;
use crate::testing::fixture as testdata;

const NOW: UnixNanos = UnixNanos(1_700_000_000_000_000_000);

/// The wire decoder and prost + [`decode_logs_request_at`] on `body`: both
/// fail, or both give the same records.
fn assert_agree(body: &[u8]) -> Option<DecodedLogs> {
    let wire = decode_logs_within_at(body, usize::MAX, NOW).map(|(d, _)| d);
    let prost = ExportLogsServiceRequest::decode(body).map(|r| decode_logs_request_at(r, NOW));
    match (wire, prost) {
        (Ok(w), Ok(p)) => {
            assert_eq!(w.logs, p.logs);
            assert_eq!((w.rejected, &w.errors), (p.rejected, &p.errors));
            Some(w)
        }
        (Err(_), Err(_)) => None,
        (w, p) => panic!("disagree on {} bytes: wire {w:?}, prost {p:?}", body.len()),
    }
}

#[test]
fn the_python_sdks_logs_decode_with_their_span_ids() {
    let body = testdata("otlp-logs-python.pb");
    let decoded = assert_agree(&body).expect("decodes");
    assert_eq!(decoded.rejected, 0);
    let messages: Vec<String> = decoded.logs.iter().map(|l| l.message()).collect();
    assert_eq!(
        messages,
        ["API request sent", "retrying after RateLimitError"]
    );
    let warn = &decoded.logs[1];
    assert_eq!(warn.severity(), Some(Severity::Warn));
    assert_eq!(warn.severity_text, "WARN");
    assert!(warn.trace_id.is_some() && warn.span_id.is_some());
    assert_eq!(
        chaintrace_model::find_attr(&warn.attributes, "retry_attempt").and_then(AnyValue::as_i64),
        Some(1)
    );
    assert_ne!(warn.time, NOW, "the record's own time");
    assert_eq!(warn.service_name(), "rag-chain");

    // The span they were written in is in the companion traces body.
    let spans = crate::otlp::decode_protobuf(&testdata("otlp-logs-traces-python.pb")).unwrap();
    assert_eq!(spans.spans.len(), 1);
    assert_eq!(Some(spans.spans[0].trace_id), warn.trace_id);
    assert_eq!(Some(spans.spans[0].span_id), warn.span_id);
}

#[test]
fn mutated_bodies_decode_as_prost_decodes_them() {
    let body = testdata("otlp-logs-python.pb");
    // Every single-byte change at every position, with three values:
    // deterministic, and it reaches every field of the real body.
    for i in 0..body.len() {
        for value in [0x00, 0x7f, body[i] ^ 0x55] {
            let mut mutated = body.clone();
            mutated[i] = value;
            assert_agree(&mutated);
        }
        assert_agree(&body[..i]);
    }
}

fn record(trace_id: Vec<u8>, span_id: Vec<u8>) -> PbLog {
    PbLog {
        time_unix_nano: 0,
        observed_time_unix_nano: 0,
        severity_number: 99,
        severity_text: "error".into(),
        body: Some(PbValue {
            value: Some(any_value::Value::StringValue("boom".into())),
        }),
        attributes: vec![PbKv {
            key: "k".into(),
            value: None,
            ..Default::default()
        }],
        trace_id,
        span_id,
        ..Default::default()
    }
}

#[test]
fn bad_ids_reject_their_record_alone_and_zero_ids_mean_none() {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(vec![1; 5], vec![]),
                    record(vec![0; 16], vec![0; 8]),
                    record(vec![7; 16], vec![1; 7]),
                    record(vec![7; 16], vec![8; 8]),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let decoded = assert_agree(&request.encode_to_vec()).unwrap();
    assert_eq!(decoded.rejected, 2);
    assert_eq!(
        decoded.errors,
        [
            "resourceLogs[0].scopeLogs[0].logRecords[0]: traceId has 5 bytes, want 16",
            "resourceLogs[0].scopeLogs[0].logRecords[2]: spanId has 7 bytes, want 8",
        ]
    );
    assert_eq!(decoded.logs.len(), 2);
    assert_eq!(decoded.logs[0].trace_id, None);
    assert_eq!(decoded.logs[0].span_id, None);
    assert!(decoded.logs[1].trace_id.is_some());
    // No time at all: the time it arrived. Severity 99 is out of range,
    // so the text decides.
    assert_eq!(decoded.logs[0].time, NOW);
    assert_eq!(decoded.logs[0].severity_number, 0);
    assert_eq!(decoded.logs[0].severity(), Some(Severity::Error));
    let response = decoded.response();
    assert_eq!(response.partial_success.unwrap().rejected_log_records, 2);
}

#[test]
fn json_logs_decode_and_tiny_containers_are_refused_before_decoding() {
    let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
        "scopeLogs":[{"scope":{"name":"app"},"logRecords":[{"timeUnixNano":"42","severityNumber":17,
        "body":{"stringValue":"failed"},"traceId":"5b8efff798038103d269b633813fc60c"}]}]}]}"#;
    let decoded = decode_logs_json(body).unwrap();
    assert_eq!(decoded.logs.len(), 1);
    assert_eq!(decoded.logs[0].time, UnixNanos(42));
    assert_eq!(decoded.logs[0].service_name(), "api");
    assert_eq!(decoded.logs[0].scope.name, "app");
    assert!(decoded.logs[0].span_id.is_none());

    let err = decode_logs_json(b"{\"resourceLogs\": 3}").unwrap_err();
    assert!(matches!(err, DecodeError::Json(_)), "{err}");
    let empties = format!("{{\"resourceLogs\":[{}{{}}]}}", "{},".repeat(100_000));
    let err = decode_logs_shaped(
        empties.as_bytes(),
        json_shape(empties.as_bytes()).unwrap(),
        1 << 20,
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err}");
}

#[test]
fn a_body_of_empty_records_is_refused_within_its_budget() {
    // 2-byte empty records: each would become a whole model record.
    let mut body = Vec::new();
    let mut scope = Vec::new();
    for _ in 0..50_000 {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut resource = vec![0x12];
    put_len(&mut resource, scope.len());
    resource.extend_from_slice(&scope);
    body.push(0x0a);
    put_len(&mut body, resource.len());
    body.extend_from_slice(&resource);
    let err = decode_logs_within_at(&body, 1 << 20, NOW).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err}");
    let (decoded, used) = decode_logs_within_at(&body, usize::MAX, NOW).unwrap();
    assert_eq!(decoded.logs.len(), 50_000);
    assert!(
        used <= crate::otlp::logs_protobuf_bound(body.len()),
        "{used}"
    );
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}
