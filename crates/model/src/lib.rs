//! The span model of chaintrace.
//!
//! Every other crate speaks these types: decoders in `chaintrace-ingest` turn
//! wire data (OTLP, Jaeger, Zipkin, JSON) into [`Span`]s once, at the edge;
//! the store keeps them; queries and analysis read [`Trace`]s. This crate
//! depends on no other chaintrace crate and does no I/O.
//!
//! - [`TraceId`] / [`SpanId`]: fixed-size ids, hex only in JSON.
//! - [`Span`]: one operation with typed [`AnyValue`] attributes, [`Event`]s,
//!   [`Link`]s, [`Status`], [`Resource`] and [`Scope`].
//! - [`Trace`] and [`TraceSummary`]: all spans of one request, and its line in a list.
//! - [`LogRecord`]: a log line, tied to its span by trace and span ids.
//!
//! ```
//! use chaintrace_model::{SpanId, TraceId};
//! let id: TraceId = "5b8efff798038103d269b633813fc60c".parse().unwrap();
//! assert_eq!(id.to_hex(), "5b8efff798038103d269b633813fc60c");
//! assert!(SpanId::from_bytes(&[1, 2, 3]).is_err());
//! ```

pub mod conventions;
mod ids;
mod json_depth;
mod log;
mod log_json;
pub mod memory;
pub mod rollup;
mod size;
pub mod sketch;
mod span;
mod span_column;
mod trace;
mod trace_json;

pub use compact_str::CompactString;
pub use ids::{IdError, SpanId, TraceId};
pub use json_depth::{check_json_depth, JsonTooDeep, MAX_JSON_DEPTH};
pub use log::{LogRecord, Severity, SeverityParseError};
pub use log_json::{resolve_logs, LogIn, LogOut, LogTables};
pub use size::parse_bytes;
pub use sketch::DurationSketch;
pub use span::{
    error_class_matches, find_attr, rfc3339_nanos, AnyValue, DurationNanos, DurationParseError,
    Event, KeyValue, Link, Resource, Scope, Span, SpanKind, Status, StatusCode, TimeParseError,
    UnixNanos, MAX_VALUE_DEPTH,
};
pub use span_column::SpanColumn;
pub use trace::{Trace, TraceSummary};
