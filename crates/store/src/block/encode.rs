//! Spans and trace summaries to Arrow record batches in the block schema.
//!
//! Plain CPU work, no I/O: [`super::write`] decides batch and row-group
//! boundaries and hands slices of sorted spans here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Int64Builder, StringBuilder, UInt64Builder, UInt8Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::ArrowError;
use chaintrace_model::{AnyValue, KeyValue, Resource, Span, TraceSummary};

use super::attrs::AttrListBuilder;
use super::error::BlockError;
use super::hot::HotFields;
use super::schema::{DATA_SCHEMA, TRACES_SCHEMA};
use super::span_lists;
use super::value_codec::MAX_DEPTH;

/// One record batch of `data.parquet` rows, in the order given.
///
/// `hot[i]` must be `HotFields::of(spans[i])`, `resource_index[i]` the
/// row of `spans[i]`'s resource in `resources.parquet`.
pub(crate) fn data_batch(
    spans: &[&Span],
    hot: &[HotFields<'_>],
    resource_index: &[u32],
    path: &Path,
) -> Result<RecordBatch, BlockError> {
    let arrow = |e: ArrowError| BlockError::arrow(path, e);
    let n = spans.len();
    // Sized once (text by a typical length): growing Arrow buffers copies
    // them, and the cut is what bounds sustained ingest.
    let text = |bytes_per_row: usize| StringBuilder::with_capacity(n, n * bytes_per_row);
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut service = SharedText::default();
    let mut name = text(16);
    let mut kind = UInt8Builder::with_capacity(n);
    let mut status_code = UInt8Builder::with_capacity(n);
    let mut status_message = text(0);
    let mut start = UInt64Builder::with_capacity(n);
    let mut duration = UInt64Builder::with_capacity(n);
    let mut llm_model = text(8);
    let mut input_tokens = Int64Builder::with_capacity(n);
    let mut output_tokens = Int64Builder::with_capacity(n);
    let mut error_type = text(0);
    let attribute_count = spans.iter().map(|s| s.attributes.len()).sum();
    let mut attributes = AttrListBuilder::with_capacity(n, attribute_count);
    let mut events = ListBytesBuilder::with_capacity(n);
    let mut links = ListBytesBuilder::with_capacity(n);
    let mut scope_name = SharedText::default();
    let mut scope_version = SharedText::default();

    let mut last_service: Option<(*const Resource, &str)> = None;
    for (s, hot) in spans.iter().zip(hot) {
        let too_deep = |key: String| BlockError::ValueTooDeep {
            trace: s.trace_id.to_hex(),
            span: s.span_id.to_hex(),
            key,
            max: MAX_DEPTH,
        };
        trace_id.append_value(s.trace_id.0).map_err(arrow)?;
        span_id.append_value(s.span_id.0).map_err(arrow)?;
        match s.parent_span_id {
            Some(p) => parent.append_value(p.0).map_err(arrow)?,
            None => parent.append_null(),
        }
        // Spans of one export share their resource: one lookup per run.
        let resource_ptr = Arc::as_ptr(&s.resource);
        let service_name = match last_service {
            Some((r, name)) if r == resource_ptr => name,
            _ => {
                let name = s.service_name();
                last_service = Some((resource_ptr, name));
                name
            }
        };
        service.push(service_name);
        name.append_value(&s.name);
        kind.append_value(s.kind.otlp_number());
        status_code.append_value(s.status.code.otlp_number());
        status_message.append_value(&s.status.message);
        start.append_value(s.start.0);
        // Wrapping, so that `start + duration` rebuilds `end` exactly even
        // for a span that breaks the `end >= start` invariant.
        duration.append_value(s.end.0.wrapping_sub(s.start.0));
        llm_model.append_option(hot.llm_model);
        input_tokens.append_option(hot.input_tokens);
        output_tokens.append_option(hot.output_tokens);
        error_type.append_option(hot.error_type);
        attributes.push_list(&s.attributes).map_err(too_deep)?;
        events
            .push(&s.events, span_lists::encode_events)
            .map_err(too_deep)?;
        links
            .push(&s.links, span_lists::encode_links)
            .map_err(too_deep)?;
        scope_name.push(&s.scope.name);
        scope_version.push(&s.scope.version);
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        service.finish().map_err(arrow)?,
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(status_code.finish()),
        Arc::new(status_message.finish()),
        Arc::new(start.finish()),
        Arc::new(duration.finish()),
        Arc::new(llm_model.finish()),
        Arc::new(input_tokens.finish()),
        Arc::new(output_tokens.finish()),
        Arc::new(error_type.finish()),
        Arc::new(attributes.finish().map_err(arrow)?),
        Arc::new(events.values.finish()),
        Arc::new(links.values.finish()),
        Arc::new(UInt32Array::from(resource_index.to_vec())),
        scope_name.finish().map_err(arrow)?,
        scope_version.finish().map_err(arrow)?,
    ];
    RecordBatch::try_new(DATA_SCHEMA.clone(), columns).map_err(arrow)
}

/// A dictionary column ([`super::schema::shared_text`]) of values that
/// many rows share: each distinct value is held once, rows hold a key.
/// Spans that share a resource or scope share the very same `str`, so a
/// row is matched by address first; a value met at a new address is looked
/// up once by content.
#[derive(Default)]
struct SharedText<'a> {
    keys: Vec<i32>,
    values: Vec<&'a str>,
    by_address: HashMap<(*const u8, usize), i32>,
    by_value: HashMap<&'a str, i32>,
}

impl<'a> SharedText<'a> {
    fn push(&mut self, value: &'a str) {
        let address = (value.as_ptr(), value.len());
        let key = match self.by_address.get(&address) {
            Some(&key) => key,
            None => {
                let next = self.values.len() as i32;
                let key = *self.by_value.entry(value).or_insert(next);
                if key == next {
                    self.values.push(value);
                }
                self.by_address.insert(address, key);
                key
            }
        };
        self.keys.push(key);
    }

    fn finish(self) -> Result<ArrayRef, ArrowError> {
        // A batch holds far fewer than 2^31 rows, so keys cannot overflow.
        let values = StringArray::from(self.values);
        let array =
            DictionaryArray::<Int32Type>::try_new(Int32Array::from(self.keys), Arc::new(values))?;
        Ok(Arc::new(array))
    }
}

/// One nullable binary value per row: a span's events (or links) in the
/// [`span_lists`] encoding, null when it has none.
struct ListBytesBuilder {
    values: BinaryBuilder,
    scratch: Vec<u8>,
}

impl ListBytesBuilder {
    fn with_capacity(rows: usize) -> Self {
        ListBytesBuilder {
            values: BinaryBuilder::with_capacity(rows, 0),
            scratch: Vec::new(),
        }
    }

    /// Appends `items` encoded by `encode`; on a too-deep attribute value,
    /// returns what `encode` names.
    fn push<T>(
        &mut self,
        items: &[T],
        encode: fn(&[T], &mut Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        if items.is_empty() {
            self.values.append_null();
            return Ok(());
        }
        self.scratch.clear();
        encode(items, &mut self.scratch)?;
        self.values.append_value(&self.scratch);
        Ok(())
    }
}

/// One record batch of `traces.parquet` rows, in the order given.
pub(crate) fn traces_batch(
    summaries: &[TraceSummary],
    path: &Path,
) -> Result<RecordBatch, BlockError> {
    let arrow = |e: ArrowError| BlockError::arrow(path, e);
    let n = summaries.len();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut root_service = StringBuilder::new();
    let mut root_name = StringBuilder::new();
    let mut start = UInt64Builder::with_capacity(n);
    let mut end = UInt64Builder::with_capacity(n);
    let mut span_count = UInt64Builder::with_capacity(n);
    let mut error_count = UInt64Builder::with_capacity(n);
    for t in summaries {
        trace_id.append_value(t.trace_id.0).map_err(arrow)?;
        root_service.append_option(t.root_service.as_deref());
        root_name.append_option(t.root_name.as_deref());
        start.append_value(t.start_unix_nano.0);
        end.append_value(t.start_unix_nano.0.wrapping_add(t.duration_nano.0));
        span_count.append_value(t.span_count);
        error_count.append_value(t.error_count);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(root_service.finish()),
        Arc::new(root_name.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(span_count.finish()),
        Arc::new(error_count.finish()),
    ];
    RecordBatch::try_new(TRACES_SCHEMA.clone(), columns).map_err(arrow)
}

/// A rough size of what a span adds to Arrow buffers (its resource is
/// stored once per block, not per row), to keep one record
/// batch well below the 2 GiB that 32-bit string offsets allow.
pub(crate) fn approx_bytes(s: &Span) -> usize {
    approx_bytes_given(s, s.attributes.iter().map(approx_attr_bytes).sum())
}

/// [`approx_bytes`] of `s` when its attributes come to `attributes`
/// (the sum of their [`approx_attr_bytes`]), for a caller already walking
/// them.
pub(crate) fn approx_bytes_given(s: &Span, attributes: usize) -> usize {
    128 + s.name.len()
        + s.status.message.len()
        + attributes
        + s.events
            .iter()
            .map(|e| 16 + e.name.len() + attrs_bytes(&e.attributes))
            .sum::<usize>()
        + s.links
            .iter()
            .map(|l| 32 + attrs_bytes(&l.attributes))
            .sum::<usize>()
}

/// What one attribute adds to [`approx_bytes`].
pub(crate) fn approx_attr_bytes(kv: &KeyValue) -> usize {
    32 + kv.key.len() + approx_value_bytes(&kv.value)
}

fn attrs_bytes(kvs: &[KeyValue]) -> usize {
    kvs.iter().map(approx_attr_bytes).sum()
}

fn approx_value_bytes(v: &AnyValue) -> usize {
    match v {
        AnyValue::String(s) => s.len(),
        AnyValue::Bytes(b) => b.len(),
        AnyValue::Array(items) => items.iter().map(|i| 2 + approx_value_bytes(i)).sum(),
        AnyValue::KvList(kvs) => kvs
            .iter()
            .map(|kv| 4 + kv.key.len() + approx_value_bytes(&kv.value))
            .sum(),
        _ => 8,
    }
}
