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
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
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
        Field::new("sample_weight", DataType::Int64, false),
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

/// How many traces each trace of `spans` stands for under tail sampling
/// (`chaintrace_model::conventions::sampling_weight` of its root); traces
/// without a sampling rate are absent (weight 1).
fn weights(spans: &[Span]) -> HashMap<TraceId, i64> {
    spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .map(|root| {
            (
                root.trace_id,
                conventions::sampling_weight(std::slice::from_ref(root)),
            )
        })
        .filter(|&(_, w)| w > 1)
        .map(|(id, w)| (id, i64::try_from(w).unwrap_or(i64::MAX)))
        .collect()
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
    let all: Vec<usize> = (0..spans_schema().fields().len()).collect();
    rows_to_batches(spans, |_| true, &all)
}

/// The rows of the spans `keep` accepts, with the columns `projection`
/// names (indexes into [`spans_schema`]), as record batches of at most
/// [`BATCH_ROWS`] rows. `spans` holds whole traces: a span with tokens but
/// no model takes its ancestor's even when `keep` leaves the ancestor out.
pub(crate) fn rows_to_batches(
    spans: &[Span],
    keep: impl Fn(&Span) -> bool,
    projection: &[usize],
) -> Result<Vec<RecordBatch>, ArrowError> {
    let models = models(spans);
    let full = spans_schema();
    let weights = if projection
        .iter()
        .any(|&c| full.field(c).name() == "sample_weight")
    {
        weights(spans)
    } else {
        HashMap::new()
    };
    let rows: Vec<usize> = (0..spans.len()).filter(|&i| keep(&spans[i])).collect();
    let schema = Arc::new(full.project(projection)?);
    rows.chunks(BATCH_ROWS)
        .map(|rows| {
            let columns = projection
                .iter()
                .map(|&c| column(full.field(c).name(), spans, &models, &weights, rows))
                .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
            RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(rows.len())),
            )
        })
        .collect()
}

/// The column `name` of [`spans_schema`] for the spans at `rows`.
fn column(
    name: &str,
    spans: &[Span],
    models: &[Option<&str>],
    weights: &HashMap<TraceId, i64>,
    rows: &[usize],
) -> Result<ArrayRef, ArrowError> {
    let n = rows.len();
    let each = || rows.iter().map(|&i| &spans[i]);
    let text = |f: &dyn Fn(&Span) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for span in each() {
            b.append_option(f(span));
        }
        Arc::new(b.finish())
    };
    let str_col = |f: &dyn Fn(&Span) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for span in each() {
            b.append_option(f(span));
        }
        Arc::new(b.finish())
    };
    // Times past year 2262 do not fit i64 nanoseconds; clamp rather than wrap.
    let nanos = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
    let time = |f: &dyn Fn(&Span) -> u64| -> ArrayRef {
        let mut b = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        for span in each() {
            b.append_value(nanos(f(span)));
        }
        Arc::new(b.finish())
    };
    let int = |f: &dyn Fn(&Span) -> Option<i64>| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        for span in each() {
            b.append_option(f(span));
        }
        Arc::new(b.finish())
    };
    Ok(match name {
        "trace_id" => text(&|s| Some(s.trace_id.to_hex())),
        "span_id" => text(&|s| Some(s.span_id.to_hex())),
        "parent_span_id" => text(&|s| s.parent_span_id.map(|p| p.to_hex())),
        "name" => str_col(&|s| Some(&s.name)),
        "service" => str_col(&|s| Some(s.service_name())),
        "kind" => str_col(&|s| Some(s.kind.as_str())),
        "status" => str_col(&|s| Some(status(s.status.code))),
        "status_message" => str_col(&|s| Some(s.status.message.as_str()).filter(|m| !m.is_empty())),
        "start_time" => time(&|s| s.start.0),
        "end_time" => time(&|s| s.end.0),
        "duration_ns" => int(&|s| Some(nanos(s.duration().0))),
        "duration_ms" => {
            let mut b = Float64Builder::with_capacity(n);
            for span in each() {
                b.append_value(span.duration().as_millis_f64());
            }
            Arc::new(b.finish())
        }
        "llm_model" => {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for &i in rows {
                b.append_option(models[i]);
            }
            Arc::new(b.finish())
        }
        "sample_weight" => int(&|s| Some(weights.get(&s.trace_id).copied().unwrap_or(1))),
        "input_tokens" => int(&|s| tokens(s).0),
        "output_tokens" => int(&|s| tokens(s).1),
        "error_type" => text(&|s| error_type(s)),
        "attributes" | "resource_attributes" => {
            let mut b = attr_map_builder(n);
            for span in each() {
                let attrs = if name == "attributes" {
                    &span.attributes
                } else {
                    &span.resource.attributes
                };
                append_attrs(&mut b, attrs)?;
            }
            Arc::new(b.finish())
        }
        other => {
            return Err(ArrowError::SchemaError(format!(
                "no column {other} in the spans table"
            )))
        }
    })
}
