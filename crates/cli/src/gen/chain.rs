//! The shape of one generated trace: which spans, who is whose parent, and
//! when each runs relative to the trace's start.
//!
//! Up to 7 spans this is the RAG chain of `chaintrace demo` (process_query →
//! fetch_context, embed_query, vector_search, llm_call → prompt_assembly,
//! api_call), cut short if fewer are asked for. Beyond 7, the chain grows
//! agent steps of 6 spans each (agent_step → embed_query, vector_search,
//! llm_call → prompt_assembly, api_call), nested four to a parent so giant
//! traces are both wide and deep (depth grows with log₄ of the step count,
//! so 10 000 spans stay under 10 levels). Every parent comes before its
//! children, so any prefix of the slots is a valid tree.
//!
//! This module only describes spans; ids and absolute times are filled in
//! per trace by `template` and `batch`, which must not change the shape.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// Spans in the base RAG chain; larger traces add agent steps.
pub const BASE_CHAIN_SPANS: usize = 7;
/// Spans in one agent step.
const STEP_SPANS: usize = 6;
/// Agent steps under one parent (root or step).
const STEP_FAN_OUT: usize = 4;

const MS: u64 = 1_000_000;

/// One span of the trace shape, with times relative to the trace's start.
#[derive(Debug, Clone)]
pub struct SpanSlot {
    /// The span name.
    pub name: &'static str,
    /// The OTLP span kind.
    pub kind: SpanKind,
    /// Index of the parent slot; `None` for the root.
    pub parent: Option<usize>,
    /// Start, nanoseconds after the trace's start.
    pub start: u64,
    /// End, nanoseconds after the trace's start.
    pub end: u64,
    /// Span attributes.
    pub attributes: Vec<KeyValue>,
    /// Whether this is an LLM `api_call` (carries prompt and completion).
    pub api_call: bool,
}

/// All slots of one trace plus which slot fails in an error trace.
#[derive(Debug, Clone)]
pub struct ChainShape {
    /// The spans, parents before children; `slots[0]` is the root.
    pub slots: Vec<SpanSlot>,
    /// The slot that fails with `RateLimitError` in an error trace: the
    /// first `api_call`, or the root when the chain is too short to have one.
    pub error_slot: usize,
}

impl ChainShape {
    /// Lays out a trace of `spans` spans (at least 1) whose `api_call`s carry
    /// prompt and completion attributes of `attr_bytes` bytes each.
    ///
    /// The trace lasts about 1.1 s per 6 spans; if that would exceed
    /// `max_duration` (ns), all times are scaled down to fit.
    pub fn new(spans: usize, attr_bytes: usize, max_duration: u64) -> ChainShape {
        let spans = spans.max(1);
        let mut slots = base_chain(attr_bytes);
        slots.truncate(spans);
        let steps = spans.saturating_sub(BASE_CHAIN_SPANS).div_ceil(STEP_SPANS);
        if steps > 0 {
            add_steps(&mut slots, steps, attr_bytes);
            slots.truncate(spans);
        }
        let total = slots[0].end.max(1);
        if total > max_duration {
            // Scale in 1/1024ths so nesting survives the rounding.
            let factor = (max_duration.saturating_mul(1024) / total).max(1);
            for s in &mut slots {
                s.start = s.start * factor / 1024;
                s.end = s.end * factor / 1024;
            }
        }
        let error_slot = slots.iter().position(|s| s.api_call).unwrap_or(0);
        ChainShape { slots, error_slot }
    }

    /// How long the trace lasts, in nanoseconds.
    pub fn duration(&self) -> u64 {
        self.slots[0].end
    }
}

fn string(key: &str, v: &str) -> KeyValue {
    value(key, any_value::Value::StringValue(v.to_string()))
}

fn int(key: &str, v: i64) -> KeyValue {
    value(key, any_value::Value::IntValue(v))
}

fn value(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// ASCII text of exactly `len` bytes made of `seed` repeated.
pub fn filler(seed: &str, len: usize) -> String {
    seed.bytes().cycle().take(len).map(char::from).collect()
}

const PROMPT: &str = "You are a helpful assistant. Answer the question using only the context below; cite the document ids you used. ";
const COMPLETION: &str =
    "Based on the retrieved documents, the refund window is 30 days from delivery [doc-17]. ";

fn api_call_attributes(attr_bytes: usize) -> Vec<KeyValue> {
    let mut a = vec![
        string("model", "claude-3-opus-20250219"),
        string("gen_ai.system", "anthropic"),
        string("gen_ai.request.model", "claude-3-opus-20250219"),
        int("gen_ai.request.max_tokens", 1024),
        value(
            "gen_ai.request.temperature",
            any_value::Value::DoubleValue(0.7),
        ),
        int("input_tokens", 1250),
        int("output_tokens", 340),
        int("gen_ai.usage.input_tokens", 1250),
        int("gen_ai.usage.output_tokens", 340),
        string("stop_reason", "end_turn"),
    ];
    if attr_bytes > 0 {
        a.push(string("gen_ai.prompt", &filler(PROMPT, attr_bytes)));
        a.push(string("gen_ai.completion", &filler(COMPLETION, attr_bytes)));
    }
    a
}

fn slot(
    name: &'static str,
    kind: SpanKind,
    parent: Option<usize>,
    start_ms: u64,
    end_ms: u64,
    attributes: Vec<KeyValue>,
) -> SpanSlot {
    SpanSlot {
        name,
        kind,
        parent,
        start: start_ms * MS,
        end: end_ms * MS,
        attributes,
        api_call: false,
    }
}

/// The sequential RAG chain of `chaintrace demo`, 1130 ms long.
fn base_chain(attr_bytes: usize) -> Vec<SpanSlot> {
    use SpanKind::{Client, Internal, Server};
    let mut api = slot(
        "api_call",
        Client,
        Some(4),
        210,
        1130,
        api_call_attributes(attr_bytes),
    );
    api.api_call = true;
    vec![
        slot(
            "process_query",
            Server,
            None,
            0,
            1130,
            vec![string("user_id", "user_42")],
        ),
        slot(
            "fetch_context",
            Internal,
            Some(0),
            0,
            50,
            vec![
                string("user_id", "user_42"),
                int("context_size_bytes", 4096),
            ],
        ),
        slot(
            "embed_query",
            Client,
            Some(0),
            50,
            150,
            vec![
                string("model", "text-embedding-3-small"),
                string("gen_ai.request.model", "text-embedding-3-small"),
                string("gen_ai.operation.name", "embeddings"),
                int("embedding_dim", 1536),
            ],
        ),
        slot(
            "vector_search",
            Client,
            Some(0),
            150,
            200,
            vec![string("database", "pinecone"), int("results_found", 8)],
        ),
        slot(
            "llm_call",
            Internal,
            Some(0),
            200,
            1130,
            vec![string("model", "claude-3-opus-20250219")],
        ),
        slot(
            "prompt_assembly",
            Internal,
            Some(4),
            200,
            210,
            vec![int("prompt_length", 2048)],
        ),
        api,
    ]
}

/// One agent step at offset 0: its own work lasts 1080 ms.
fn step_spans(parent: usize, first: usize, step: usize, attr_bytes: usize) -> Vec<SpanSlot> {
    use SpanKind::{Client, Internal};
    let llm = first + 3;
    let mut api = slot(
        "api_call",
        Client,
        Some(llm),
        160,
        1080,
        api_call_attributes(attr_bytes),
    );
    api.api_call = true;
    vec![
        slot(
            "agent_step",
            Internal,
            Some(parent),
            0,
            1080,
            vec![int("agent.step", step as i64)],
        ),
        slot(
            "embed_query",
            Client,
            Some(first),
            0,
            100,
            vec![string("model", "text-embedding-3-small")],
        ),
        slot(
            "vector_search",
            Client,
            Some(first),
            100,
            150,
            vec![string("database", "pinecone"), int("results_found", 8)],
        ),
        slot(
            "llm_call",
            Internal,
            Some(first),
            150,
            1080,
            vec![string("model", "claude-3-opus-20250219")],
        ),
        slot(
            "prompt_assembly",
            Internal,
            Some(llm),
            150,
            160,
            vec![int("prompt_length", 2048)],
        ),
        api,
    ]
}

/// Appends `steps` agent steps (1-based k; parent of step k is step
/// (k-1)/4, 0 meaning the root), each running its own work and then its
/// child steps one after another; parents are widened to cover children.
fn add_steps(slots: &mut Vec<SpanSlot>, steps: usize, attr_bytes: usize) {
    let own = 1080 * MS;
    let first_slot = |k: usize| BASE_CHAIN_SPANS + (k - 1) * STEP_SPANS;
    let parent_step = |k: usize| (k - 1) / STEP_FAN_OUT;
    // Bottom-up: how long each step's subtree lasts (children have larger k).
    let mut subtree = vec![0u64; steps + 1];
    for k in (1..=steps).rev() {
        subtree[k] += own;
        let p = parent_step(k);
        if p > 0 {
            subtree[p] += subtree[k];
        }
    }
    // Top-down: children start after their parent's own work, in order.
    let root_own = slots[0].end;
    let mut start = vec![0u64; steps + 1];
    let mut cursor = vec![0u64; steps + 1];
    cursor[0] = root_own;
    for k in 1..=steps {
        let p = parent_step(k);
        if p > 0 && cursor[p] == 0 {
            cursor[p] = start[p] + own;
        }
        start[k] = cursor[p];
        cursor[p] += subtree[k];
        let parent_slot = if p == 0 { 0 } else { first_slot(p) };
        let mut spans = step_spans(parent_slot, first_slot(k), k, attr_bytes);
        for s in &mut spans {
            s.start += start[k];
            s.end += start[k];
        }
        spans[0].end = start[k] + subtree[k];
        slots.extend(spans);
    }
    slots[0].end = cursor[0];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_nesting(shape: &ChainShape) {
        for (i, s) in shape.slots.iter().enumerate() {
            assert!(s.start <= s.end, "slot {i} ends before it starts");
            if let Some(p) = s.parent {
                assert!(p < i, "slot {i}: parent {p} comes later");
                let parent = &shape.slots[p];
                assert!(
                    parent.start <= s.start && s.end <= parent.end,
                    "slot {i} ({}) [{}, {}] is outside its parent {p} ({}) [{}, {}]",
                    s.name,
                    s.start,
                    s.end,
                    parent.name,
                    parent.start,
                    parent.end
                );
            } else {
                assert_eq!(i, 0, "only slot 0 may be a root");
            }
        }
    }

    #[test]
    fn shapes_have_the_asked_size_one_root_and_nested_times() {
        for n in [1, 2, 6, 7, 8, 13, 14, 100, 10_000] {
            let shape = ChainShape::new(n, 16, u64::MAX);
            assert_eq!(shape.slots.len(), n);
            check_nesting(&shape);
        }
        let seven = ChainShape::new(7, 0, u64::MAX);
        assert_eq!(seven.slots[seven.error_slot].name, "api_call");
        assert_eq!(seven.duration(), 1130 * MS);
        assert_eq!(ChainShape::new(3, 0, u64::MAX).error_slot, 0);
    }

    #[test]
    fn giant_traces_stay_shallow_and_are_squeezed_into_the_window() {
        let shape = ChainShape::new(10_000, 0, 60 * 1_000 * MS);
        check_nesting(&shape);
        assert!(shape.duration() <= 60 * 1_000 * MS);
        let depth = |mut i: usize| {
            let mut d = 0;
            while let Some(p) = shape.slots[i].parent {
                i = p;
                d += 1;
            }
            d
        };
        let max_depth = (0..shape.slots.len()).map(depth).max().unwrap();
        assert!(max_depth <= 12, "depth {max_depth}");
    }

    #[test]
    fn filler_has_exact_length() {
        assert_eq!(filler("abc", 7), "abcabca");
        assert_eq!(filler("abc", 0), "");
    }
}
