//! The parent/child structure of one trace, with every span's interval
//! clamped into its parent's.
//!
//! Everything else in this crate reads a trace through a [`SpanTree`]: it is
//! where broken input is made safe once. A child that starts before its parent
//! or ends after it (clock skew between services, millisecond-precision SDKs,
//! async work that outlives the request) is clamped into the parent and
//! recorded; a span whose parent is missing, or that names itself, is a root;
//! spans caught in a parent cycle are reached once and never loop.
//!
//! This module does no analysis of its own and is private to the crate.

use std::collections::HashMap;

use chaintrace_model::{SpanId, Trace};

/// A span's time range in Unix nanoseconds, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval {
    pub start: u64,
    pub end: u64,
}

impl Interval {
    /// `end - start`.
    pub fn len(self) -> u64 {
        self.end - self.start
    }
}

/// One trace as a tree of span indices (indices into `trace.spans`).
#[derive(Debug, Clone)]
pub(crate) struct SpanTree {
    /// The span the analysis starts from, chosen as [`Trace::root`] does.
    pub root: Option<usize>,
    /// Whether `root` is a stand-in: the real root has not arrived.
    pub root_missing: bool,
    /// Each span's parent, when that parent is in the trace and is not itself.
    pub parent: Vec<Option<usize>>,
    /// Each span's children, by clamped start, then index.
    pub children: Vec<Vec<usize>>,
    /// Whether the span's parent id names no span of the trace.
    pub orphan: Vec<bool>,
    /// Each span's interval, clamped into its (clamped) parent's.
    pub interval: Vec<Interval>,
    /// Indices of spans whose interval had to be clamped, ascending.
    pub adjusted: Vec<usize>,
    /// The earliest start of any span: the Gantt chart's zero.
    pub origin: u64,
    /// Every span once, each after its parent: roots' trees depth first,
    /// then each parent cycle from the first span it left unreached (whose
    /// parent therefore comes after it). Walking it forwards or backwards
    /// gives top-down and bottom-up passes in linear time, where walking
    /// up from every span would be quadratic in a deep chain.
    pub top_down: Vec<usize>,
}

impl SpanTree {
    /// Builds the tree of `trace`.
    pub fn build(trace: &Trace) -> SpanTree {
        let spans = &trace.spans;
        let n = spans.len();
        let mut index_of: HashMap<SpanId, usize> = HashMap::with_capacity(n);
        for (i, span) in spans.iter().enumerate() {
            // Exporters retry: on a duplicate id the first copy is the parent.
            index_of.entry(span.span_id).or_insert(i);
        }
        let mut parent = vec![None; n];
        let mut orphan = vec![false; n];
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, span) in spans.iter().enumerate() {
            match span.parent_span_id.map(|p| index_of.get(&p)) {
                Some(Some(&p)) if p != i => {
                    parent[i] = Some(p);
                    children[p].push(i);
                }
                Some(None) => orphan[i] = true,
                _ => {}
            }
        }
        let raw: Vec<Interval> = spans
            .iter()
            .map(|s| Interval {
                start: s.start.0,
                end: s.end.0.max(s.start.0),
            })
            .collect();
        for kids in &mut children {
            kids.sort_by_key(|&c| (raw[c].start, c));
        }

        // As `Trace::root` chooses (the first span without a parent, else the
        // first whose parent is missing), but in linear time: the index is at hand.
        let root = spans
            .iter()
            .position(|s| s.parent_span_id.is_none())
            .or_else(|| {
                spans
                    .iter()
                    .position(|s| s.parent_span_id.is_some_and(|p| !index_of.contains_key(&p)))
            });
        let root_missing = root.is_some_and(|r| spans[r].parent_span_id.is_some());

        // Clamp top-down from every root, then from whatever a parent cycle
        // left unreached (its entry span keeps its own times).
        let mut interval = raw.clone();
        let mut adjusted = Vec::new();
        let mut visited = vec![false; n];
        let mut top_down = Vec::with_capacity(n);
        let mut stack: Vec<usize> = (0..n).rev().filter(|&i| parent[i].is_none()).collect();
        let mut next_unvisited = 0;
        loop {
            while let Some(i) = stack.pop() {
                if std::mem::replace(&mut visited[i], true) {
                    continue;
                }
                top_down.push(i);
                let outer = interval[i];
                for &c in &children[i] {
                    if visited[c] {
                        continue;
                    }
                    let start = raw[c].start.clamp(outer.start, outer.end);
                    let end = raw[c].end.clamp(start, outer.end);
                    let clamped = Interval { start, end };
                    if clamped != raw[c] {
                        adjusted.push(c);
                    }
                    interval[c] = clamped;
                    stack.push(c);
                }
            }
            while next_unvisited < n && visited[next_unvisited] {
                next_unvisited += 1;
            }
            if next_unvisited == n {
                break;
            }
            stack.push(next_unvisited);
        }
        adjusted.sort_unstable();
        adjusted.dedup();
        // Clamping keeps the order of starts, but re-sort in case ties moved.
        for kids in &mut children {
            kids.sort_by_key(|&c| (interval[c].start, c));
        }

        SpanTree {
            orphan,
            root,
            root_missing,
            parent,
            children,
            interval,
            adjusted,
            origin: spans.iter().map(|s| s.start.0).min().unwrap_or(0),
            top_down,
        }
    }

    /// Each span's parent as [`SpanTree::top_down`] orders them: the parent,
    /// unless it comes later in that order (the way into a parent cycle),
    /// then `None`. Following these links never loops.
    pub fn parent_before(&self) -> Vec<Option<usize>> {
        let mut position = vec![0usize; self.parent.len()];
        for (k, &i) in self.top_down.iter().enumerate() {
            position[i] = k;
        }
        self.parent
            .iter()
            .enumerate()
            .map(|(i, p)| p.filter(|&p| position[p] < position[i]))
            .collect()
    }

    /// Self time of every span under `intervals` (indexed like the spans): its
    /// duration minus the union of its children's intervals.
    pub fn self_times(&self, intervals: &[Interval]) -> Vec<u64> {
        let mut out = Vec::with_capacity(intervals.len());
        let mut kids: Vec<Interval> = Vec::new();
        for (i, own) in intervals.iter().enumerate() {
            kids.clear();
            kids.extend(self.children[i].iter().map(|&c| intervals[c]));
            kids.sort_by_key(|iv| iv.start);
            let mut covered = 0;
            let mut run: Option<Interval> = None;
            for iv in kids.iter().copied() {
                // Children lie inside `own` after clamping; clamp again for
                // interval sets a what-if produced.
                let iv = Interval {
                    start: iv.start.clamp(own.start, own.end),
                    end: iv.end.clamp(own.start, own.end),
                };
                run = match run {
                    Some(r) if iv.start <= r.end => Some(Interval {
                        start: r.start,
                        end: r.end.max(iv.end),
                    }),
                    Some(r) => {
                        covered += r.len();
                        Some(iv)
                    }
                    None => Some(iv),
                };
            }
            covered += run.map_or(0, Interval::len);
            out.push(own.len().saturating_sub(covered));
        }
        out
    }

    /// The spans of the root's subtree in post-order (children before parents).
    pub fn post_order(&self, root: usize) -> Vec<usize> {
        let mut order = Vec::new();
        let mut stack = vec![(root, false)];
        let mut seen = vec![false; self.children.len()];
        while let Some((i, expanded)) = stack.pop() {
            if expanded {
                order.push(i);
                continue;
            }
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            stack.push((i, true));
            stack.extend(self.children[i].iter().map(|&c| (c, false)));
        }
        order
    }
}
