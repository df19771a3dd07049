//! Zipkin v2 JSON (a JSON array of spans, `zipkin2-api.yaml`'s
//! `ListOfSpans`) → [`ZipkinSpan`]s → model spans.
//!
//! serde reads the array; [`serde_path_to_error`] names the failing field
//! (`spans[3].timestamp: invalid type: string "soon", expected u64`).
//! Unknown fields are skipped, as Zipkin's own reader skips them.

use std::fmt;
use std::mem::size_of;

use chaintrace_model::{Span, SpanKind};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::mapping::{Annotation, Endpoint, Mapper, RawId, ZipkinSpan};
use super::ZipkinError;
use crate::otlp::DecodedSpans;

/// Parses a Zipkin v2 JSON body and maps its spans.
///
/// ```
/// let body = br#"[{"traceId":"5b8efff798038103","id":"eee19b7ec3c1b174","name":"llm_call",
///     "kind":"CLIENT","timestamp":1700000000000000,"duration":1500,
///     "localEndpoint":{"serviceName":"rag"},"tags":{"input_tokens":"450"}}]"#;
/// let decoded = chaintrace_ingest::zipkin::decode_json(body).unwrap();
/// let span = &decoded.spans[0];
/// assert_eq!(span.trace_id.to_hex(), "00000000000000005b8efff798038103");
/// assert_eq!(span.resource.service_name(), "rag");
/// // Zipkin tags are strings; `as_i64` reads them as numbers.
/// assert_eq!(span.attr("input_tokens").and_then(|v| v.as_i64()), Some(450));
/// ```
pub fn decode_json(body: &[u8]) -> Result<DecodedSpans, ZipkinError> {
    decode_json_within(body, usize::MAX).map(|(decoded, _)| decoded)
}

/// [`decode_json`] refusing first, with [`ZipkinError::TooLarge`], a body
/// whose shape could decode to more than `budget` bytes; also returns
/// that bound, what the decode may have held.
pub fn decode_json_within(
    body: &[u8],
    budget: usize,
) -> Result<(DecodedSpans, usize), ZipkinError> {
    let bound = json_bound(body)?;
    if bound > budget {
        return Err(ZipkinError::TooLarge(format!(
            "the body could decode to {bound} bytes, more than the memory budget of one \
             request ({budget} bytes); send smaller batches"
        )));
    }
    let spans: Vec<JsonSpan> = parse(body)?;
    let mut mapper = Mapper::default();
    for (index, span) in spans.into_iter().enumerate() {
        mapper.push(index, span.into_zipkin());
    }
    Ok((mapper.finish(), bound))
}

/// Bytes one JSON object or array may become at most: every container
/// could be a span, held as read and as built (a model [`Span`]),
/// each in a `Vec` that may have doubled. Endpoints, annotations and tag
/// objects are smaller.
pub const JSON_CONTAINER_BYTES: usize = 2 * (size_of::<JsonSpan>() + size_of::<Span>());

/// Bytes one JSON string may cost besides its text: a tag is two strings
/// and becomes a `(String, String)` pair, then a
/// [`KeyValue`](chaintrace_model::KeyValue), in `Vec`s that may have
/// doubled. The text itself is counted twice (read, then the model's copy).
pub const JSON_STRING_BYTES: usize = size_of::<String>() + size_of::<chaintrace_model::KeyValue>();

/// The most `body` can decode to: per container, per string and twice its
/// text. Also checks its nesting depth (serde skips unknown fields
/// without a depth limit).
pub(crate) fn json_bound(body: &[u8]) -> Result<usize, ZipkinError> {
    let containers = chaintrace_model::check_json_depth(body, chaintrace_model::MAX_JSON_DEPTH)
        .map_err(|e| ZipkinError::Json(e.to_string()))?;
    Ok(containers
        .saturating_mul(JSON_CONTAINER_BYTES)
        .saturating_add(strings(body).saturating_mul(JSON_STRING_BYTES))
        .saturating_add(body.len().saturating_mul(2)))
}

/// How many strings (keys included) `body` holds, counting quotes outside
/// strings; the parser checks the syntax afterwards.
fn strings(body: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            count += 1;
        }
    }
    count
}

fn parse(body: &[u8]) -> Result<Vec<JsonSpan>, ZipkinError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let spans: Vec<JsonSpan> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ZipkinError::Json(e.inner().to_string())
        } else {
            // The path starts at the array: `[3].traceId`.
            ZipkinError::Json(format!("spans{path}: {}", e.inner()))
        }
    })?;
    de.end().map_err(|e| ZipkinError::Json(e.to_string()))?;
    Ok(spans)
}

/// A span as `zipkin2-api.yaml` spells it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JsonSpan {
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    kind: Option<JsonKind>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Option<Vec<JsonAnnotation>>,
    #[serde(default, deserialize_with = "tags")]
    tags: Vec<(String, String)>,
    /// A request to keep the span whatever the sampling: we keep all.
    #[serde(default, rename = "debug")]
    _debug: Option<bool>,
    #[serde(default)]
    shared: Option<bool>,
}

/// Zipkin's four kinds; another name is refused, as Zipkin refuses it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum JsonKind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct JsonAnnotation {
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    value: Option<String>,
}

impl JsonSpan {
    fn into_zipkin(self) -> ZipkinSpan {
        ZipkinSpan {
            trace_id: RawId::Hex(self.trace_id.unwrap_or_default()),
            id: RawId::Hex(self.id.unwrap_or_default()),
            parent_id: RawId::Hex(self.parent_id.unwrap_or_default()),
            kind: self.kind.map(|k| match k {
                JsonKind::Client => SpanKind::Client,
                JsonKind::Server => SpanKind::Server,
                JsonKind::Producer => SpanKind::Producer,
                JsonKind::Consumer => SpanKind::Consumer,
            }),
            name: self.name.unwrap_or_default(),
            timestamp: self.timestamp.unwrap_or(0),
            duration: self.duration.unwrap_or(0),
            local_endpoint: self.local_endpoint.map(JsonEndpoint::into_endpoint),
            remote_endpoint: self.remote_endpoint.map(JsonEndpoint::into_endpoint),
            annotations: self
                .annotations
                .unwrap_or_default()
                .into_iter()
                .map(|a| Annotation {
                    timestamp: a.timestamp.unwrap_or(0),
                    value: a.value.unwrap_or_default(),
                })
                .collect(),
            tags: self.tags,
            shared: self.shared.unwrap_or(false),
        }
    }
}

impl JsonEndpoint {
    fn into_endpoint(self) -> Endpoint {
        // Zipkin reads empty strings as absent.
        let text = |s: Option<String>| s.filter(|s| !s.is_empty());
        Endpoint {
            service_name: self.service_name.unwrap_or_default(),
            ipv4: text(self.ipv4),
            ipv6: text(self.ipv6),
            port: self.port.map(i64::from),
        }
    }
}

/// `tags` in the order sent. Values are strings in Zipkin; numbers and
/// booleans, which some clients send, are kept as their JSON text, and
/// `null` as no tag.
fn tags<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Tags;
    impl<'de> Visitor<'de> for Tags {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string tags")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some((key, value)) = map.next_entry::<String, TagValue>()? {
                if let Some(value) = value.0 {
                    out.push((key, value));
                }
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(Tags)
}

/// One tag value: a string, or a number or boolean as its text.
struct TagValue(Option<String>);

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Value;
        impl Visitor<'_> for Value {
            type Value = TagValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string tag value")
            }
            fn visit_str<E>(self, v: &str) -> Result<TagValue, E> {
                Ok(TagValue(Some(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<TagValue, E> {
                Ok(TagValue(Some(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<TagValue, E> {
                Ok(TagValue(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<TagValue, E> {
                Ok(TagValue(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<TagValue, E> {
                Ok(TagValue(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<TagValue, E> {
                Ok(TagValue(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<TagValue, E> {
                Ok(TagValue(None))
            }
        }
        deserializer.deserialize_any(Value)
    }
}
