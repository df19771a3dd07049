//! `chaintrace search`, `analyze`, `top` and `errors`: questions to a running
//! server's API, answered as tables and charts (or `--json`).

use std::borrow::Cow;
use std::fmt::Write;
use std::io::IsTerminal;

use anyhow::{Context, Result};
use chaintrace_analysis::gantt;
use chaintrace_model::{Trace, TraceId};
use clap::Args;
use serde_json::Value;

use crate::client::{get_json, ServerArg};
use crate::render::{fmt_ms, fmt_time, shown};

/// Time-range flags.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// How far back to look, e.g. `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h")]
    pub since: String,
}

/// Flags of `chaintrace search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A TraceQL query, e.g. `{ name = "llm_call" && status = error }`.
    pub query: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Most traces to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// Flags of `chaintrace analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The trace id.
    pub trace_id: String,
    /// What if these sibling spans ran concurrently? Comma-separated names.
    #[arg(long)]
    pub parallel: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show every span: do not fold sibling runs and retries into one row.
    #[arg(long)]
    pub expand: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// Flags of `chaintrace compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The trace to compare against (the "before").
    pub a: String,
    /// The trace asked about (the "after"): differences are b − a.
    pub b: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// Flags of `chaintrace top` and `chaintrace errors`.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only traces matching this TraceQL query.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// A text field of an answer, made safe for the terminal: names, services,
/// error types and models come from whoever sent the spans.
fn s<'a>(v: &'a Value, key: &str) -> Cow<'a, str> {
    shown(v[key].as_str().unwrap_or(""))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// `chaintrace search`.
pub async fn search(args: SearchArgs) -> Result<()> {
    let query = [
        ("q", args.query.clone()),
        ("since", args.range.since.clone()),
        ("limit", args.limit.to_string()),
    ];
    let answer = crate::progress::while_waiting(
        "searching",
        get_json(&args.server, "/api/v1/search", &query),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let traces = answer["traces"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32}  {:<16}  {:<20}  {:<24}  {:>9}  {:>5}  {:>6}  MATCHED",
        "TRACE ID", "SERVICE", "ROOT", "START (UTC)", "DURATION", "SPANS", "ERRORS"
    );
    for t in &traces {
        let matched: Vec<String> = t["matched"]
            .as_array()
            .map(|m| m.iter().map(|x| s(x, "name").into_owned()).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<32}  {:<16.16}  {:<20.20}  {:<24}  {:>9}  {:>5}  {:>6}  {}",
            s(t, "trace_id"),
            s(t, "root_service"),
            s(t, "root_name"),
            fmt_time(chaintrace_model::UnixNanos(n(t, "start_unix_nano"))),
            fmt_ms(n(t, "duration_nano")),
            n(t, "span_count"),
            n(t, "error_count"),
            matched.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{} traces matched; {} inspected{}",
        traces.len(),
        answer["inspected"],
        stop_note(&answer, "stopped early: narrow the time range to see more")
    );
    print!("{out}");
    Ok(())
}

/// `chaintrace analyze`.
pub async fn analyze(args: AnalyzeArgs) -> Result<()> {
    let id: TraceId = args
        .trace_id
        .trim()
        .parse()
        .with_context(|| format!("{:?} is not a trace id", args.trace_id))?;
    let mut query = Vec::new();
    if let Some(p) = &args.parallel {
        query.push(("parallel", p.clone()));
    }
    let analysis = get_json(
        &args.server,
        &format!("/api/v1/traces/{id}/analysis"),
        &query,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
        return Ok(());
    }
    let trace_json = get_json(&args.server, &format!("/api/v1/traces/{id}"), &[]).await?;
    let trace: Trace = serde_json::from_value(trace_json)
        .context("the server sent a trace this CLI cannot read")?;
    print!(
        "{}",
        render_analysis(
            &trace,
            &analysis,
            std::io::stdout().is_terminal(),
            !args.expand
        )
    );
    Ok(())
}

/// `chaintrace compare A B`: trace B against trace A, span by span.
pub async fn compare(args: CompareArgs) -> Result<()> {
    let id = |text: &str| -> Result<TraceId> {
        text.trim()
            .parse()
            .with_context(|| format!("{text:?} is not a trace id"))
    };
    let (a, b) = (id(&args.a)?, id(&args.b)?);
    let answer = get_json(&args.server, &format!("/api/v1/compare/{a}/{b}"), &[]).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render_comparison(&answer));
    }
    Ok(())
}

/// A signed duration: `+12.0 ms`, `−50.0 ms`, `0`.
fn fmt_delta(nanos: i64) -> String {
    match nanos.signum() {
        0 => "0".to_string(),
        1 => format!("+{}", fmt_ms(nanos.unsigned_abs())),
        _ => format!("−{}", fmt_ms(nanos.unsigned_abs())),
    }
}

/// The comparison as a table: the totals, each matched span with both
/// durations and the differences, the spans on one side only, and where
/// the critical paths part.
pub fn render_comparison(c: &Value) -> String {
    let i = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "b against a: {} vs {} ({})",
        fmt_ms(n(c, "b_duration_nano")),
        fmt_ms(n(c, "a_duration_nano")),
        fmt_delta(i(c, "duration_delta_nano"))
    );
    let matched = c["matched"].as_array().cloned().unwrap_or_default();
    let width = matched
        .iter()
        .map(|m| s(m, "path").chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 70);
    let _ = writeln!(
        out,
        "\n{:width$}  {:>10}  {:>10}  {:>10}  {:>10}  crit",
        "span", "a", "b", "Δ", "self Δ"
    );
    for m in &matched {
        let path = shown(&s(m, "path")).into_owned();
        let mark = |k: &str| {
            if m[k].as_bool() == Some(true) {
                "◆"
            } else {
                "·"
            }
        };
        let _ = writeln!(
            out,
            "{path:width$}  {:>10}  {:>10}  {:>10}  {:>10}  {}{}",
            fmt_ms(n(m, "a_duration_nano")),
            fmt_ms(n(m, "b_duration_nano")),
            fmt_delta(i(m, "duration_delta_nano")),
            fmt_delta(i(m, "self_delta_nano")),
            mark("a_critical"),
            mark("b_critical"),
        );
    }
    for (key, label) in [("only_a", "only in a"), ("only_b", "only in b")] {
        for lone in c[key].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{label}: {} ({})",
                shown(&s(lone, "path")),
                fmt_ms(n(lone, "duration_nano"))
            );
        }
    }
    match c["critical_paths_part_at"].as_u64() {
        None => out.push_str("critical path: the same in both\n"),
        Some(k) => {
            let step = |key: &str| {
                c[key]
                    .get(k as usize)
                    .and_then(Value::as_str)
                    .map_or("(ends)".to_string(), |p| shown(p).into_owned())
            };
            let _ = writeln!(
                out,
                "critical path parts at step {}: a {}, b {}",
                k + 1,
                step("a_critical_path"),
                step("b_critical_path")
            );
        }
    }
    out
}

/// The Gantt with critical-path marks and self times, then the figures.
pub fn render_analysis(trace: &Trace, analysis: &Value, color: bool, fold: bool) -> String {
    let layout = gantt::layout(trace);
    let mut out = crate::render::gantt_with(trace, &layout, color, true, fold, &[]);
    let chain: Vec<Cow<str>> = analysis["critical_path"]
        .as_array()
        .map(|c| c.iter().map(|p| s(p, "name")).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "\ncritical path: {}", chain.join(" → "));
    let _ = writeln!(
        out,
        "duration {} · if all siblings overlapped: {}",
        fmt_ms(n(analysis, "duration_nano")),
        fmt_ms(n(analysis, "fully_parallel_bound_nano"))
    );
    if let Some(w) = analysis["what_if"].as_object() {
        let names: Vec<Cow<str>> = w["parallel"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(shown).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "what if {} ran concurrently: {} (saves {})",
            names.join(" ∥ "),
            fmt_ms(w["duration_nano"].as_u64().unwrap_or(0)),
            fmt_ms(w["saved_nano"].as_u64().unwrap_or(0))
        );
    }
    if analysis["clock_skew_adjusted"] == true {
        let _ = writeln!(out, "note: some child spans lay outside their parents (clock skew or async work) and were clamped");
    }
    let llm = analysis["llm"].as_array().cloned().unwrap_or_default();
    if !llm.is_empty() {
        let _ = writeln!(out, "\nLLM calls:");
        for call in llm
            .iter()
            .filter(|c| !c["input_tokens"].is_null() || !c["output_tokens"].is_null())
        {
            let view = &call["view"];
            let view = if view.is_null() { call } else { view };
            let model = shown(view["model"].as_str().unwrap_or("?"));
            let tokens = &view["tokens"];
            let tokens = if tokens.is_null() { view } else { tokens };
            let cost = match view["cost"]["total_usd"].as_f64() {
                Some(c) => format!("${c:.4}"),
                None => "cost unknown".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<16} {:<28} in {:>6}  out {:>6}  {}",
                s(call, "name"),
                model,
                n(tokens, "input_tokens"),
                n(tokens, "output_tokens"),
                cost
            );
        }
        let totals = &analysis["llm_totals"];
        let _ = writeln!(
            out,
            "  total: {} calls, {} tokens in, {} out, ${:.4}",
            n(totals, "calls"),
            n(totals, "input_tokens"),
            n(totals, "output_tokens"),
            totals["cost_usd"].as_f64().unwrap_or(0.0)
        );
    }
    out
}

/// `chaintrace top`: per-operation and per-model figures.
pub async fn top(args: TopArgs) -> Result<()> {
    let mut query = vec![("since", args.range.since.clone())];
    if let Some(f) = &args.filter {
        query.push(("filter", f.clone()));
    }
    let ops = crate::progress::while_waiting(
        "reading operations",
        get_json(&args.server, "/api/v1/analytics/operations", &query),
    )
    .await?;
    let models = crate::progress::while_waiting(
        "reading models",
        get_json(&args.server, "/api/v1/analytics/models", &query),
    )
    .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"operations": ops, "models": models})
            )?
        );
        return Ok(());
    }
    let mut out = String::new();
    let mut rows = ops["operations"].as_array().cloned().unwrap_or_default();
    rows.sort_by(|a, b| {
        b["critical_path_share"]
            .as_f64()
            .partial_cmp(&a["critical_path_share"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let _ = writeln!(
        out,
        "{:<14} {:<20} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9} {:>9}",
        "SERVICE",
        "OPERATION",
        "COUNT",
        "ERR%",
        "P50",
        "P90",
        "P99",
        "SELF",
        "CRIT%",
        "TOKENS",
        "COST"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<14.14} {:<20.20} {:>6} {:>5.1}% {:>9} {:>9} {:>9} {:>9} {:>5.1}% {:>9} {:>9}",
            s(r, "service"),
            s(r, "name"),
            n(r, "count"),
            r["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            fmt_ms(n(r, "p50_nano")),
            fmt_ms(n(r, "p90_nano")),
            fmt_ms(n(r, "p99_nano")),
            fmt_ms(n(r, "mean_self_nano")),
            r["critical_path_share"].as_f64().unwrap_or(0.0) * 100.0,
            n(r, "input_tokens") + n(r, "output_tokens"),
            format!("${:.4}", r["cost_usd"].as_f64().unwrap_or(0.0)),
        );
    }
    let model_rows = models["models"].as_array().cloned().unwrap_or_default();
    if !model_rows.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<32} {:>6} {:>6} {:>9} {:>10} {:>10} {:>10}",
            "MODEL", "CALLS", "ERR%", "P99", "IN", "OUT", "COST"
        );
        for m in &model_rows {
            let _ = writeln!(
                out,
                "{:<32.32} {:>6} {:>5.1}% {:>9} {:>10} {:>10} {:>10}",
                s(m, "model"),
                n(m, "calls").max(n(m, "count")),
                m["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                fmt_ms(n(m, "p99_nano")),
                n(m, "input_tokens"),
                n(m, "output_tokens"),
                format!("${:.4}", m["cost_usd"].as_f64().unwrap_or(0.0)),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} traces analysed{}",
        ops["traces"],
        truncated_note(&ops)
    );
    print!("{out}");
    Ok(())
}

fn truncated_note(v: &Value) -> String {
    stop_note(
        v,
        "the newest ones only: narrow --since to cover the whole range",
    )
}

/// The parenthesised note after a count: nothing for a complete answer,
/// `cap_note` when the trace cap cut it, and the server's reason when
/// something else stopped it (the regex work budget), which narrowing the
/// range alone may not cure.
fn stop_note(answer: &Value, cap_note: &str) -> String {
    if answer["truncated"] != true {
        return String::new();
    }
    match answer["stopped"]["detail"].as_str() {
        Some(detail) => format!(
            " (stopped early, answer incomplete: {detail}; narrow the time range or simplify the regex)"
        ),
        None => format!(" ({cap_note})"),
    }
}

/// `chaintrace errors`: error groups.
pub async fn errors(args: TopArgs) -> Result<()> {
    let mut query = vec![("since", args.range.since.clone())];
    if let Some(f) = &args.filter {
        query.push(("filter", f.clone()));
    }
    let answer = crate::progress::while_waiting(
        "grouping errors",
        get_json(&args.server, "/api/v1/analytics/errors", &query),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6}  {:<14} {:<18} {:<24} {:<24} EXAMPLE TRACE",
        "COUNT", "SERVICE", "OPERATION", "ERROR TYPE", "LAST SEEN (UTC)"
    );
    for g in answer["errors"].as_array().cloned().unwrap_or_default() {
        let example = shown(g["example_trace_ids"][0].as_str().unwrap_or(""));
        let _ = writeln!(
            out,
            "{:>6}  {:<14.14} {:<18.18} {:<24.24} {:<24} {}",
            n(&g, "count"),
            s(&g, "service"),
            s(&g, "operation"),
            s(&g, "error_type"),
            fmt_time(chaintrace_model::UnixNanos(n(&g, "last_seen"))),
            example
        );
    }
    let _ = writeln!(
        out,
        "\n{} traces analysed{}",
        answer["traces"],
        truncated_note(&answer)
    );
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stop_notes_name_what_stopped_the_walk() {
        let cap = "narrow the time range";
        assert_eq!(stop_note(&json!({"truncated": false}), cap), "");
        assert_eq!(
            stop_note(&json!({"truncated": true}), cap),
            " (narrow the time range)"
        );
        let budget = json!({
            "truncated": true,
            "stopped": {
                "reason": "regex_work_budget",
                "detail": "regex work budget exhausted: name =~ \"x\" on a 9-byte value needs 10 work units, 1 of 1 were left"
            }
        });
        let note = stop_note(&budget, cap);
        assert!(
            note.starts_with(
                " (stopped early, answer incomplete: regex work budget exhausted: name =~"
            ),
            "{note}"
        );
        assert!(note.ends_with("simplify the regex)"), "{note}");
    }
}
