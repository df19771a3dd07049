//! Zipkin v2 spans, as either format spells them, → model [`Span`]s: the
//! mapping documented in [`super`]. Must not know JSON or protobuf: the
//! format modules hand it [`ZipkinSpan`]s with ids already in bytes or
//! text.

use std::collections::HashMap;
use std::sync::Arc;

use chaintrace_model::{
    AnyValue, CompactString, Event, IdError, KeyValue, Resource, Scope, Span, SpanId, SpanKind,
    Status, StatusCode, TraceId, UnixNanos,
};

use crate::otlp::DecodedSpans;

/// Resource attribute for `localEndpoint.ipv4` (else `ipv6`): the stable
/// semantic-convention name for the address of the side that recorded
/// the span (`net.host.ip` is deprecated).
pub const LOCAL_ADDRESS_KEY: &str = "network.local.address";
/// Resource attribute for `localEndpoint.port`.
pub const LOCAL_PORT_KEY: &str = "network.local.port";
/// Span attribute for `remoteEndpoint.serviceName`, the attribute
/// OpenTelemetry's Zipkin exporters read it from.
pub const PEER_SERVICE_KEY: &str = "peer.service";
/// Span attribute for `remoteEndpoint.ipv4` (else `ipv6`); `net.peer.ip`
/// is deprecated.
pub const PEER_ADDRESS_KEY: &str = "network.peer.address";
/// Span attribute for `remoteEndpoint.port`.
pub const PEER_PORT_KEY: &str = "network.peer.port";
/// Where an endpoint's IPv6 address goes when it has an IPv4 address as
/// well (Zipkin allows both; semantic conventions have one address key).
pub const LOCAL_IPV6_KEY: &str = "zipkin.local_endpoint.ipv6";
/// See [`LOCAL_IPV6_KEY`].
pub const PEER_IPV6_KEY: &str = "zipkin.remote_endpoint.ipv6";
/// Span attribute keeping the id a `shared` span was sent with; see
/// [`super`] for why it gets another.
pub const SHARED_SPAN_ID_KEY: &str = "zipkin.shared_span_id";

/// One span as sent, whichever the format, before its ids are checked
/// and its tags sorted.
#[derive(Debug, Default)]
pub(super) struct ZipkinSpan {
    pub trace_id: RawId,
    pub id: RawId,
    pub parent_id: RawId,
    /// `None` when absent (a local span).
    pub kind: Option<SpanKind>,
    pub name: String,
    /// Epoch microseconds.
    pub timestamp: u64,
    /// Microseconds.
    pub duration: u64,
    pub local_endpoint: Option<Endpoint>,
    pub remote_endpoint: Option<Endpoint>,
    pub annotations: Vec<Annotation>,
    pub tags: Vec<(String, String)>,
    pub shared: bool,
}

/// An id as the format carries it: lowercase hex in JSON, big-endian
/// bytes in protobuf. Absent is `Hex("")`/`Bytes([])`.
#[derive(Debug)]
pub(super) enum RawId {
    Hex(String),
    Bytes(Vec<u8>),
}

impl Default for RawId {
    fn default() -> Self {
        RawId::Bytes(Vec::new())
    }
}

impl RawId {
    fn is_absent(&self) -> bool {
        match self {
            RawId::Hex(text) => text.is_empty(),
            RawId::Bytes(bytes) => bytes.is_empty(),
        }
    }

    /// The id's bytes left-padded to `len`, from hex of up to `2 * len`
    /// digits or bytes of `len` or `short` bytes. Zipkin pads short hex
    /// ids with zeros on the left, so we do too.
    fn padded(&self, what: &'static str, len: usize, short: usize) -> Result<Vec<u8>, String> {
        let bytes = match self {
            RawId::Hex(text) => {
                if text.len() > 2 * len {
                    return Err(format!(
                        "{what} {:?} has {} hex digits, want at most {}",
                        text.chars().take(64).collect::<String>(),
                        text.len(),
                        2 * len
                    ));
                }
                let digits = format!("{text:0>width$}", width = 2 * len);
                hex::decode(&digits).map_err(|_| {
                    IdError::NotHex {
                        what,
                        text: text.chars().take(64).collect(),
                    }
                    .to_string()
                })?
            }
            RawId::Bytes(bytes) if bytes.len() == short && short < len => {
                let mut padded = vec![0; len - short];
                padded.extend_from_slice(bytes);
                padded
            }
            RawId::Bytes(bytes) if bytes.len() == len => bytes.clone(),
            RawId::Bytes(bytes) => {
                let want = if short < len {
                    format!("{short} or {len}")
                } else {
                    len.to_string()
                };
                return Err(format!("{what} has {} bytes, want {want}", bytes.len()));
            }
        };
        Ok(bytes)
    }
}

/// A `localEndpoint` or `remoteEndpoint`, addresses as text.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub(super) struct Endpoint {
    pub service_name: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// Zero is absent, as Zipkin defines it.
    pub port: Option<i64>,
}

/// An annotation: epoch microseconds and its value.
#[derive(Debug, Default)]
pub(super) struct Annotation {
    pub timestamp: u64,
    pub value: String,
}

/// Builds model spans from [`ZipkinSpan`]s, sharing one resource per
/// distinct local endpoint and one scope per distinct scope.
#[derive(Default)]
pub(super) struct Mapper {
    out: DecodedSpans,
    /// Keyed by value: a body of spans with 10 000 distinct endpoints
    /// must not cost 10 000² comparisons.
    resources: HashMap<Option<Endpoint>, Arc<Resource>>,
    scopes: HashMap<(CompactString, CompactString), Arc<Scope>>,
}

impl Mapper {
    /// Adds the span at `index` of the body, or counts it as rejected.
    pub(super) fn push(&mut self, index: usize, span: ZipkinSpan) {
        match self.convert(span) {
            Ok(span) => self.out.spans.push(span),
            Err((field, reason)) => self.out.reject(&format!("spans[{index}].{field}"), &reason),
        }
    }

    pub(super) fn finish(self) -> DecodedSpans {
        self.out
    }

    fn convert(&mut self, raw: ZipkinSpan) -> Result<Span, (&'static str, String)> {
        let trace_id = raw
            .trace_id
            .padded("traceId", TraceId::LEN, 8)
            .and_then(|b| TraceId::from_bytes(&b).map_err(|e| e.to_string()))
            .map_err(|e| ("traceId", e))?;
        let span_id = raw
            .id
            .padded("id", SpanId::LEN, SpanId::LEN)
            .and_then(|b| SpanId::from_bytes(&b).map_err(|e| e.to_string()))
            .map_err(|e| ("id", e))?;
        // An all-zero parent means root, as in B3 headers and Jaeger.
        let parent_span_id = if raw.parent_id.is_absent() {
            None
        } else {
            let bytes = raw
                .parent_id
                .padded("parentId", SpanId::LEN, SpanId::LEN)
                .map_err(|e| ("parentId", e))?;
            SpanId::from_bytes(&bytes).ok()
        };

        let tags = SpanTags::sort(raw.tags);
        let mut attributes = tags.attributes;
        let (span_id, parent_span_id) = if raw.shared {
            attributes.push(KeyValue::new(SHARED_SPAN_ID_KEY, span_id.to_hex()));
            (shared_server_id(span_id), Some(span_id))
        } else {
            (span_id, parent_span_id)
        };
        if let Some(remote) = &raw.remote_endpoint {
            endpoint_attributes(
                remote,
                [
                    PEER_SERVICE_KEY,
                    PEER_ADDRESS_KEY,
                    PEER_IPV6_KEY,
                    PEER_PORT_KEY,
                ],
                &mut attributes,
            );
        }

        let start = micros_to_nanos(raw.timestamp);
        let end = UnixNanos(start.0.saturating_add(micros_to_nanos(raw.duration).0));
        let scope = self.scope(tags.scope);
        let resource = self.resource(raw.local_endpoint);
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            name: raw.name.into(),
            kind: raw.kind.unwrap_or(SpanKind::Internal),
            start,
            end,
            status: tags.status,
            attributes,
            events: raw.annotations.into_iter().map(event).collect(),
            links: Vec::new(),
            resource,
            scope,
        })
    }

    fn resource(&mut self, local: Option<Endpoint>) -> Arc<Resource> {
        if let Some(shared) = self.resources.get(&local) {
            return Arc::clone(shared);
        }
        let mut attributes = Vec::new();
        if let Some(endpoint) = &local {
            endpoint_attributes(
                endpoint,
                [
                    "service.name",
                    LOCAL_ADDRESS_KEY,
                    LOCAL_IPV6_KEY,
                    LOCAL_PORT_KEY,
                ],
                &mut attributes,
            );
        }
        let shared = Arc::new(Resource { attributes });
        self.resources.insert(local, Arc::clone(&shared));
        shared
    }

    fn scope(&mut self, scope: Scope) -> Arc<Scope> {
        let key = (scope.name.clone(), scope.version.clone());
        Arc::clone(self.scopes.entry(key).or_insert_with(|| Arc::new(scope)))
    }
}

/// The id given to the server half of a shared span: a fixed mix of the
/// id it was sent with (splitmix64's finaliser, a bijection), so that a
/// retried batch gets the same id and the store drops it as a duplicate.
fn shared_server_id(client: SpanId) -> SpanId {
    let mut z = u64::from_be_bytes(client.0).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // Zero is no id; one input in 2^64 maps there.
    SpanId(z.max(1).to_be_bytes())
}

/// The attributes of an endpoint under `keys` (service, address, IPv6
/// when both are set, port); empty parts are left out.
fn endpoint_attributes(endpoint: &Endpoint, keys: [&str; 4], into: &mut Vec<KeyValue>) {
    let [service, address, ipv6_key, port] = keys;
    if !endpoint.service_name.is_empty() {
        into.push(KeyValue::new(service, endpoint.service_name.as_str()));
    }
    match (&endpoint.ipv4, &endpoint.ipv6) {
        (Some(v4), Some(v6)) => {
            into.push(KeyValue::new(address, v4.as_str()));
            into.push(KeyValue::new(ipv6_key, v6.as_str()));
        }
        (Some(ip), None) | (None, Some(ip)) => into.push(KeyValue::new(address, ip.as_str())),
        (None, None) => {}
    }
    if let Some(p) = endpoint.port.filter(|p| *p != 0) {
        into.push(KeyValue::new(port, p));
    }
}

/// Zipkin counts microseconds; past `u64::MAX` ns (year 2554) saturates.
fn micros_to_nanos(micros: u64) -> UnixNanos {
    UnixNanos(micros.saturating_mul(1_000))
}

/// An annotation → an event. OpenTelemetry's exporters write an event as
/// `{"<name>": {<attributes>}}`; a value that parses as exactly that is
/// taken apart again, any other value is the event's name.
fn event(annotation: Annotation) -> Event {
    let time = micros_to_nanos(annotation.timestamp);
    if annotation.value.starts_with('{') {
        if let Ok(serde_json::Value::Object(outer)) =
            serde_json::from_str::<serde_json::Value>(&annotation.value)
        {
            if outer.len() == 1 {
                if let Some((name, serde_json::Value::Object(fields))) = outer.into_iter().next() {
                    let attributes = fields
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key: key.into(),
                            value: json_value(value),
                        })
                        .collect();
                    return Event {
                        time,
                        name,
                        attributes,
                    };
                }
            }
        }
    }
    Event {
        time,
        name: annotation.value,
        attributes: Vec::new(),
    }
}

/// An event attribute as the exporter wrote it with `json.dumps`: its
/// JSON type is the attribute's type; objects (which attributes cannot
/// be) and `null` are kept as their JSON text.
fn json_value(value: serde_json::Value) -> AnyValue {
    use serde_json::Value;
    match value {
        Value::String(s) => AnyValue::String(s.into()),
        Value::Bool(b) => AnyValue::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => n
                .as_f64()
                .map_or_else(|| n.to_string().into(), AnyValue::Double),
        },
        Value::Array(items) => AnyValue::Array(items.into_iter().map(json_value).collect()),
        other @ (Value::Null | Value::Object(_)) => AnyValue::String(other.to_string().into()),
    }
}

/// A span's tags split into what the model keeps apart (status, scope)
/// and the attributes.
struct SpanTags {
    status: Status,
    scope: Scope,
    attributes: Vec<KeyValue>,
}

impl SpanTags {
    /// Takes back out the tags OpenTelemetry's Zipkin exporters write for
    /// what Zipkin has no field for; a value they do not write
    /// (`otel.status_code=maybe`) stays an attribute.
    fn sort(tags: Vec<(String, String)>) -> SpanTags {
        let mut error = None;
        let mut otel_code = None;
        let mut description = None;
        let (mut library_name, mut library_version) = (None, None);
        let (mut scope_name, mut scope_version) = (None, None);
        let mut attributes = Vec::with_capacity(tags.len());
        for (key, value) in tags {
            let slot = match key.as_str() {
                "error" => &mut error,
                "otel.status_description" => &mut description,
                "otel.library.name" => &mut library_name,
                "otel.library.version" => &mut library_version,
                "otel.scope.name" => &mut scope_name,
                "otel.scope.version" => &mut scope_version,
                "otel.status_code" => match status_code(&value) {
                    Some(code) => {
                        otel_code = Some(code);
                        continue;
                    }
                    None => {
                        attributes.push(KeyValue::new(key, value));
                        continue;
                    }
                },
                _ => {
                    attributes.push(KeyValue::new(key, value));
                    continue;
                }
            };
            *slot = Some(value);
        }
        // Zipkin marks a failed span by the `error` tag alone, its value
        // the message (OpenTelemetry's exporters write the description
        // there, maybe empty); it wins over `otel.status_code`.
        let status = match (error, otel_code) {
            (Some(message), _) => Status {
                code: StatusCode::Error,
                message,
            },
            (None, Some(code)) => Status {
                code,
                message: String::new(),
            },
            (None, None) => Status::default(),
        };
        let mut status = status;
        if let Some(text) = description {
            if status.code != StatusCode::Unset && status.message.is_empty() {
                status.message = text;
            } else if status.message != text {
                // A description of no status, or a second message: kept
                // where it came from.
                attributes.push(KeyValue::new("otel.status_description", text));
            }
        }
        SpanTags {
            status,
            scope: Scope {
                name: scope_name.or(library_name).unwrap_or_default().into(),
                version: scope_version.or(library_version).unwrap_or_default().into(),
            },
            attributes,
        }
    }
}

fn status_code(text: &str) -> Option<StatusCode> {
    Some(match text.to_ascii_uppercase().as_str() {
        "OK" => StatusCode::Ok,
        "ERROR" => StatusCode::Error,
        "UNSET" => StatusCode::Unset,
        _ => return None,
    })
}
