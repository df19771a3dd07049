//! Reading whole traces across every generation of the embedded store, and
//! the one rule for duplicate spans: **the first copy to arrive wins**.
//!
//! Exporters retry, so the same `(trace id, span id)` may arrive twice, and
//! the second copy may differ (a buggy or hostile sender). The WAL, the head
//! and the cut keep the first copy of a span within one generation; across
//! generations this module is the only place copies meet on the read path,
//! so trace by id, search, SQL scans and the Jaeger API (all built on it)
//! agree, and compaction (which merges blocks in the same arrival order,
//! see [`arrival_order`]) keeps the copy reads already showed.
//!
//! Arrival order: blocks by the first WAL segment they hold (then block
//! id, which starts with the creation time), then frozen heads oldest
//! first, then the active head. A compacted block counts from the earliest
//! segment of its inputs, so a late duplicate that compaction merged into
//! a block with much older spans is ordered with those; within one
//! compaction the older input's copy still wins.
//!
//! It must not know about queries: it takes trace ids and returns spans.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use chaintrace_model::{Span, SpanId, TraceId, UnixNanos};

use crate::block::Block;
use crate::embedded::Inner;
use crate::head::Head;
use crate::store::StoreError;

/// Sorts blocks oldest arrival first: by the first WAL segment they hold,
/// then by id (creation time first). Blocks written before WAL ranges were
/// recorded sort first.
pub(crate) fn arrival_order(blocks: &mut [Arc<Block>]) {
    blocks.sort_by(|a, b| {
        let key = |x: &Arc<Block>| {
            (
                x.meta().wal_segments.map(|(from, _)| from),
                x.meta().id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

impl Inner {
    /// The blocks whose time range meets `[start, end]` (`None`: open), in
    /// arrival order: what a read of every span in a range merges.
    pub(crate) fn blocks_meeting(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
    ) -> Vec<Arc<Block>> {
        let mut blocks: Vec<Arc<Block>> = self
            .catalog
            .blocks()
            .into_iter()
            .filter(|b| {
                let meta = b.meta();
                start.is_none_or(|s| meta.max_end >= s) && end.is_none_or(|e| meta.min_start <= e)
            })
            .collect();
        arrival_order(&mut blocks);
        blocks
    }
}

/// The inputs of a k-way merge in trace-id order, by the next trace id
/// each holds: finding the next trace costs log(inputs), not a look at
/// every input (a week holds hundreds of blocks).
pub(crate) struct MergeQueue {
    queue: BinaryHeap<Reverse<(TraceId, usize)>>,
}

impl MergeQueue {
    /// Input `k` next holds `next[k]` (`None`: it is done).
    pub(crate) fn new(next: impl IntoIterator<Item = Option<TraceId>>) -> MergeQueue {
        let queue = next
            .into_iter()
            .enumerate()
            .filter_map(|(k, id)| id.map(|id| Reverse((id, k))))
            .collect();
        MergeQueue { queue }
    }

    /// The smallest next trace id, and into `holding` every input that
    /// holds it, in input (arrival) order, so the first copy is taken
    /// first; they leave the queue until [`MergeQueue::push`] puts them
    /// back with their next id.
    pub(crate) fn next_trace(&mut self, holding: &mut Vec<usize>) -> Option<TraceId> {
        let &Reverse((id, _)) = self.queue.peek()?;
        holding.clear();
        while let Some(&Reverse((t, k))) = self.queue.peek() {
            if t != id {
                break;
            }
            self.queue.pop();
            holding.push(k);
        }
        holding.sort_unstable();
        Some(id)
    }

    /// Input `k` now holds `next` (`None`: it is done).
    pub(crate) fn push(&mut self, k: usize, next: Option<TraceId>) {
        if let Some(id) = next {
            self.queue.push(Reverse((id, k)));
        }
    }
}

/// Keeps the first copy of each span id in `spans` (which must be in
/// arrival order), preserving the order of the rest.
pub(crate) fn first_copy_wins(spans: &mut Vec<Span>) {
    if spans.len() < 2 {
        return;
    }
    let mut seen: HashSet<SpanId> = HashSet::with_capacity(spans.len());
    spans.retain(|s| seen.insert(s.span_id));
}

/// Copies of the spans a head holds of the traces `ids`, unsorted.
fn head_spans(head: &Head, ids: &[TraceId]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for id in ids {
        let spans = head.spans_of(id);
        if out.is_empty() {
            out = spans;
        } else {
            out.extend(spans);
        }
    }
    out
}

impl Inner {
    /// Every stored span of the traces `ids`, per trace, duplicates
    /// dropped by [`first_copy_wins`]; ids with no stored span are absent.
    /// Fails with [`StoreError::TooMuchData`] once more than `max_spans`
    /// spans (duplicates included) have been gathered. With `ending_since`,
    /// blocks whose spans all end before it are not read: a caller that
    /// knows the traces start at or after it saves their bloom lookups.
    pub(crate) fn gather_traces(
        &self,
        ids: &[TraceId],
        ending_since: Option<UnixNanos>,
        max_spans: usize,
    ) -> Result<HashMap<TraceId, Vec<Span>>, StoreError> {
        let mut wanted: Vec<TraceId> = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        // Heads before blocks: a cut installs a block before it drops the
        // frozen head, so this order sees every span at least once while a
        // cut runs (the other order could miss a head just written out).
        let (active, frozen) = {
            let heads = self.heads();
            let active = head_spans(&heads.active, &wanted);
            (active, heads.frozen.clone())
        };
        let mut blocks = self.catalog.blocks();
        arrival_order(&mut blocks);

        let mut gathered: HashMap<TraceId, Vec<Span>> = HashMap::new();
        let mut total = 0usize;
        let mut take = |spans: Vec<Span>| -> Result<(), StoreError> {
            total += spans.len();
            if total > max_spans {
                return Err(StoreError::TooMuchData { limit: max_spans });
            }
            if spans.is_empty() {
                return Ok(());
            }
            if let [only] = wanted.as_slice() {
                // One trace asked (a trace page): the list moves whole, so
                // 100 000 spans are not pushed one by one into a growing Vec.
                let list = gathered.entry(*only).or_default();
                if list.is_empty() {
                    *list = spans;
                } else {
                    list.extend(spans);
                }
                return Ok(());
            }
            for span in spans {
                gathered.entry(span.trace_id).or_default().push(span);
            }
            Ok(())
        };
        for block in &blocks {
            let meta = block.meta();
            if ending_since.is_some_and(|t| meta.max_end < t) {
                continue;
            }
            if wanted.iter().any(|id| meta.may_hold_trace(*id)) {
                take(block.spans_of_traces(&wanted)?)?;
            }
        }
        for f in &frozen {
            take(head_spans(&f.head, &wanted))?;
        }
        take(active)?;
        for spans in gathered.values_mut() {
            first_copy_wins(spans);
        }
        Ok(gathered)
    }
}
