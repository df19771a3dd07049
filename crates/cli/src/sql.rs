//! `chaintrace sql '<query>'`: read-only SQL over the `spans` table of a
//! running server (`POST /api/v1/sql`), printed as an aligned table, the raw
//! JSON answer (`--json`) or RFC 4180 CSV (`--csv`).

use std::fmt::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::client::ServerArg;

/// Longest line of a cell in the table; `--json` and `--csv` print it whole.
const MAX_CELL_CHARS: usize = 80;

/// Flags of `chaintrace sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query over the `spans` table, e.g.
    /// `SELECT name, count(*) FROM spans GROUP BY name`; attributes by key:
    /// `attributes['user_id']`.
    pub query: String,
    /// Only spans that started within this long ago, e.g. `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Print the server's JSON answer.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (RFC 4180) with a header row.
    #[arg(long)]
    pub csv: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// The answer of `POST /api/v1/sql`.
#[derive(Debug, Deserialize)]
struct Answer {
    columns: Vec<Column>,
    rows: Vec<Vec<Value>>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

#[derive(Deserialize)]
struct ApiError {
    error: String,
}

/// POSTs `body` as JSON to `path` and returns the JSON answer.
async fn post_json(server: &ServerArg, path: &str, body: &Value) -> Result<Value> {
    let url = format!("{}{path}", server.base());
    let response = server
        .http()?
        .post(&url)
        .json(body)
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach chaintrace at {} — is `chaintrace serve` running?",
                server.server
            )
        })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("{url}: reading the answer"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<ApiError>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        bail!("{message} ({status})");
    }
    serde_json::from_str(&text).with_context(|| format!("{url}: the server's answer is not JSON"))
}

/// `chaintrace sql`.
pub async fn run(args: SqlArgs) -> Result<()> {
    let body = serde_json::json!({ "query": args.query, "since": args.since });
    let raw = crate::progress::while_waiting(
        "running query",
        post_json(&args.server, "/api/v1/sql", &body),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let answer: Answer =
        serde_json::from_value(raw).context("the server sent a SQL answer this CLI cannot read")?;
    if args.csv {
        print!("{}", csv(&answer));
        if answer.truncated {
            eprintln!("warning: {}", truncated_note(answer.rows.len()));
        }
    } else {
        print!("{}", table(&answer));
    }
    Ok(())
}

fn truncated_note(rows: usize) -> String {
    format!("only the first {rows} rows: the server caps answers; add LIMIT or aggregate")
}

/// A cell as text: strings as they are, null as nothing, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// RFC 4180: CRLF line ends; a field holding a comma, quote, CR or LF is
/// quoted, with quotes doubled. Null is an empty field.
fn csv(answer: &Answer) -> String {
    fn field(out: &mut String, text: &str) {
        if text.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(text);
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = String>| {
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, &cell);
        }
        out.push_str("\r\n");
    };
    line(&mut answer.columns.iter().map(|c| c.name.clone()));
    for row in &answer.rows {
        line(&mut row.iter().map(text));
    }
    out
}

/// Cuts `line` to [`MAX_CELL_CHARS`] characters, marking the cut, with
/// control characters shown as escapes (values come from any sender).
fn clip(line: &str) -> String {
    let line = &*crate::render::shown(line);
    if line.chars().count() <= MAX_CELL_CHARS {
        line.to_string()
    } else {
        let mut cut: String = line.chars().take(MAX_CELL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

fn is_numeric(data_type: &str) -> bool {
    ["Int", "UInt", "Float", "Decimal"]
        .iter()
        .any(|p| data_type.starts_with(p))
}

/// An aligned table: numbers right-aligned, null as `NULL`, a multi-line
/// value (an EXPLAIN plan) over several lines, long lines cut.
fn table(answer: &Answer) -> String {
    let cells: Vec<Vec<Vec<String>>> = answer
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    Value::Null => vec!["NULL".to_string()],
                    v => text(v).lines().map(clip).collect(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = answer
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .filter_map(|row| row.get(i))
                .flatten()
                .map(|l| l.chars().count())
                .chain([c.name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let right: Vec<bool> = answer
        .columns
        .iter()
        .map(|c| is_numeric(&c.data_type))
        .collect();
    let mut out = String::new();
    let mut line = |parts: &[&str]| {
        let mut text = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(part.chars().count());
            if right[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(part);
            } else {
                text.push_str(part);
                text.push_str(&" ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    let names: Vec<String> = answer.columns.iter().map(|c| clip(&c.name)).collect();
    line(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rules.iter().map(String::as_str).collect::<Vec<_>>());
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for k in 0..height {
            let parts: Vec<&str> = row
                .iter()
                .map(|c| c.get(k).map_or("", String::as_str))
                .collect();
            line(&parts);
        }
    }
    let n = answer.rows.len();
    let _ = if answer.truncated {
        writeln!(out, "({})", truncated_note(n))
    } else {
        writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })
    };
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(truncated: bool) -> Answer {
        serde_json::from_value(json!({
            "columns": [
                {"name": "name", "type": "Utf8"},
                {"name": "calls", "type": "Int64"},
                {"name": "p99_ms", "type": "Float64"},
                {"name": "note", "type": "Utf8"}
            ],
            "rows": [
                ["llm_call", 2, 700.5, "said \"hi\", then\nleft"],
                ["api_call", 12, 68.0, null]
            ],
            "truncated": truncated
        }))
        .unwrap()
    }

    #[test]
    fn table_aligns_numbers_right_and_spreads_lines() {
        assert_eq!(
            table(&answer(false)),
            "name      calls  p99_ms  note\n\
             --------  -----  ------  ---------------\n\
             llm_call      2   700.5  said \"hi\", then\n\
             \x20                        left\n\
             api_call     12    68.0  NULL\n\
             (2 rows)\n"
        );
        assert!(table(&answer(true)).ends_with(
            "(only the first 2 rows: the server caps answers; add LIMIT or aggregate)\n"
        ));
    }

    #[test]
    fn csv_is_rfc_4180() {
        assert_eq!(
            csv(&answer(false)),
            "name,calls,p99_ms,note\r\n\
             llm_call,2,700.5,\"said \"\"hi\"\", then\nleft\"\r\n\
             api_call,12,68.0,\r\n"
        );
    }

    #[test]
    fn long_cells_are_cut_in_the_table_only() {
        let long = "x".repeat(200);
        let a: Answer = serde_json::from_value(json!({
            "columns": [{"name": "attributes", "type": "Map"}],
            "rows": [[{"prompt": long}]],
            "truncated": false
        }))
        .unwrap();
        let t = table(&a);
        assert!(t.lines().nth(2).unwrap().ends_with('…'));
        assert_eq!(t.lines().nth(2).unwrap().chars().count(), MAX_CELL_CHARS);
        assert!(csv(&a).contains(&long));
    }
}
