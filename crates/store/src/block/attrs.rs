//! Attribute lists as Arrow columns: `List<Struct<key, type, str, int,
//! bytes>>`, built from and read back into `Vec<KeyValue>`.
//!
//! Span attributes and resource attributes use this one shape. Strings and
//! ints go to their own typed column (so Parquet can dictionary-encode keys
//! and repeated values); raw bytes go to `bytes`, and doubles, bools,
//! arrays and kvlists to `bytes` via [`super::value_codec`]. The reader
//! also takes the seven-field struct of `vparquet1` and `vparquet2`, whose
//! doubles and bools have typed columns. This file knows nothing of spans
//! or files.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, Int64Builder, StringBuilder, UInt8Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    StructArray, UInt8Array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::ArrowError;
use chaintrace_model::{AnyValue, KeyValue};

use super::schema::{attr_fields, item_field, ValueType};
use super::value_codec::{self, TooDeep};

/// Text bytes reserved per attribute key and string value: a guess (keys
/// like `gen_ai.usage.input_tokens`); longer text just grows the buffer.
const TYPICAL_KEY_BYTES: usize = 24;
const TYPICAL_VALUE_BYTES: usize = 24;

/// Builds one `List<attribute struct>` column, one list per row.
pub(crate) struct AttrListBuilder {
    offsets: Vec<i32>,
    key: StringBuilder,
    ty: UInt8Builder,
    str: StringBuilder,
    int: Int64Builder,
    bytes: BinaryBuilder,
    scratch: Vec<u8>,
}

impl AttrListBuilder {
    pub(crate) fn new() -> AttrListBuilder {
        AttrListBuilder::with_capacity(0, 0)
    }

    /// A builder with room for `rows` lists holding `items` attributes in
    /// all, so that a block cut does not grow (and copy) its buffers.
    pub(crate) fn with_capacity(rows: usize, items: usize) -> AttrListBuilder {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        AttrListBuilder {
            offsets,
            key: StringBuilder::with_capacity(items, items * TYPICAL_KEY_BYTES),
            ty: UInt8Builder::with_capacity(items),
            str: StringBuilder::with_capacity(items, items * TYPICAL_VALUE_BYTES),
            int: Int64Builder::with_capacity(items),
            bytes: BinaryBuilder::with_capacity(items, 0),
            scratch: Vec::new(),
        }
    }

    /// Appends one row's list. On a too-deep value, returns its key; the
    /// builder is then unusable (the caller abandons the block).
    pub(crate) fn push_list(&mut self, kvs: &[KeyValue]) -> Result<(), String> {
        for kv in kvs {
            self.push(kv).map_err(|TooDeep| kv.key.clone())?;
        }
        let len = self.ty.len();
        self.offsets.push(len as i32);
        Ok(())
    }

    fn push(&mut self, kv: &KeyValue) -> Result<(), TooDeep> {
        let v = &kv.value;
        self.key.append_value(&kv.key);
        self.ty.append_value(ValueType::of(v) as u8);
        match v {
            AnyValue::String(s) => self.str.append_value(s),
            _ => self.str.append_null(),
        }
        match v {
            AnyValue::Int(i) => self.int.append_value(*i),
            _ => self.int.append_null(),
        }
        match v {
            AnyValue::Bytes(b) => self.bytes.append_value(b),
            AnyValue::Double(_) | AnyValue::Bool(_) | AnyValue::Array(_) | AnyValue::KvList(_) => {
                self.scratch.clear();
                value_codec::encode_body(v, &mut self.scratch)?;
                self.bytes.append_value(&self.scratch);
            }
            AnyValue::Empty | AnyValue::String(_) | AnyValue::Int(_) => self.bytes.append_null(),
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<ListArray, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.ty.finish()),
            Arc::new(self.str.finish()),
            Arc::new(self.int.finish()),
            Arc::new(self.bytes.finish()),
        ];
        let values = StructArray::try_new(attr_fields(), columns, None)?;
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        ListArray::try_new(item_field(attr_fields()), offsets, Arc::new(values), None)
    }
}

/// Downcasts a column, naming it when its type is not the expected one.
pub(crate) fn downcast<'a, T: Array + 'static>(
    array: &'a dyn Array,
    what: &str,
) -> Result<&'a T, String> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {what} has type {}", array.data_type()))
}

/// The child range of list row `row`, checked against the child length.
pub(crate) fn list_range(
    list: &ListArray,
    row: usize,
    what: &str,
) -> Result<std::ops::Range<usize>, String> {
    if row >= list.len() || list.is_null(row) {
        return Err(format!("{what}: row {row} is missing or null"));
    }
    let offsets = list.value_offsets();
    let (start, end) = (offsets[row], offsets[row + 1]);
    match (usize::try_from(start), usize::try_from(end)) {
        (Ok(s), Ok(e)) if s <= e && e <= list.values().len() => Ok(s..e),
        _ => Err(format!("{what}: row {row} has bad offsets {start}..{end}")),
    }
}

/// Reads rows of one attribute list column back into `Vec<KeyValue>`.
pub(crate) struct AttrListReader<'a> {
    list: &'a ListArray,
    what: &'a str,
    key: &'a StringArray,
    ty: &'a UInt8Array,
    str: &'a StringArray,
    int: &'a Int64Array,
    /// `vparquet1` and `vparquet2` only: later formats keep doubles and
    /// bools in `bytes`.
    double: Option<&'a Float64Array>,
    boolean: Option<&'a BooleanArray>,
    bytes: &'a BinaryArray,
}

impl<'a> AttrListReader<'a> {
    pub(crate) fn new(array: &'a dyn Array, what: &'a str) -> Result<Self, String> {
        let list: &ListArray = downcast(array, what)?;
        let s: &StructArray = downcast(list.values().as_ref(), what)?;
        let typed = match s.num_columns() {
            5 => false,
            7 => true,
            _ => return Err(format!("{what}: attribute struct has the wrong shape")),
        };
        if s.columns().iter().any(|c| c.len() != s.len()) {
            return Err(format!("{what}: attribute struct has the wrong shape"));
        }
        let at = |i: usize| s.column(i).as_ref();
        Ok(AttrListReader {
            list,
            what,
            key: downcast(at(0), what)?,
            ty: downcast(at(1), what)?,
            str: downcast(at(2), what)?,
            int: downcast(at(3), what)?,
            double: typed.then(|| downcast(at(4), what)).transpose()?,
            boolean: typed.then(|| downcast(at(5), what)).transpose()?,
            bytes: downcast(at(if typed { 6 } else { 4 }), what)?,
        })
    }

    /// The attributes of list row `row`.
    pub(crate) fn get(&self, row: usize) -> Result<Vec<KeyValue>, String> {
        let range = list_range(self.list, row, self.what)?;
        range.map(|j| self.entry(j)).collect()
    }

    fn entry(&self, j: usize) -> Result<KeyValue, String> {
        let what = self.what;
        if self.key.is_null(j) || self.ty.is_null(j) {
            return Err(format!("{what}: attribute {j} has no key or type"));
        }
        let tag = self.ty.value(j);
        let ty = ValueType::from_u8(tag)
            .ok_or_else(|| format!("{what}: attribute {j} has unknown type tag {tag}"))?;
        let missing = |col: &str| format!("{what}: attribute {j} of type {ty:?} has no {col}");
        let value = match ty {
            ValueType::Empty => AnyValue::Empty,
            ValueType::String if self.str.is_valid(j) => AnyValue::String(self.str.value(j).into()),
            ValueType::Int if self.int.is_valid(j) => AnyValue::Int(self.int.value(j)),
            // The older layouts: typed columns.
            ValueType::Double if self.double.is_some() => {
                let d = self.double.filter(|d| d.is_valid(j));
                AnyValue::Double(d.ok_or_else(|| missing("double"))?.value(j))
            }
            ValueType::Bool if self.boolean.is_some() => {
                let b = self.boolean.filter(|b| b.is_valid(j));
                AnyValue::Bool(b.ok_or_else(|| missing("bool"))?.value(j))
            }
            ValueType::Bytes if self.bytes.is_valid(j) => {
                AnyValue::Bytes(self.bytes.value(j).to_vec())
            }
            ValueType::Double | ValueType::Bool | ValueType::Array | ValueType::KvList
                if self.bytes.is_valid(j) =>
            {
                value_codec::decode_body(ty, self.bytes.value(j))
                    .map_err(|e| format!("{what}: attribute {j}: {e}"))?
            }
            ValueType::String => return Err(missing("str")),
            ValueType::Int => return Err(missing("int")),
            ValueType::Double
            | ValueType::Bool
            | ValueType::Bytes
            | ValueType::Array
            | ValueType::KvList => return Err(missing("bytes")),
        };
        Ok(KeyValue {
            key: self.key.value(j).into(),
            value,
        })
    }
}
