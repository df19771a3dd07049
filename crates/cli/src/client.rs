//! `chaintrace trace`, `chaintrace traces` and `chaintrace logs`: read from a
//! running server's native JSON API and print for people (Gantt, table) or programs (`--json`).

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use std::sync::Arc;

use chaintrace_model::{resolve_logs, LogIn, Resource, Scope, Trace, TraceId, TraceSummary};
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
    /// API key, when the server asks for one (`chaintrace serve --keys`).
    #[arg(long, env = "CHAINTRACE_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

impl ServerArg {
    /// The API's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        self.server.trim_end_matches('/')
    }

    /// An HTTP client that shows the key, if one was given, on every request.
    pub fn http(&self) -> Result<reqwest::Client> {
        http_client(self.key.as_deref())
    }
}

/// An HTTP client sending `Authorization: Bearer <key>` when there is a key.
pub fn http_client(key: Option<&str>) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .context("the API key has characters a header cannot carry")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("cannot make an HTTP client")
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

async fn get(
    server: &ServerArg,
    path: &str,
    query: &[(&str, String)],
) -> Result<reqwest::Response> {
    let url = format!("{}{path}", server.base());
    let response = server
        .http()?
        .get(&url)
        .query(query)
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach chaintrace at {} — is `chaintrace serve` running?",
                server.server
            )
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
    server: &ServerArg,
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
    let response = get(&args.server, &format!("/api/v1/traces/{id}"), &[]).await?;
    let body = response.text().await.context("reading the trace")?;
    if args.json {
        let doc: serde_json::Value =
            serde_json::from_str(&body).context("the server's answer is not JSON")?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let trace: Trace =
        serde_json::from_str(&body).context("the server sent a trace this CLI cannot read")?;
    let logs: TraceLogs =
        serde_json::from_str(&body).context("the server sent log records this CLI cannot read")?;
    let truncated = logs.logs_truncated;
    let logs = resolve_logs(&logs.log_resources, &logs.log_scopes, logs.logs)
        .map_err(anyhow::Error::msg)
        .context("the server sent log records this CLI cannot read")?;
    print!(
        "{}",
        render::gantt(&trace, std::io::stdout().is_terminal(), !args.expand, &logs)
    );
    if truncated {
        println!(
            "(the trace has more log records than shown: chaintrace logs --trace-id {id} --limit 10000)"
        );
    }
    Ok(())
}

/// The log records a trace answer carries beside its spans.
#[derive(Deserialize)]
struct TraceLogs {
    #[serde(default)]
    logs: Vec<LogIn>,
    #[serde(default)]
    log_resources: Vec<Arc<Resource>>,
    #[serde(default)]
    log_scopes: Vec<Arc<Scope>>,
    #[serde(default)]
    logs_truncated: bool,
}

/// Flags of `chaintrace logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only records written in this trace.
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Only records written in this span (16 hex digits).
    #[arg(long)]
    pub span_id: Option<String>,
    /// Only records of this severity or worse: trace, debug, info, warn, error, fatal.
    #[arg(long)]
    pub severity: Option<String>,
    /// Only records of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only records whose message or an attribute value contains this text (any case).
    #[arg(long, short = 'q')]
    pub query: Option<String>,
    /// Only records written within this long ago, e.g. `15m`, `1h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// How many records to list, newest first (at most 10 000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// The answer of `GET /api/v1/logs`.
#[derive(Deserialize)]
struct LogList {
    logs: Vec<LogIn>,
    resources: Vec<Arc<Resource>>,
    scopes: Vec<Arc<Scope>>,
    matched: u64,
    truncated: bool,
}

/// Lists log records, newest first.
pub async fn logs(args: LogsArgs) -> Result<()> {
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [
        ("trace_id", &args.trace_id),
        ("span_id", &args.span_id),
        ("severity", &args.severity),
        ("service", &args.service),
        ("q", &args.query),
        ("since", &args.since),
    ] {
        if let Some(value) = value {
            query.push((key, value.clone()));
        }
    }
    let response = get(&args.server, "/api/v1/logs", &query).await?;
    let body = response.text().await.context("reading the log records")?;
    if args.json {
        let doc: serde_json::Value =
            serde_json::from_str(&body).context("the server's answer is not JSON")?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let list: LogList =
        serde_json::from_str(&body).context("the server sent records this CLI cannot read")?;
    let (matched, truncated) = (list.matched, list.truncated);
    let logs = resolve_logs(&list.resources, &list.scopes, list.logs)
        .map_err(anyhow::Error::msg)
        .context("the server sent records this CLI cannot read")?;
    print!(
        "{}",
        render::log_table(&logs, std::io::stdout().is_terminal())
    );
    if matched > logs.len() as u64 || truncated {
        let more = if truncated { "at least " } else { "" };
        println!(
            "({} of {more}{matched} matching records; narrow the query or raise --limit)",
            logs.len()
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
    let response = get(&args.server, "/api/v1/traces", &query).await?;
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
