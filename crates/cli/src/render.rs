//! Terminal rendering of traces: the Gantt tree of `chaintrace trace` and the
//! table of `chaintrace traces`, with the log records written in each span
//! under its row.
//!
//! Layout comes from `chaintrace_analysis::gantt`; this module only turns it
//! into text. Colour is used only when asked (a tty), never needed: error
//! spans are also marked with `✗`.

use std::borrow::Cow;
use std::fmt::Write;

use chaintrace_analysis::gantt;
use chaintrace_model::{LogRecord, Trace, TraceSummary, UnixNanos};

const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Width of the bar column in characters.
pub const BAR_WIDTH: usize = 48;
/// Longest (indented) name shown before it is cut.
const MAX_NAME: usize = 40;

/// Milliseconds for people: `1200 ms`, `12.3 ms`.
pub fn fmt_ms(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// RFC 3339 UTC time with milliseconds, e.g. `2026-06-02T14:30:00.050Z`.
pub fn fmt_time(t: UnixNanos) -> String {
    t.to_rfc3339_millis()
}

/// `text` safe to print on a terminal: every control character (C0, DEL,
/// C1 — ESC starts ANSI and OSC sequences that can recolour, retitle or
/// rewrite the operator's terminal) and every bidirectional override (which
/// can make text read other than it is) is shown as a visible escape such
/// as `\x1b` or `\u{202e}`. Span names, services and attribute values come
/// from any sender: everything printed for people goes through here. JSON
/// output escapes them by itself; `--csv` keeps data as sent.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` cut to `max` characters, the last one `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Renders `trace` as an indented tree with one bar per span on a common
/// time axis, sibling runs and retries folded into one row each.
pub fn gantt(trace: &Trace, color: bool, fold: bool, logs: &[LogRecord]) -> String {
    gantt_with(trace, &gantt::layout(trace), color, false, fold, logs)
}

/// The most log records printed under one row of the chart; the rest are
/// counted (`chaintrace logs --trace-id` lists them all).
const MAX_LOGS_PER_LINE: usize = 8;

/// One line of the chart: a span, or a folded group of siblings.
struct Line {
    label: String,
    offset_nano: u64,
    duration_nano: u64,
    self_nano: u64,
    service: String,
    on_critical_path: bool,
    is_error: bool,
    mark: String,
    /// Depth of the row (of the group's first member).
    depth: usize,
    /// The spans the line stands for: one, or a group's members and
    /// their subtrees.
    spans: Vec<chaintrace_model::SpanId>,
}

/// The chart's lines: every row, or with `fold` each group of the web
/// UI's (`analysis::sibling_groups`: `vector_search ×312`, `api_call ×2 —
/// 1 failed, 114 ms lost`) as one line standing for its members and their
/// subtrees, so the terminal and the web show the same shape.
fn lines(layout: &gantt::GanttLayout, fold: bool) -> Vec<Line> {
    let rows = &layout.rows;
    let groups = if fold {
        chaintrace_analysis::sibling_groups(layout)
    } else {
        Vec::new()
    };
    let mut group_at: std::collections::HashMap<usize, &chaintrace_analysis::SiblingGroup> =
        std::collections::HashMap::new();
    for g in &groups {
        if let Some(&first) = g.rows.first() {
            group_at.insert(first, g);
        }
    }
    // The row after `r`'s subtree.
    let subtree_end = |r: usize| {
        (r + 1..rows.len())
            .find(|&j| rows[j].depth <= rows[r].depth)
            .unwrap_or(rows.len())
    };
    let indent = |depth: usize, name: &str| format!("{}{}", "  ".repeat(depth), shown(name));
    let mut out = Vec::with_capacity(rows.len());
    let mut i = 0;
    while i < rows.len() {
        let row = &rows[i];
        if let Some(g) = group_at.get(&i) {
            let members = || g.rows.iter().map(|&m| &rows[m]);
            let start = members().map(|m| m.offset_nano).min().unwrap_or(0);
            let end = members()
                .map(|m| m.offset_nano + m.duration_nano)
                .max()
                .unwrap_or(start);
            let n = g.rows.len();
            let (mark, is_error) = match g.kind {
                chaintrace_analysis::GroupKind::Retry => (
                    format!(" ↻ {} failed, {} lost", g.failed, fmt_ms(g.lost_nano)),
                    g.failed == n,
                ),
                chaintrace_analysis::GroupKind::Run if g.failed > 0 => {
                    (format!(" ✗ {} failed", g.failed), true)
                }
                chaintrace_analysis::GroupKind::Run => (String::new(), false),
            };
            let last = subtree_end(g.rows.last().copied().unwrap_or(i));
            out.push(Line {
                depth: row.depth,
                spans: g
                    .rows
                    .iter()
                    .flat_map(|&m| m..subtree_end(m))
                    .map(|r| rows[r].span_id)
                    .collect(),
                label: format!("{} ×{n}", indent(row.depth, &row.name)),
                offset_nano: start,
                duration_nano: end - start,
                self_nano: members().map(|m| m.self_nano).sum(),
                service: row.service.clone(),
                on_critical_path: members().any(|m| m.on_critical_path),
                is_error,
                mark,
            });
            i = last;
            continue;
        }
        out.push(Line {
            depth: row.depth,
            spans: vec![row.span_id],
            label: indent(row.depth, &row.name),
            offset_nano: row.offset_nano,
            duration_nano: row.duration_nano,
            self_nano: row.self_nano,
            service: row.service.clone(),
            on_critical_path: row.on_critical_path,
            is_error: row.is_error,
            mark: if row.is_error {
                " ✗ error".to_string()
            } else {
                String::new()
            },
        });
        i += 1;
    }
    out
}

/// Renders a laid-out trace; with `critical`, rows on the critical path are
/// marked `◆` (bold on a tty) and every row shows its self time; with
/// `fold`, sibling runs and retries are one row each (see [`lines`]).
pub fn gantt_with(
    trace: &Trace,
    layout: &gantt::GanttLayout,
    color: bool,
    critical: bool,
    fold: bool,
    logs: &[LogRecord],
) -> String {
    let summary = trace.summary();
    let trace_start = trace.start();
    let mut logs_of: std::collections::HashMap<chaintrace_model::SpanId, Vec<&LogRecord>> =
        std::collections::HashMap::new();
    for log in logs {
        if let Some(span) = log.span_id {
            logs_of.entry(span).or_default().push(log);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {} · {} · {} · {} · {} spans · {} errors",
        trace.trace_id,
        shown(summary.root_service.as_deref().unwrap_or("?")),
        shown(summary.root_name.as_deref().unwrap_or("(no root)")),
        fmt_ms(summary.duration_nano.0),
        summary.span_count,
        summary.error_count,
    );
    let lines = lines(layout, fold);
    let labels: Vec<String> = lines.iter().map(|l| cut(&l.label, MAX_NAME)).collect();
    let name_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let axis_pad = if critical { name_width + 2 } else { name_width };
    let _ = writeln!(
        out,
        "{:axis_pad$}  0{:>width$}",
        "",
        fmt_ms(layout.total_nano),
        width = BAR_WIDTH + 1
    );
    let root_service = summary.root_service.as_deref().unwrap_or("");
    for (line, label) in lines.iter().zip(&labels) {
        let (first, len) = gantt::cells(
            line.offset_nano,
            line.duration_nano,
            layout.total_nano,
            BAR_WIDTH,
        );
        let bar = format!(
            "{}{}{}",
            " ".repeat(first),
            "█".repeat(len),
            " ".repeat(BAR_WIDTH - first - len)
        );
        let on_path = critical && line.on_critical_path;
        let (on, off) = match (color, line.is_error, on_path) {
            (true, true, _) => (RED, RESET),
            (true, false, true) => (BOLD, RESET),
            _ => ("", ""),
        };
        let pad = name_width - label.chars().count();
        let path = match (critical, on_path) {
            (false, _) => "",
            (true, true) => "◆ ",
            (true, false) => "  ",
        };
        let _ = write!(
            out,
            "{on}{path}{label}{}  |{bar}| {:>9}",
            " ".repeat(pad),
            fmt_ms(line.duration_nano)
        );
        if critical {
            let _ = write!(out, "  self {:>9}", fmt_ms(line.self_nano));
        }
        let _ = write!(out, "{}{off}", line.mark);
        if line.service != root_service {
            if color {
                let _ = write!(out, " {DIM}[{}]{RESET}", shown(&line.service));
            } else {
                let _ = write!(out, " [{}]", shown(&line.service));
            }
        }
        out.push('\n');
        if logs_of.is_empty() {
            continue;
        }
        let mut mine: Vec<&LogRecord> = line
            .spans
            .iter()
            .filter_map(|s| logs_of.get(s))
            .flatten()
            .copied()
            .collect();
        mine.sort_by_key(|l| l.time);
        let pad = if critical { 2 } else { 0 } + 2 * line.depth + 2;
        write_logs(&mut out, &mine, trace_start, pad, color);
    }
    if logs.is_empty() {
        return out;
    }
    let in_trace: std::collections::HashSet<_> = trace.spans.iter().map(|s| s.span_id).collect();
    let outside: Vec<&LogRecord> = logs
        .iter()
        .filter(|l| l.span_id.is_none_or(|s| !in_trace.contains(&s)))
        .collect();
    if !outside.is_empty() {
        let _ = writeln!(out, "logs outside the trace's spans:");
        write_logs(&mut out, &outside, trace_start, 2, color);
    }
    out
}

/// A record's severity as shown (its range, else its text, else `-`), and
/// whether it is ERROR or worse.
fn level_of(log: &LogRecord) -> (&str, bool) {
    let level = match (log.severity(), log.severity_text.as_str()) {
        (Some(s), _) => s.as_str(),
        (None, "") => "-",
        (None, text) => text,
    };
    let loud = log
        .severity()
        .is_some_and(|s| s >= chaintrace_model::Severity::Error);
    (level, loud)
}

/// Writes log records under a chart row: time from the trace start,
/// severity, message; at most [`MAX_LOGS_PER_LINE`], then a count.
fn write_logs(
    out: &mut String,
    logs: &[&LogRecord],
    trace_start: UnixNanos,
    pad: usize,
    color: bool,
) {
    for log in logs.iter().take(MAX_LOGS_PER_LINE) {
        let offset = fmt_ms(log.time.0.saturating_sub(trace_start.0));
        let (level, loud) = level_of(log);
        let (on, off) = match (color, loud) {
            (true, true) => (RED, RESET),
            (true, false) => (DIM, RESET),
            _ => ("", ""),
        };
        let message = cut(&shown(&log.message().replace('\n', " ")), 120);
        let _ = writeln!(
            out,
            "{on}{}▸ {offset:>9} {:<5} {message}{off}",
            " ".repeat(pad),
            shown(level),
        );
    }
    if logs.len() > MAX_LOGS_PER_LINE {
        let _ = writeln!(
            out,
            "{}▸ … {} more log records",
            " ".repeat(pad),
            logs.len() - MAX_LOGS_PER_LINE
        );
    }
}

/// Renders log records as a table, in the order given: time, severity,
/// service, trace and span ids, message.
pub fn log_table(logs: &[LogRecord], color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24}  {:<5}  {:<16}  {:<32}  {:<16}  MESSAGE",
        "TIME (UTC)", "LEVEL", "SERVICE", "TRACE ID", "SPAN ID"
    );
    for log in logs {
        let (level, loud) = level_of(log);
        let (on, off) = if color && loud {
            (RED, RESET)
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "{on}{:<24}  {:<5}  {:<16}  {:<32}  {:<16}  {}{off}",
            fmt_time(log.time),
            cut(&shown(level), 5),
            cut(&shown(log.service_name()), 16),
            log.trace_id
                .map(|t| t.to_hex())
                .unwrap_or_else(|| "-".into()),
            log.span_id
                .map(|s| s.to_hex())
                .unwrap_or_else(|| "-".into()),
            cut(&shown(&log.message().replace('\n', " ")), 160),
        );
    }
    out
}

/// Renders trace summaries as a table, newest first as given.
pub fn trace_table(traces: &[TraceSummary], color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32}  {:<16}  {:<24}  {:<24}  {:>10}  {:>5}  {:>6}",
        "TRACE ID", "SERVICE", "ROOT", "START (UTC)", "DURATION", "SPANS", "ERRORS"
    );
    for t in traces {
        let (on, off) = if color && t.error_count > 0 {
            (RED, RESET)
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "{on}{:<32}  {:<16}  {:<24}  {:<24}  {:>10}  {:>5}  {:>6}{off}",
            t.trace_id.to_string(),
            cut(&shown(t.root_service.as_deref().unwrap_or("?")), 16),
            cut(
                &shown(t.root_name.as_deref().unwrap_or("(no root yet)")),
                24
            ),
            fmt_time(t.start_unix_nano),
            fmt_ms(t.duration_nano.0),
            t.span_count,
            t.error_count,
        );
    }
    if traces.is_empty() {
        out.push_str(
            "(no traces yet: point an OpenTelemetry SDK at chaintrace, or run `chaintrace demo`)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_overrides_are_shown_not_sent() {
        assert_eq!(shown("llm_call"), "llm_call");
        assert!(matches!(shown("llm_call"), Cow::Borrowed(_)));
        assert_eq!(shown("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(shown("\x1b[2J\r\n\t\x7f"), "\\x1b[2J\\x0d\\x0a\\x09\\x7f");
        assert_eq!(shown("\u{9b}31m"), "\\x9b31m");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(shown("日本語 ✓"), "日本語 ✓");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(fmt_time(UnixNanos(0)), "1970-01-01T00:00:00.000Z");
        // 2026-06-02T14:30:00.050Z from the founding document.
        assert_eq!(
            fmt_time(UnixNanos(1_780_410_600_050_000_000)),
            "2026-06-02T14:30:00.050Z"
        );
    }

    fn span(
        id: u8,
        parent: Option<u8>,
        name: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> chaintrace_model::Span {
        use chaintrace_model::*;
        Span {
            trace_id: TraceId([9; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            name: name.into(),
            kind: SpanKind::Internal,
            start: UnixNanos(start_ms * 1_000_000),
            end: UnixNanos(end_ms * 1_000_000),
            status: Status::default(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            resource: std::sync::Arc::new(Resource::default()),
            scope: std::sync::Arc::new(Scope::default()),
        }
    }

    fn log(span: Option<u8>, at_ms: u64, severity: u8, message: &str) -> LogRecord {
        use chaintrace_model::*;
        LogRecord {
            time: UnixNanos(at_ms * 1_000_000),
            observed_time: UnixNanos(0),
            severity_number: severity,
            severity_text: CompactString::default(),
            body: AnyValue::String(message.into()),
            attributes: Vec::new(),
            trace_id: Some(TraceId([9; 16])),
            span_id: span.map(|s| SpanId([s; 8])),
            flags: 0,
            event_name: CompactString::default(),
            dropped_attributes_count: 0,
            resource: std::sync::Arc::new(Resource::default()),
            scope: std::sync::Arc::new(Scope::default()),
        }
    }

    #[test]
    fn log_records_print_under_their_span_and_the_rest_after() {
        let trace = Trace {
            trace_id: chaintrace_model::TraceId([9; 16]),
            spans: vec![
                span(1, None, "process_query", 1000, 1100),
                span(2, Some(1), "llm_call", 1010, 1090),
            ],
        };
        let logs = vec![
            log(Some(2), 1050, 17, "rate limited\nretrying"),
            log(Some(2), 1020, 9, "calling gpt-4"),
            log(Some(7), 1030, 13, "from a span not in the trace"),
        ];
        let text = gantt(&trace, false, true, &logs);
        let lines: Vec<&str> = text.lines().collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        };
        let llm = at("llm_call");
        assert_eq!(at("calling gpt-4"), llm + 1, "{text}");
        assert_eq!(at("rate limited retrying"), llm + 2, "{text}");
        assert!(
            lines[llm + 1].contains("INFO") && lines[llm + 1].contains("20.0 ms"),
            "{text}"
        );
        assert!(lines[llm + 2].contains("ERROR"), "{text}");
        assert!(at("logs outside the trace's spans") < at("from a span not in the trace"));
        assert!(at("from a span not in the trace") > llm + 2);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ms(1_200_000_000), "1200 ms");
        assert_eq!(fmt_ms(12_340_000), "12.3 ms");
    }
}
