//! Compaction through the embedded store: several outputs with disjoint
//! trace-id ranges, every span once, answers unchanged; and the catalog's
//! recovery from a crash in the middle of a multi-output compaction.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chaintrace_model::{Span, Trace, TraceId, TraceSummary, UnixNanos};

use crate::block::{Block, BlockWriteOptions, BlockWriter};
use crate::search::{SearchRequest, SpanClause, TraceFilter};
use crate::store::{Store, TraceListQuery};
use crate::test_support::{span, trace_id};
use crate::{EmbeddedConfig, EmbeddedStore};

const TRACES: u8 = 40;

/// Output size: above each input of [`three_blocks`] (at most 48 spans, so
/// none is full), and their 128 spans (duplicates included) fit in two, so
/// merging them leaves fewer blocks; the 120 distinct spans need two.
const BLOCK_SPANS: u64 = 64;

fn config(dir: &Path) -> EmbeddedConfig {
    let mut config = EmbeddedConfig::new(dir);
    config.compaction_min_blocks = 3;
    config.compaction_block_spans = BLOCK_SPANS;
    // Every block of these tests is a merge input, the newest too.
    config.compaction_fresh_blocks = 0;
    // Only the test compacts, cuts and applies retention.
    config.maintenance_interval = Duration::from_secs(3600);
    config
}

/// Three blocks: every trace has one span in each (so each trace is spread
/// over all three), and every fifth trace's root was retried into the next
/// block as well. 120 distinct spans, 8 duplicates.
async fn three_blocks(store: &EmbeddedStore) {
    let base = UnixNanos::now().0 - 3_600_000_000_000;
    let at = |t: u8, s: u8| base + u64::from(t) * 1_000 + u64::from(s);
    for part in 0..3u8 {
        let mut batch = Vec::new();
        for t in 1..=TRACES {
            let s = (t + part) % 3 + 1;
            let parent = (s > 1).then_some(1);
            let name = if s == 2 { "llm_call" } else { "step" };
            batch.push(span(t, s, parent, "rag", name, at(t, s), at(t, s) + 500));
            if t % 5 == 0 && s == 2 {
                batch.push(span(t, 1, None, "rag", "step", at(t, 1), at(t, 1) + 500));
            }
        }
        store.append(batch).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
    }
}

/// A store in a fresh directory (the directory lives as long as the
/// returned guard) holding [`three_blocks`].
async fn store_with_three_blocks() -> (tempfile::TempDir, EmbeddedConfig, EmbeddedStore) {
    three_blocks_with(|_| {}).await
}

/// [`store_with_three_blocks`] under [`config`] changed by `tweak`.
async fn three_blocks_with(
    tweak: impl FnOnce(&mut EmbeddedConfig),
) -> (tempfile::TempDir, EmbeddedConfig, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    tweak(&mut config);
    let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
    three_blocks(&store).await;
    (dir, config, store)
}

/// The ids of `blocks`, sorted.
fn sorted_ids<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> Vec<String> {
    let mut ids: Vec<String> = blocks.into_iter().map(|b| b.meta().id.clone()).collect();
    ids.sort();
    ids
}

/// The inputs (sorted ids) of the one merged block among `blocks`.
fn inputs_of_the_merge(blocks: &[Block]) -> Vec<String> {
    let merged: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.meta().compaction_level == 1)
        .collect();
    assert_eq!(merged.len(), 1);
    let mut replaced = merged[0].meta().replaces.clone();
    replaced.sort();
    replaced
}

/// Everything a reader can ask, to compare before and after.
#[derive(Debug, PartialEq)]
struct Answers {
    traces: Vec<Trace>,
    listing: Vec<TraceSummary>,
    searched: BTreeSet<TraceId>,
}

async fn answers(store: &EmbeddedStore) -> Answers {
    let mut traces = Vec::new();
    for t in 1..=TRACES {
        traces.push(store.trace(trace_id(t)).await.unwrap().unwrap());
    }
    let listing = store
        .recent_traces(&TraceListQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = Arc::clone(&seen);
    let request = SearchRequest {
        filter: TraceFilter {
            clauses: vec![SpanClause::SpanName(["llm_call".to_string()].into())],
        },
        start: None,
        end: None,
        max_inspected: 0,
    };
    store
        .search(
            request,
            Box::new(move |t| {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(t.trace_id);
                true
            }),
        )
        .await
        .unwrap();
    let searched = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    Answers {
        traces,
        listing,
        searched,
    }
}

/// The blocks on disk, by id.
fn blocks_on_disk(dir: &Path) -> Vec<Block> {
    let mut blocks: Vec<Block> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| Block::open(&p).unwrap())
        .collect();
    blocks.sort_by(|a, b| a.meta().id.cmp(&b.meta().id));
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_blocks_are_never_merged_again_so_compaction_ends() {
    let (_dir, config, store) = store_with_three_blocks().await;
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    // Two outputs: a full one and the rest. Below the minimum of three
    // blocks, and the full one is done: nothing more to merge, ever.
    let outputs = blocks_on_disk(&config.blocks_dir());
    assert_eq!(outputs.len(), 2);
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 0);
    // Three more inputs beside them: the full block stays out of the merge.
    let full: Vec<String> = outputs
        .iter()
        .filter(|b| b.meta().span_count >= BLOCK_SPANS)
        .map(|b| b.meta().id.clone())
        .collect();
    assert_eq!(full.len(), 1);
    drop(store);
    let (store, _) = EmbeddedStore::open(EmbeddedConfig {
        // Every block is full now: the inputs alone would not shrink.
        compaction_block_spans: 40,
        ..config.clone()
    })
    .unwrap();
    three_blocks(&store).await;
    assert_eq!(
        tokio::task::block_in_place(|| store.compact()).unwrap(),
        0,
        "merging full blocks would write as many full blocks again"
    );
    assert_eq!(blocks_on_disk(&config.blocks_dir()).len(), 5);
    assert!(full.iter().all(|id| config.blocks_dir().join(id).exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_writes_several_blocks_of_disjoint_trace_ranges() {
    let (_dir, config, store) = store_with_three_blocks().await;
    let before = answers(&store).await;
    assert_eq!(before.searched.len(), usize::from(TRACES));
    assert!(before.traces.iter().all(|t| t.spans.len() == 3));
    let inputs: BTreeSet<String> = blocks_on_disk(&config.blocks_dir())
        .iter()
        .map(|b| b.meta().id.clone())
        .collect();
    assert_eq!(inputs.len(), 3);

    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    let outputs = blocks_on_disk(&config.blocks_dir());
    assert!(outputs.len() >= 2, "{} outputs", outputs.len());
    let mut ranges: Vec<(TraceId, TraceId)> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    let ids: Vec<String> = outputs.iter().map(|b| b.meta().id.clone()).collect();
    for block in &outputs {
        let meta = block.meta();
        assert_eq!(meta.siblings, ids);
        assert_eq!(
            meta.replaces.iter().cloned().collect::<BTreeSet<_>>(),
            inputs
        );
        assert_eq!(meta.compaction_level, 1);
        ranges.push(meta.trace_ids.unwrap());
        spans.extend(block.read_all().unwrap());
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "ranges overlap: {ranges:?}");
    }
    // Every span exactly once, duplicates gone.
    assert_eq!(spans.len(), 3 * usize::from(TRACES));
    let distinct: BTreeSet<_> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert_eq!(distinct.len(), spans.len());
    // Outputs end at trace boundaries once they are full.
    for block in &outputs[..outputs.len() - 1] {
        assert!(block.meta().span_count >= BLOCK_SPANS, "{:?}", block.meta());
    }
    // An id outside a block's range rules the block out without Parquet.
    let (first, last) = (&outputs[0], &outputs[outputs.len() - 1]);
    let (lo, hi) = (
        first.meta().trace_ids.unwrap().0,
        last.meta().trace_ids.unwrap().1,
    );
    assert!(!last.meta().may_hold_trace(lo));
    assert!(!first.meta().may_hold_trace(hi));

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.block_spans, 3 * u64::from(TRACES));
    assert_eq!(answers(&store).await, before);
    drop(store);
    let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
    assert_eq!(store.stats().await.unwrap().blocks, outputs.len() as u64);
    assert_eq!(answers(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_cut_short_leaves_its_inputs_and_no_output() {
    let (_dir, config, store) = store_with_three_blocks().await;
    let before = answers(&store).await;
    drop(store);
    let blocks_dir = config.blocks_dir();
    let inputs = blocks_on_disk(&blocks_dir);
    // As if the process died after writing the first of two outputs (the
    // first ten traces), while writing the second.
    let mut writer = BlockWriter::create(
        &blocks_dir,
        "out-1",
        &BlockWriteOptions {
            replaces: inputs.iter().map(|b| b.meta().id.clone()).collect(),
            siblings: vec!["out-1".into(), "out-2".into()],
            compaction_level: 1,
            ..BlockWriteOptions::default()
        },
        16,
    )
    .unwrap();
    for trace in &before.traces[..10] {
        writer.push_trace(trace.spans.clone()).unwrap();
    }
    writer.finish().unwrap();
    fs::create_dir(blocks_dir.join(".tmp-out-2")).unwrap();
    drop(inputs);

    let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
    assert!(!blocks_dir.join("out-1").exists());
    assert!(!blocks_dir.join(".tmp-out-2").exists());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks, 3, "the inputs stay");
    assert_eq!(answers(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_compaction_deletes_inputs_left_by_a_crash() {
    let (dir, config, store) = store_with_three_blocks().await;
    let before = answers(&store).await;
    let blocks_dir = config.blocks_dir();
    let saved = dir.path().join("saved");
    let inputs: Vec<PathBuf> = blocks_on_disk(&blocks_dir)
        .iter()
        .map(|b| b.dir().to_path_buf())
        .collect();
    for input in &inputs {
        copy_dir(input, &saved.join(input.file_name().unwrap()));
    }
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    let outputs = blocks_on_disk(&blocks_dir).len();
    drop(store);
    // As if the process died after installing the outputs, before the
    // inputs were deleted.
    for input in &inputs {
        copy_dir(&saved.join(input.file_name().unwrap()), input);
    }

    let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
    assert!(inputs.iter().all(|p| !p.exists()), "inputs deleted at open");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks, outputs as u64);
    assert_eq!(stats.block_spans, 3 * u64::from(TRACES));
    assert_eq!(answers(&store).await, before);
    drop(store);

    // Later, retention deleted one output: the others are not a compaction
    // cut short (their inputs are gone) and stay.
    let first = blocks_on_disk(&blocks_dir).remove(0);
    fs::remove_dir_all(first.dir()).unwrap();
    let lost = first.meta().span_count;
    let (store, _) = EmbeddedStore::open(config).unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks, outputs as u64 - 1);
    assert_eq!(stats.block_spans, 3 * u64::from(TRACES) - lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_without_a_trace_id_range_still_answer() {
    let (_dir, config, store) = store_with_three_blocks().await;
    let before = answers(&store).await;
    drop(store);
    // Written before the range was kept: no `trace_ids` in meta.json.
    for block in blocks_on_disk(&config.blocks_dir()) {
        let path = block.dir().join("meta.json");
        let mut meta: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        meta.as_object_mut().unwrap().remove("trace_ids");
        meta.as_object_mut().unwrap().remove("siblings");
        fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    }
    let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
    for block in blocks_on_disk(&config.blocks_dir()) {
        assert_eq!(block.meta().trace_ids, None);
    }
    assert_eq!(answers(&store).await, before);
    // And they still compact.
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    assert_eq!(answers(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_takes_at_most_compaction_max_inputs_blocks() {
    let (_dir, config, store) = three_blocks_with(|config| {
        config.compaction_min_blocks = 2;
        config.compaction_max_inputs = 2;
        config.compaction_block_spans = 1_000;
    })
    .await;
    let before = answers(&store).await;
    let mut inputs = blocks_on_disk(&config.blocks_dir());
    inputs.sort_by_key(|b| (b.meta().min_start, b.meta().id.clone()));
    let oldest = sorted_ids(&inputs[..2]);
    drop(inputs);
    // The two with the oldest data merge; the third alone is too few.
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    let blocks = blocks_on_disk(&config.blocks_dir());
    assert_eq!(blocks.len(), 2);
    assert_eq!(inputs_of_the_merge(&blocks), oldest);
    assert_eq!(answers(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_cut_blocks_wait_until_newer_ones_arrive() {
    let (_dir, config, store) = three_blocks_with(|config| {
        config.compaction_min_blocks = 2;
        config.compaction_block_spans = 1_000;
        config.compaction_fresh_blocks = 1;
    })
    .await;
    let before = answers(&store).await;
    let mut cut = blocks_on_disk(&config.blocks_dir());
    cut.sort_by_key(|b| (b.meta().max_end, b.meta().id.clone()));
    let newest = cut[2].meta().id.clone();
    let later = cut[2].meta().max_end.0 + 1_000;
    let older = sorted_ids(&cut[..2]);
    drop(cut);

    // The newest stays as cut; the two older ones merge.
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    let blocks = blocks_on_disk(&config.blocks_dir());
    assert_eq!(blocks.len(), 2);
    assert!(
        sorted_ids(&blocks).contains(&newest),
        "the newest cut block was merged"
    );
    assert_eq!(inputs_of_the_merge(&blocks), older);
    assert_eq!(answers(&store).await, before);
    drop(blocks);

    // Once newer blocks are cut (same window), the newest of them waits
    // and the one that waited merges.
    for t in [TRACES + 1, TRACES + 2] {
        let at = later + u64::from(t) * 1_000;
        store
            .append(vec![span(t, 1, None, "rag", "step", at, at + 500)])
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
    }
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    let blocks = blocks_on_disk(&config.blocks_dir());
    let cut: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.meta().compaction_level == 0)
        .collect();
    assert_eq!(cut.len(), 1);
    assert_ne!(cut[0].meta().id, newest);
    assert!(store.trace(trace_id(TRACES + 2)).await.unwrap().is_some());
    let newest_trace = cut[0].spans_of_traces(&[trace_id(TRACES + 2)]).unwrap();
    assert_eq!(
        newest_trace.len(),
        1,
        "the newest block holds the newest trace"
    );
}

/// A retried span with other content lands in a block whose data starts
/// earlier than the first copy's block. Reads and compaction both keep the
/// copy that arrived first: arrival order, not data time, decides.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_copy_to_arrive_wins_before_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (store, _) = EmbeddedStore::open(config.clone()).unwrap();
    let base = UnixNanos::now().0 - 3_600_000_000_000;
    let first = span(1, 2, Some(1), "rag", "first", base + 10, base + 20);
    let mut retry = first.clone();
    retry.name = "retry".into();
    retry.end = UnixNanos(base + 900);
    let batches = [
        vec![first.clone()],
        // Starts before the first block's data: sorts first by data time.
        vec![retry, span(1, 1, None, "rag", "root", base, base + 1_000)],
        vec![span(1, 3, Some(1), "rag", "last", base + 30, base + 40)],
    ];
    for batch in batches {
        store.append(batch).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
    }
    let names =
        |trace: Trace| -> Vec<String> { trace.spans.iter().map(|s| s.name.to_string()).collect() };
    let want = vec!["root", "first", "last"];
    let before = store.trace(trace_id(1)).await.unwrap().unwrap();
    assert_eq!(names(before.clone()), want, "read before compaction");
    assert_eq!(before.spans[1], first);
    assert_eq!(tokio::task::block_in_place(|| store.compact()).unwrap(), 1);
    assert_eq!(blocks_on_disk(&config.blocks_dir()).len(), 1);
    let after = store.trace(trace_id(1)).await.unwrap().unwrap();
    assert_eq!(after, before, "compaction kept the copy reads showed");
    drop(store);
    let (store, _) = EmbeddedStore::open(config).unwrap();
    assert_eq!(store.trace(trace_id(1)).await.unwrap().unwrap(), before);
}
