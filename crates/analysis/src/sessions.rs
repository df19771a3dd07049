//! Traces grouped by session: a user's conversation, turn by turn.
//!
//! A trace belongs to the session named by the first of
//! [`SESSION_ID_KEYS`](chaintrace_model::conventions::SESSION_ID_KEYS) any
//! of its spans holds (the root's attributes first), and to the user named
//! by [`USER_ID_KEYS`](chaintrace_model::conventions::USER_ID_KEYS) the
//! same way. Traces with no session id are not counted here.

use std::collections::HashMap;

use chaintrace_model::conventions::{trace_text, SESSION_ID_KEYS, USER_ID_KEYS};
use chaintrace_model::{AnyValue, Span, Trace, TraceId, UnixNanos};
use serde::Serialize;

use crate::errors::error_type;
use crate::llm::{answer_text, last_user_text, llm_spans, LlmTotals};
use crate::prices::PriceTable;

/// One session's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The session id, as sent.
    pub session_id: String,
    /// The user, when a trace of the session named one.
    pub user: Option<String>,
    /// Start of its first trace.
    pub first_start: UnixNanos,
    /// End of its last trace.
    pub last_end: UnixNanos,
    /// From the first start to the last end.
    pub duration_nano: u64,
    /// Traces (turns) in the range.
    pub turns: u64,
    /// Turns with a failed span.
    pub error_turns: u64,
    /// Counted LLM calls, tokens and cost of its turns.
    #[serde(flatten)]
    pub llm: LlmTotals,
    /// Its turns' trace ids, oldest first (at most [`MAX_TURN_IDS`]; the
    /// newest are kept).
    pub trace_ids: Vec<TraceId>,
}

/// One turn of a session (one trace), as its transcript shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionTurn {
    /// The trace.
    pub trace_id: TraceId,
    /// Its root span's name (else its earliest span's).
    pub root_name: String,
    /// That span's `service.name`.
    pub service: String,
    /// Start of its earliest span.
    pub start: UnixNanos,
    /// From its start to its last span's end.
    pub duration_nano: u64,
    /// From the previous turn's end to this one's start (0 when they
    /// overlap); `None` for the first turn.
    pub gap_nano: Option<u64>,
    /// The user, when a span names one.
    pub user: Option<String>,
    /// What the user said: the root's `input.value`, else the last user
    /// message of its first LLM call that recorded one.
    pub user_input: Option<String>,
    /// What came back: the root's `output.value`, else the answer of its
    /// last LLM call that recorded one.
    pub output: Option<String>,
    /// Time to the first streamed token of its first LLM call that
    /// recorded one (`gen_ai.response.time_to_first_chunk` or
    /// `gen_ai.server.time_to_first_token`, seconds).
    pub time_to_first_token_nano: Option<u64>,
    /// Failed spans.
    pub error_count: u64,
    /// Their error types, each once.
    pub error_types: Vec<String>,
    /// Its counted LLM calls, tokens and cost.
    #[serde(flatten)]
    pub llm: LlmTotals,
    /// Cache reads over input tokens, when input tokens were reported.
    pub cache_hit_share: Option<f64>,
    /// The models its calls used, each once.
    pub models: Vec<String>,
}

/// The turns of one session, oldest first (`traces` in any order).
pub fn session_turns(traces: &[Trace], prices: &PriceTable) -> Vec<SessionTurn> {
    let mut order: Vec<&Trace> = traces.iter().collect();
    order.sort_by_key(|t| (t.start(), t.trace_id));
    let mut previous_end: Option<u64> = None;
    let mut turns = Vec::with_capacity(order.len());
    for trace in order {
        let start = trace.start().0;
        let end = trace.spans.iter().map(|s| s.end.0).max().unwrap_or(start);
        let root = trace.root().or_else(|| trace.spans.first());
        let calls = llm_spans(trace, prices);
        let mut llm = LlmTotals::default();
        let mut models: Vec<String> = Vec::new();
        for call in calls.iter().filter(|c| c.counted) {
            llm.add(&call.tokens, call.cost.as_ref());
            if let Some(m) = &call.model {
                if !models.contains(m) {
                    models.push(m.clone());
                }
            }
        }
        let mut by_start: Vec<&Span> = calls
            .iter()
            .filter_map(|c| trace.spans.get(c.span_index))
            .collect();
        by_start.sort_by_key(|s| (s.start, s.span_id));
        let user_input = root
            .and_then(|r| r.attr("input.value"))
            .map(AnyValue::to_display_string)
            .or_else(|| by_start.iter().find_map(|s| last_user_text(s)));
        let output = root
            .and_then(|r| r.attr("output.value"))
            .map(AnyValue::to_display_string)
            .or_else(|| {
                let mut by_end = by_start.clone();
                by_end.sort_by_key(|s| (s.end, s.span_id));
                by_end.iter().rev().find_map(|s| answer_text(s))
            });
        let ttft = by_start.iter().find_map(|s| {
            [
                "gen_ai.response.time_to_first_chunk",
                "gen_ai.server.time_to_first_token",
            ]
            .iter()
            .find_map(|k| match s.attr(k)? {
                AnyValue::Double(d) if *d >= 0.0 => Some((d * 1e9) as u64),
                AnyValue::Int(i) if *i >= 0 => Some(*i as u64 * 1_000_000_000),
                _ => None,
            })
        });
        let mut error_types: Vec<String> = Vec::new();
        let mut error_count = 0;
        for span in &trace.spans {
            if let Some(t) = error_type(span) {
                error_count += 1;
                if !error_types.contains(&t.short) {
                    error_types.push(t.short);
                }
            }
        }
        let cache_hit_share =
            (llm.input_tokens > 0).then(|| llm.cache_read_tokens as f64 / llm.input_tokens as f64);
        turns.push(SessionTurn {
            trace_id: trace.trace_id,
            root_name: root.map(|r| r.name.to_string()).unwrap_or_default(),
            service: root
                .map(|r| r.service_name().to_string())
                .unwrap_or_default(),
            start: UnixNanos(start),
            duration_nano: end - start,
            gap_nano: previous_end.map(|p| start.saturating_sub(p)),
            user: trace_text(&trace.spans, &USER_ID_KEYS).map(str::to_string),
            user_input,
            output,
            time_to_first_token_nano: ttft,
            error_count,
            error_types,
            llm,
            cache_hit_share,
            models,
        });
        previous_end = Some(previous_end.map_or(end, |p| p.max(end)));
    }
    turns
}

/// Most trace ids a session lists.
pub const MAX_TURN_IDS: usize = 100;

#[derive(Debug)]
struct SessionAcc {
    user: Option<String>,
    first: u64,
    last_end: u64,
    turns: u64,
    error_turns: u64,
    llm: LlmTotals,
    /// (start, id) of the newest turns.
    ids: Vec<(u64, TraceId)>,
}

/// Sessions added one trace at a time.
#[derive(Debug, Default)]
pub struct SessionGroups {
    sessions: HashMap<String, SessionAcc>,
    user: Option<String>,
}

impl SessionGroups {
    /// Only the sessions of traces whose user is `user`, when given.
    pub fn for_user(user: Option<String>) -> SessionGroups {
        SessionGroups {
            sessions: HashMap::new(),
            user,
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Adds `trace` to its session, if it has one.
    pub fn add(&mut self, trace: &Trace, prices: &PriceTable) {
        let Some(session) = trace_text(&trace.spans, &SESSION_ID_KEYS) else {
            return;
        };
        let user = trace_text(&trace.spans, &USER_ID_KEYS);
        if self.user.as_deref().is_some_and(|u| Some(u) != user) {
            return;
        }
        let start = trace.start().0;
        let end = trace.spans.iter().map(|s| s.end.0).max().unwrap_or(start);
        let acc = self
            .sessions
            .entry(session.to_string())
            .or_insert_with(|| SessionAcc {
                user: None,
                first: start,
                last_end: end,
                turns: 0,
                error_turns: 0,
                llm: LlmTotals::default(),
                ids: Vec::new(),
            });
        if acc.user.is_none() {
            acc.user = user.map(str::to_string);
        }
        acc.first = acc.first.min(start);
        acc.last_end = acc.last_end.max(end);
        acc.turns += 1;
        acc.error_turns += u64::from(trace.spans.iter().any(|s| s.is_error()));
        for call in llm_spans(trace, prices).iter().filter(|c| c.counted) {
            acc.llm.add(&call.tokens, call.cost.as_ref());
        }
        acc.ids.push((start, trace.trace_id));
        if acc.ids.len() > 2 * MAX_TURN_IDS {
            acc.ids.sort_unstable();
            acc.ids.drain(..acc.ids.len() - MAX_TURN_IDS);
        }
    }

    /// The sessions, most recently active first, at most `limit`.
    pub fn finish(self, limit: usize) -> Vec<SessionSummary> {
        let mut out: Vec<SessionSummary> = self
            .sessions
            .into_iter()
            .map(|(session_id, mut acc)| {
                acc.ids.sort_unstable();
                let skip = acc.ids.len().saturating_sub(MAX_TURN_IDS);
                SessionSummary {
                    session_id,
                    user: acc.user,
                    first_start: UnixNanos(acc.first),
                    last_end: UnixNanos(acc.last_end),
                    duration_nano: acc.last_end.saturating_sub(acc.first),
                    turns: acc.turns,
                    error_turns: acc.error_turns,
                    llm: acc.llm,
                    trace_ids: acc.ids.into_iter().skip(skip).map(|(_, id)| id).collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.last_end
                .cmp(&a.last_end)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        out.truncate(limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{KeyValue, Span, TraceId};

    use super::*;
    use crate::test_support::*;

    fn turn(id: u8, at_ms: u64, session: &str, user: Option<&str>, key: &str, fail: bool) -> Trace {
        let spans: Vec<Span> = founding_spans()
            .into_iter()
            .map(|mut s| {
                s.trace_id = TraceId([id; 16]);
                s.start.0 += ms(at_ms);
                s.end.0 += ms(at_ms);
                if s.parent_span_id.is_none() {
                    s.attributes.push(KeyValue::new(key, session));
                }
                if s.name == "llm_call" {
                    if let Some(u) = user {
                        s.attributes.push(KeyValue::new("enduser.id", u));
                    }
                }
                if fail && s.name == "api_call" {
                    s = failed(s, "RateLimitError");
                }
                s
            })
            .collect();
        Trace::new(TraceId([id; 16]), spans)
    }

    #[test]
    fn turns_group_by_the_first_session_key_found_and_add_up() {
        let prices = PriceTable::builtin();
        let mut g = SessionGroups::default();
        g.add(
            &turn(1, 0, "s-1", Some("u-7"), "session.id", false),
            &prices,
        );
        g.add(
            &turn(2, 5_000, "s-1", None, "gen_ai.conversation.id", true),
            &prices,
        );
        g.add(
            &turn(3, 9_000, "s-2", Some("u-8"), "langfuse.session.id", false),
            &prices,
        );
        g.add(&founding(), &prices); // no session: not counted
        assert_eq!(g.len(), 2);
        let one = operation_tokens(&prices);
        let all = g.finish(10);
        assert_eq!(all[0].session_id, "s-2", "most recently active first");
        let s1 = &all[1];
        assert_eq!((s1.turns, s1.error_turns), (2, 1));
        assert_eq!(s1.user.as_deref(), Some("u-7"));
        assert_eq!(s1.trace_ids, [TraceId([1; 16]), TraceId([2; 16])]);
        assert_eq!(s1.first_start, founding().start());
        assert_eq!(s1.duration_nano, s1.last_end.0 - s1.first_start.0);
        assert_eq!(s1.llm.input_tokens, 2 * one);

        let mut only = SessionGroups::for_user(Some("u-8".into()));
        for t in [
            turn(1, 0, "s-1", Some("u-7"), "session.id", false),
            turn(3, 9_000, "s-2", Some("u-8"), "session.id", false),
        ] {
            only.add(&t, &prices);
        }
        let only = only.finish(10);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].session_id, "s-2");
    }

    fn operation_tokens(prices: &PriceTable) -> u64 {
        LlmTotals::of(&llm_spans(&founding(), prices)).input_tokens
    }

    #[test]
    fn turns_read_as_a_transcript_with_gaps_inputs_and_answers() {
        let prices = PriceTable::builtin();
        let mut first = turn(1, 0, "s-1", Some("u-7"), "session.id", false);
        for s in &mut first.spans {
            if s.name == "api_call" {
                s.attributes
                    .push(KeyValue::new("gen_ai.prompt.0.role", "user"));
                s.attributes
                    .push(KeyValue::new("gen_ai.prompt.0.content", "What is RAG?"));
                s.attributes.push(KeyValue::new(
                    "gen_ai.completion.0.content",
                    "Retrieval, then generation.",
                ));
                s.attributes
                    .push(KeyValue::new("gen_ai.response.time_to_first_chunk", 0.25));
            }
        }
        let second = turn(2, 5_000, "s-1", None, "session.id", true);
        // Given newest first, read oldest first.
        let turns = session_turns(&[second, first], &prices);
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].trace_id, TraceId([1; 16]));
        assert_eq!(turns[0].gap_nano, None);
        assert_eq!(turns[0].user_input.as_deref(), Some("What is RAG?"));
        assert_eq!(
            turns[0].output.as_deref(),
            Some("Retrieval, then generation.")
        );
        assert_eq!(turns[0].time_to_first_token_nano, Some(250_000_000));
        assert_eq!(turns[0].user.as_deref(), Some("u-7"));
        assert_eq!(
            (turns[0].root_name.as_str(), turns[0].duration_nano),
            ("process_query", ms(1200))
        );
        // 5 s after the first started, 3.8 s after it ended.
        assert_eq!(turns[1].gap_nano, Some(ms(3_800)));
        assert_eq!(
            (turns[1].error_count, turns[1].error_types.clone()),
            (1, vec!["RateLimitError".to_string()])
        );
        assert_eq!(turns[1].llm.input_tokens, 1200);
        assert_eq!(turns[1].cache_hit_share, Some(0.0));
        assert_eq!(
            turns[1].models,
            ["text-embedding-3-small", "claude-3-opus-20250219"]
        );
    }
}
