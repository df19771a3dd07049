//! Search reads of one block: which traces may satisfy a [`SpanClause`]
//! (reading only the clause's hot column, then `trace_id` and start of the
//! rows that pass), and the spans of many traces at once (one Parquet
//! reader per block, however many traces are asked for).
//!
//! Pruning here is sound or absent: a row group is skipped only when its
//! statistics prove no row passes. Whether the `error_type` column may be
//! used at all is the caller's question ([`Block::clause_spans`] answers it
//! from the meta); this file assumes it was asked.

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;

use arrow_array::{
    Array, BooleanArray, FixedSizeBinaryArray, ListArray, RecordBatch, StringArray, StructArray,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::ArrowError;
use chaintrace_model::{error_class_matches, find_attr, AnyValue, Span, TraceId, UnixNanos};
use parquet::arrow::arrow_reader::{ArrowPredicateFn, RowFilter, RowSelection};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;

use super::decode::TextColumn;

/// A candidate batch's trace ids (checked to be 16 bytes) and starts.
fn ids_and_starts(batch: &RecordBatch) -> Result<(&FixedSizeBinaryArray, &UInt64Array), String> {
    let ids = typed::<FixedSizeBinaryArray>(batch, col::TRACE_ID)?;
    let starts = typed::<UInt64Array>(batch, col::START)?;
    if ids.value_length() != 16 {
        return Err(format!("trace_id holds {}-byte values", ids.value_length()));
    }
    Ok((ids, starts))
}

/// Most spans reserved up front for one read of whole traces: past it
/// the list grows as it fills (a selection of whole row groups can name
/// far more rows than the traces hold).
const MAX_RESERVED_SPANS: usize = 1 << 20;
use super::error::BlockError;
use super::read::Block;
use super::schema::{attribute_str_path, col};
use crate::search::{AttributeMatch, SpanClause};

/// Rows per batch when reading candidates (two small columns).
const CANDIDATE_BATCH_ROWS: usize = 64 * 1024;

/// A trace that may satisfy a clause: the start of its earliest span here
/// that does, and its id.
pub(crate) type Candidate = (UnixNanos, TraceId);

impl Block {
    /// At most how many spans of this block satisfy `clause`, from the meta
    /// alone; `None` when the block cannot be searched by it (an error-class
    /// clause on a block whose `error_type` column does not reflect every
    /// spelling, or that was written before spans were counted).
    pub(crate) fn clause_spans(&self, clause: &SpanClause) -> Option<u64> {
        let meta = self.meta();
        let all = meta.span_count;
        let counts = meta.span_counts.as_ref();
        let n = match clause {
            SpanClause::SpanName(names) => match counts {
                Some(c) => counted(&c.names, c.names_truncated, names, all),
                None if !meta.names_truncated && !names.iter().any(|n| meta.names.contains(n)) => 0,
                None => all,
            },
            SpanClause::Service(services) => match counts {
                Some(c) => counted(&c.services, c.services_truncated, services, all),
                None if !services.iter().any(|s| meta.services.contains(s)) => 0,
                None => all,
            },
            SpanClause::StatusError => counts.map_or(all, |c| c.status_error),
            SpanClause::ErrorType(wanted) => {
                let c = counts.filter(|c| c.error_types_exact)?;
                if c.error_types_truncated {
                    c.error_type_spans
                } else {
                    c.error_types
                        .iter()
                        .filter(|(v, _)| wanted.iter().any(|w| error_class_matches(v, w)))
                        .map(|(_, k)| *k)
                        .sum()
                }
            }
            // No counts are kept per attribute value; an equality on one
            // is taken to match about one span in 1 024 (a user, a
            // customer, a deployment), so it is chosen over hot clauses
            // that match more. A `vparquet1` block keeps no resource table.
            SpanClause::Attribute(matches) => {
                if self.resources.is_none() && matches.iter().any(|m| m.on_resource) {
                    return None;
                }
                all.div_ceil(1024)
            }
        };
        Some(n.min(all))
    }

    /// The traces with a span here that satisfies `clause` (every trace
    /// when `None`) and, with `since`, starts at or after it; each once,
    /// in no particular order.
    ///
    /// With a clause, only the clause's column is decoded for every row of
    /// the row groups its statistics admit, and `trace_id` and start only
    /// for the rows that pass. Without, `traces.parquet` is read.
    pub(crate) fn search_candidates(
        &self,
        clause: Option<&SpanClause>,
        since: Option<UnixNanos>,
    ) -> Result<Vec<Candidate>, BlockError> {
        let Some(clause) = clause else {
            return Ok(self
                .trace_summaries(since, None)?
                .into_iter()
                .map(|s| (s.start_unix_nano, s.trace_id))
                .collect());
        };
        if let SpanClause::Attribute(matches) = clause {
            return self.attribute_candidates(matches, since);
        }
        let column = clause_column(clause);
        let (Some(clause_leaf), Some(start_leaf)) = (self.leaf(column), self.leaf(col::START))
        else {
            return Err(BlockError::corrupt(
                &self.data.path,
                format!("no {column} or {} leaf column", col::START),
            ));
        };
        let since = since.map_or(0, |t| t.0);
        let metadata = self.data.meta.metadata().clone();
        let groups: Vec<usize> = metadata
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| max_start(rg, start_leaf).is_none_or(|max| max >= since))
            .filter(|(_, rg)| may_hold(rg, clause_leaf, clause))
            .map(|(i, _)| i)
            .collect();
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let schema = self.data.meta.parquet_schema();
        let output = ProjectionMask::leaves(schema, [self.trace_id_leaf, start_leaf]);
        let tested = ProjectionMask::leaves(schema, [clause_leaf, start_leaf]);
        let test = clause.clone();
        let predicate = ArrowPredicateFn::new(tested, move |batch: RecordBatch| {
            passes(&batch, column, &test, since)
        });
        let filter = RowFilter::new(vec![Box::new(predicate)]);
        let reader = self.data.reader(
            groups,
            Some(&output),
            None,
            Some(filter),
            CANDIDATE_BATCH_ROWS,
        )?;
        let mut out: Vec<Candidate> = Vec::new();
        self.data.each_batch(reader, |batch| {
            let (ids, starts) = ids_and_starts(batch)?;
            for row in 0..batch.num_rows() {
                let id = TraceId(to_id(ids.value(row)));
                push_candidate(&mut out, UnixNanos(starts.value(row)), id);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every span here of the traces `ids`, in block order (trace id,
    /// start, span id). One reader for all of them: row groups are chosen
    /// by trace-id statistics and the (cached) bloom filters, rows by the
    /// page index, and only rows of the wanted traces are decoded in full.
    pub(crate) fn spans_of_traces(&self, ids: &[TraceId]) -> Result<Vec<Span>, BlockError> {
        // The block's trace-id range rules ids out without touching Parquet.
        let ids: Vec<TraceId> = ids
            .iter()
            .copied()
            .filter(|&id| self.meta().may_hold_trace(id))
            .collect();
        let ids = &ids[..];
        let metadata = self.data.meta.metadata().clone();
        let mut groups = Vec::new();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut wanted: HashSet<[u8; TraceId::LEN]> = HashSet::new();
        let mut offset = 0usize;
        for (i, rg) in metadata.row_groups().iter().enumerate() {
            let stats = rg
                .column(self.trace_id_leaf)
                .statistics()
                .and_then(|s| Some((s.min_bytes_opt()?, s.max_bytes_opt()?)));
            let mut here = Vec::new();
            for id in ids {
                let key = &id.0[..];
                if stats.is_some_and(|(min, max)| key < min || key > max) {
                    continue;
                }
                if self.bloom_may_contain(i, key)? {
                    here.push(id);
                }
            }
            if here.is_empty() {
                continue;
            }
            let total = usize::try_from(rg.num_rows()).unwrap_or(0);
            let mut rows: Vec<Range<usize>> = Vec::new();
            for id in &here {
                match self.candidate_pages(i, &id.0, total) {
                    Some(pages) => rows.extend(pages),
                    None => {
                        rows = std::iter::once(0..total).collect();
                        break;
                    }
                }
            }
            let rows = merge(rows);
            if rows.is_empty() {
                continue;
            }
            groups.push(i);
            ranges.extend(rows.into_iter().map(|r| r.start + offset..r.end + offset));
            offset += total;
            wanted.extend(here.iter().map(|id| id.0));
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        // What the selection reads bounds what it returns: reserved once, a
        // 100 000-span trace is not copied through every doubling.
        let selected: usize = ranges.iter().map(|r| r.len()).sum();
        let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), offset);
        let keep = wanted.clone();
        let filter = self.trace_id_row_filter(move |trace| {
            <[u8; TraceId::LEN]>::try_from(trace).is_ok_and(|k| keep.contains(&k))
        });
        let reader = self.data.reader(
            groups,
            Some(&self.span_projection),
            Some(selection),
            Some(filter),
            8192,
        )?;
        let mut spans = Vec::with_capacity(selected.min(MAX_RESERVED_SPANS));
        self.data.each_batch(reader, |batch| {
            let mut columns = self.span_columns(batch)?;
            for row in 0..columns.len() {
                let hit = <[u8; TraceId::LEN]>::try_from(columns.trace_id(row))
                    .is_ok_and(|k| wanted.contains(&k));
                if hit {
                    spans.push(columns.span(row)?);
                }
            }
            Ok(())
        })?;
        Ok(spans)
    }

    /// [`Block::search_candidates`] for an attribute clause: the span side
    /// reads the `key` and `str` leaves of the attribute lists (with
    /// `trace_id` and start), the resource side tests the block's resource
    /// table once and then reads only `resource_index`.
    fn attribute_candidates(
        &self,
        matches: &BTreeSet<AttributeMatch>,
        since: Option<UnixNanos>,
    ) -> Result<Vec<Candidate>, BlockError> {
        let on_span: Vec<&AttributeMatch> = matches.iter().filter(|m| m.on_span).collect();
        let resources: HashSet<u32> = match &self.resources {
            Some(table) => table
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    matches.iter().any(|m| {
                        m.on_resource
                            && find_attr(&r.attributes, &m.key).and_then(AnyValue::as_str)
                                == Some(m.value.as_str())
                    })
                })
                .filter_map(|(i, _)| u32::try_from(i).ok())
                .collect(),
            None => HashSet::new(),
        };
        if on_span.is_empty() && resources.is_empty() {
            return Ok(Vec::new());
        }
        let path = &self.data.path;
        let schema = self.data.meta.parquet_schema();
        let leaf_of = |parts: &dyn Fn(&[String]) -> bool, what: &str| {
            schema
                .columns()
                .iter()
                .position(|c| parts(c.path().parts()))
                .ok_or_else(|| BlockError::corrupt(path, format!("no {what} leaf column")))
        };
        let start_leaf = self
            .leaf(col::START)
            .ok_or_else(|| BlockError::corrupt(path, "no start leaf column"))?;
        let mut leaves = vec![self.trace_id_leaf, start_leaf];
        if !resources.is_empty() {
            leaves.push(
                self.leaf(col::RESOURCE_INDEX)
                    .ok_or_else(|| BlockError::corrupt(path, "no resource_index leaf column"))?,
            );
        }
        if !on_span.is_empty() {
            let attribute = |name: &'static str| {
                move |p: &[String]| {
                    p.first().map(String::as_str) == Some(col::ATTRIBUTES)
                        && p.last().map(String::as_str) == Some(name)
                        && p.len() > 2
                }
            };
            leaves.push(leaf_of(&attribute("key"), "attributes key")?);
            leaves.push(leaf_of(&attribute("str"), "attributes str")?);
        }
        let since = since.map_or(0, |t| t.0);
        let str_leaf = schema
            .columns()
            .iter()
            .position(|c| c.path() == &attribute_str_path());
        let metadata = self.data.meta.metadata().clone();
        let mut groups: Vec<usize> = Vec::new();
        for (i, rg) in metadata.row_groups().iter().enumerate() {
            if max_start(rg, start_leaf).is_some_and(|max| max < since) {
                continue;
            }
            // A row group whose value bloom filter rules out every wanted
            // span value is skipped, unless a resource of the block matched.
            if resources.is_empty() {
                if let Some(leaf) = str_leaf {
                    let bloom = self.guarded_bloom(rg.column(leaf))?;
                    if bloom.is_some_and(|b| !on_span.iter().any(|m| b.check(m.value.as_str()))) {
                        continue;
                    }
                }
            }
            groups.push(i);
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mask = ProjectionMask::leaves(schema, leaves);
        let reader = self
            .data
            .reader(groups, Some(&mask), None, None, CANDIDATE_BATCH_ROWS)?;
        let mut out: Vec<Candidate> = Vec::new();
        self.data.each_batch(reader, |batch| {
            let (ids, starts) = ids_and_starts(batch)?;
            let index = if resources.is_empty() {
                None
            } else {
                Some(typed::<UInt32Array>(batch, col::RESOURCE_INDEX)?)
            };
            let lists = if on_span.is_empty() {
                None
            } else {
                let list = typed::<ListArray>(batch, col::ATTRIBUTES)?;
                let entries = list
                    .values()
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .ok_or("attributes entries are not structs")?;
                let text = |name: &str| {
                    entries
                        .column_by_name(name)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                        .ok_or_else(|| format!("attributes {name} is not text"))
                };
                Some((list, text("key")?, text("str")?))
            };
            for row in 0..batch.num_rows() {
                let start = starts.value(row);
                if start < since {
                    continue;
                }
                let by_resource = index.is_some_and(|ix| resources.contains(&ix.value(row)));
                let by_span = lists.is_some_and(|(list, keys, values)| {
                    let offsets = list.value_offsets();
                    let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                    (from..to).any(|e| {
                        values.is_valid(e)
                            && on_span
                                .iter()
                                .any(|m| keys.value(e) == m.key && values.value(e) == m.value)
                    })
                });
                if !(by_resource || by_span) {
                    continue;
                }
                push_candidate(&mut out, UnixNanos(start), TraceId(to_id(ids.value(row))));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The leaf column index of the top-level column `name` in `data.parquet`.
    fn leaf(&self, name: &str) -> Option<usize> {
        self.data
            .meta
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().parts() == [name])
    }
}

/// Adds trace `id` to `out` unless it is the last one there. Rows are
/// sorted by trace id, then start: a trace's first passing row is its
/// earliest.
fn push_candidate(out: &mut Vec<Candidate>, start: UnixNanos, id: TraceId) {
    if out.last().is_none_or(|(_, last)| *last != id) {
        out.push((start, id));
    }
}

/// The hot column a clause is tested on.
fn clause_column(clause: &SpanClause) -> &'static str {
    match clause {
        SpanClause::SpanName(_) => col::NAME,
        SpanClause::Service(_) => col::SERVICE,
        SpanClause::StatusError => col::STATUS_CODE,
        SpanClause::ErrorType(_) => col::ERROR_TYPE,
        // Searched by `attribute_candidates`, never by one column.
        SpanClause::Attribute(_) => col::ATTRIBUTES,
    }
}

/// The largest span start in a row group, from its statistics.
fn max_start(rg: &RowGroupMetaData, leaf: usize) -> Option<u64> {
    match rg.column(leaf).statistics() {
        // u64 is stored as INT64; the bits are the u64's.
        Some(Statistics::Int64(s)) => s.max_opt().map(|&m| m as u64),
        _ => None,
    }
}

/// Whether a row group's statistics leave room for a row passing `clause`.
fn may_hold(rg: &RowGroupMetaData, leaf: usize, clause: &SpanClause) -> bool {
    let chunk = rg.column(leaf);
    let Some(stats) = chunk.statistics() else {
        return true;
    };
    match clause {
        SpanClause::Attribute(_) => true,
        SpanClause::ErrorType(_) => {
            stats.null_count_opt() != Some(chunk.num_values().max(0) as u64)
        }
        SpanClause::StatusError => match stats {
            Statistics::Int32(s) => s.max_opt().is_none_or(|&max| {
                max >= i32::from(chaintrace_model::StatusCode::Error.otlp_number())
            }),
            _ => true,
        },
        SpanClause::SpanName(values) | SpanClause::Service(values) => {
            match (stats.min_bytes_opt(), stats.max_bytes_opt()) {
                (Some(min), Some(max)) => values
                    .iter()
                    .any(|v| min <= v.as_bytes() && v.as_bytes() <= max),
                _ => true,
            }
        }
    }
}

/// The predicate of [`Block::search_candidates`] over one batch of the
/// clause column and `start_unix_nano`.
fn passes(
    batch: &RecordBatch,
    column: &str,
    clause: &SpanClause,
    since: u64,
) -> Result<BooleanArray, ArrowError> {
    let starts = typed::<UInt64Array>(batch, col::START).map_err(ArrowError::SchemaError)?;
    let in_time = |row: usize| starts.value(row) >= since;
    let rows = 0..batch.num_rows();
    let out: BooleanArray = match clause {
        SpanClause::Attribute(_) => {
            return Err(ArrowError::InvalidArgumentError(
                "an attribute clause is not tested on one column".into(),
            ))
        }
        SpanClause::StatusError => {
            let codes = typed::<UInt8Array>(batch, column).map_err(ArrowError::SchemaError)?;
            let error = chaintrace_model::StatusCode::Error.otlp_number();
            rows.map(|r| Some(in_time(r) && codes.is_valid(r) && codes.value(r) == error))
                .collect()
        }
        SpanClause::SpanName(values) | SpanClause::Service(values) => {
            // `service` is a dictionary column from `vparquet4` on.
            let text = TextColumn::of(batch, column, false).map_err(ArrowError::SchemaError)?;
            rows.map(|r| Some(in_time(r) && text.is_valid(r) && values.contains(text.value(r))))
                .collect()
        }
        SpanClause::ErrorType(wanted) => {
            let text = typed::<StringArray>(batch, column).map_err(ArrowError::SchemaError)?;
            rows.map(|r| {
                Some(
                    in_time(r)
                        && text.is_valid(r)
                        && wanted.iter().any(|w| error_class_matches(text.value(r), w)),
                )
            })
            .collect()
        }
    };
    Ok(out)
}

/// Column `name` of `batch` as `T`.
fn typed<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("column {name} is missing or has the wrong type"))
}

/// Sorts ranges and joins the ones that touch or overlap.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges.into_iter().filter(|r| !r.is_empty()) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Copies a 16-byte id whose width the caller checked.
fn to_id(bytes: &[u8]) -> [u8; TraceId::LEN] {
    let mut out = [0u8; TraceId::LEN];
    out.copy_from_slice(&bytes[..TraceId::LEN]);
    out
}

/// Spans with one of `values` per a block's per-value counts; a value the
/// counts do not list has none, unless the list was cut short (then it may
/// be any of the block's `all` spans).
fn counted(
    counts: &std::collections::BTreeMap<String, u64>,
    truncated: bool,
    values: &std::collections::BTreeSet<String>,
    all: u64,
) -> u64 {
    values
        .iter()
        .map(|v| match counts.get(v) {
            Some(k) => *k,
            None if truncated => all,
            None => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::schema::{DATA_SCHEMA, DATA_SCHEMA_V1, DATA_SCHEMA_V2};
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch() {
        assert_eq!(
            merge(vec![5..9, 0..2, 2..3, 8..12, 20..20]),
            vec![0..3, 5..12]
        );
    }

    #[test]
    fn schema_has_every_clause_column() {
        for c in [
            SpanClause::StatusError,
            SpanClause::ErrorType(Default::default()),
            SpanClause::SpanName(Default::default()),
            SpanClause::Service(Default::default()),
        ] {
            assert!(DATA_SCHEMA.index_of(clause_column(&c)).is_ok());
            assert!(DATA_SCHEMA_V1.index_of(clause_column(&c)).is_ok());
            assert!(DATA_SCHEMA_V2.index_of(clause_column(&c)).is_ok());
        }
    }

    #[test]
    fn attribute_needles_use_the_value_bloom_filter_and_find_their_trace() {
        use chaintrace_model::KeyValue;
        let dir = tempfile::tempdir().unwrap();
        // 4 row groups of 1 000 spans; the needle in the third.
        let spans: Vec<Span> = (0..4000u32)
            .map(|i| {
                let mut s = crate::test_support::span(
                    1,
                    1,
                    None,
                    "svc",
                    "op",
                    10 + u64::from(i),
                    20 + u64::from(i),
                );
                s.trace_id.0[..4].copy_from_slice(&i.to_be_bytes());
                let user = if i == 2500 {
                    "u-needle".to_string()
                } else {
                    format!("u-{}", i % 50)
                };
                s.attributes.push(KeyValue::new("user_id", user));
                s
            })
            .collect();
        let opts = super::super::BlockWriteOptions {
            row_group_rows: 1000,
            ..Default::default()
        };
        let meta = super::super::write_block(dir.path(), "b1", spans, &opts).unwrap();
        let block = Block::open(&dir.path().join(meta.id)).unwrap();
        assert_eq!(block.row_group_count(), 4);
        let schema = block.data.meta.parquet_schema();
        let leaf = schema
            .columns()
            .iter()
            .position(|c| c.path() == &attribute_str_path())
            .expect("the attribute str leaf");
        let metadata = block.data.meta.metadata().clone();
        let holding: Vec<usize> = (0..4)
            .filter(|&rg| {
                block
                    .guarded_bloom(metadata.row_group(rg).column(leaf))
                    .unwrap()
                    .expect("a bloom filter on attribute values")
                    .check("u-needle")
            })
            .collect();
        assert_eq!(holding, [2], "only the needle's row group may hold it");
        let clause = |key: &str, value: &str| {
            SpanClause::Attribute(BTreeSet::from([AttributeMatch {
                on_span: true,
                on_resource: true,
                key: key.into(),
                value: value.into(),
            }]))
        };
        let found = block
            .search_candidates(Some(&clause("user_id", "u-needle")), None)
            .unwrap();
        let mut id = [1u8; 16];
        id[..4].copy_from_slice(&2500u32.to_be_bytes());
        assert_eq!(found.iter().map(|c| c.1).collect::<Vec<_>>(), [TraceId(id)]);
        assert_eq!(
            block
                .search_candidates(Some(&clause("user_id", "u-7")), None)
                .unwrap()
                .len(),
            80
        );
        assert!(block
            .search_candidates(Some(&clause("user_id", "nobody")), None)
            .unwrap()
            .is_empty());
        // The resource side: every span's resource says service.name = svc.
        assert_eq!(
            block
                .search_candidates(Some(&clause("service.name", "svc")), None)
                .unwrap()
                .len(),
            4000
        );
    }
}
