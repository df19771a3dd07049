//! The columns of `data.parquet`, `traces.parquet` and `resources.parquet`,
//! the Parquet settings they are written with, and the block formats this
//! build reads ([`Format`]).
//!
//! This file is the format: changing a column, a type tag or an enum number
//! here means a new [`FORMAT_VERSION`](super::FORMAT_VERSION). It holds no
//! data and does no I/O.
//!
//! `vparquet2` differs from `vparquet1` in one column: `data.parquet` holds
//! `resource_index` (an index into `resources.parquet`, which stores each
//! distinct resource of the block once) where `vparquet1` repeated the
//! nested `resource_attributes` list on every row.
//!
//! `vparquet3` differs from `vparquet2` in two ways, both to cut the leaf
//! columns every span row fills (each leaf costs level encoding and page
//! bookkeeping per row, and the block cut is what bounds sustained ingest):
//! - An attribute struct has five fields, `key`, `type`, `str`, `int` and
//!   `bytes`, where `vparquet2` had seven: doubles and bools go into
//!   `bytes` in the [`super::value_codec`] body encoding, like arrays and
//!   kvlists. Strings and ints, what queries over attributes compare, keep
//!   typed columns.
//! - `events` and `links` are one nullable binary column each (null when
//!   the span has none, nearly always) in the [`super::span_lists`]
//!   encoding, where `vparquet2` had a nested list of structs with nine
//!   leaves each. No query reads them; they only rebuild spans.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use chaintrace_model::{AnyValue, SpanKind, StatusCode};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{
    BloomFilterProperties, EnabledStatistics, WriterProperties, WriterVersion,
};
use parquet::schema::types::ColumnPath;

/// Column names of `data.parquet`, in schema order.
pub(crate) mod col {
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    pub const SERVICE: &str = "service";
    pub const NAME: &str = "name";
    pub const KIND: &str = "kind";
    pub const STATUS_CODE: &str = "status_code";
    pub const STATUS_MESSAGE: &str = "status_message";
    pub const START: &str = "start_unix_nano";
    pub const DURATION: &str = "duration_nano";
    pub const LLM_MODEL: &str = "llm_model";
    pub const INPUT_TOKENS: &str = "input_tokens";
    pub const OUTPUT_TOKENS: &str = "output_tokens";
    pub const ERROR_TYPE: &str = "error_type";
    pub const ATTRIBUTES: &str = "attributes";
    pub const EVENTS: &str = "events";
    pub const LINKS: &str = "links";
    /// `vparquet2`: the span's row in `resources.parquet`.
    pub const RESOURCE_INDEX: &str = "resource_index";
    /// `vparquet1` only: the resource's attributes, repeated on every row.
    pub const RESOURCE_V1: &str = "resource_attributes";
    pub const SCOPE_NAME: &str = "scope_name";
    pub const SCOPE_VERSION: &str = "scope_version";
}

/// Column names of `traces.parquet`, in schema order.
pub(crate) mod trace_col {
    pub const TRACE_ID: &str = "trace_id";
    pub const ROOT_SERVICE: &str = "root_service";
    pub const ROOT_NAME: &str = "root_name";
    pub const START: &str = "start_unix_nano";
    pub const END: &str = "end_unix_nano";
    pub const SPAN_COUNT: &str = "span_count";
    pub const ERROR_COUNT: &str = "error_count";
}

/// Column names of `resources.parquet` (`vparquet2`), in schema order.
pub(crate) mod resource_col {
    pub const ATTRIBUTES: &str = "attributes";
}

/// A block format this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Resource attributes repeated on every row of `data.parquet`.
    V1,
    /// Resources once per block in `resources.parquet`; rows hold an index.
    V2,
    /// As `V2`, with five-field attribute structs and events and links as
    /// encoded bytes.
    V3,
    /// As `V3`, with `service`, `scope_name` and `scope_version` as
    /// dictionary arrays ([`shared_text`]): values shared by many spans (a
    /// resource's service, a scope) are held once per batch in memory too,
    /// not once per row. In `V3` a 96 KiB scope name on 3 000 spans became a
    /// 288 MiB Arrow column at every cut and every read.
    V4,
}

/// The Arrow type of a text column whose values many rows share: a
/// dictionary of `Utf8` values with `Int32` keys. In the Parquet file it is
/// an ordinary dictionary-encoded string column.
pub(crate) fn shared_text() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

impl Format {
    /// The format this build writes.
    pub(crate) const CURRENT: Format = Format::V4;

    /// The format named `name` in `meta.json` or a Parquet footer.
    pub(crate) fn from_name(name: &str) -> Option<Format> {
        match name {
            "vparquet1" => Some(Format::V1),
            "vparquet2" => Some(Format::V2),
            "vparquet3" => Some(Format::V3),
            "vparquet4" => Some(Format::V4),
            _ => None,
        }
    }

    /// Its name in `meta.json` and Parquet footers.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Format::V1 => "vparquet1",
            Format::V2 => "vparquet2",
            Format::V3 => "vparquet3",
            Format::V4 => "vparquet4",
        }
    }

    /// The Arrow schema of its `data.parquet`.
    pub(crate) fn data_schema(self) -> &'static SchemaRef {
        match self {
            Format::V1 => &DATA_SCHEMA_V1,
            Format::V2 => &DATA_SCHEMA_V2,
            Format::V3 => &DATA_SCHEMA_V3,
            Format::V4 => &DATA_SCHEMA,
        }
    }

    /// The `data.parquet` column a span's resource is rebuilt from.
    pub(crate) fn resource_column(self) -> &'static str {
        match self {
            Format::V1 => col::RESOURCE_V1,
            Format::V2 | Format::V3 | Format::V4 => col::RESOURCE_INDEX,
        }
    }

    /// The Arrow schema of its `resources.parquet`; `None` for `V1`, which
    /// has no such file.
    pub(crate) fn resources_schema(self) -> Option<&'static SchemaRef> {
        match self {
            Format::V1 => None,
            Format::V2 => Some(&RESOURCES_SCHEMA_V2),
            Format::V3 | Format::V4 => Some(&RESOURCES_SCHEMA),
        }
    }
}

/// The `type` tag of an attribute: which value column holds its value.
/// Strings live in `str` and ints in `int`; raw bytes in `bytes`; doubles,
/// bools, arrays and kvlists in `bytes` as a [`super::value_codec`] body
/// (`vparquet3`; `vparquet1` and `vparquet2` had `double` and `bool`
/// columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ValueType {
    Empty = 0,
    String = 1,
    Bool = 2,
    Int = 3,
    Double = 4,
    Bytes = 5,
    Array = 6,
    KvList = 7,
}

impl ValueType {
    pub(crate) fn of(v: &AnyValue) -> ValueType {
        match v {
            AnyValue::Empty => ValueType::Empty,
            AnyValue::String(_) => ValueType::String,
            AnyValue::Bool(_) => ValueType::Bool,
            AnyValue::Int(_) => ValueType::Int,
            AnyValue::Double(_) => ValueType::Double,
            AnyValue::Bytes(_) => ValueType::Bytes,
            AnyValue::Array(_) => ValueType::Array,
            AnyValue::KvList(_) => ValueType::KvList,
        }
    }

    pub(crate) fn from_u8(n: u8) -> Option<ValueType> {
        Some(match n {
            0 => ValueType::Empty,
            1 => ValueType::String,
            2 => ValueType::Bool,
            3 => ValueType::Int,
            4 => ValueType::Double,
            5 => ValueType::Bytes,
            6 => ValueType::Array,
            7 => ValueType::KvList,
            _ => return None,
        })
    }
}

pub(crate) fn kind_from_u8(n: u8) -> Option<SpanKind> {
    Some(match n {
        0 => SpanKind::Unspecified,
        1 => SpanKind::Internal,
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => return None,
    })
}

pub(crate) fn status_from_u8(n: u8) -> Option<StatusCode> {
    Some(match n {
        0 => StatusCode::Unset,
        1 => StatusCode::Ok,
        2 => StatusCode::Error,
        _ => return None,
    })
}

/// The struct of one attribute as this build writes it: key, type tag, and
/// nullable value columns of which only the one the type names is set
/// (see [`ValueType`]).
pub(crate) fn attr_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("type", DataType::UInt8, false),
        Field::new("str", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("bytes", DataType::Binary, true),
    ])
}

/// The attribute struct of `vparquet1` and `vparquet2`: typed `double` and
/// `bool` columns as well.
fn attr_fields_v2() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("type", DataType::UInt8, false),
        Field::new("str", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("double", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("bytes", DataType::Binary, true),
    ])
}

/// The list element field wrapping a struct of `fields`.
pub(crate) fn item_field(fields: Fields) -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(fields), false))
}

fn attr_list() -> DataType {
    DataType::List(item_field(attr_fields()))
}

fn attr_list_v2() -> DataType {
    DataType::List(item_field(attr_fields_v2()))
}

/// The struct of one event in `vparquet1` and `vparquet2`.
fn event_fields_v2() -> Fields {
    Fields::from(vec![
        Field::new("time_unix_nano", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", attr_list_v2(), false),
    ])
}

/// The struct of one link in `vparquet1` and `vparquet2`.
fn link_fields_v2() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("attributes", attr_list_v2(), false),
    ])
}

/// The Arrow schema of `data.parquet` as this build writes it: hot columns
/// first, then the generic ones and `resource_index` that (with
/// `resources.parquet`) rebuild every span field.
pub(crate) static DATA_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    data_schema(
        Field::new(col::RESOURCE_INDEX, DataType::UInt32, false),
        attr_list(),
        Field::new(col::EVENTS, DataType::Binary, true),
        Field::new(col::LINKS, DataType::Binary, true),
        shared_text(),
    )
});

/// The Arrow schema of a `vparquet3` `data.parquet`, read but no longer
/// written.
pub(crate) static DATA_SCHEMA_V3: LazyLock<SchemaRef> = LazyLock::new(|| {
    data_schema(
        Field::new(col::RESOURCE_INDEX, DataType::UInt32, false),
        attr_list(),
        Field::new(col::EVENTS, DataType::Binary, true),
        Field::new(col::LINKS, DataType::Binary, true),
        DataType::Utf8,
    )
});

/// The Arrow schema of a `vparquet2` `data.parquet`, read but no longer
/// written.
pub(crate) static DATA_SCHEMA_V2: LazyLock<SchemaRef> = LazyLock::new(|| {
    data_schema(
        Field::new(col::RESOURCE_INDEX, DataType::UInt32, false),
        attr_list_v2(),
        events_v2(),
        links_v2(),
        DataType::Utf8,
    )
});

/// The Arrow schema of a `vparquet1` `data.parquet`, read but no longer
/// written.
pub(crate) static DATA_SCHEMA_V1: LazyLock<SchemaRef> = LazyLock::new(|| {
    data_schema(
        Field::new(col::RESOURCE_V1, attr_list_v2(), false),
        attr_list_v2(),
        events_v2(),
        links_v2(),
        DataType::Utf8,
    )
});

fn events_v2() -> Field {
    Field::new(
        col::EVENTS,
        DataType::List(item_field(event_fields_v2())),
        false,
    )
}

fn links_v2() -> Field {
    Field::new(
        col::LINKS,
        DataType::List(item_field(link_fields_v2())),
        false,
    )
}

/// The data schema with `resource` as its resource column, `attributes`
/// as the type of the span attribute list, the given events and links
/// columns, and `shared` as the type of the service and scope columns; the
/// formats differ in nothing else.
fn data_schema(
    resource: Field,
    attributes: DataType,
    events: Field,
    links: Field,
    shared: DataType,
) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(col::SPAN_ID, DataType::FixedSizeBinary(8), false),
        Field::new(col::PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(col::SERVICE, shared.clone(), false),
        Field::new(col::NAME, DataType::Utf8, false),
        Field::new(col::KIND, DataType::UInt8, false),
        Field::new(col::STATUS_CODE, DataType::UInt8, false),
        Field::new(col::STATUS_MESSAGE, DataType::Utf8, false),
        Field::new(col::START, DataType::UInt64, false),
        Field::new(col::DURATION, DataType::UInt64, false),
        Field::new(col::LLM_MODEL, DataType::Utf8, true),
        Field::new(col::INPUT_TOKENS, DataType::Int64, true),
        Field::new(col::OUTPUT_TOKENS, DataType::Int64, true),
        Field::new(col::ERROR_TYPE, DataType::Utf8, true),
        Field::new(col::ATTRIBUTES, attributes, false),
        events,
        links,
        resource,
        Field::new(col::SCOPE_NAME, shared.clone(), false),
        Field::new(col::SCOPE_VERSION, shared, false),
    ]))
}

/// The Arrow schema of `resources.parquet`: one row per distinct resource
/// of the block, in the order `resource_index` counts them.
pub(crate) static RESOURCES_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| resources_schema(attr_list()));

/// The Arrow schema of a `vparquet2` `resources.parquet`.
static RESOURCES_SCHEMA_V2: LazyLock<SchemaRef> =
    LazyLock::new(|| resources_schema(attr_list_v2()));

fn resources_schema(attributes: DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        resource_col::ATTRIBUTES,
        attributes,
        false,
    )]))
}

/// The Arrow schema of `traces.parquet`: one row per trace, sorted by start.
pub(crate) static TRACES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(trace_col::TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(trace_col::ROOT_SERVICE, DataType::Utf8, true),
        Field::new(trace_col::ROOT_NAME, DataType::Utf8, true),
        Field::new(trace_col::START, DataType::UInt64, false),
        Field::new(trace_col::END, DataType::UInt64, false),
        Field::new(trace_col::SPAN_COUNT, DataType::UInt64, false),
        Field::new(trace_col::ERROR_COUNT, DataType::UInt64, false),
    ]))
});

/// Key-value metadata naming the format inside each Parquet footer, so a
/// file found alone still says what it is.
pub(crate) const FORMAT_KEY: &str = "chaintrace.block.format";

/// Rows per data page: small pages let a trace lookup decode a few
/// hundred rows of each column instead of a whole row group.
const DATA_PAGE_ROWS: usize = 256;

/// Leaf columns a trace lookup reads that compression barely shrinks
/// (random ids, dictionary indices, delta-packed numbers). They stay
/// uncompressed: decompressing them is pure cost.
fn uncompressed_leaves() -> Vec<ColumnPath> {
    [
        col::SPAN_ID,
        col::NAME,
        col::KIND,
        col::STATUS_CODE,
        col::STATUS_MESSAGE,
        col::DURATION,
        col::RESOURCE_INDEX,
        col::SCOPE_NAME,
        col::SCOPE_VERSION,
    ]
    .iter()
    .map(|c| ColumnPath::from(*c))
    .collect()
}

/// The `str` leaf of the span attribute list: the column path of its bloom
/// filter (`attributes` is a list of `item` structs).
pub(crate) fn attribute_str_path() -> ColumnPath {
    ColumnPath::new(vec![
        col::ATTRIBUTES.to_string(),
        "list".to_string(),
        "item".to_string(),
        "str".to_string(),
    ])
}

/// What the attribute-value bloom filter of a row group is first sized
/// for (the writer folds it down to the values it saw).
const ATTRIBUTE_VALUES_PER_ROW_GROUP: u64 = 256 * 1024;

/// Settings of `data.parquet`.
///
/// - LZ4 (raw) where it pays, dictionaries on (names, services, keys,
///   models repeat), page v1 (levels compressed with the values). zstd
///   made blocks ~15 % smaller but cost more than half of a trace lookup
///   (the reader creates a zstd context per column chunk, then
///   decompresses) and a large share of the cut's CPU.
/// - Pages of [`DATA_PAGE_ROWS`] rows: a lookup decodes (mostly: skips
///   through) one page per column to reach a trace's few rows. At 10 M
///   spans, 256 rows against 512: lookups p50 1.3-1.5 ms / p99 2.7-3.4 ms
///   against 1.5-1.9 / 3.7-7.3, for ~5 % more cut CPU and 36.5 against
///   33.6 bytes per span; 2 048 rows doubled lookup times.
/// - Ids are random: no dictionary for `span_id` (it would only add
///   indices); `trace_id` runs of equal values cost almost nothing with
///   `DELTA_BYTE_ARRAY`, and a lookup has no large dictionary to decode.
/// - Start times are nearly unique: delta-packed, no dictionary.
///   Durations try a dictionary first (millisecond clocks repeat values)
///   and fall back to delta packing.
/// - Page statistics (the column index) only where pruning uses them:
///   `trace_id` and `start_unix_nano`; chunk statistics elsewhere.
/// - A bloom filter on `trace_id`, sized for `traces_per_row_group` and
///   folded down by the writer to the target false-positive rate; another
///   on the string values of span attributes, for needle searches.
pub(crate) fn data_properties(traces_per_row_group: u64) -> WriterProperties {
    let trace_id = ColumnPath::from(col::TRACE_ID);
    let start = ColumnPath::from(col::START);
    let schema = &*DATA_SCHEMA;
    let index = |name: &str| schema.index_of(name).unwrap_or(0) as i32;
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(None)
        .set_data_page_row_count_limit(DATA_PAGE_ROWS)
        .set_write_batch_size(1024)
        // Min/max of nested attribute strings costs a comparison per value
        // and prunes nothing: statistics only for the columns queries use.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(trace_id.clone(), EnabledStatistics::Page)
        .set_column_statistics_enabled(start.clone(), EnabledStatistics::Page)
        .set_column_dictionary_enabled(trace_id.clone(), false)
        .set_column_encoding(trace_id.clone(), Encoding::DELTA_BYTE_ARRAY)
        .set_column_dictionary_enabled(ColumnPath::from(col::SPAN_ID), false)
        .set_column_dictionary_enabled(start.clone(), false)
        .set_column_encoding(start, Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(
            ColumnPath::from(col::DURATION),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_bloom_filter_properties(
            trace_id,
            BloomFilterProperties::builder()
                .with_fpp(0.01)
                .with_max_ndv(traces_per_row_group.max(1))
                .build(),
        )
        // Needle searches (`{ span.user_id = "u-123" }`) skip row groups
        // whose string attribute values cannot hold theirs. Sized for a
        // few values per span, folded down by the writer to what the row
        // group really holds.
        .set_column_bloom_filter_properties(
            attribute_str_path(),
            BloomFilterProperties::builder()
                .with_fpp(0.01)
                .with_max_ndv(ATTRIBUTE_VALUES_PER_ROW_GROUP)
                .build(),
        )
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: index(col::TRACE_ID),
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: index(col::START),
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_key_value_metadata(Some(vec![format_key_value()]));
    for name in [
        col::SPAN_ID,
        col::SERVICE,
        col::NAME,
        col::KIND,
        col::STATUS_CODE,
        col::DURATION,
        col::LLM_MODEL,
        col::INPUT_TOKENS,
        col::OUTPUT_TOKENS,
        col::ERROR_TYPE,
    ] {
        b = b.set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::Chunk);
    }
    for path in uncompressed_leaves() {
        b = b.set_column_compression(path, Compression::UNCOMPRESSED);
    }
    b.build()
}

/// Settings of `resources.parquet`: a few rows, read whole once per open.
pub(crate) fn resources_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_key_value_metadata(Some(vec![format_key_value()]))
        .build()
}

/// The footer entry naming the format written.
fn format_key_value() -> KeyValue {
    KeyValue::new(FORMAT_KEY.to_string(), Format::CURRENT.name().to_string())
}

/// Settings of `traces.parquet`: small, read whole or pruned by start time.
/// Rows per row group of `traces.parquet`.
const TRACES_ROW_GROUP_ROWS: usize = 8 * 1024;

pub(crate) fn traces_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        // Small row groups: listing the newest traces reads a block's
        // newest row group first and stops there. Compacted blocks each
        // span the whole window, so every one of them is read that way.
        .set_max_row_group_row_count(Some(TRACES_ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(ColumnPath::from(trace_col::TRACE_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(trace_col::START), false)
        .set_column_encoding(
            ColumnPath::from(trace_col::START),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_dictionary_enabled(ColumnPath::from(trace_col::END), false)
        .set_column_encoding(
            ColumnPath::from(trace_col::END),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_key_value_metadata(Some(vec![format_key_value()]))
        .build()
}
