//! [`Store::search`](crate::Store::search) for the embedded store: walks
//! the generations (active head, frozen heads newest first, then blocks by
//! newest data), takes from each the traces that may pass the filter, reads
//! them whole in chunks and hands them to the visitor.
//!
//! Soundness rests on one rule: every generation picks its candidates by
//! the *same* clause. A matching trace has a span satisfying that clause
//! somewhere, so the generation holding that span lists it, even when the
//! trace's other spans lie in other generations (long chains are cut
//! across blocks). Were each generation to pick its own most selective
//! clause, a trace whose name-matching span sits in one block and whose
//! error span in another could be listed by neither. The clause is chosen
//! once per search, as the one with the fewest spans over all blocks in
//! range ([`Block::clause_spans`]); each candidate is then read whole from
//! every generation and tested against the full filter.

use std::collections::HashSet;
use std::sync::Arc;

use chaintrace_model::{Trace, TraceId, UnixNanos};

use crate::block::Block;
use crate::embedded::Inner;
use crate::search::{SearchRequest, SearchStats, SpanClause, TraceFilter};
use crate::store::StoreError;

/// Traces read whole in the first chunk; later chunks double up to
/// [`MAX_CHUNK`]. Small first, because a search for 20 hits that match
/// often should not read hundreds.
const FIRST_CHUNK: usize = 32;
const MAX_CHUNK: usize = 512;

/// Whether the walk goes on.
enum Flow {
    Continue,
    Stop,
}

/// The state of one search walk.
struct Walk<'a> {
    inner: &'a Inner,
    request: &'a SearchRequest,
    visit: &'a mut (dyn FnMut(Trace) -> bool + Send),
    visited: HashSet<TraceId>,
    stats: SearchStats,
    chunk: usize,
}

impl Inner {
    /// See [`Store::search`](crate::Store::search).
    pub(crate) fn search_blocking(
        &self,
        request: &SearchRequest,
        visit: &mut (dyn FnMut(Trace) -> bool + Send),
    ) -> Result<SearchStats, StoreError> {
        let in_range = |b: &Arc<Block>| request.start.is_none_or(|s| b.meta().max_end >= s);
        let planning: Vec<Arc<Block>> =
            self.catalog.blocks().into_iter().filter(in_range).collect();
        let clause = choose_clause(&request.filter, &planning);
        let clause = clause.as_ref();
        // Heads, then blocks: a frozen head is dropped only after its block
        // is installed, so nothing can slip between the two snapshots. A
        // block installed after planning may not support the clause; it is
        // then read whole (see below), slower but never wrong.
        let (active, frozen) = {
            let heads = self.heads();
            (
                heads.active.search_candidates(clause, request.start),
                heads.frozen.clone(),
            )
        };
        let mut blocks: Vec<Arc<Block>> =
            self.catalog.blocks().into_iter().filter(in_range).collect();
        blocks.sort_by_key(|b| std::cmp::Reverse((b.meta().max_end, b.meta().min_start)));

        let mut walk = Walk {
            inner: self,
            request,
            visit,
            visited: HashSet::new(),
            stats: SearchStats::default(),
            chunk: FIRST_CHUNK,
        };
        if let Flow::Stop = walk.generation(active)? {
            return Ok(walk.stats);
        }
        for f in frozen.iter().rev() {
            let candidates = f.head.search_candidates(clause, request.start);
            if let Flow::Stop = walk.generation(candidates)? {
                return Ok(walk.stats);
            }
        }
        for block in &blocks {
            let usable = clause.map(|c| (c, block.clause_spans(c)));
            let by = match usable {
                Some((_, Some(0))) => continue,
                Some((c, Some(_))) => Some(c),
                // The block cannot be searched by the clause: every trace
                // in it is a candidate.
                Some((_, None)) | None => None,
            };
            let candidates = block.search_candidates(by, request.start)?;
            if let Flow::Stop = walk.generation(candidates)? {
                return Ok(walk.stats);
            }
        }
        Ok(walk.stats)
    }

    /// The traces `ids` read whole from every generation, duplicates
    /// dropped by the store's one rule (see [`crate::generations`]), in the
    /// order of `ids` (repeats once). Ids with no stored span are left out.
    pub(crate) fn traces_blocking(&self, ids: &[TraceId]) -> Result<Vec<Trace>, StoreError> {
        let mut spans = self.gather_traces(ids, None, usize::MAX)?;
        Ok(ids
            .iter()
            .filter_map(|id| spans.remove(id).map(|list| Trace::new(*id, list)))
            .collect())
    }
}

impl Walk<'_> {
    /// Reads and visits one generation's candidates, newest first.
    fn generation(
        &mut self,
        mut candidates: Vec<(UnixNanos, TraceId)>,
    ) -> Result<Flow, StoreError> {
        candidates.retain(|(_, id)| !self.visited.contains(id));
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let mut rest = &candidates[..];
        while !rest.is_empty() {
            let cap = self.request.max_inspected;
            let room = if cap == 0 {
                usize::MAX
            } else {
                cap.saturating_sub(self.stats.inspected)
            };
            if room == 0 {
                self.stats.truncated = true;
                return Ok(Flow::Stop);
            }
            let take = self.chunk.min(room).min(rest.len());
            let ids: Vec<TraceId> = rest[..take].iter().map(|(_, id)| *id).collect();
            rest = &rest[take..];
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
            let mut traces = self.inner.traces_blocking(&ids)?;
            traces.sort_by_key(|t| std::cmp::Reverse((t.start(), t.trace_id)));
            for trace in traces {
                self.visited.insert(trace.trace_id);
                self.stats.inspected += 1;
                if !self.in_range(&trace) || !self.request.filter.admits(&trace) {
                    continue;
                }
                if !(self.visit)(trace) {
                    self.stats.truncated = true;
                    return Ok(Flow::Stop);
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn in_range(&self, trace: &Trace) -> bool {
        let start = trace.start();
        self.request.start.is_none_or(|s| start >= s) && self.request.end.is_none_or(|e| start <= e)
    }
}

/// The clause every generation lists candidates by: the one with the
/// fewest spans over `blocks` (a block that cannot be searched by a clause
/// counts all its spans, since it will be read whole). `None` (every trace
/// is a candidate) when the filter is empty.
fn choose_clause(filter: &TraceFilter, blocks: &[Arc<Block>]) -> Option<SpanClause> {
    filter
        .clauses
        .iter()
        .enumerate()
        .min_by_key(|(i, clause)| {
            let spans: u64 = blocks
                .iter()
                .map(|b| b.clause_spans(clause).unwrap_or(b.meta().span_count))
                .fold(0u64, u64::saturating_add);
            (spans, *i)
        })
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
#[path = "search_exec_tests.rs"]
mod tests;
