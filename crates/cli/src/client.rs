//! `chaintrace trace` and `chaintrace traces`: read from a running server's
//! native JSON API and print for people (Gantt, table) or programs (`--json`).

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use chaintrace_model::{Trace, TraceId, TraceSummary};
use clap::Args;
use serde::Deserialize;

use crate::render;

/// Where the query API is.
#[derive(Debug, Args)]
pub struct ServerArg {
    /// Base URL of a running chaintrace's query API.
    #[arg(
        long,
        env = "CHAINTRACE_SERVER",
        default_value = "http://127.0.0.1:16686"
    )]
    pub server: String,
}

/// Flags of `chaintrace trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// Print the trace as JSON instead of a chart.
    #[arg(long)]
    pub json: bool,
    /// Show every span: do not fold sibling runs and retries into one row.
    #[arg(long)]
    pub expand: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// Flags of `chaintrace traces`.
#[derive(Debug, Args)]
pub struct TracesArgs {
    /// How many traces to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only traces whose root span belongs to this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only traces that started within this long ago, e.g. `15m`, `1h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

#[derive(Deserialize)]
struct ApiError {
    error: String,
}

#[derive(Deserialize)]
struct TraceList {
    traces: Vec<TraceSummary>,
}

async fn get(server: &str, path: &str, query: &[(&str, String)]) -> Result<reqwest::Response> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .query(query)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach chaintrace at {server} — is `chaintrace serve` running?")
        })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ApiError>(&body)
        .map(|e| e.error)
        .unwrap_or(body);
    bail!("{url}: {status}: {message}")
}

/// GET a JSON answer from the API.
pub async fn get_json(
    server: &str,
    path: &str,
    query: &[(&str, String)],
) -> Result<serde_json::Value> {
    let response = get(server, path, query).await?;
    response
        .json()
        .await
        .with_context(|| format!("{path}: the server's answer is not JSON"))
}

/// Prints one trace.
pub async fn trace(args: TraceArgs) -> Result<()> {
    let id: TraceId = args
        .trace_id
        .trim()
        .parse()
        .with_context(|| format!("{:?} is not a trace id", args.trace_id))?;
    let response = get(&args.server.server, &format!("/api/v1/traces/{id}"), &[]).await?;
    let body = response.text().await.context("reading the trace")?;
    let trace: Trace =
        serde_json::from_str(&body).context("the server sent a trace this CLI cannot read")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        print!(
            "{}",
            render::gantt(&trace, std::io::stdout().is_terminal(), !args.expand)
        );
    }
    Ok(())
}

/// Lists recent traces.
pub async fn traces(args: TracesArgs) -> Result<()> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(s) = &args.service {
        query.push(("service", s.clone()));
    }
    if let Some(s) = &args.since {
        query.push(("since", s.clone()));
    }
    let response = get(&args.server.server, "/api/v1/traces", &query).await?;
    let list: TraceList = response
        .json()
        .await
        .context("the server sent a list this CLI cannot read")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list.traces)?);
    } else {
        print!(
            "{}",
            render::trace_table(&list.traces, std::io::stdout().is_terminal())
        );
    }
    Ok(())
}
