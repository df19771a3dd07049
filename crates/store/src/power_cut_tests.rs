//! Power-cut tests of the embedded store's write path: an append that
//! returned `Ok` must survive the machine losing power at any moment. A
//! `kill -9` test cannot show that — the page cache outlives the process, so
//! it forgives a missing fsync — hence the store runs here on a
//! [`PowerCutDisk`], which forgets whatever was not synced (bytes, and names
//! no directory sync covered) when the power fails, and is then reopened on
//! what survived.
//!
//! Each seed picks at which disk operation the power fails and how much of
//! each unsynced tail the disk keeps (none, all, a torn part, zeroes).
//! Appenders run concurrently on a multi-threaded runtime, so which records
//! a cut splits varies from run to run; where the cut falls in the disk's
//! operations does not.

use std::collections::HashSet;
use std::sync::Arc;

use chaintrace_model::{Span, SpanId, TraceId};

use crate::embedded::{EmbeddedConfig, EmbeddedStore};
use crate::store::Store;
use crate::test_support::{span, SplitMix};
use crate::wal::power_cut::{Aftermath, PowerCutDisk};
use crate::wal::Disk;

/// Seeds run; each one is a store living through [`ROUNDS`] power cuts.
const SEEDS: u64 = 16;
/// Power cuts per seed: each reopen replays the survivors of every earlier one.
const ROUNDS: u8 = 3;
/// Concurrent appenders, each awaiting its append before the next.
const APPENDERS: u8 = 4;
/// The power fails within this many disk operations of the round's start:
/// a few dozen group commits and segment rotations.
const MAX_OPS_BEFORE_CUT: u64 = 150;
/// Small segments, so that cuts also land around segment creation (its
/// directory sync) and not only between a write and its fsync.
const SEGMENT_BYTES: u64 = 1024;
/// An appender that outlives this many batches means the power never failed.
const MAX_BATCHES: u16 = 5_000;

/// Batch `n` of `appender` in `round`: one to three spans of a trace of its own.
fn batch(round: u8, appender: u8, n: u16) -> Vec<Span> {
    let mut id = [0xc7; TraceId::LEN];
    id[0] = round;
    id[1] = appender;
    id[2..4].copy_from_slice(&n.to_be_bytes());
    (1..=1 + (n % 3) as u8)
        .map(|i| {
            let parent = (i > 1).then_some(1);
            let mut s = span(0, i, parent, "power", "op", 10 + u64::from(i), 90);
            s.trace_id = TraceId(id);
            s
        })
        .collect()
}

/// What one appender saw: batches acknowledged, and every span it tried.
#[derive(Default)]
struct Appended {
    acked: Vec<Vec<Span>>,
    tried: Vec<(TraceId, SpanId)>,
}

/// Appends batches until the power fails; returns what was acknowledged.
async fn append_until_cut(
    store: Arc<EmbeddedStore>,
    disk: Arc<PowerCutDisk>,
    round: u8,
    appender: u8,
) -> Appended {
    let mut out = Appended::default();
    for n in 0..MAX_BATCHES {
        let spans = batch(round, appender, n);
        out.tried
            .extend(spans.iter().map(|s| (s.trace_id, s.span_id)));
        match store.append(spans.clone()).await {
            Ok(()) => out.acked.push(spans),
            Err(e) => {
                assert!(disk.is_cut(), "append failed with the power on: {e}");
                return out;
            }
        }
    }
    panic!("the power never failed in {MAX_BATCHES} batches");
}

/// Panics unless every acknowledged span is in `store`, and nothing in it
/// was never appended.
async fn check(
    store: &EmbeddedStore,
    acked: &[Vec<Span>],
    tried: &HashSet<(TraceId, SpanId)>,
    seed: u64,
    round: u8,
) {
    for spans in acked {
        let trace = store.trace(spans[0].trace_id).await.unwrap();
        let found: HashSet<SpanId> = trace
            .map(|t| t.spans.iter().map(|s| s.span_id).collect())
            .unwrap_or_default();
        for s in spans {
            assert!(
                found.contains(&s.span_id),
                "seed {seed}, after power cut {round}: span {:?} of trace {:?} was \
                 acknowledged before the cut and is gone after it",
                s.span_id,
                s.trace_id
            );
        }
    }
    for s in store.scan_spans(None, None, usize::MAX).await.unwrap() {
        assert!(
            tried.contains(&(s.trace_id, s.span_id)),
            "seed {seed}: span {:?} of trace {:?} was never appended",
            s.span_id,
            s.trace_id
        );
    }
}

/// Totals over one seed's rounds, to show the test did what it claims.
#[derive(Default)]
struct Seen {
    acked_batches: usize,
    truncated_bytes: u64,
    aftermath: Aftermath,
}

/// One store through [`ROUNDS`] power cuts, checked after each.
async fn run_seed(seed: u64) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.wal_segment_bytes = SEGMENT_BYTES;
    let mut rng = SplitMix(seed);
    let mut seen = Seen::default();
    let mut acked: Vec<Vec<Span>> = Vec::new();
    let mut tried: HashSet<(TraceId, SpanId)> = HashSet::new();
    for round in 0..ROUNDS {
        let disk = PowerCutDisk::new();
        // Replay (and its repairs) runs on the new disk too, cut-free.
        let (store, report) =
            EmbeddedStore::open_on(config.clone(), Disk::PowerCut(Arc::clone(&disk)))
                .unwrap_or_else(|e| panic!("seed {seed}: reopening after a power cut: {e}"));
        seen.truncated_bytes += report.truncated_bytes;
        check(&store, &acked, &tried, seed, round).await;

        disk.cut_after(1 + rng.next() % MAX_OPS_BEFORE_CUT);
        let store = Arc::new(store);
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let work = append_until_cut(Arc::clone(&store), Arc::clone(&disk), round, a);
                tokio::spawn(work)
            })
            .collect();
        for appender in appenders {
            let appended = appender.await.unwrap();
            seen.acked_batches += appended.acked.len();
            acked.extend(appended.acked);
            tried.extend(appended.tried);
        }
        store.close();
        drop(store);
        let aftermath = disk.power_on(&mut || rng.next()).unwrap();
        seen.aftermath.names_lost += aftermath.names_lost;
        seen.aftermath.unsynced_lost += aftermath.unsynced_lost;
        seen.aftermath.unsynced_kept += aftermath.unsynced_kept;
    }
    // The last cut's survivors, read back through the real file system.
    let (store, report) = EmbeddedStore::open(config)
        .unwrap_or_else(|e| panic!("seed {seed}: reopening after the last power cut: {e}"));
    seen.truncated_bytes += report.truncated_bytes;
    check(&store, &acked, &tried, seed, ROUNDS).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_a_power_cut_at_any_point() {
    let mut acked_batches = 0;
    let mut truncated_bytes = 0;
    let mut unsynced_lost = 0;
    for seed in 1..=SEEDS {
        let seen = run_seed(seed).await;
        acked_batches += seen.acked_batches;
        truncated_bytes += seen.truncated_bytes;
        unsynced_lost += seen.aftermath.unsynced_lost;
    }
    // Not vacuous: appends were acknowledged, power cuts did throw unsynced
    // bytes away, and replay met (and cut off) torn tails without failing.
    assert!(acked_batches > 0);
    assert!(unsynced_lost > 0);
    assert!(truncated_bytes > 0);
}
