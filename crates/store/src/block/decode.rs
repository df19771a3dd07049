//! Arrow record batches in the block schema back to spans and summaries.
//!
//! The inverse of [`super::encode`]. Input comes from disk, so every shape
//! and index is checked and reported as a message (the caller adds the file
//! name); nothing here may panic on a damaged file. Only the generic
//! columns and the span's own fields are read: the derived hot columns are
//! for queries and play no part in rebuilding a span.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, BinaryArray, DictionaryArray, FixedSizeBinaryArray, ListArray, RecordBatch, StringArray,
    StructArray, TypedDictionaryArray, UInt32Array, UInt64Array, UInt8Array,
};
use chaintrace_model::{
    DurationNanos, Event, Link, Resource, Scope, Span, SpanId, Status, TraceId, TraceSummary,
    UnixNanos,
};

use super::attrs::{downcast, list_range, AttrListReader};
use super::schema::{col, kind_from_u8, status_from_u8, trace_col};
use super::span_lists;
use super::RESOURCES_FILE;

/// The top-level `data.parquet` columns a span is rebuilt from, besides
/// its format's resource column
/// ([`Format::resource_column`](super::schema::Format::resource_column)).
pub(crate) const SPAN_COLUMNS: [&str; 14] = [
    col::TRACE_ID,
    col::SPAN_ID,
    col::PARENT_SPAN_ID,
    col::NAME,
    col::KIND,
    col::STATUS_CODE,
    col::STATUS_MESSAGE,
    col::START,
    col::DURATION,
    col::ATTRIBUTES,
    col::EVENTS,
    col::LINKS,
    col::SCOPE_NAME,
    col::SCOPE_VERSION,
];

/// Finds a column by name and checks its type and, when `required`, that
/// it holds no nulls.
fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    required: bool,
) -> Result<&'a T, String> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| format!("column {name} is missing"))?;
    if required && array.null_count() > 0 {
        return Err(format!("column {name} holds nulls"));
    }
    downcast(array.as_ref(), name)
}

fn fixed<'a>(
    array: &'a FixedSizeBinaryArray,
    name: &str,
    width: i32,
) -> Result<&'a FixedSizeBinaryArray, String> {
    if array.value_length() != width {
        return Err(format!(
            "column {name} holds {}-byte values, want {width}",
            array.value_length()
        ));
    }
    Ok(array)
}

/// Typed views of one `data.parquet` batch.
pub(crate) struct SpanColumns<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent: &'a FixedSizeBinaryArray,
    name: &'a StringArray,
    kind: &'a UInt8Array,
    status_code: &'a UInt8Array,
    status_message: &'a StringArray,
    start: &'a UInt64Array,
    duration: &'a UInt64Array,
    attributes: AttrListReader<'a>,
    events: ListColumn<'a, NestedEvents<'a>>,
    links: ListColumn<'a, NestedLinks<'a>>,
    resource: ResourceColumn<'a>,
    scope_name: TextColumn<'a>,
    scope_version: TextColumn<'a>,
    /// The last scope built: rows of one scope share it.
    last_scope: Option<(ScopeKeys, Arc<Scope>)>,
}

/// The dictionary keys of a row's scope name and version, when the columns
/// have keys (`vparquet4`).
type ScopeKeys = Option<(usize, usize)>;

/// A text column as either format stores it: plain `Utf8` (up to
/// `vparquet3`) or a dictionary ([`super::schema::shared_text`]).
pub(crate) enum TextColumn<'a> {
    Plain(&'a StringArray),
    Shared(TypedDictionaryArray<'a, Int32Type, StringArray>),
}

impl<'a> TextColumn<'a> {
    /// Column `name` of `batch`, with no nulls when `required`.
    pub(crate) fn of(batch: &'a RecordBatch, name: &str, required: bool) -> Result<Self, String> {
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| format!("column {name} is missing"))?;
        if required && array.null_count() > 0 {
            return Err(format!("column {name} holds nulls"));
        }
        if let Some(plain) = array.as_any().downcast_ref::<StringArray>() {
            return Ok(TextColumn::Plain(plain));
        }
        let dict: &DictionaryArray<Int32Type> = downcast(array.as_ref(), name)?;
        let typed = dict
            .downcast_dict::<StringArray>()
            .ok_or_else(|| format!("column {name} has type {}", array.data_type()))?;
        Ok(TextColumn::Shared(typed))
    }

    /// Whether `row` holds a value.
    pub(crate) fn is_valid(&self, row: usize) -> bool {
        match self {
            TextColumn::Plain(a) => a.is_valid(row),
            TextColumn::Shared(d) => d.is_valid(row),
        }
    }

    /// The text of `row` (`row < len`); "" for a key out of range.
    pub(crate) fn value(&self, row: usize) -> &'a str {
        match self {
            TextColumn::Plain(a) => a.value(row),
            TextColumn::Shared(d) => {
                let key = d.keys().value(row);
                usize::try_from(key)
                    .ok()
                    .filter(|&k| k < d.values().len())
                    .map_or("", |k| d.values().value(k))
            }
        }
    }

    /// The dictionary key of `row`, when the column has keys.
    fn key(&self, row: usize) -> Option<usize> {
        match self {
            TextColumn::Plain(_) => None,
            TextColumn::Shared(d) => usize::try_from(d.keys().value(row)).ok(),
        }
    }
}

/// Where a span's resource comes from.
enum ResourceColumn<'a> {
    /// `vparquet2`: an index into the block's resource table.
    Index {
        index: &'a UInt32Array,
        table: &'a [Arc<Resource>],
    },
    /// `vparquet1`: the attributes on every row.
    Attributes {
        list: AttrListReader<'a>,
        /// The last resource built: consecutive spans of one resource
        /// share it.
        last: Option<Arc<Resource>>,
    },
}

impl ResourceColumn<'_> {
    fn get(&mut self, row: usize) -> Result<Arc<Resource>, String> {
        match self {
            ResourceColumn::Index { index, table } => {
                let i = index.value(row);
                table.get(i as usize).cloned().ok_or_else(|| {
                    format!(
                        "row {row}: {} {i} is out of range, {RESOURCES_FILE} holds {} resources",
                        col::RESOURCE_INDEX,
                        table.len()
                    )
                })
            }
            ResourceColumn::Attributes { list, last } => {
                let attributes = list.get(row)?;
                Ok(match last {
                    Some(r) if r.attributes == attributes => r.clone(),
                    _ => last.insert(Arc::new(Resource { attributes })).clone(),
                })
            }
        }
    }
}

impl<'a> SpanColumns<'a> {
    /// Views of `batch`; `resources` is the block's resource table for a
    /// `vparquet2` block, `None` for a `vparquet1` one (whose rows carry
    /// their resource's attributes).
    pub(crate) fn new(
        batch: &'a RecordBatch,
        resources: Option<&'a [Arc<Resource>]>,
    ) -> Result<Self, String> {
        let resource = match resources {
            Some(table) => ResourceColumn::Index {
                index: column(batch, col::RESOURCE_INDEX, true)?,
                table,
            },
            None => ResourceColumn::Attributes {
                list: AttrListReader::new(
                    column::<ListArray>(batch, col::RESOURCE_V1, true)?,
                    col::RESOURCE_V1,
                )?,
                last: None,
            },
        };
        Ok(SpanColumns {
            trace_id: fixed(column(batch, col::TRACE_ID, true)?, col::TRACE_ID, 16)?,
            span_id: fixed(column(batch, col::SPAN_ID, true)?, col::SPAN_ID, 8)?,
            parent: fixed(
                column(batch, col::PARENT_SPAN_ID, false)?,
                col::PARENT_SPAN_ID,
                8,
            )?,
            name: column(batch, col::NAME, true)?,
            kind: column(batch, col::KIND, true)?,
            status_code: column(batch, col::STATUS_CODE, true)?,
            status_message: column(batch, col::STATUS_MESSAGE, true)?,
            start: column(batch, col::START, true)?,
            duration: column(batch, col::DURATION, true)?,
            attributes: AttrListReader::new(
                column::<ListArray>(batch, col::ATTRIBUTES, true)?,
                col::ATTRIBUTES,
            )?,
            events: ListColumn::new(batch, col::EVENTS, NestedEvents::new)?,
            links: ListColumn::new(batch, col::LINKS, NestedLinks::new)?,
            resource,
            scope_name: TextColumn::of(batch, col::SCOPE_NAME, true)?,
            scope_version: TextColumn::of(batch, col::SCOPE_VERSION, true)?,
            last_scope: None,
        })
    }

    /// Rows in the batch.
    pub(crate) fn len(&self) -> usize {
        self.trace_id.len()
    }

    /// The trace id bytes of `row` (`row < len()`).
    pub(crate) fn trace_id(&self, row: usize) -> &[u8] {
        self.trace_id.value(row)
    }

    /// Rebuilds the span in `row` (`row < len()`).
    pub(crate) fn span(&mut self, row: usize) -> Result<Span, String> {
        let kind = self.kind.value(row);
        let code = self.status_code.value(row);
        let start = self.start.value(row);
        let resource = self.resource.get(row)?;
        let scope = self.scope(row);
        Ok(Span {
            trace_id: TraceId(to_array(self.trace_id.value(row))),
            span_id: SpanId(to_array(self.span_id.value(row))),
            parent_span_id: self
                .parent
                .is_valid(row)
                .then(|| SpanId(to_array(self.parent.value(row)))),
            name: self.name.value(row).into(),
            kind: kind_from_u8(kind).ok_or_else(|| format!("row {row}: span kind {kind}"))?,
            start: UnixNanos(start),
            end: UnixNanos(start.wrapping_add(self.duration.value(row))),
            status: Status {
                code: status_from_u8(code)
                    .ok_or_else(|| format!("row {row}: status code {code}"))?,
                message: self.status_message.value(row).to_string(),
            },
            attributes: self.attributes.get(row)?,
            events: self.events(row)?,
            links: self.links(row)?,
            resource,
            scope,
        })
    }

    /// The scope of `row`, shared with the previous row's when equal.
    fn scope(&mut self, row: usize) -> Arc<Scope> {
        let keys = self.scope_name.key(row).zip(self.scope_version.key(row));
        let (name, version) = (self.scope_name.value(row), self.scope_version.value(row));
        if let Some((last_keys, scope)) = &self.last_scope {
            let same = match (keys, last_keys) {
                (Some(k), Some(last)) => k == *last,
                _ => scope.name == name && scope.version == version,
            };
            if same {
                return Arc::clone(scope);
            }
        }
        let scope = Arc::new(Scope {
            name: name.into(),
            version: version.into(),
        });
        self.last_scope = Some((keys, Arc::clone(&scope)));
        scope
    }

    fn events(&self, row: usize) -> Result<Vec<Event>, String> {
        let e = match &self.events {
            ListColumn::Bytes(b) => {
                return list_bytes(b, row, col::EVENTS, span_lists::decode_events)
            }
            ListColumn::Nested(e) => e,
        };
        list_range(e.list, row, col::EVENTS)?
            .map(|j| {
                Ok(Event {
                    time: UnixNanos(e.time.value(j)),
                    name: e.name.value(j).to_string(),
                    attributes: e.attributes.get(j)?,
                })
            })
            .collect()
    }

    fn links(&self, row: usize) -> Result<Vec<Link>, String> {
        let l = match &self.links {
            ListColumn::Bytes(b) => {
                return list_bytes(b, row, col::LINKS, span_lists::decode_links)
            }
            ListColumn::Nested(l) => l,
        };
        list_range(l.list, row, col::LINKS)?
            .map(|j| {
                Ok(Link {
                    trace_id: TraceId(to_array(l.trace_id.value(j))),
                    span_id: SpanId(to_array(l.span_id.value(j))),
                    attributes: l.attributes.get(j)?,
                })
            })
            .collect()
    }
}

/// The events or links of `row` from a `vparquet3` binary column: none
/// when null, else what `decode` reads from the value.
fn list_bytes<T>(
    column: &BinaryArray,
    row: usize,
    what: &str,
    decode: fn(&[u8]) -> Result<Vec<T>, String>,
) -> Result<Vec<T>, String> {
    if column.is_null(row) {
        return Ok(Vec::new());
    }
    decode(column.value(row)).map_err(|e| format!("row {row}: {what}: {e}"))
}

/// Copies a slice whose length the column width already guarantees.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// The struct values of a list column and a getter for its checked fields.
fn struct_fields<'a>(
    list: &'a ListArray,
    what: &'a str,
) -> Result<impl Fn(&str) -> Result<&'a dyn Array, String> + 'a, String> {
    let s: &'a StructArray = downcast(list.values().as_ref(), what)?;
    Ok(move |name: &str| {
        let c = s
            .column_by_name(name)
            .ok_or_else(|| format!("{what}: field {name} is missing"))?;
        if c.len() != s.len() || c.null_count() > 0 {
            return Err(format!(
                "{what}: field {name} has the wrong length or nulls"
            ));
        }
        Ok(c.as_ref())
    })
}

/// The `events` or `links` column.
enum ListColumn<'a, N> {
    /// `vparquet3`: one nullable binary value per row.
    Bytes(&'a BinaryArray),
    /// `vparquet1` and `vparquet2`: a list of structs, viewed as `N`.
    Nested(N),
}

impl<'a, N> ListColumn<'a, N> {
    /// The column `name` of `batch`: binary, or a list that `nested` views.
    fn new(
        batch: &'a RecordBatch,
        name: &str,
        nested: fn(&'a ListArray) -> Result<N, String>,
    ) -> Result<Self, String> {
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| format!("column {name} is missing"))?;
        Ok(match array.as_any().downcast_ref::<BinaryArray>() {
            Some(b) => ListColumn::Bytes(b),
            None => ListColumn::Nested(nested(column(batch, name, true)?)?),
        })
    }
}

/// The `vparquet2` `events` column: `List<Struct<time_unix_nano, name,
/// attributes>>`.
struct NestedEvents<'a> {
    list: &'a ListArray,
    time: &'a UInt64Array,
    name: &'a StringArray,
    attributes: AttrListReader<'a>,
}

impl<'a> NestedEvents<'a> {
    fn new(list: &'a ListArray) -> Result<Self, String> {
        let field = struct_fields(list, col::EVENTS)?;
        Ok(NestedEvents {
            list,
            time: downcast(field("time_unix_nano")?, "events.time_unix_nano")?,
            name: downcast(field("name")?, "events.name")?,
            attributes: AttrListReader::new(field("attributes")?, "events.attributes")?,
        })
    }
}

/// The `vparquet2` `links` column: `List<Struct<trace_id, span_id,
/// attributes>>`.
struct NestedLinks<'a> {
    list: &'a ListArray,
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    attributes: AttrListReader<'a>,
}

impl<'a> NestedLinks<'a> {
    fn new(list: &'a ListArray) -> Result<Self, String> {
        let field = struct_fields(list, col::LINKS)?;
        Ok(NestedLinks {
            list,
            trace_id: fixed(
                downcast(field("trace_id")?, "links.trace_id")?,
                "links.trace_id",
                16,
            )?,
            span_id: fixed(
                downcast(field("span_id")?, "links.span_id")?,
                "links.span_id",
                8,
            )?,
            attributes: AttrListReader::new(field("attributes")?, "links.attributes")?,
        })
    }
}

/// The summaries in one `traces.parquet` batch.
pub(crate) fn summaries(batch: &RecordBatch) -> Result<Vec<TraceSummary>, String> {
    let trace_id = fixed(
        column(batch, trace_col::TRACE_ID, true)?,
        trace_col::TRACE_ID,
        16,
    )?;
    let root_service: &StringArray = column(batch, trace_col::ROOT_SERVICE, false)?;
    let root_name: &StringArray = column(batch, trace_col::ROOT_NAME, false)?;
    let start: &UInt64Array = column(batch, trace_col::START, true)?;
    let end: &UInt64Array = column(batch, trace_col::END, true)?;
    let span_count: &UInt64Array = column(batch, trace_col::SPAN_COUNT, true)?;
    let error_count: &UInt64Array = column(batch, trace_col::ERROR_COUNT, true)?;
    let text = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    Ok((0..batch.num_rows())
        .map(|i| TraceSummary {
            trace_id: TraceId(to_array(trace_id.value(i))),
            root_service: text(root_service, i),
            root_name: text(root_name, i),
            start_unix_nano: UnixNanos(start.value(i)),
            duration_nano: DurationNanos(end.value(i).wrapping_sub(start.value(i))),
            span_count: span_count.value(i),
            error_count: error_count.value(i),
        })
        .collect())
}
