//! Every span of a time range, trace by trace, in bounded memory: what SQL
//! and analytics over all spans read ([`Store::stream_traces`]).
//!
//! A k-way merge in trace-id order over every generation whose time range
//! meets the asked one: the blocks (rows sorted by trace id, read one batch
//! of rows at a time), the frozen heads and a copy of the active head's
//! traces that meet the range. Each trace's spans are gathered from the
//! inputs in arrival order ([`crate::generations`]) and the first copy of
//! each span id is kept, so this read agrees with trace by id, search and
//! compaction on which copy of a duplicate is seen.
//!
//! Memory: one decoded batch of rows per block in range (about 32 768
//! spans over all blocks, 64 to 1 024 rows each), the copied traces of the
//! active head (bounded by the head's budget, and only those meeting the
//! range), one trace and one chunk being handed over.
//!
//! [`Store::stream_traces`]: crate::Store::stream_traces

use std::sync::Arc;

use chaintrace_model::{Span, TraceId, UnixNanos};

use crate::block::SpanStream;
use crate::embedded::{FrozenHead, Inner};
use crate::generations::{first_copy_wins, MergeQueue};
use crate::store::{StoreError, StreamStats};

/// About how many spans each chunk handed to the visitor holds (a trace is
/// never split, so a chunk may hold more).
pub const STREAM_CHUNK_SPANS: usize = 4096;

/// One generation being merged.
enum Input<'b> {
    /// A block's rows, sorted by trace id, and the next one.
    Block {
        stream: Box<SpanStream<'b>>,
        next: Option<Span>,
    },
    /// A frozen head (immutable until dropped; the `Arc` keeps it) and its
    /// sorted trace ids meeting the range.
    Frozen {
        head: Arc<FrozenHead>,
        ids: Vec<TraceId>,
        at: usize,
    },
    /// The active head's traces meeting the range, copied when the read
    /// began, in *descending* trace-id order (arrival order reversed within
    /// a trace), so the next span is the last.
    Active { reversed: Vec<Span> },
}

impl Input<'_> {
    /// The trace id this input yields next.
    fn next_id(&self) -> Option<TraceId> {
        match self {
            Input::Block { next, .. } => next.as_ref().map(|s| s.trace_id),
            Input::Frozen { ids, at, .. } => ids.get(*at).copied(),
            Input::Active { reversed } => reversed.last().map(|s| s.trace_id),
        }
    }

    /// Moves this input's spans of trace `id` (if it is next) into `out`.
    fn take(&mut self, id: TraceId, out: &mut Vec<Span>) -> Result<(), StoreError> {
        match self {
            Input::Block { stream, next } => {
                while let Some(span) = next.take_if(|s| s.trace_id == id) {
                    out.push(span);
                    *next = stream.next().transpose()?;
                }
            }
            Input::Frozen { head, ids, at } => {
                if ids.get(*at) == Some(&id) {
                    out.extend(head.head.spans_of(&id));
                    *at += 1;
                }
            }
            Input::Active { reversed } => {
                while let Some(span) = reversed.pop_if(|s| s.trace_id == id) {
                    out.push(span);
                }
            }
        }
        Ok(())
    }
}

impl Inner {
    /// [`Store::stream_traces`](crate::Store::stream_traces) on a blocking
    /// thread.
    pub(crate) fn stream_traces_blocking(
        &self,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
        visit: &mut dyn FnMut(Vec<Span>) -> bool,
    ) -> Result<StreamStats, StoreError> {
        // Heads before blocks, as `gather_traces` reads: a cut installs its
        // block before it drops the frozen head, so this order sees every
        // span at least once while a cut runs (and the merge drops the
        // second sight).
        let (active, frozen) = {
            let heads = self.heads();
            let mut active = Vec::new();
            for id in heads.active.trace_ids_meeting(start, end).iter().rev() {
                active.extend(heads.active.spans_of(id).into_iter().rev());
            }
            let frozen: Vec<(Arc<FrozenHead>, Vec<TraceId>)> = heads
                .frozen
                .iter()
                .map(|f| (Arc::clone(f), f.head.trace_ids_meeting(start, end)))
                .filter(|(_, ids)| !ids.is_empty())
                .collect();
            (active, frozen)
        };
        let blocks = self.blocks_meeting(start, end);
        let mut stats = StreamStats {
            blocks: blocks.len() as u64,
            ..StreamStats::default()
        };
        // Inputs in arrival order: blocks, frozen heads oldest first, the
        // active head.
        let mut inputs = Vec::with_capacity(blocks.len() + frozen.len() + 1);
        // One decoded batch per block is held: about 32 768 spans in all,
        // whatever the number of blocks (a week holds hundreds), between
        // 64 and 1 024 rows each.
        let batch_rows = (32 * 1024 / blocks.len().max(1)).clamp(64, 1024);
        for block in &blocks {
            let mut stream = Box::new(block.span_stream_rows(batch_rows)?);
            let next = stream.next().transpose()?;
            inputs.push(Input::Block { stream, next });
        }
        for (head, ids) in frozen {
            inputs.push(Input::Frozen { head, ids, at: 0 });
        }
        inputs.push(Input::Active { reversed: active });

        let mut chunk: Vec<Span> = Vec::with_capacity(STREAM_CHUNK_SPANS);
        let mut trace = Vec::new();
        let mut queue = MergeQueue::new(inputs.iter().map(Input::next_id));
        let mut holding: Vec<usize> = Vec::new();
        while let Some(id) = queue.next_trace(&mut holding) {
            trace.clear();
            for &k in &holding {
                inputs[k].take(id, &mut trace)?;
                queue.push(k, inputs[k].next_id());
            }
            let gathered = trace.len();
            first_copy_wins(&mut trace);
            stats.duplicates += (gathered - trace.len()) as u64;
            stats.traces += 1;
            stats.spans += trace.len() as u64;
            chunk.append(&mut trace);
            if chunk.len() >= STREAM_CHUNK_SPANS {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(STREAM_CHUNK_SPANS));
                if !visit(full) {
                    stats.stopped = true;
                    return Ok(stats);
                }
            }
        }
        if !chunk.is_empty() && !visit(chunk) {
            stats.stopped = true;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::test_support::{at_ms, generations_with_retries, span, trace_id};
    use crate::{EmbeddedConfig, EmbeddedStore, Store};

    /// Everything `stream_traces` hands over, chunk by chunk.
    async fn streamed(
        store: &EmbeddedStore,
        start: Option<UnixNanos>,
        end: Option<UnixNanos>,
    ) -> (Vec<Vec<Span>>, StreamStats) {
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&chunks);
        let stats = store
            .stream_traces(
                start,
                end,
                Box::new(move |chunk| {
                    sink.lock().unwrap().push(chunk);
                    true
                }),
            )
            .await
            .unwrap();
        let chunks = std::mem::take(&mut *chunks.lock().unwrap());
        (chunks, stats)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_trace_once_whole_in_id_order_first_copy_winning() {
        let dir = tempfile::tempdir().unwrap();
        let store = generations_with_retries(dir.path()).await;
        let t = at_ms;
        assert!(store.stats().await.unwrap().blocks >= 2);

        let (chunks, stats) = streamed(&store, None, None).await;
        let spans: Vec<Span> = chunks.into_iter().flatten().collect();
        // Trace ids ascend, each trace comes in one piece, and it is what
        // trace-by-id shows (the same copy of trace 1's root).
        let mut by_trace: BTreeMap<TraceId, Vec<Span>> = BTreeMap::new();
        let mut order = Vec::new();
        for s in &spans {
            if order.last() != Some(&s.trace_id) {
                assert!(
                    !order.contains(&s.trace_id),
                    "trace split: {:?}",
                    s.trace_id
                );
                order.push(s.trace_id);
            }
            by_trace.entry(s.trace_id).or_default().push(s.clone());
        }
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(order, [1, 2, 3, 9].map(trace_id));
        for (id, mut got) in by_trace {
            let mut want = store.trace(id).await.unwrap().unwrap().spans;
            got.sort_by_key(|s| s.span_id);
            want.sort_by_key(|s| s.span_id);
            assert_eq!(got, want, "trace {id:?}");
        }
        assert_eq!(spans.iter().filter(|s| s.name == "chain").count(), 3);
        assert!(!spans.iter().any(|s| s.name == "second copy"));
        assert_eq!(
            (stats.traces, stats.spans, stats.duplicates),
            (4, 7, 2),
            "{stats:?}"
        );

        // A range before trace 9 leaves it out (the head is read trace by
        // trace; a block meeting the range is read whole); one after
        // everything reads nothing.
        let (early, stats) = streamed(&store, Some(UnixNanos(t(0))), Some(UnixNanos(t(100)))).await;
        let ids: Vec<TraceId> = early.iter().flatten().map(|s| s.trace_id).collect();
        assert!(!ids.contains(&trace_id(9)), "{ids:?}");
        assert_eq!(stats.traces, 3);
        let (none, stats) = streamed(&store, Some(UnixNanos(t(700_000))), None).await;
        assert!(none.is_empty());
        assert_eq!((stats.blocks, stats.spans), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_hold_whole_traces_and_the_visitor_can_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        // 3 000 traces of 3 spans: more than two chunks.
        let mut spans = Vec::new();
        for trace in 0..3000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&trace.to_be_bytes());
            for s in 1..=3u8 {
                let mut one = span(0, s, (s > 1).then_some(1), "svc", "op", 10, 20);
                one.trace_id = TraceId(id);
                spans.push(one);
            }
        }
        store.append(spans[..4500].to_vec()).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.append(spans[4500..].to_vec()).await.unwrap();
        let (chunks, stats) = streamed(&store, None, None).await;
        assert_eq!(stats.spans, 9000);
        assert!(chunks.len() >= 2);
        for chunk in &chunks {
            assert_eq!(chunk.len() % 3, 0, "a chunk holds whole traces");
        }
        // Stop after the first chunk.
        let stats = store
            .stream_traces(None, None, Box::new(|_| false))
            .await
            .unwrap();
        assert!(stats.stopped);
        assert!(stats.spans < 9000, "{stats:?}");
    }
}
