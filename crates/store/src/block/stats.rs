//! [`SpanCounts`]: per-value span counts of a block, kept in its
//! `meta.json` so that a search can choose its most selective clause and
//! skip blocks without opening Parquet.
//!
//! Computed once when a block is written, from the spans being written;
//! this module does no I/O and knows nothing of the Parquet layout beyond
//! the hot `error_type` column's rule ([`super::hot`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::Arc;

use chaintrace_model::{find_attr, Resource, Span, SpanKind};
use serde::{Deserialize, Serialize};

use super::hot::HotFields;
use super::meta::MAX_META_NAMES;
use crate::search::ERROR_TYPE_KEYS;

/// How many spans of a block carry each value of the fields search filters
/// on. Maps hold at most [`MAX_META_NAMES`] values each; a value missing
/// from a map that was cut (`*_truncated`) has an unknown count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanCounts {
    /// Spans per span name.
    pub names: BTreeMap<String, u64>,
    /// Whether `names` was cut at [`MAX_META_NAMES`] values.
    pub names_truncated: bool,
    /// Spans per `service.name` (`unknown_service` when absent).
    pub services: BTreeMap<String, u64>,
    /// Whether `services` was cut at [`MAX_META_NAMES`] values.
    pub services_truncated: bool,
    /// Spans per value of the hot `error_type` column.
    pub error_types: BTreeMap<String, u64>,
    /// Whether `error_types` was cut at [`MAX_META_NAMES`] values.
    pub error_types_truncated: bool,
    /// Spans with a value in the hot `error_type` column.
    pub error_type_spans: u64,
    /// Spans with status ERROR.
    pub status_error: u64,
    /// Whether the hot `error_type` column alone answers every error-class
    /// search on this block: no span carries an error class name (in
    /// `error_type`, `error.type`, `exception.type` or an `exception` event;
    /// on the span or its resource) other than, or besides, the one the
    /// column holds. The column keeps only the first spelling, so where
    /// spellings disagree a search must not prune by it.
    pub error_types_exact: bool,
    /// Every distinct (service, span name, kind) of the block, sorted: the
    /// Jaeger API's services and operations come from these, not from
    /// decoding spans. At most [`MAX_META_OPERATIONS`].
    #[serde(default)]
    pub operations: Vec<Operation>,
    /// Whether `operations` was written at all: blocks of builds before it
    /// have none, and their operations must be read from their spans.
    #[serde(default)]
    pub operations_known: bool,
    /// Whether `operations` was cut at [`MAX_META_OPERATIONS`].
    #[serde(default)]
    pub operations_truncated: bool,
    /// Calls from one service to another, per minute: spans whose parent
    /// span, in this block, belongs to another service (Jaeger's
    /// `/api/dependencies` sums these instead of decoding spans). Sorted,
    /// at most [`MAX_META_DEPENDENCIES`].
    #[serde(default)]
    pub dependencies: Vec<ServiceCalls>,
    /// Whether `dependencies` was written at all (blocks of older builds
    /// have none).
    #[serde(default)]
    pub dependencies_known: bool,
    /// Whether `dependencies` was cut at [`MAX_META_DEPENDENCIES`].
    #[serde(default)]
    pub dependencies_truncated: bool,
}

/// Most (minute, caller, callee) entries a block's meta keeps.
pub const MAX_META_DEPENDENCIES: usize = 10_000;

/// The calls from service `parent` to service `child` whose called span
/// started in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCalls {
    /// Minutes since the Unix epoch of the called (child) span's start.
    pub minute: u64,
    /// The calling span's service.
    pub parent: String,
    /// The called span's service.
    pub child: String,
    /// How many child spans.
    pub calls: u64,
}

/// Nanoseconds in a minute.
pub const MINUTE_NANOS: u64 = 60_000_000_000;

/// Counts [`ServiceCalls`] from spans handed over trace by trace (a
/// block's rows are sorted by trace id): each trace's spans are held until
/// the next trace begins, so memory is bounded by the largest trace.
#[derive(Default)]
pub(crate) struct CallCounter {
    /// Service names by id, and ids by name.
    services: Vec<String>,
    ids: FoldMap<String, u32>,
    trace: Option<chaintrace_model::TraceId>,
    /// The current trace's spans: id, parent, service id, minute.
    pending: Vec<(
        chaintrace_model::SpanId,
        Option<chaintrace_model::SpanId>,
        u32,
        u64,
    )>,
    calls: FoldMap<(u64, u32, u32), u64>,
}

impl CallCounter {
    /// Notes `span`, of service `service`.
    pub(crate) fn add(&mut self, span: &Span, service: &str) {
        if self.trace != Some(span.trace_id) {
            self.flush();
            self.trace = Some(span.trace_id);
        }
        let id = match self.ids.get(service) {
            Some(&id) => id,
            None => {
                let id = self.services.len() as u32;
                self.services.push(service.to_string());
                self.ids.insert(service.to_string(), id);
                id
            }
        };
        self.pending.push((
            span.span_id,
            span.parent_span_id,
            id,
            span.start.0 / MINUTE_NANOS,
        ));
    }

    /// Counts the calls within the trace held.
    fn flush(&mut self) {
        // Most traces stay within one service: no call to count, no map.
        let mixed = self
            .pending
            .first()
            .is_some_and(|&(_, _, first, _)| self.pending.iter().any(|p| p.2 != first));
        if mixed {
            let by_id: FoldMap<chaintrace_model::SpanId, u32> = self
                .pending
                .iter()
                .map(|&(id, _, svc, _)| (id, svc))
                .collect();
            for &(_, parent, service, minute) in &self.pending {
                if let Some(&caller) = parent.and_then(|p| by_id.get(&p)) {
                    if caller != service {
                        *self.calls.entry((minute, caller, service)).or_default() += 1;
                    }
                }
            }
        }
        self.pending.clear();
    }

    /// Every count, sorted, at most [`MAX_META_DEPENDENCIES`], and whether
    /// any was cut.
    pub(crate) fn finish(mut self) -> (Vec<ServiceCalls>, bool) {
        self.flush();
        let mut list: Vec<ServiceCalls> = self
            .calls
            .into_iter()
            .map(|((minute, parent, child), calls)| ServiceCalls {
                minute,
                parent: self.services[parent as usize].clone(),
                child: self.services[child as usize].clone(),
                calls,
            })
            .collect();
        list.sort_unstable_by(|a, b| {
            (a.minute, &a.parent, &a.child).cmp(&(b.minute, &b.parent, &b.child))
        });
        let truncated = list.len() > MAX_META_DEPENDENCIES;
        list.truncate(MAX_META_DEPENDENCIES);
        (list, truncated)
    }
}

/// Every span kind, in a fixed order (bit positions of [`CountsBuilder`]).
const KINDS: [SpanKind; 6] = [
    SpanKind::Unspecified,
    SpanKind::Internal,
    SpanKind::Server,
    SpanKind::Client,
    SpanKind::Producer,
    SpanKind::Consumer,
];

/// Most (service, name, kind) triples a block's meta keeps.
pub const MAX_META_OPERATIONS: usize = 10_000;

/// One operation of a service: a span name with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// `service.name` (`unknown_service` when absent).
    pub service: String,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
}

/// The distinct operations, sorted, at most [`MAX_META_OPERATIONS`], and
/// whether any was cut.
fn operations<'a>(
    set: impl Iterator<Item = (&'a str, &'a str, SpanKind)>,
) -> (Vec<Operation>, bool) {
    let mut list: Vec<(&str, &str, SpanKind)> = set.collect();
    list.sort_unstable_by(|a, b| (a.0, a.1, a.2.as_str()).cmp(&(b.0, b.1, b.2.as_str())));
    let truncated = list.len() > MAX_META_OPERATIONS;
    list.truncate(MAX_META_OPERATIONS);
    let ops = list
        .into_iter()
        .map(|(service, name, kind)| Operation {
            service: service.to_string(),
            name: name.to_string(),
            kind,
        })
        .collect();
    (ops, truncated)
}

impl SpanCounts {
    /// Counts `spans` (one block's, duplicates already dropped).
    pub fn of<'a>(spans: impl IntoIterator<Item = &'a Span>) -> SpanCounts {
        let spans: Vec<&Span> = spans.into_iter().collect();
        let hot: Vec<HotFields<'_>> = spans.iter().map(|s| HotFields::of(s)).collect();
        BlockCounts::of(&spans, &hot).counts
    }
}

/// What a block's meta file says of its spans, counted in one pass.
pub(crate) struct BlockCounts {
    pub counts: SpanCounts,
    /// Every distinct service name, sorted.
    pub services: Vec<String>,
    /// Every distinct span name, sorted.
    pub names: Vec<String>,
}

impl BlockCounts {
    /// `hot[i]` must be `HotFields::of(spans[i])`.
    pub(crate) fn of(spans: &[&Span], hot: &[HotFields<'_>]) -> BlockCounts {
        let mut names: FoldMap<&str, u64> = FoldMap::default();
        let mut services: FoldMap<&str, u64> = FoldMap::default();
        let mut error_types: FoldMap<&str, u64> = FoldMap::default();
        let mut ops: HashSet<(&str, &str, SpanKind), foldhash::fast::RandomState> =
            HashSet::default();
        let mut counts = SpanCounts {
            error_types_exact: true,
            operations_known: true,
            dependencies_known: true,
            ..SpanCounts::default()
        };
        let mut calls = CallCounter::default();
        // Spans of one export share their resource: look its service and
        // error spellings up once per run of equal resources.
        let mut last: Option<(*const Resource, &str, bool)> = None;
        for (span, hot) in spans.iter().zip(hot) {
            let resource = Arc::as_ptr(&span.resource);
            let (service, resource_clean) = match last {
                Some((r, service, clean)) if r == resource => (service, clean),
                _ => {
                    let clean = ERROR_TYPE_KEYS
                        .iter()
                        .all(|k| find_attr(&span.resource.attributes, k).is_none());
                    let service = span.service_name();
                    last = Some((resource, service, clean));
                    (service, clean)
                }
            };
            *names.entry(span.name.as_str()).or_default() += 1;
            *services.entry(service).or_default() += 1;
            ops.insert((service, span.name.as_str(), span.kind));
            calls.add(span, service);
            counts.status_error += u64::from(span.is_error());
            if let Some(value) = hot.error_type {
                *error_types.entry(value).or_default() += 1;
                counts.error_type_spans += 1;
            }
            if counts.error_types_exact && !(resource_clean && hot.error_class_agrees) {
                counts.error_types_exact = false;
            }
        }
        let sorted = |map: &FoldMap<&str, u64>| {
            let mut v: Vec<String> = map.keys().map(|k| k.to_string()).collect();
            v.sort_unstable();
            v
        };
        let (all_services, all_names) = (sorted(&services), sorted(&names));
        (counts.operations, counts.operations_truncated) = operations(ops.into_iter());
        (counts.dependencies, counts.dependencies_truncated) = calls.finish();
        (counts.names, counts.names_truncated) = capped(names);
        (counts.services, counts.services_truncated) = capped(services);
        (counts.error_types, counts.error_types_truncated) = capped(error_types);
        BlockCounts {
            counts,
            services: all_services,
            names: all_names,
        }
    }
}

/// A hash map with a fast hasher, for counting the strings of a block.
type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The counts sorted by value, at most [`MAX_META_NAMES`] of them (the
/// largest counts kept), and whether any was cut.
fn capped(counts: FoldMap<&str, u64>) -> (BTreeMap<String, u64>, bool) {
    let truncated = counts.len() > MAX_META_NAMES;
    let mut list: Vec<(&str, u64)> = counts.into_iter().collect();
    if truncated {
        list.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        list.truncate(MAX_META_NAMES);
    }
    let map = list.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    (map, truncated)
}

/// [`BlockCounts`] built span by span, for a writer that never holds all
/// of a block's spans at once (compaction). Counts the same things by the
/// same rules as [`BlockCounts::of`], which stays the borrow-only path of
/// the cut; the writer tests check that both agree.
pub(crate) struct CountsBuilder {
    names: FoldMap<String, u64>,
    services: FoldMap<String, u64>,
    error_types: FoldMap<String, u64>,
    /// Service → span name → the kinds seen (a bit per kind).
    operations: FoldMap<String, FoldMap<String, u8>>,
    calls: CallCounter,
    counts: SpanCounts,
    /// The last resource seen, its service name and whether it names no
    /// error class (spans of one export share their resource).
    last: Option<(Arc<Resource>, String, bool)>,
}

impl Default for CountsBuilder {
    fn default() -> Self {
        CountsBuilder {
            names: FoldMap::default(),
            services: FoldMap::default(),
            error_types: FoldMap::default(),
            operations: FoldMap::default(),
            calls: CallCounter::default(),
            counts: SpanCounts {
                error_types_exact: true,
                operations_known: true,
                dependencies_known: true,
                ..SpanCounts::default()
            },
            last: None,
        }
    }
}

impl CountsBuilder {
    /// Counts one span; `hot` must be `HotFields::of(span)`.
    pub(crate) fn add(&mut self, span: &Span, hot: &HotFields<'_>) {
        fn bump(map: &mut FoldMap<String, u64>, key: &str) {
            match map.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    map.insert(key.to_string(), 1);
                }
            }
        }
        let same = matches!(&self.last, Some((r, _, _)) if Arc::ptr_eq(r, &span.resource));
        if !same {
            let clean = ERROR_TYPE_KEYS
                .iter()
                .all(|k| find_attr(&span.resource.attributes, k).is_none());
            let service = span.service_name().to_string();
            self.last = Some((Arc::clone(&span.resource), service, clean));
        }
        let Some((_, service, resource_clean)) = &self.last else {
            return;
        };
        bump(&mut self.names, &span.name);
        bump(&mut self.services, service);
        self.calls.add(span, service);
        // Looked up by reference: a string is allocated only the first
        // time a service or name is seen.
        let names = match self.operations.get_mut(service.as_str()) {
            Some(names) => names,
            None => self.operations.entry(service.clone()).or_default(),
        };
        let bit = 1u8 << KINDS.iter().position(|k| *k == span.kind).unwrap_or(0);
        match names.get_mut(span.name.as_str()) {
            Some(kinds) => *kinds |= bit,
            None => {
                names.insert(span.name.to_string(), bit);
            }
        }
        let counts = &mut self.counts;
        counts.status_error += u64::from(span.is_error());
        if let Some(value) = hot.error_type {
            bump(&mut self.error_types, value);
            counts.error_type_spans += 1;
        }
        if counts.error_types_exact && !(*resource_clean && hot.error_class_agrees) {
            counts.error_types_exact = false;
        }
    }

    /// The counts of every span added.
    pub(crate) fn finish(self) -> BlockCounts {
        fn borrowed(map: &FoldMap<String, u64>) -> FoldMap<&str, u64> {
            map.iter().map(|(k, &n)| (k.as_str(), n)).collect()
        }
        let sorted = |map: &FoldMap<String, u64>| {
            let mut v: Vec<String> = map.keys().cloned().collect();
            v.sort_unstable();
            v
        };
        let mut counts = self.counts;
        (counts.dependencies, counts.dependencies_truncated) = self.calls.finish();
        (counts.operations, counts.operations_truncated) =
            operations(self.operations.iter().flat_map(|(service, names)| {
                names.iter().flat_map(move |(name, kinds)| {
                    KINDS
                        .iter()
                        .enumerate()
                        .filter(move |(i, _)| kinds & (1 << i) != 0)
                        .map(move |(_, kind)| (service.as_str(), name.as_str(), *kind))
                })
            }));
        (counts.names, counts.names_truncated) = capped(borrowed(&self.names));
        (counts.services, counts.services_truncated) = capped(borrowed(&self.services));
        (counts.error_types, counts.error_types_truncated) = capped(borrowed(&self.error_types));
        BlockCounts {
            counts,
            services: sorted(&self.services),
            names: sorted(&self.names),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chaintrace_model::{Event, KeyValue, Resource, StatusCode, UnixNanos};

    use super::*;
    use crate::test_support::span;

    fn failing(error_type: &str, exception: &str) -> Span {
        let mut s = span(1, 2, Some(1), "llm", "api_call", 0, 1);
        s.status.code = StatusCode::Error;
        s.attributes.push(KeyValue::new("error_type", error_type));
        s.events.push(Event {
            time: UnixNanos(1),
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", exception)],
        });
        s
    }

    #[test]
    fn counts_per_value_and_exactness_of_the_error_type_column() {
        let spans = vec![
            span(1, 1, None, "rag", "chain", 0, 9),
            failing("RateLimitError", "RateLimitError"),
        ];
        let counts = SpanCounts::of(&spans);
        assert_eq!(counts.names["chain"], 1);
        assert_eq!(counts.services["llm"], 1);
        assert_eq!(counts.error_types["RateLimitError"], 1);
        assert_eq!((counts.status_error, counts.error_type_spans), (1, 1));
        assert!(counts.error_types_exact);

        // The column keeps error_type; the event names another class.
        let counts = SpanCounts::of(&[failing("RateLimitError", "__main__.RateLimitError")]);
        assert!(!counts.error_types_exact);

        // An exception.type attribute is read by search, not by the column.
        let mut s = span(1, 1, None, "rag", "chain", 0, 9);
        s.attributes
            .push(KeyValue::new("exception.type", "Timeout"));
        assert!(!SpanCounts::of(&[s]).error_types_exact);

        // A non-string spelling, or one on the resource.
        let mut s = span(1, 1, None, "rag", "chain", 0, 9);
        s.attributes.push(KeyValue::new("error.type", 5i64));
        assert!(!SpanCounts::of(&[s]).error_types_exact);
        let mut s = span(1, 1, None, "rag", "chain", 0, 9);
        s.resource = Arc::new(Resource {
            attributes: vec![KeyValue::new("error_type", "Boom")],
        });
        assert!(!SpanCounts::of(&[s]).error_types_exact);
    }
}
