//! The span: one timed operation of a trace, with typed attributes, events,
//! links, status, resource and instrumentation scope.
//!
//! This is the one shape every decoder produces and every store, query and
//! analysis consumes. It mirrors the OpenTelemetry data model closely so that
//! nothing an SDK sends is lost, but uses checked types (ids, nanosecond times,
//! enums) instead of raw wire values.

use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::ids::{SpanId, TraceId};

/// A point in time: nanoseconds since the Unix epoch (UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixNanos(pub u64);

impl UnixNanos {
    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: UnixNanos) -> DurationNanos {
        DurationNanos(self.0.saturating_sub(earlier.0))
    }

    /// Whole microseconds, as the Jaeger API counts time.
    pub fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// The current wall-clock time.
    pub fn now() -> UnixNanos {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixNanos(d.as_nanos() as u64)
    }
}

/// A length of time in nanoseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct DurationNanos(pub u64);

impl DurationNanos {
    /// Whole microseconds.
    pub fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// Milliseconds as a float, for display.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// What role a span plays in a call (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// Not specified by the sender.
    #[default]
    Unspecified,
    /// An internal operation.
    Internal,
    /// The server side of a synchronous call.
    Server,
    /// The client side of a synchronous call.
    Client,
    /// The sender of an asynchronous message.
    Producer,
    /// The receiver of an asynchronous message.
    Consumer,
}

impl SpanKind {
    /// Maps the OTLP enum number; unknown numbers become `Unspecified`.
    pub fn from_otlp(n: i32) -> SpanKind {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP enum number: the inverse of [`SpanKind::from_otlp`], and
    /// how blocks, the WAL and SQL's raw columns store a kind.
    pub fn otlp_number(self) -> u8 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// The lowercase name used by the Jaeger `span.kind` tag and TraceQL.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// The outcome of a span (OTLP `Status.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    /// The instrumentation did not say.
    #[default]
    Unset,
    /// Explicitly successful.
    Ok,
    /// Failed.
    Error,
}

impl StatusCode {
    /// Maps the OTLP enum number; unknown numbers become `Unset`.
    pub fn from_otlp(n: i32) -> StatusCode {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// The OTLP enum number: the inverse of [`StatusCode::from_otlp`].
    pub fn otlp_number(self) -> u8 {
        match self {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        }
    }

    /// `UNSET`, `OK` or `ERROR`, as OpenTelemetry spells them.
    pub fn as_otel_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "UNSET",
            StatusCode::Ok => "OK",
            StatusCode::Error => "ERROR",
        }
    }
}

/// Status code plus the optional developer-facing message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Status {
    /// Unset, ok or error.
    pub code: StatusCode,
    /// Description, usually set only for errors; empty when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A typed attribute value (OTLP `AnyValue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnyValue {
    /// The sender sent a key with no value.
    Empty,
    /// UTF-8 text; up to 24 bytes held inline, without an allocation
    /// (most attribute values: model names, ids, short labels).
    String(CompactString),
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Double(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list of values.
    #[serde(deserialize_with = "nested")]
    Array(Vec<AnyValue>),
    /// A nested map, order kept.
    #[serde(deserialize_with = "nested")]
    KvList(Vec<KeyValue>),
}

/// Deepest nesting of arrays and maps a deserialised [`AnyValue`] may
/// have. Serde formats recurse once per level: a tampered WAL record with
/// 200 000 nested arrays (400 KB, found by fuzzing) overflowed the stack.
/// Ingest never builds deeper values than this (protobuf stops at 100
/// nested messages, JSON at 64 levels).
pub const MAX_VALUE_DEPTH: usize = 128;

thread_local! {
    /// How many arrays and maps the value being deserialised on this thread
    /// is inside.
    static VALUE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Deserialises one level of an [`AnyValue`] array or map, refusing to go
/// past [`MAX_VALUE_DEPTH`].
fn nested<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    /// Restores the depth on the way out, a panic included.
    struct Level(usize);
    impl Drop for Level {
        fn drop(&mut self) {
            VALUE_DEPTH.with(|d| d.set(self.0));
        }
    }
    let depth = VALUE_DEPTH.with(std::cell::Cell::get);
    if depth >= MAX_VALUE_DEPTH {
        return Err(serde::de::Error::custom(format!(
            "a value nests deeper than {MAX_VALUE_DEPTH} arrays and maps"
        )));
    }
    let _level = Level(depth);
    VALUE_DEPTH.with(|d| d.set(depth + 1));
    T::deserialize(deserializer)
}

impl AnyValue {
    /// The value as text when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnyValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer when it is one (or a string holding one).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AnyValue::Int(i) => Some(*i),
            AnyValue::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value rendered as display text: strings as is, the rest as JSON-like text.
    pub fn to_display_string(&self) -> String {
        match self {
            AnyValue::Empty => String::new(),
            AnyValue::String(s) => s.to_string(),
            AnyValue::Bool(b) => b.to_string(),
            AnyValue::Int(i) => i.to_string(),
            AnyValue::Double(d) => d.to_string(),
            AnyValue::Bytes(b) => hex::encode(b),
            AnyValue::Array(items) => {
                let parts: Vec<String> = items.iter().map(|v| v.to_display_string()).collect();
                format!("[{}]", parts.join(", "))
            }
            AnyValue::KvList(kvs) => {
                let parts: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value.to_display_string()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

impl From<&str> for AnyValue {
    fn from(s: &str) -> Self {
        AnyValue::String(s.into())
    }
}
impl From<String> for AnyValue {
    fn from(s: String) -> Self {
        AnyValue::String(s.into())
    }
}
impl From<CompactString> for AnyValue {
    fn from(s: CompactString) -> Self {
        AnyValue::String(s)
    }
}
impl From<i64> for AnyValue {
    fn from(i: i64) -> Self {
        AnyValue::Int(i)
    }
}
impl From<f64> for AnyValue {
    fn from(d: f64) -> Self {
        AnyValue::Double(d)
    }
}
impl From<bool> for AnyValue {
    fn from(b: bool) -> Self {
        AnyValue::Bool(b)
    }
}

/// One attribute: a key and its typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Attribute name, e.g. `gen_ai.request.model`; up to 24 bytes held
    /// inline. Spans carry many attributes, and allocating and freeing each
    /// key and value was a large share of ingest CPU.
    pub key: CompactString,
    /// Attribute value.
    pub value: AnyValue,
}

impl KeyValue {
    /// Builds an attribute.
    pub fn new(key: impl Into<CompactString>, value: impl Into<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Finds the value of `key` in an attribute list (first occurrence).
pub fn find_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// Whether an error class name `value` (from `error.type`, `error_type` or
/// `exception.type`) answers a search for `wanted`: equal, or — when
/// `wanted` is a plain name without dots — equal to the last dotted segment
/// of `value`, so `RateLimitError` finds `__main__.RateLimitError`. TraceQL
/// and the store's search pruning both use this one rule.
///
/// ```
/// use chaintrace_model::error_class_matches;
/// assert!(error_class_matches("anthropic.RateLimitError", "RateLimitError"));
/// assert!(!error_class_matches("RateLimitError", "anthropic.RateLimitError"));
/// assert!(!error_class_matches("MyRateLimitError", "RateLimitError"));
/// ```
pub fn error_class_matches(value: &str, wanted: &str) -> bool {
    value == wanted
        || (!wanted.is_empty() && !wanted.contains('.') && value.rsplit('.').next() == Some(wanted))
}

/// Something that happened at a point in a span's life; an exception is an
/// event named `exception` with `exception.type`, `exception.message` and
/// `exception.stacktrace` attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub time: UnixNanos,
    /// Event name, e.g. `exception` or `API request sent`.
    pub name: String,
    /// Event attributes.
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// A reference from a span to a span of another (or the same) trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The linked span's trace.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
    /// Link attributes.
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// The entity that produced the spans: `service.name` and friends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resource {
    /// Resource attributes.
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    /// `service.name`, or `unknown_service` as OpenTelemetry SDKs default to.
    pub fn service_name(&self) -> &str {
        find_attr(&self.attributes, "service.name")
            .and_then(AnyValue::as_str)
            .unwrap_or("unknown_service")
    }
}

/// The instrumentation library that recorded a span.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scope {
    /// Library name, e.g. `opentelemetry.instrumentation.openai`; may be empty.
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub name: CompactString,
    /// Library version; may be empty.
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub version: CompactString,
}

/// One timed operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// The parent span, `None` for a root.
    pub parent_span_id: Option<SpanId>,
    /// Operation name, e.g. `llm_call`.
    pub name: CompactString,
    /// Span kind.
    pub kind: SpanKind,
    /// Start time.
    pub start: UnixNanos,
    /// End time; never before `start` (decoders clamp it).
    pub end: UnixNanos,
    /// Outcome.
    pub status: Status,
    /// Span attributes, in the order sent.
    pub attributes: Vec<KeyValue>,
    /// Events, in the order sent.
    pub events: Vec<Event>,
    /// Links to other spans.
    pub links: Vec<Link>,
    /// The producing entity, shared by all spans of one resource batch.
    pub resource: Arc<Resource>,
    /// The instrumentation library, shared by all spans of one scope batch
    /// (a long scope name is stored once, not once per span).
    pub scope: Arc<Scope>,
}

impl Span {
    /// `end - start`.
    pub fn duration(&self) -> DurationNanos {
        self.end.since(self.start)
    }

    /// The value of span attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&AnyValue> {
        find_attr(&self.attributes, key)
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    /// Whether the span failed: status ERROR.
    pub fn is_error(&self) -> bool {
        self.status.code == StatusCode::Error
    }
}

/// Why a duration text such as `1.5s` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: want a number followed by ns, us, µs, ms, s, m, h or d (e.g. 1.5s, 300ms, 2h)")]
pub struct DurationParseError {
    /// The offending text (cut to 64 characters).
    pub text: String,
}

impl std::str::FromStr for DurationNanos {
    type Err = DurationParseError;

    /// Reads Go-style durations as Jaeger and TraceQL spell them: `300ms`,
    /// `1.5s`, `2m`, `1h`, plus `d` for days; units may be combined (`1m30s`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || DurationParseError {
            text: text.chars().take(64).collect(),
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            if num_len == 0 {
                return Err(err());
            }
            let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                "d" => 86400e9,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total += number * scale;
        }
        if !total.is_finite() || total > u64::MAX as f64 {
            return Err(err());
        }
        Ok(DurationNanos(total.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go_and_traceql() {
        let p = |s: &str| s.parse::<DurationNanos>().map(|d| d.0);
        assert_eq!(p("300ms"), Ok(300_000_000));
        assert_eq!(p("1.5s"), Ok(1_500_000_000));
        assert_eq!(p("2m"), Ok(120_000_000_000));
        assert_eq!(p("1m30s"), Ok(90_000_000_000));
        assert_eq!(p("7d"), Ok(7 * 86_400_000_000_000));
        assert_eq!(p("250us"), Ok(250_000));
        assert!(p("").is_err());
        assert!(p("10").is_err());
        assert!(p("ms").is_err());
        assert!(p("5 parsecs").is_err());
    }
}

/// Why a time text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {text:?}: want Unix seconds (1767225600 or 1767225600.5) or RFC 3339 (2026-01-01T00:00:00Z, 2026-01-01T01:00:00.5+01:00), between 1970 and 2554 (Unix nanoseconds must fit 64 bits)")]
pub struct TimeParseError {
    /// The offending text (cut to 64 characters).
    pub text: String,
}

impl std::str::FromStr for UnixNanos {
    type Err = TimeParseError;

    /// Reads Unix seconds (with optional fraction) or an RFC 3339 timestamp.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimeParseError {
            text: text.chars().take(64).collect(),
        };
        let t = text.trim();
        if let Ok(secs) = t.parse::<f64>() {
            // Below u64::MAX nanoseconds (2554-07-21): beyond, `as` would
            // saturate and a day more would wrap in integer arithmetic.
            if secs.is_finite() && (0.0..=MAX_UNIX_SECS as f64).contains(&secs) {
                return Ok(UnixNanos((secs * 1e9).round() as u64));
            }
            return Err(err());
        }
        parse_rfc3339(t).ok_or_else(err)
    }
}

fn parse_rfc3339(t: &str) -> Option<UnixNanos> {
    let at = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    let secs = u64::try_from(at.timestamp()).ok()?;
    secs.checked_mul(1_000_000_000)?
        .checked_add(u64::from(at.timestamp_subsec_nanos()))
        .map(UnixNanos)
}

impl UnixNanos {
    /// RFC 3339 UTC with milliseconds: `2026-06-02T14:30:00.050Z`.
    pub fn to_rfc3339_millis(self) -> String {
        rfc3339(i128::from(self.0), chrono::SecondsFormat::Millis)
    }
}

/// Nanoseconds since the Unix epoch (before it: negative) as RFC 3339 UTC
/// with the fraction in groups of three digits, none for whole seconds:
/// `2026-01-01T00:00:00.250Z`. A time outside the calendar's range (about
/// 262 000 years either way) is written as its number of nanoseconds.
pub fn rfc3339_nanos(nanos: i128) -> String {
    rfc3339(nanos, chrono::SecondsFormat::AutoSi)
}

fn rfc3339(nanos: i128, format: chrono::SecondsFormat) -> String {
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok();
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    match secs.and_then(|s| chrono::DateTime::from_timestamp(s, frac)) {
        Some(at) => at.to_rfc3339_opts(format, true),
        None => format!("{nanos}ns"),
    }
}

/// The last whole Unix second whose nanoseconds fit in a `u64`.
const MAX_UNIX_SECS: u64 = u64::MAX / 1_000_000_000;

#[cfg(test)]
mod value_depth_tests {
    use super::*;

    fn nest(levels: usize) -> String {
        let mut json = r#"{"int":1}"#.to_string();
        for _ in 0..levels {
            json = format!(r#"{{"array":[{json}]}}"#);
        }
        json
    }

    #[test]
    fn nested_values_read_back_and_leave_the_depth_at_zero() {
        // serde_json stops at 128 levels of its own (two per value level);
        // the store's WAL tests reach this limit through postcard.
        let ok: AnyValue = serde_json::from_str(&nest(60)).unwrap();
        assert!(matches!(ok, AnyValue::Array(_)));
        assert!(serde_json::from_str::<AnyValue>(&nest(100)).is_err());
        assert_eq!(VALUE_DEPTH.with(std::cell::Cell::get), 0);
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn times_parse_as_unix_seconds_or_rfc3339() {
        let p = |s: &str| s.parse::<UnixNanos>().map(|t| t.0);
        assert_eq!(p("1780410600"), Ok(1_780_410_600_000_000_000));
        assert_eq!(p("1780410600.5"), Ok(1_780_410_600_500_000_000));
        assert_eq!(p("2026-06-02T14:30:00Z"), Ok(1_780_410_600_000_000_000));
        assert_eq!(p("2026-06-02T14:30:00.050Z"), Ok(1_780_410_600_050_000_000));
        assert_eq!(
            p("2026-06-02T16:30:00+02:00"),
            Ok(1_780_410_600_000_000_000)
        );
        assert_eq!(p("1970-01-01T00:00:00Z"), Ok(0));
        assert!(p("yesterday").is_err());
        assert!(p("2026-13-02T14:30:00Z").is_err());
        assert!(p("2026-06-02T14:30:00").is_err());
        assert!(p("-5").is_err());
    }

    #[test]
    fn times_beyond_64_bit_nanoseconds_are_refused_not_wrapped() {
        let p = |s: &str| s.parse::<UnixNanos>().map(|t| t.0);
        assert!(p("9999-12-31T23:59:59Z")
            .unwrap_err()
            .to_string()
            .contains("2554"));
        assert!(p("2554-07-22T00:00:00Z").is_err());
        assert!(p("99999999999").is_err());
        assert!(p("1e11").is_err());
        assert!(p("18446744074").is_err());
        assert_eq!(p("18446744072"), Ok(18_446_744_072_000_000_000));
        assert_eq!(p("2554-07-21T23:34:33Z"), Ok(18_446_744_073_000_000_000));
        assert_eq!(p("2026-06-02 14:30:00z"), Ok(1_780_410_600_000_000_000));
        assert_eq!(
            p("2026-06-02t14:30:00.000000001Z"),
            Ok(1_780_410_600_000_000_001)
        );
    }

    #[test]
    fn times_are_written_as_rfc3339_utc() {
        assert_eq!(UnixNanos(0).to_rfc3339_millis(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixNanos(1_780_410_600_050_000_000).to_rfc3339_millis(),
            "2026-06-02T14:30:00.050Z"
        );
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_767_225_600_250_000_000),
            "2026-01-01T00:00:00.250Z"
        );
        assert_eq!(
            rfc3339_nanos(1_767_225_600_000_001_000),
            "2026-01-01T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_nanos(1_767_225_661_123_456_789),
            "2026-01-01T00:01:01.123456789Z"
        );
        assert_eq!(rfc3339_nanos(-1_000_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(rfc3339_nanos(i128::MAX), format!("{}ns", i128::MAX));
    }
}

/// A span of trace `[1; 16]` with id `[id; 8]`, no parent, lasting 1 ns
/// from `start`: what this crate's unit tests start from.
#[cfg(test)]
pub(crate) fn test_span(id: u8, name: &str, start: u64) -> Span {
    Span {
        trace_id: crate::TraceId([1; 16]),
        span_id: crate::SpanId([id; 8]),
        parent_span_id: None,
        name: name.into(),
        kind: Default::default(),
        start: UnixNanos(start),
        end: UnixNanos(start + 1),
        status: Default::default(),
        attributes: vec![],
        events: vec![],
        links: vec![],
        resource: Default::default(),
        scope: Default::default(),
    }
}
