//! Compaction: merges blocks of one level whose data starts in the same
//! time window into fewer, larger blocks, dropping duplicate spans.
//!
//! A streaming k-way merge: each input is read as a [`SpanStream`] (one
//! decoded batch at a time) and the outputs are written with a
//! [`BlockWriter`] (about one record batch held), so memory is bounded by
//! the inputs' batches, one output batch and the largest single trace,
//! whatever the size of the inputs. Outputs cover disjoint, increasing
//! trace-id ranges of about `compaction_block_spans` spans each.
//!
//! Which blocks: those of one level and window that are not yet full
//! (fewer than `compaction_block_spans` spans) and not among the
//! `compaction_fresh_blocks` newest cut blocks, at least
//! `compaction_min_blocks` and at most `compaction_max_inputs` at a time,
//! and only when the merge leaves fewer blocks than it reads. Full blocks
//! are never merged again, so at any scale compaction ends.
//!
//! Crash safety with several outputs: every output is written durably
//! first, each naming all of them in `siblings` and the inputs in
//! `replaces` (so the outputs are planned before writing, from the inputs'
//! trace-id and span-id columns); then all are installed in one catalog step;
//! only then are the inputs deleted. [`Catalog::open`] deletes the outputs
//! of a compaction cut short and finishes the deletes of one that was
//! installed. This module decides what to merge and how; the catalog owns
//! the list of blocks, `block` the files.
//!
//! [`Catalog::open`]: crate::catalog::Catalog::open

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chaintrace_model::rollup::Rollup;
use chaintrace_model::{Span, SpanId, Trace, TraceId};

use crate::block::{Block, BlockError, BlockMeta, BlockWriteOptions, BlockWriter, SpanStream};
use crate::embedded::Inner;
use crate::rollups::write_rollup;
use crate::store::StoreError;

/// One compaction pass: in every (level, window) group with at least
/// `compaction_min_blocks` blocks, merges them, oldest data first, at most
/// `compaction_max_inputs` at a time. Returns how many merges it made.
/// `stopped` is asked between traces; a merge it stops leaves no output.
pub(crate) fn compact(inner: &Inner, stopped: &dyn Fn() -> bool) -> Result<u64, StoreError> {
    let config = &inner.config;
    let window = config.compaction_window.as_nanos().max(1) as u64;
    let blocks = inner.catalog.blocks();
    let fresh = freshest_cut_blocks(&blocks, config.compaction_fresh_blocks);
    let mut groups: BTreeMap<(u32, u64), Vec<Arc<Block>>> = BTreeMap::new();
    for block in blocks {
        let meta = block.meta();
        if fresh.contains(&meta.id) {
            continue;
        }
        groups
            .entry((meta.compaction_level, meta.min_start.0 / window))
            .or_default()
            .push(block);
    }
    let limit = config.compaction_block_spans.max(1);
    let mut merges = 0;
    for ((level, _), mut blocks) in groups {
        // A full block is done: merging full blocks gives as many full
        // blocks again, and at scale passes would rewrite them forever.
        blocks.retain(|b| b.meta().span_count < limit);
        blocks.sort_by_key(|b| (b.meta().min_start, b.meta().id.clone()));
        for chosen in blocks.chunks(config.compaction_max_inputs.max(2)) {
            if chosen.len() < config.compaction_min_blocks.max(2) || stopped() {
                continue;
            }
            let spans: u64 = chosen.iter().map(|b| b.meta().span_count).sum();
            if spans.div_ceil(limit) >= chosen.len() as u64 {
                // Would not leave fewer blocks than it reads.
                continue;
            }
            // Merged in arrival order, so the copy of a duplicate span that
            // survives is the one reads showed (the first to arrive).
            let mut chosen = chosen.to_vec();
            crate::generations::arrival_order(&mut chosen);
            let started = Instant::now();
            merge(inner, level, &chosen, stopped)?;
            inner.compaction_seconds.observe_duration(started.elapsed());
            merges += 1;
            inner.compactions.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(merges)
}

/// The ids of the `n` cut blocks (level 0) with the newest data.
fn freshest_cut_blocks(blocks: &[Arc<Block>], n: usize) -> Vec<String> {
    let mut cut: Vec<&BlockMeta> = blocks
        .iter()
        .map(|b| b.meta())
        .filter(|m| m.compaction_level == 0)
        .collect();
    cut.sort_by(|a, b| (b.max_end, &b.id).cmp(&(a.max_end, &a.id)));
    cut.iter().take(n).map(|m| m.id.clone()).collect()
}

/// Merges `inputs` into new blocks of level `level + 1` and installs them
/// in place of the inputs.
fn merge(
    inner: &Inner,
    level: u32,
    inputs: &[Arc<Block>],
    stopped: &dyn Fn() -> bool,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let limit = inner.config.compaction_block_spans.max(1);
    let plan = plan_outputs(inputs, limit)?;
    let ids: Vec<String> = (0..plan.outputs)
        .map(|_| inner.catalog.new_block_id())
        .collect();
    let metas: Vec<&BlockMeta> = inputs.iter().map(|b| b.meta()).collect();
    let segments = metas.iter().filter_map(|m| m.wal_segments);
    let wal_segments = segments
        .clone()
        .map(|(from, _)| from)
        .min()
        .zip(segments.map(|(_, through)| through).max());
    let options = BlockWriteOptions {
        wal_segments,
        replaces: metas.iter().map(|m| m.id.clone()).collect(),
        compaction_level: level + 1,
        siblings: ids.clone(),
        ..BlockWriteOptions::default()
    };
    // Size the bloom filters for the inputs' spans per trace.
    let spans: u64 = metas.iter().map(|m| m.span_count).sum();
    let traces: u64 = metas.iter().map(|m| m.trace_count).sum();
    let per_group = (options.row_group_rows as u64)
        .saturating_mul(traces)
        .saturating_mul(5)
        / (4 * spans.max(1))
        + 1;

    let blocks_dir = inner.catalog.dir();
    let mut written: Vec<BlockMeta> = Vec::new();
    let result = (|| -> Result<(), StoreError> {
        let figures = inner.config.figures.as_ref().map(|f| f.get());
        let mut rollup = Rollup::new();
        let finish = |w: BlockWriter, rollup: &mut Rollup| -> Result<BlockMeta, StoreError> {
            let meta = w.finish()?;
            let rollup = std::mem::replace(rollup, Rollup::new());
            if figures.is_some() {
                if let Err(e) = write_rollup(&blocks_dir.join(&meta.id), &rollup).map(drop) {
                    // The block is whole without it; it is rolled up later.
                    tracing::warn!(error = %e, "cannot save a compacted block's rollup");
                }
            }
            Ok(meta)
        };
        let mut merged = Merge::new(inputs)?;
        let mut writer: Option<BlockWriter> = None;
        let mut traces_seen = 0u64;
        while let Some(trace) = merged.next_trace()? {
            traces_seen += 1;
            if traces_seen.is_multiple_of(1024) {
                inner.yield_to_ingest(stopped);
                if stopped() {
                    return Err(StoreError::Closed("the store closed during a compaction"));
                }
            }
            let id = trace[0].trace_id;
            let w = match writer.as_mut() {
                Some(w) => w,
                None => {
                    let Some(block_id) = ids.get(written.len()) else {
                        return Err(BlockError::corrupt(
                            blocks_dir,
                            format!("compaction planned {} blocks and needs more", ids.len()),
                        )
                        .into());
                    };
                    writer.insert(BlockWriter::create(
                        blocks_dir, block_id, &options, per_group,
                    )?)
                }
            };
            // The merge holds each trace whole: its rollup figures are
            // made here, so outputs are installed with their rollups.
            match figures {
                Some(figures) => {
                    let trace = Trace::new(id, trace);
                    rollup.add_trace(&trace, &figures.figures(&trace));
                    w.push_trace(trace.spans)?;
                }
                None => w.push_trace(trace)?,
            }
            if plan.cuts.get(written.len()) == Some(&id) {
                if let Some(w) = writer.take() {
                    written.push(finish(w, &mut rollup)?);
                }
            }
        }
        if let Some(w) = writer.take() {
            written.push(finish(w, &mut rollup)?);
        }
        if written.len() != ids.len() {
            return Err(BlockError::corrupt(
                blocks_dir,
                format!(
                    "compaction planned {} blocks and wrote {}",
                    ids.len(),
                    written.len()
                ),
            )
            .into());
        }
        Ok(())
    })();
    let opened = result.and_then(|()| {
        written
            .iter()
            .map(|m| Block::open(&blocks_dir.join(&m.id)).map_err(StoreError::from))
            .collect::<Result<Vec<Block>, StoreError>>()
    });
    let outputs = match opened {
        Ok(outputs) => outputs,
        Err(e) => {
            // Best effort; what stays is removed at the next open, since
            // its siblings are incomplete and its inputs still there.
            for meta in &written {
                let _ = std::fs::remove_dir_all(blocks_dir.join(&meta.id));
            }
            return Err(e);
        }
    };
    inner.catalog.install_all(outputs)?;
    tracing::info!(
        inputs = inputs.len(),
        outputs = written.len(),
        spans_in = spans,
        spans_out = written.iter().map(|m| m.span_count).sum::<u64>(),
        ms = started.elapsed().as_millis() as u64,
        "compacted blocks"
    );
    Ok(())
}

/// Where a merge's outputs end, decided before any is written so that each
/// can name all of them in its `siblings`.
#[derive(Debug, PartialEq, Eq)]
struct OutputPlan {
    /// The last trace of each output but (when it does not end exactly at
    /// one) the last.
    cuts: Vec<TraceId>,
    /// How many outputs.
    outputs: usize,
}

/// Plans outputs of at least `limit` spans (duplicates not counted)
/// ending at trace boundaries, from the inputs' trace and span ids merged
/// in trace-id order.
fn plan_outputs(inputs: &[Arc<Block>], limit: u64) -> Result<OutputPlan, StoreError> {
    let mut streams = inputs
        .iter()
        .map(|b| b.span_ids())
        .collect::<Result<Vec<_>, BlockError>>()?;
    let mut heads = streams
        .iter_mut()
        .map(|r| r.next().transpose())
        .collect::<Result<Vec<_>, BlockError>>()?;
    let mut cuts = Vec::new();
    let mut held = 0u64;
    let mut trace: Vec<SpanId> = Vec::new();
    while let Some(id) = heads.iter().flatten().map(|&(t, _)| t).min() {
        trace.clear();
        for (head, stream) in heads.iter_mut().zip(&mut streams) {
            while let Some((_, span)) = head.take_if(|(t, _)| *t == id) {
                trace.push(span);
                *head = stream.next().transpose()?;
            }
        }
        trace.sort_unstable();
        trace.dedup();
        held += trace.len() as u64;
        if held >= limit {
            cuts.push(id);
            held = 0;
        }
    }
    let outputs = cuts.len() + usize::from(held > 0);
    Ok(OutputPlan { cuts, outputs })
}

/// The k-way merge of the inputs' span streams, one whole trace at a time.
struct Merge<'b> {
    inputs: Vec<(SpanStream<'b>, Option<Span>)>,
}

impl<'b> Merge<'b> {
    fn new(blocks: &'b [Arc<Block>]) -> Result<Merge<'b>, StoreError> {
        let mut inputs = Vec::with_capacity(blocks.len());
        for block in blocks {
            let mut stream = block.span_stream()?;
            let first = stream.next().transpose()?;
            inputs.push((stream, first));
        }
        Ok(Merge { inputs })
    }

    /// The spans of the next trace (smallest trace id left) from every
    /// input, sorted by (start, span id), duplicates dropped.
    fn next_trace(&mut self) -> Result<Option<Vec<Span>>, StoreError> {
        let Some(id) = self
            .inputs
            .iter()
            .filter_map(|(_, next)| next.as_ref().map(|s| s.trace_id))
            .min()
        else {
            return Ok(None);
        };
        let mut spans = Vec::new();
        for (stream, next) in &mut self.inputs {
            while let Some(span) = next.take_if(|s| s.trace_id == id) {
                spans.push(span);
                *next = stream.next().transpose()?;
            }
        }
        Ok(Some(dedupe(spans)))
    }
}

/// Keeps the first of each span id (inputs are gathered in arrival order,
/// see [`crate::generations`]), then sorts by (start, span id): block
/// order within a trace.
fn dedupe(mut spans: Vec<Span>) -> Vec<Span> {
    // Stable: among equal span ids the first gathered stays first.
    spans.sort_by_key(|s| s.span_id);
    spans.dedup_by(|later, first| later.span_id == first.span_id);
    spans.sort_unstable_by_key(|s| (s.start, s.span_id));
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::write_block;
    use crate::test_support::{span, trace_id};

    fn block(dir: &std::path::Path, id: &str, spans: Vec<Span>) -> Arc<Block> {
        let meta = write_block(dir, id, spans, &BlockWriteOptions::default()).unwrap();
        Arc::new(Block::open(&dir.join(meta.id)).unwrap())
    }

    #[test]
    fn outputs_are_planned_at_trace_boundaries_from_all_inputs() {
        let tmp = tempfile::tempdir().unwrap();
        // Trace 1: 3 spans over two inputs; 2: 2 spans; 3: 1 span.
        let a = block(
            tmp.path(),
            "a",
            vec![
                span(1, 1, None, "s", "x", 1, 2),
                span(2, 1, None, "s", "x", 1, 2),
            ],
        );
        let b = block(
            tmp.path(),
            "b",
            vec![
                span(1, 2, None, "s", "x", 1, 2),
                span(1, 3, None, "s", "x", 1, 2),
                span(2, 2, None, "s", "x", 1, 2),
                span(3, 1, None, "s", "x", 1, 2),
            ],
        );
        let inputs = [a, b];
        let plan = |limit| plan_outputs(&inputs, limit).unwrap();
        // The last output ends exactly at a cut.
        assert_eq!(
            plan(3),
            OutputPlan {
                cuts: vec![trace_id(1), trace_id(3)],
                outputs: 2
            }
        );
        // A duplicate is not counted: trace 1 holds 3 spans, not 4.
        let c = block(tmp.path(), "c", vec![span(1, 1, None, "s", "x", 1, 2)]);
        let with_retry = [inputs[0].clone(), inputs[1].clone(), c];
        assert_eq!(
            plan_outputs(&with_retry, 4).unwrap(),
            OutputPlan {
                cuts: vec![trace_id(2)],
                outputs: 2
            }
        );
        assert_eq!(
            plan(4),
            OutputPlan {
                cuts: vec![trace_id(2)],
                outputs: 2
            }
        );
        assert_eq!(
            plan(1),
            OutputPlan {
                cuts: vec![trace_id(1), trace_id(2), trace_id(3)],
                outputs: 3
            }
        );
        assert_eq!(
            plan(100),
            OutputPlan {
                cuts: vec![],
                outputs: 1
            }
        );
    }

    #[test]
    fn the_merge_yields_whole_traces_in_id_order_without_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = span(1, 1, None, "s", "first copy", 5, 9);
        first.name = "first copy".into();
        let mut retry = first.clone();
        retry.name = "retry".into();
        let a = block(
            tmp.path(),
            "a",
            vec![first, span(3, 1, None, "s", "x", 1, 2)],
        );
        let b = block(
            tmp.path(),
            "b",
            vec![
                retry,
                span(1, 2, Some(1), "s", "x", 1, 2),
                span(2, 1, None, "s", "x", 1, 2),
            ],
        );
        let inputs = [a, b];
        let mut merge = Merge::new(&inputs).unwrap();
        let mut traces = Vec::new();
        while let Some(t) = merge.next_trace().unwrap() {
            traces.push(t);
        }
        let ids: Vec<Vec<(u8, u8)>> = traces
            .iter()
            .map(|t| {
                t.iter()
                    .map(|s| (s.trace_id.0[0], s.span_id.0[0]))
                    .collect()
            })
            .collect();
        assert_eq!(ids, [vec![(1, 2), (1, 1)], vec![(2, 1)], vec![(3, 1)]]);
        assert_eq!(
            traces[0][1].name, "first copy",
            "the older input's copy is kept"
        );
    }
}
