//! The resource table of a `vparquet2` (or later) block: each distinct resource once,
//! in `resources.parquet`, and one `resource_index` per span row in
//! `data.parquet` pointing into it.
//!
//! Spans of one export share one `Arc<Resource>`, so a block holds few
//! distinct resources but repeats each on thousands of rows; storing them
//! once takes the nested resource column out of both the cut and every
//! trace lookup. This file owns building the table on write (dedupe) and
//! reading it back; it does no file I/O of its own.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, ListArray, RecordBatch};
use arrow_schema::ArrowError;
use chaintrace_model::{Resource, Span, SpanId, TraceId};

use super::attrs::{downcast, AttrListBuilder, AttrListReader};
use super::error::BlockError;
use super::schema::{resource_col, RESOURCES_SCHEMA};
use super::value_codec::MAX_DEPTH;

/// Recently seen distinct `Arc`s a span's resource is compared with (by
/// pointer first, then by value) before it becomes a new table entry.
const WINDOW: usize = 32;

/// The distinct resources of a block's spans, in first-seen order, and
/// each span's index into them.
pub(crate) struct ResourceTable<'a> {
    /// One entry per distinct resource: the first span carrying it (so an
    /// error can name a span).
    pub(crate) entries: Vec<&'a Span>,
    /// `index[i]` is the entry of `spans[i]`.
    pub(crate) index: Vec<u32>,
}

impl<'a> ResourceTable<'a> {
    /// Builds the table of `spans` (in row order).
    ///
    /// Cheap on the common path: consecutive spans of one export share an
    /// `Arc`, so most spans cost one pointer comparison. A new `Arc` is
    /// looked up by pointer in a small window of recent ones, then by value
    /// among that window's entries (exports of one SDK resend equal
    /// resources in separate `Arc`s), and only then becomes an entry. No
    /// hashing: attribute values hold floats. Missing a duplicate only
    /// costs a table row; decoding never depends on it.
    pub(crate) fn of(spans: &[&'a Span]) -> ResourceTable<'a> {
        let mut entries: Vec<&'a Span> = Vec::new();
        let mut index = Vec::with_capacity(spans.len());
        // (resource, its entry); most recently used last.
        let mut window: Vec<(&'a Arc<Resource>, u32)> = Vec::with_capacity(WINDOW);
        let mut last: Option<(&'a Arc<Resource>, u32)> = None;
        for &s in spans {
            let r = &s.resource;
            if let Some((prev, e)) = last {
                if Arc::ptr_eq(prev, r) {
                    index.push(e);
                    continue;
                }
            }
            let e = match window.iter().rposition(|(w, _)| Arc::ptr_eq(w, r)) {
                Some(at) => window.remove(at).1,
                None => {
                    let equal = window
                        .iter()
                        .rev()
                        .map(|&(_, e)| e)
                        .find(|&e| entries[e as usize].resource.attributes == r.attributes);
                    equal.unwrap_or_else(|| {
                        entries.push(s);
                        // A block never holds 2^32 spans: its rows are in memory.
                        (entries.len() - 1) as u32
                    })
                }
            };
            if window.len() == WINDOW {
                window.remove(0);
            }
            window.push((r, e));
            last = Some((r, e));
            index.push(e);
        }
        ResourceTable { entries, index }
    }

    /// The `resources.parquet` batch: one row per entry.
    pub(crate) fn batch(&self, path: &Path) -> Result<RecordBatch, BlockError> {
        let rows = self
            .entries
            .iter()
            .map(|s| (&*s.resource, s.trace_id, s.span_id));
        resources_batch(rows, path)
    }
}

/// A resource table built one span at a time by a writer that does not
/// hold the block's spans (compaction): the same dedupe as
/// [`ResourceTable::of`] (previous span's `Arc`, then a window of recent
/// ones by pointer and by value), with owned entries.
#[derive(Default)]
pub(crate) struct ResourceTableBuilder {
    /// One entry per distinct resource, with the ids of the first span
    /// carrying it (so an error can name a span).
    entries: Vec<(Arc<Resource>, TraceId, SpanId)>,
    /// (entry's resource `Arc` as seen, entry); most recently used last.
    window: Vec<(Arc<Resource>, u32)>,
}

impl ResourceTableBuilder {
    /// The entry of `span`'s resource, new or found.
    pub(crate) fn push(&mut self, span: &Span) -> u32 {
        let r = &span.resource;
        if let Some((last, e)) = self.window.last() {
            if Arc::ptr_eq(last, r) {
                return *e;
            }
        }
        let e = match self.window.iter().rposition(|(w, _)| Arc::ptr_eq(w, r)) {
            Some(at) => self.window.remove(at).1,
            None => {
                let entries = &self.entries;
                let equal = self
                    .window
                    .iter()
                    .rev()
                    .map(|&(_, e)| e)
                    .find(|&e| entries[e as usize].0.attributes == r.attributes);
                equal.unwrap_or_else(|| {
                    self.entries
                        .push((Arc::clone(r), span.trace_id, span.span_id));
                    // Distinct resources of one block stay far below 2^32.
                    (self.entries.len() - 1) as u32
                })
            }
        };
        if self.window.len() == WINDOW {
            self.window.remove(0);
        }
        self.window.push((Arc::clone(r), e));
        e
    }

    /// The `resources.parquet` batch: one row per entry.
    pub(crate) fn batch(&self, path: &Path) -> Result<RecordBatch, BlockError> {
        let rows = self.entries.iter().map(|(r, t, s)| (&**r, *t, *s));
        resources_batch(rows, path)
    }
}

/// The `resources.parquet` batch of `rows`: each resource with the ids of
/// a span carrying it, to name in an error.
fn resources_batch<'r>(
    rows: impl Iterator<Item = (&'r Resource, TraceId, SpanId)>,
    path: &Path,
) -> Result<RecordBatch, BlockError> {
    let mut attributes = AttrListBuilder::new();
    for (resource, trace, span) in rows {
        attributes
            .push_list(&resource.attributes)
            .map_err(|key| BlockError::ValueTooDeep {
                trace: trace.to_hex(),
                span: span.to_hex(),
                key: format!("resource {key}"),
                max: MAX_DEPTH,
            })?;
    }
    let arrow = |e: ArrowError| BlockError::arrow(path, e);
    let columns: Vec<ArrayRef> = vec![Arc::new(attributes.finish().map_err(arrow)?)];
    RecordBatch::try_new(RESOURCES_SCHEMA.clone(), columns).map_err(arrow)
}

/// The resources in one `resources.parquet` batch, appended to `out`.
pub(crate) fn read_resources(
    batch: &RecordBatch,
    out: &mut Vec<Arc<Resource>>,
) -> Result<(), String> {
    let name = resource_col::ATTRIBUTES;
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| format!("column {name} is missing"))?;
    let list: &ListArray = downcast(array.as_ref(), name)?;
    if list.null_count() > 0 {
        return Err(format!("column {name} holds nulls"));
    }
    let reader = AttrListReader::new(list, name)?;
    for row in 0..list.len() {
        out.push(Arc::new(Resource {
            attributes: reader.get(row)?,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::span;

    #[test]
    fn shared_and_equal_resources_become_one_entry() {
        let a = span(1, 1, None, "a", "x", 1, 2);
        let mut a2 = span(1, 2, None, "a", "x", 1, 2); // equal, separate Arc
        let b = span(2, 1, None, "b", "x", 1, 2);
        let mut a_shared = span(3, 1, None, "z", "x", 1, 2);
        a_shared.resource = a.resource.clone();
        a2.name = "y".into();
        let c = span(4, 1, None, "c", "x", 1, 2);
        let spans = [&a, &a, &b, &a2, &b, &a_shared, &c];
        let table = ResourceTable::of(&spans);
        assert_eq!(table.index, [0, 0, 1, 0, 1, 0, 2]);
        assert_eq!(table.entries.len(), 3);
        assert_eq!(table.entries[2].resource.attributes, c.resource.attributes);
    }

    #[test]
    fn more_distinct_resources_than_the_window_still_index_right() {
        let spans: Vec<Span> = (0..3 * WINDOW)
            .map(|i| span(1, 1, None, &format!("svc{}", i % (WINDOW + 5)), "x", 1, 2))
            .collect();
        let refs: Vec<&Span> = spans.iter().collect();
        let table = ResourceTable::of(&refs);
        for (s, &e) in spans.iter().zip(&table.index) {
            assert_eq!(
                table.entries[e as usize].resource.attributes,
                s.resource.attributes
            );
        }
    }

    #[test]
    fn the_incremental_builder_indexes_like_the_table() {
        let mut spans: Vec<Span> = (0..3 * WINDOW)
            .map(|i| span(1, 1, None, &format!("svc{}", i % (WINDOW + 5)), "x", 1, 2))
            .collect();
        spans[4].resource = spans[1].resource.clone();
        let refs: Vec<&Span> = spans.iter().collect();
        let table = ResourceTable::of(&refs);
        let mut builder = ResourceTableBuilder::default();
        let index: Vec<u32> = spans.iter().map(|s| builder.push(s)).collect();
        assert_eq!(index, table.index);
        assert_eq!(builder.entries.len(), table.entries.len());
    }
}
