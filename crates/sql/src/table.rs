//! The `spans` table: its Arrow schema and the conversion of [`Span`]s into
//! record batches, one row per span.
//!
//! This module owns the column list and how each column is derived from the
//! span model (the LLM columns read the same attribute spellings as
//! `chaintrace-analysis`). It knows nothing about SQL or DataFusion.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chaintrace_model::conventions;
use chaintrace_model::{AnyValue, KeyValue, Span, SpanId, StatusCode, TraceId};

/// Rows per record batch: DataFusion's default batch size.
pub const BATCH_ROWS: usize = 8192;

/// How far up the parent chain a span with tokens but no model looks for one.
const MAX_MODEL_HOPS: usize = 64;

fn map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(
                vec![
                    Field::new("keys", DataType::Utf8, false),
                    Field::new("values", DataType::Utf8, true),
                ]
                .into(),
            ),
            false,
        )),
        false,
    )
}

/// The schema of the `spans` table.
pub fn spans_schema() -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let ts = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        utf8("trace_id", false),
        utf8("span_id", false),
        utf8("parent_span_id", true),
        utf8("name", false),
        utf8("service", false),
        utf8("kind", false),
        utf8("status", false),
        utf8("status_message", true),
        ts("start_time"),
        ts("end_time"),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("duration_ms", DataType::Float64, false),
        utf8("llm_model", true),
        Field::new("input_tokens", DataType::Int64, true),
        Field::new("output_tokens", DataType::Int64, true),
        utf8("error_type", true),
        Field::new("attributes", map_type(), false),
        Field::new("resource_attributes", map_type(), false),
    ]))
}

/// The span's own model (`chaintrace_model::conventions::llm_model`).
fn own_model(span: &Span) -> Option<&str> {
    conventions::llm_model(span)
}

/// Input and output tokens by `chaintrace_model::conventions::tokens`, as
/// the column type holds them.
fn tokens(span: &Span) -> (Option<i64>, Option<i64>) {
    let t = conventions::tokens(span);
    let column = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    (column(t.input), column(t.output))
}

/// `chaintrace_model::conventions::error_type`.
fn error_type(span: &Span) -> Option<String> {
    conventions::error_type(span).map(str::to_string)
}

fn status(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Unset => "unset",
        StatusCode::Ok => "ok",
        StatusCode::Error => "error",
    }
}

/// Each span's `llm_model`: its own model, or for a span that reports tokens
/// but names no model (the founding chain's `api_call`), the model of its
/// nearest ancestor that names one.
fn models(spans: &[Span]) -> Vec<Option<&str>> {
    let own: Vec<Option<&str>> = spans.iter().map(own_model).collect();
    let needs = |i: usize| {
        let (input, output) = tokens(&spans[i]);
        own[i].is_none() && (input.is_some() || output.is_some())
    };
    if !(0..spans.len()).any(needs) {
        return own;
    }
    let index: HashMap<(TraceId, SpanId), usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.trace_id, s.span_id), i))
        .collect();
    let mut out = own.clone();
    for (i, span) in spans.iter().enumerate() {
        if !needs(i) {
            continue;
        }
        let mut parent = span.parent_span_id;
        for _ in 0..MAX_MODEL_HOPS {
            let Some(&p) = parent.and_then(|p| index.get(&(span.trace_id, p))) else {
                break;
            };
            if let Some(m) = own[p] {
                out[i] = Some(m);
                break;
            }
            parent = spans[p].parent_span_id;
        }
    }
    out
}

type AttrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

fn attr_map_builder(capacity: usize) -> AttrMapBuilder {
    MapBuilder::with_capacity(
        Some(MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
        capacity,
    )
}

/// Appends one map row: keys in the order sent, the first of duplicate keys
/// kept (as [`find_attr`] does), values as display text, `Empty` as null.
fn append_attrs(builder: &mut AttrMapBuilder, attrs: &[KeyValue]) -> Result<(), ArrowError> {
    // A scan of the earlier keys is cheapest for the usual handful of
    // attributes; long lists (prompt messages flattened into keys) get a set.
    let mut seen = (attrs.len() > 16).then(|| HashSet::with_capacity(attrs.len()));
    for (i, kv) in attrs.iter().enumerate() {
        let duplicate = match &mut seen {
            Some(seen) => !seen.insert(kv.key.as_str()),
            None => attrs[..i].iter().any(|earlier| earlier.key == kv.key),
        };
        if duplicate {
            continue;
        }
        builder.keys().append_value(&kv.key);
        match &kv.value {
            AnyValue::Empty => builder.values().append_null(),
            v => builder.values().append_value(v.to_display_string()),
        }
    }
    builder.append(true)
}

/// Builds the rows of `spans` as record batches of at most [`BATCH_ROWS`] rows.
pub fn spans_to_batches(spans: &[Span]) -> Result<Vec<RecordBatch>, ArrowError> {
    let models = models(spans);
    spans
        .chunks(BATCH_ROWS)
        .zip(models.chunks(BATCH_ROWS))
        .map(|(chunk, models)| batch(chunk, models))
        .collect()
}

fn batch(spans: &[Span], models: &[Option<&str>]) -> Result<RecordBatch, ArrowError> {
    let n = spans.len();
    let strings = || StringBuilder::with_capacity(n, n * 16);
    let (mut trace_id, mut span_id, mut parent) = (strings(), strings(), strings());
    let (mut name, mut service, mut kind) = (strings(), strings(), strings());
    let (mut status_b, mut status_message) = (strings(), strings());
    let mut start = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut end = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration_ns = Int64Builder::with_capacity(n);
    let mut duration_ms = Float64Builder::with_capacity(n);
    let mut model = strings();
    let mut input_tokens = Int64Builder::with_capacity(n);
    let mut output_tokens = Int64Builder::with_capacity(n);
    let mut error = strings();
    let mut attributes = attr_map_builder(n);
    let mut resource = attr_map_builder(n);

    for (span, span_model) in spans.iter().zip(models) {
        trace_id.append_value(span.trace_id.to_hex());
        span_id.append_value(span.span_id.to_hex());
        parent.append_option(span.parent_span_id.map(|p| p.to_hex()));
        name.append_value(&span.name);
        service.append_value(span.service_name());
        kind.append_value(span.kind.as_str());
        status_b.append_value(status(span.status.code));
        status_message.append_option(Some(&span.status.message).filter(|m| !m.is_empty()));
        // Times past year 2262 do not fit i64 nanoseconds; clamp rather than wrap.
        let nanos = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        start.append_value(nanos(span.start.0));
        end.append_value(nanos(span.end.0));
        let duration = span.duration();
        duration_ns.append_value(nanos(duration.0));
        duration_ms.append_value(duration.as_millis_f64());
        model.append_option(*span_model);
        let (input, output) = tokens(span);
        input_tokens.append_option(input);
        output_tokens.append_option(output);
        error.append_option(error_type(span));
        append_attrs(&mut attributes, &span.attributes)?;
        append_attrs(&mut resource, &span.resource.attributes)?;
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(name.finish()),
        Arc::new(service.finish()),
        Arc::new(kind.finish()),
        Arc::new(status_b.finish()),
        Arc::new(status_message.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(duration_ns.finish()),
        Arc::new(duration_ms.finish()),
        Arc::new(model.finish()),
        Arc::new(input_tokens.finish()),
        Arc::new(output_tokens.finish()),
        Arc::new(error.finish()),
        Arc::new(attributes.finish()),
        Arc::new(resource.finish()),
    ];
    RecordBatch::try_new(spans_schema(), columns)
}
