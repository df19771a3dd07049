//! OTLP/JSON bytes (the body of `POST /v1/traces` with
//! `Content-Type: application/json`) → model spans.
//!
//! The common case goes straight through opentelemetry-proto's serde
//! (`with-serde`), which already takes hex ids, `intValue` as a string or a
//! number, and timestamps as strings or numbers. Where that fails, a slower
//! second pass over a [`serde_json::Value`] repairs what should not cost the
//! whole batch, then decodes with the failing field's path in the error:
//!
//! - an id that is not hex (or has an odd number of digits) rejects only
//!   its span; a link with such an id is dropped, its span kept;
//! - `null` ids count as absent (a `null` parent means root);
//! - enum names (`"SPAN_KIND_SERVER"`, `"STATUS_CODE_ERROR"`), which the
//!   protobuf JSON mapping allows, become their numbers.
//!
//! Syntax errors carry serde_json's line and column; type errors in the
//! second pass name the field path instead, e.g.
//! `resourceSpans[0].scopeSpans[0].spans[2].kind: invalid type: ...`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde_json::{Map, Value};

use super::decode::{
    decode_request, decode_with, link_dropped, DecodeError, DecodedSpans, EarlyFindings, SpanPos,
};

/// Parses an OTLP/JSON `ExportTraceServiceRequest` and decodes its spans.
///
/// ```
/// let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
///     "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
///     "name":"llm_call","kind":3,"startTimeUnixNano":"1","endTimeUnixNano":"2",
///     "attributes":[{"key":"input_tokens","value":{"intValue":450}}]}]}]}]}"#;
/// let decoded = chaintrace_ingest::otlp::decode_json(body).unwrap();
/// assert_eq!(decoded.spans[0].attr("input_tokens").and_then(|v| v.as_i64()), Some(450));
/// assert!(decoded.spans[0].parent_span_id.is_none());
/// ```
pub fn decode_json(body: &[u8]) -> Result<DecodedSpans, DecodeError> {
    decode_json_within(body, usize::MAX)
}

/// Bytes a JSON object or array may become once decoded, at most: the
/// largest OTLP struct (a span, about 300 bytes in prost's shape, then
/// the model's) or a `Vec` of them. Measured shapes sit far below it: an
/// attribute `{"key":…,"value":{"stringValue":…}}` is two containers of
/// about 100 bytes decoded.
pub const JSON_CONTAINER_BYTES: usize = 512;

/// [`decode_json`], refusing first a body whose objects and arrays could
/// decode to more than `max_decoded_bytes` ([`DecodeError::TooLarge`]). A
/// 12 MB body of empty spans (`{},{},…`) raised RSS by 1.8 GiB before the
/// memory budget refused what it had decoded; now one pass over the bytes
/// refuses it.
pub fn decode_json_within(
    body: &[u8],
    max_decoded_bytes: usize,
) -> Result<DecodedSpans, DecodeError> {
    decode_shaped(body, json_shape(body)?, max_decoded_bytes)
}

/// What [`json_shape`] found in a body: its objects and arrays, and the
/// decoded size they bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonShape {
    containers: usize,
    /// The most the body can decode to.
    pub(crate) bound: usize,
}

impl JsonShape {
    /// Refuses a body that could decode to more than `max_decoded_bytes`.
    pub(crate) fn check(self, max_decoded_bytes: usize) -> Result<(), DecodeError> {
        let JsonShape { containers, bound } = self;
        if bound > max_decoded_bytes {
            return Err(DecodeError::TooLarge(format!(
                "the body holds {containers} JSON objects and arrays, which could decode to \
                 {bound} bytes, more than the memory budget of one request \
                 ({max_decoded_bytes} bytes); send smaller batches"
            )));
        }
        Ok(())
    }
}

/// [`decode_json_within`] for a body whose `shape` was already taken (the
/// OTLP/HTTP receiver takes it first, to wait in the decode gate for its
/// bound), so the bytes are scanned once.
pub(crate) fn decode_shaped(
    body: &[u8],
    shape: JsonShape,
    max_decoded_bytes: usize,
) -> Result<DecodedSpans, DecodeError> {
    shape.check(max_decoded_bytes)?;
    match serde_json::from_slice::<ExportTraceServiceRequest>(body) {
        Ok(request) => Ok(decode_request(request)),
        Err(_) => decode_with_repairs(body),
    }
}

/// Checks the depth of `body` and counts its objects and arrays.
pub(crate) fn json_shape(body: &[u8]) -> Result<JsonShape, DecodeError> {
    // serde_json skips unknown fields without a depth limit.
    let containers = chaintrace_model::check_json_depth(body, chaintrace_model::MAX_JSON_DEPTH)
        .map_err(|e| DecodeError::Json(e.to_string()))?;
    let bound = containers
        .saturating_mul(JSON_CONTAINER_BYTES)
        .saturating_add(body.len());
    Ok(JsonShape { containers, bound })
}

fn decode_with_repairs(body: &[u8]) -> Result<DecodedSpans, DecodeError> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let early = repair(&mut value);
    let request: ExportTraceServiceRequest =
        serde_path_to_error::deserialize(value).map_err(|e| {
            if e.path().iter().next().is_none() {
                DecodeError::Json(e.inner().to_string())
            } else {
                DecodeError::Json(format!("{}: {}", e.path(), e.inner()))
            }
        })?;
    Ok(decode_with(request, early))
}

/// Walks `resourceSpans[].scopeSpans[].spans[]` and fixes or records what
/// would otherwise fail the whole request.
fn repair(root: &mut Value) -> EarlyFindings {
    let mut early = EarlyFindings::default();
    for (ri, resource_spans) in array_mut(root, "resourceSpans").enumerate() {
        for (si, scope_spans) in array_mut(resource_spans, "scopeSpans").enumerate() {
            for (pi, span) in array_mut(scope_spans, "spans").enumerate() {
                let pos = SpanPos {
                    resource: ri,
                    scope: si,
                    span: pi,
                };
                if let Some(span) = span.as_object_mut() {
                    if let Some(reason) = repair_span(span, pos, &mut early) {
                        early.rejected.insert(pos, reason);
                    }
                }
            }
        }
    }
    early
}

/// The elements of `value[key]` when that is an array, else nothing.
fn array_mut<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Repairs one span in place; returns why it must be rejected, if it must.
fn repair_span(
    span: &mut Map<String, Value>,
    pos: SpanPos,
    early: &mut EarlyFindings,
) -> Option<String> {
    let mut reason = None;
    for key in ["traceId", "spanId", "parentSpanId"] {
        if let Some(problem) = repair_id(span, key) {
            reason.get_or_insert(problem);
        }
    }

    if let Some(Value::String(name)) = span.get("kind") {
        if let Some(kind) = SpanKind::from_str_name(name) {
            span.insert("kind".into(), Value::from(kind as i32));
        }
    }
    if let Some(Value::Object(status)) = span.get_mut("status") {
        if let Some(Value::String(name)) = status.get("code") {
            if let Some(code) = StatusCode::from_str_name(name) {
                status.insert("code".into(), Value::from(code as i32));
            }
        }
    }

    if let Some(Value::Array(links)) = span.get_mut("links") {
        let mut index = 0;
        links.retain_mut(|link| {
            let problem = link.as_object_mut().and_then(|link| {
                let trace = repair_id(link, "traceId");
                let span = repair_id(link, "spanId");
                trace.or(span)
            });
            if let Some(problem) = &problem {
                early.dropped_links.push(link_dropped(pos, index, problem));
            }
            index += 1;
            problem.is_none()
        });
    }
    reason
}

/// Makes `object[key]` acceptable to the hex deserializer: `null` becomes
/// absent, a non-hex value becomes `""` and is reported.
fn repair_id(object: &mut Map<String, Value>, key: &'static str) -> Option<String> {
    let problem = match object.get(key)? {
        Value::Null => {
            object.remove(key);
            return None;
        }
        Value::String(text) if is_hex(text) => return None,
        Value::String(text) => chaintrace_model::IdError::NotHex {
            what: key,
            text: text.chars().take(64).collect(),
        }
        .to_string(),
        other => format!("{key} is {}, want a hex string", json_type(other)),
    };
    object.insert(key.into(), Value::String(String::new()));
    Some(problem)
}

/// What opentelemetry-proto's hex deserializer (const-hex) accepts.
fn is_hex(text: &str) -> bool {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    digits.len().is_multiple_of(2) && digits.bytes().all(|b| b.is_ascii_hexdigit())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12 MB body of empty spans is refused by its shape, before serde
    /// builds 4 million structs; the captured payload passes at a budget
    /// far below the default.
    #[test]
    fn a_body_of_many_tiny_objects_is_refused_before_decoding() {
        let mut body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
        for i in 0..4_000_000 {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{}");
        }
        body.extend_from_slice(b"]}]}]}");
        let err = decode_json_within(&body, 384 << 20).unwrap_err();
        assert!(
            matches!(&err, DecodeError::TooLarge(m) if m.contains("4000006 JSON objects")),
            "{err}"
        );
        assert!(err.to_string().contains("send smaller batches"), "{err}");

        let fixture = crate::testing::fixture(crate::testing::JSON_FIXTURE);
        let decoded = decode_json_within(&fixture, 4 << 20).unwrap();
        assert!(!decoded.spans.is_empty());
    }
    use crate::testing::{fixture, JSON_FIXTURE};
    use chaintrace_model::AnyValue;

    fn one_span(span_json: &str) -> String {
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span_json}]}}]}}]}}"#)
    }

    const IDS: &str = r#""traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174""#;

    #[test]
    fn int_value_as_string_and_as_number() {
        let body = one_span(&format!(
            r#"{{{IDS},"name":"api_call","attributes":[
                {{"key":"python","value":{{"intValue":"42"}}}},
                {{"key":"node","value":{{"intValue":450}}}}]}}"#
        ));
        let decoded = decode_json(body.as_bytes()).unwrap();
        let span = &decoded.spans[0];
        assert_eq!(span.attr("python"), Some(&AnyValue::Int(42)));
        assert_eq!(span.attr("node"), Some(&AnyValue::Int(450)));
    }

    #[test]
    fn all_any_value_kinds_and_unknown_keys() {
        let body = one_span(&format!(
            r#"{{{IDS},"attributes":[
                {{"key":"s","value":{{"stringValue":"x"}}}},
                {{"key":"b","value":{{"boolValue":true}}}},
                {{"key":"d","value":{{"doubleValue":0.5}}}},
                {{"key":"y","value":{{"bytesValue":"AQI="}}}},
                {{"key":"a","value":{{"arrayValue":{{"values":[{{"intValue":"1"}},{{"stringValue":"two"}}]}}}}}},
                {{"key":"k","value":{{"kvlistValue":{{"values":[{{"key":"inner","value":{{"boolValue":false}}}}]}}}}}},
                {{"key":"empty","value":{{}}}},
                {{"key":"novalue"}},
                {{"key":"future","value":{{"someNewValue":1}}}}]}}"#
        ));
        let decoded = decode_json(body.as_bytes()).unwrap();
        let span = &decoded.spans[0];
        assert_eq!(span.attr("s"), Some(&AnyValue::String("x".into())));
        assert_eq!(span.attr("b"), Some(&AnyValue::Bool(true)));
        assert_eq!(span.attr("d"), Some(&AnyValue::Double(0.5)));
        assert_eq!(span.attr("y"), Some(&AnyValue::Bytes(vec![1, 2])));
        assert_eq!(
            span.attr("a"),
            Some(&AnyValue::Array(vec![AnyValue::Int(1), "two".into()]))
        );
        assert_eq!(
            span.attr("k"),
            Some(&AnyValue::KvList(vec![chaintrace_model::KeyValue::new(
                "inner", false
            )]))
        );
        for key in ["empty", "novalue", "future"] {
            assert_eq!(span.attr(key), Some(&AnyValue::Empty), "{key}");
        }
    }

    #[test]
    fn missing_parent_is_root_and_parent_is_kept() {
        let body = one_span(&format!(
            r#"{{{IDS},"name":"root"}},{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0102030405060708","parentSpanId":"eee19b7ec3c1b174","name":"child"}}"#
        ));
        let decoded = decode_json(body.as_bytes()).unwrap();
        assert_eq!(decoded.spans.len(), 2);
        assert_eq!(decoded.spans[0].parent_span_id, None);
        assert_eq!(
            decoded.spans[1]
                .parent_span_id
                .map(|p| p.to_hex())
                .as_deref(),
            Some("eee19b7ec3c1b174")
        );
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = decode_json(b"{\"resourceSpans\": [\n  {,}]}").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid OTLP/JSON: "), "{text}");
        assert!(text.contains("line 2 column 4"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let body = one_span(&format!(r#"{{{IDS},"kind":"sideways"}}"#));
        let text = decode_json(body.as_bytes()).unwrap_err().to_string();
        assert!(
            text.contains("resourceSpans[0].scopeSpans[0].spans[0].kind"),
            "{text}"
        );
        let text = decode_json(b"42").unwrap_err().to_string();
        assert!(
            text.contains("expected struct ExportTraceServiceRequest"),
            "{text}"
        );
        // serde's derive also takes a struct as a sequence of its fields:
        // `[]` is an empty request, not an error. Harmless, so left alone.
        assert!(decode_json(b"[]").unwrap().spans.is_empty());
    }

    #[test]
    fn non_hex_ids_reject_only_their_span() {
        let good = format!(r#"{{{IDS},"name":"good"}}"#);
        let body = one_span(&format!(
            r#"{good},
            {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"zz00000000000000","name":"bad"}},
            {{"traceId":"abc","spanId":"eee19b7ec3c1b174","name":"odd"}},
            {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":7}}"#
        ));
        let decoded = decode_json(body.as_bytes()).unwrap();
        assert_eq!(decoded.spans.len(), 1);
        assert_eq!(decoded.spans[0].name, "good");
        assert_eq!(decoded.rejected, 3);
        assert_eq!(
            decoded.errors,
            [
                r#"resourceSpans[0].scopeSpans[0].spans[1]: spanId "zz00000000000000" is not hex"#,
                r#"resourceSpans[0].scopeSpans[0].spans[2]: traceId "abc" is not hex"#,
                "resourceSpans[0].scopeSpans[0].spans[3]: parentSpanId is a number, want a hex string",
            ]
        );
    }

    #[test]
    fn wrong_length_hex_ids_are_per_span_rejections() {
        let body = one_span(&format!(
            r#"{{{IDS}}},{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1"}}"#
        ));
        let decoded = decode_json(body.as_bytes()).unwrap();
        assert_eq!(decoded.spans.len(), 1);
        assert_eq!(
            decoded.errors,
            ["resourceSpans[0].scopeSpans[0].spans[1]: spanId has 6 bytes, want 8"]
        );
    }

    #[test]
    fn bad_links_are_dropped_and_reported_enum_names_accepted() {
        let body = one_span(&format!(
            r#"{{{IDS},"kind":"SPAN_KIND_CLIENT","status":{{"code":"STATUS_CODE_ERROR"}},"parentSpanId":null,"links":[
                {{"traceId":"nothex","spanId":"eee19b7ec3c1b174"}},
                {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0102030405060708"}}]}}"#
        ));
        let decoded = decode_json(body.as_bytes()).unwrap();
        let span = &decoded.spans[0];
        assert_eq!(span.kind, chaintrace_model::SpanKind::Client);
        assert_eq!(span.status.code, chaintrace_model::StatusCode::Error);
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.links.len(), 1);
        assert_eq!(decoded.rejected, 0);
        assert_eq!(decoded.dropped_links, 1);
        assert_eq!(
            decoded.errors,
            [
                r#"resourceSpans[0].scopeSpans[0].spans[0].links[0]: traceId "nothex" is not hex (link dropped, span kept)"#
            ]
        );
    }

    #[test]
    fn fixture_takes_the_fast_path() {
        // The repair pass must not be needed for what the Python SDK sends.
        let body = fixture(JSON_FIXTURE);
        assert!(serde_json::from_slice::<ExportTraceServiceRequest>(&body).is_ok());
    }
}
