//! `chaintrace sessions [ID]`: the sessions of a range, or one session as
//! a transcript, from a running server's API.

use std::fmt::Write;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::Value;

use crate::client::{get_json, ServerArg};
use crate::render::{cut, fmt_ms, fmt_time, shown};
use chaintrace_model::UnixNanos;

/// Flags of `chaintrace sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Show this session's turns as a transcript (default: list sessions).
    pub id: Option<String>,
    /// How far back to look, e.g. `1h`, `24h`, `7d`.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Only sessions of this user (`user.id` / `enduser.id`).
    #[arg(long)]
    pub user: Option<String>,
    /// Most sessions (or turns) to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `chaintrace sessions`.
pub async fn sessions(args: SessionsArgs) -> Result<()> {
    let answer = match &args.id {
        Some(id) => {
            if id.is_empty() {
                bail!("a session id cannot be empty");
            }
            let path = format!("/api/v1/sessions/{}", path_segment(id));
            let query = [
                ("since", args.since.clone()),
                ("limit", args.limit.to_string()),
            ];
            crate::progress::while_waiting(
                "reading the session",
                get_json(&args.server, &path, &query),
            )
            .await?
        }
        None => {
            let mut query = vec![
                ("since", args.since.clone()),
                ("limit", args.limit.to_string()),
            ];
            if let Some(u) = &args.user {
                query.push(("user", u.clone()));
            }
            crate::progress::while_waiting(
                "reading sessions",
                get_json(&args.server, "/api/v1/sessions", &query),
            )
            .await?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if args.id.is_some() {
        print!("{}", render_transcript(&answer));
    } else {
        print!("{}", render_sessions(&answer));
    }
    Ok(())
}

/// `text` as one URL path segment.
fn path_segment(text: &str) -> String {
    chaintrace_server::percent::percent_encode(text, b"")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn text(v: &Value, key: &str) -> String {
    shown(v[key].as_str().unwrap_or("")).into_owned()
}

fn usd(v: &Value) -> String {
    match v["cost_usd"].as_f64() {
        Some(c) if n(v, "unpriced_calls") > 0 && c == 0.0 => "unpriced".to_string(),
        Some(c) => format!("${c:.4}"),
        None => "-".to_string(),
    }
}

/// The session list as a table, most recently active first.
pub fn render_sessions(answer: &Value) -> String {
    let rows = answer["sessions"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no sessions in range (traces name theirs with session.id, gen_ai.conversation.id or langfuse.session.id)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<28} {:<14} {:>5} {:>4} {:>10} {:>9} {:>10}  LAST",
        "SESSION", "USER", "TURNS", "ERR", "DURATION", "TOKENS", "COST"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<28} {:<14} {:>5} {:>4} {:>10} {:>9} {:>10}  {}",
            cut(&text(r, "session_id"), 28),
            cut(&text(r, "user"), 14),
            n(r, "turns"),
            n(r, "error_turns"),
            fmt_ms(n(r, "duration_nano")),
            n(r, "input_tokens") + n(r, "output_tokens"),
            usd(r),
            fmt_time(UnixNanos(n(r, "last_end"))),
        );
    }
    if answer["truncated"].as_bool() == Some(true) {
        out.push_str("(stopped early: narrow the range)\n");
    }
    out
}

/// One session's turns, oldest first: each turn's question and answer,
/// latency and cost, and the pause before it.
pub fn render_transcript(answer: &Value) -> String {
    let turns = answer["turns"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    let id = text(answer, "session_id");
    if turns.is_empty() {
        let _ = writeln!(out, "session {id}: no turns in range (try --since 7d)");
        return out;
    }
    let tokens: u64 = turns
        .iter()
        .map(|t| n(t, "input_tokens") + n(t, "output_tokens"))
        .sum();
    let cost: f64 = turns.iter().filter_map(|t| t["cost_usd"].as_f64()).sum();
    let errors = turns.iter().filter(|t| n(t, "error_count") > 0).count();
    let _ = writeln!(
        out,
        "session {id}: {} turns, {errors} with errors, {tokens} tokens, ${cost:.4}",
        turns.len()
    );
    for (i, t) in turns.iter().enumerate() {
        if let Some(gap) = t["gap_nano"].as_u64() {
            let _ = writeln!(out, "   ⋮ {} later", fmt_ms(gap));
        }
        let _ = writeln!(
            out,
            "#{} {}  {}  {}  trace {}",
            i + 1,
            fmt_time(UnixNanos(n(t, "start"))),
            text(t, "root_name"),
            fmt_ms(n(t, "duration_nano")),
            text(t, "trace_id"),
        );
        for (label, key) in [("user", "user_input"), ("answer", "output")] {
            if let Some(said) = t[key].as_str() {
                // One line: the text's own line breaks become spaces.
                let one_line: String = said.split_whitespace().collect::<Vec<_>>().join(" ");
                let _ = writeln!(out, "   {label:>6}: {}", cut(&shown(&one_line), 200));
            }
        }
        let mut facts = vec![
            format!("{} tokens", n(t, "input_tokens") + n(t, "output_tokens")),
            usd(t),
        ];
        if let Some(ttft) = t["time_to_first_token_nano"].as_u64() {
            facts.push(format!("first token {}", fmt_ms(ttft)));
        }
        if let Some(share) = t["cache_hit_share"].as_f64() {
            facts.push(format!("cache {:.0}%", share * 100.0));
        }
        let types: Vec<String> = t["error_types"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .map(|s| shown(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if n(t, "error_count") > 0 {
            facts.push(format!(
                "{} failed ({})",
                n(t, "error_count"),
                types.join(", ")
            ));
        }
        let _ = writeln!(out, "          {}", facts.join(" · "));
    }
    if answer["truncated"].as_bool() == Some(true) {
        out.push_str("(older turns left out: raise --limit)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transcript_shows_questions_answers_and_pauses() {
        let answer = json!({
            "session_id": "s-1",
            "turns": [
                {"trace_id": "01", "root_name": "chat", "start": 1_000_000_000u64, "duration_nano": 1_200_000_000u64,
                 "gap_nano": null, "user_input": "What is\nRAG?", "output": "Retrieval first.",
                 "time_to_first_token_nano": 250_000_000u64, "error_count": 0, "error_types": [],
                 "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.001, "unpriced_calls": 0,
                 "cache_hit_share": 0.5},
                {"trace_id": "02", "root_name": "chat\u{1b}[31m", "start": 6_000_000_000u64, "duration_nano": 900_000_000u64,
                 "gap_nano": 3_800_000_000u64, "user_input": null, "output": null,
                 "error_count": 1, "error_types": ["RateLimitError"],
                 "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "unpriced_calls": 1}
            ],
            "truncated": false
        });
        let text = render_transcript(&answer);
        assert!(
            text.starts_with("session s-1: 2 turns, 1 with errors, 120 tokens"),
            "{text}"
        );
        assert!(text.contains("user: What is RAG?"), "{text}");
        assert!(text.contains("answer: Retrieval first."), "{text}");
        assert!(text.contains("first token 250 ms"), "{text}");
        assert!(text.contains("cache 50%"), "{text}");
        assert!(text.contains("⋮ 3800 ms later"), "{text}");
        assert!(text.contains("1 failed (RateLimitError)"), "{text}");
        assert!(text.contains("unpriced"), "{text}");
        // Span data never reaches the terminal raw.
        assert!(!text.contains('\u{1b}'), "{text}");
        assert_eq!(path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
