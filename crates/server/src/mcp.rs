//! The MCP server for coding agents: JSON-RPC 2.0 (`initialize`,
//! `tools/list`, `tools/call`, `ping`) whose tools answer from the query
//! API — the same handlers, so the same answers.
//!
//! [`Mcp`] is transport-free: it takes one decoded message and returns the
//! reply. `chaintrace mcp` drives it over stdio against a server's URL
//! ([`Api`] over HTTP); `POST /mcp` on the API port drives it over
//! streamable HTTP against the tenant's own routes, in process
//! ([`RouterApi`]). It knows nothing of stores.

use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The protocol versions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// Largest tool answer handed to an agent, in bytes of text: a whole
/// 10 000-span trace would fill its context for nothing.
pub const MAX_TOOL_TEXT: usize = 200_000;

/// Spans drawn in `get_trace`'s tree; the rest are counted.
pub const MAX_TREE_SPANS: usize = 300;

/// Where the tools get their answers: the query API.
#[async_trait::async_trait]
pub trait Api: Send + Sync {
    /// Calls `method path_and_query` (with a JSON body for POST): the
    /// status and the JSON answer, or why the call could not be made.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String>;
}

/// The MCP server over an [`Api`].
pub struct Mcp<A> {
    api: A,
}

/// A JSON-RPC error: code and message.
struct RpcError(i64, String);

impl<A: Api> Mcp<A> {
    /// An MCP server answering from `api`.
    pub fn new(api: A) -> Self {
        Mcp { api }
    }

    /// Handles one message: the reply, or `None` for notifications and
    /// replies, which get none. Batches (JSON arrays) are refused: MCP
    /// 2025-06-18 dropped them, and one request of thousands of tool calls
    /// would hold memory and the SQL slot for as long as it ran.
    pub async fn handle(&self, message: Value) -> Option<Value> {
        if message.is_array() {
            return Some(error_reply(
                Value::Null,
                RpcError(
                    -32600,
                    "batches are not supported: send one message at a time".into(),
                ),
            ));
        }
        let id = message.get("id").cloned();
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // A reply from the client, or not JSON-RPC at all.
            return id.map(|id| {
                error_reply(
                    id,
                    RpcError(-32600, "not a JSON-RPC request: no method".into()),
                )
            });
        };
        let id = id?; // A notification: nothing to answer.
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        Some(match self.dispatch(method, params).await {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => error_reply(id, e),
        })
    }

    async fn dispatch(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                let asked = params.get("protocolVersion").and_then(Value::as_str);
                let version = asked
                    .filter(|v| PROTOCOL_VERSIONS.contains(v))
                    .unwrap_or(PROTOCOL_VERSIONS[0]);
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "chaintrace", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": INSTRUCTIONS,
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools()})),
            "tools/call" => {
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| RpcError(-32602, "tools/call needs a tool name".into()))?;
                let args = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if !tools().iter().any(|t| t["name"] == name) {
                    return Err(RpcError(
                        -32602,
                        format!("no tool named {name:?}; tools/list names them"),
                    ));
                }
                Ok(match self.call_tool(name, &args).await {
                    Ok(answer) => tool_result(answer, false),
                    Err(message) => tool_result(json!({"error": message}), true),
                })
            }
            other => Err(RpcError(-32601, format!("unknown method {other:?}"))),
        }
    }

    /// Runs one tool: its answer, or a message for the agent saying what
    /// was wrong (an error the agent can act on, not a protocol error).
    async fn call_tool(&self, name: &str, args: &Value) -> Result<Value, String> {
        let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_string);
        let required = |key: &str| {
            text(key)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| format!("{name} needs the argument {key:?}"))
        };
        let since = text("since").unwrap_or_else(|| "1h".to_string());
        let mut query: Vec<(&'static str, String)> = vec![("since", since)];
        let get = |path: String, query: Vec<(&'static str, String)>| async move {
            let qs: Vec<String> = query
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={}", url_encode(v)))
                .collect();
            let pq = if qs.is_empty() {
                path
            } else {
                format!("{path}?{}", qs.join("&"))
            };
            self.answer(Method::GET, &pq, None).await
        };
        match name {
            "search_traces" => {
                query.push(("q", required("query")?));
                query.push(("limit", number(args, "limit", 20).to_string()));
                get("/api/v1/search".into(), query).await
            }
            "get_trace" => {
                let id = trace_id(&required("trace_id")?)?;
                let trace = get(format!("/api/v1/traces/{id}"), vec![]).await?;
                if args.get("full").and_then(Value::as_bool) == Some(true) {
                    return Ok(trace);
                }
                let analysis = get(format!("/api/v1/traces/{id}/analysis"), vec![]).await?;
                Ok(summary(&trace, &analysis))
            }
            "analyze_trace" => {
                let id = trace_id(&required("trace_id")?)?;
                let parallel: Vec<String> = args
                    .get("parallel")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                get(
                    format!("/api/v1/traces/{id}/analysis"),
                    vec![("parallel", parallel.join(","))],
                )
                .await
            }
            "top_operations" | "error_groups" => {
                query.push(("filter", text("filter").unwrap_or_default()));
                let what = if name == "top_operations" {
                    "operations"
                } else {
                    "errors"
                };
                get(format!("/api/v1/analytics/{what}"), query).await
            }
            "list_sessions" => {
                query.push(("user", text("user").unwrap_or_default()));
                query.push(("limit", number(args, "limit", 10).to_string()));
                get("/api/v1/sessions".into(), query).await
            }
            "compare_traces" => {
                let a = trace_id(&required("a")?)?;
                let b = trace_id(&required("b")?)?;
                get(format!("/api/v1/compare/{a}/{b}"), vec![]).await
            }
            "sql" => {
                let body = json!({"query": required("query")?, "since": text("since").unwrap_or_else(|| "1h".into())});
                self.answer(Method::POST, "/api/v1/sql", Some(body)).await
            }
            other => Err(format!("no tool named {other:?}")),
        }
    }

    /// The API's answer, or its error message when it refused.
    async fn answer(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let (status, answer) = self.api.call(method, path_and_query, body).await?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let message = answer
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| answer.to_string(), str::to_string);
        Err(format!("the API answered {status}: {message}"))
    }
}

const INSTRUCTIONS: &str = "chaintrace stores the OpenTelemetry traces of LLM applications. \
Find traces with search_traces (TraceQL), read one with get_trace (a tree with durations, errors, \
the critical path and LLM calls) and analyze_trace (what-if for running steps in parallel), \
compare two with compare_traces, and look across traces with top_operations, error_groups, \
list_sessions and sql. Times are ranges back from now: since = 15m, 1h, 24h, 7d.";

fn error_reply(id: Value, RpcError(code, message): RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A `tools/call` result: the answer as JSON text (cut to
/// [`MAX_TOOL_TEXT`]) and, when whole, as structured content.
fn tool_result(answer: Value, is_error: bool) -> Value {
    let text = serde_json::to_string_pretty(&answer).unwrap_or_default();
    if text.len() <= MAX_TOOL_TEXT {
        let mut result = json!({"content": [{"type": "text", "text": text}], "isError": is_error});
        if answer.is_object() {
            result["structuredContent"] = answer;
        }
        return result;
    }
    let mut cut = MAX_TOOL_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let note = format!(
        "\n… cut at {MAX_TOOL_TEXT} of {} bytes: narrow the question (a smaller limit, a shorter range, a filter), or ask the HTTP API directly",
        text.len()
    );
    json!({"content": [{"type": "text", "text": format!("{}{note}", &text[..cut])}], "isError": is_error})
}

fn number(args: &Value, key: &str, default: u64) -> u64 {
    args.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// A trace id as the API wants it: hex digits only, so it is safe in a path.
fn trace_id(text: &str) -> Result<String, String> {
    let t = text.trim();
    if (1..=32).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a trace id: want up to 32 hex digits"
        ))
    }
}

fn url_encode(text: &str) -> String {
    crate::percent::percent_encode(text, b"")
}

/// `get_trace`'s answer: the span tree as indented text, with each span's
/// offset, duration, errors and whether it is on the critical path, then
/// the analysis (critical path, LLM calls and totals).
fn summary(trace: &Value, analysis: &Value) -> Value {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let start = spans
        .iter()
        .filter_map(|s| s["start"].as_u64())
        .min()
        .unwrap_or(0);
    let critical: std::collections::HashSet<&str> = analysis["critical_path"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["span_id"].as_str())
        .collect();
    let ids: std::collections::HashSet<&str> =
        spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
    let mut children: std::collections::HashMap<Option<&str>, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        // A parent that is not in the trace makes the span a root here.
        let parent = s["parent_span_id"].as_str().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| spans[i]["start"].as_u64().unwrap_or(0));
    }
    let mut tree = String::new();
    let mut drawn = 0usize;
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|&i| (i, 0))
        .collect();
    while let Some((i, depth)) = stack.pop() {
        if drawn == MAX_TREE_SPANS {
            let _ = writeln!(
                tree,
                "… {} more spans (get_trace with full = true has them all)",
                spans.len() - drawn
            );
            break;
        }
        drawn += 1;
        let s = &spans[i];
        let (st, en) = (
            s["start"].as_u64().unwrap_or(0),
            s["end"].as_u64().unwrap_or(0),
        );
        let mark = if s["span_id"]
            .as_str()
            .is_some_and(|id| critical.contains(id))
        {
            "◆ "
        } else {
            ""
        };
        let _ = write!(
            tree,
            "{}{mark}{} +{} {}",
            "  ".repeat(depth),
            s["name"].as_str().unwrap_or("?"),
            millis(st.saturating_sub(start)),
            millis(en.saturating_sub(st)),
        );
        if s["status"]["code"] == "error" {
            let _ = write!(
                tree,
                " ERROR {}",
                s["status"]["message"].as_str().unwrap_or("")
            );
        }
        tree.push('\n');
        if let Some(kids) = s["span_id"].as_str().and_then(|id| children.get(&Some(id))) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    json!({
        "trace_id": trace["trace_id"],
        "spans": spans.len(),
        "tree": tree,
        "tree_legend": "name +offset duration from the trace's start; ◆ on the critical path",
        "duration_nano": analysis["duration_nano"],
        "critical_path": analysis["critical_path"],
        "llm": analysis["llm"],
        "llm_totals": analysis["llm_totals"],
    })
}

fn millis(nanos: u64) -> String {
    format!("{:.1}ms", nanos as f64 / 1e6)
}

/// Every tool: name, what it is for, and its arguments' JSON schema.
fn tools() -> Vec<Value> {
    let since = json!({"type": "string", "description": "how far back from now: 15m, 1h (default), 24h, 7d"});
    let id = |what: &str| json!({"type": "string", "description": what});
    vec![
        json!({"name": "search_traces",
            "description": "Find traces with a TraceQL query, newest first: e.g. { name = \"llm_call\" && status = error }, { span.gen_ai.request.model = \"gpt-4o\" && duration > 2s }. Answers each trace's id, root, duration, span and error counts, and the spans that matched.",
            "inputSchema": {"type": "object", "properties": {
                "query": {"type": "string", "description": "TraceQL; {} matches every trace"},
                "since": since, "limit": {"type": "integer", "description": "most traces to answer (default 20)"}},
                "required": ["query"]}}),
        json!({"name": "get_trace",
            "description": "Read one trace: its span tree with offsets, durations and errors, the critical path (what the request waited on), and each LLM call with model, tokens and cost. full = true answers every span with its attributes instead.",
            "inputSchema": {"type": "object", "properties": {
                "trace_id": id("the trace id, 32 hex digits"),
                "full": {"type": "boolean", "description": "every span with attributes (large)"}},
                "required": ["trace_id"]}}),
        json!({"name": "analyze_trace",
            "description": "Where one trace's time went: critical path, self times, the bound if everything ran in parallel, and what-if: how much faster it would be if the named spans ran concurrently with their siblings.",
            "inputSchema": {"type": "object", "properties": {
                "trace_id": id("the trace id"),
                "parallel": {"type": "array", "items": {"type": "string"}, "description": "span names to run concurrently, e.g. [\"fetch_context\", \"embed_query\"]"}},
                "required": ["trace_id"]}}),
        json!({"name": "top_operations",
            "description": "Per operation (service and span name) over a time range: count, error rate, latency percentiles, self time, how often and how long it is on the critical path, tokens and cost. Use it to find what is slow or expensive.",
            "inputSchema": {"type": "object", "properties": {"since": since, "filter": {"type": "string", "description": "TraceQL: only traces matching it"}}}}),
        json!({"name": "error_groups",
            "description": "Errors grouped by operation and error type (e.g. RateLimitError) over a time range, with counts, first and last time, the latest message and example trace ids.",
            "inputSchema": {"type": "object", "properties": {"since": since, "filter": {"type": "string", "description": "TraceQL: only traces matching it"}}}}),
        json!({"name": "list_sessions",
            "description": "Conversations: traces grouped by session.id (or gen_ai.conversation.id), most recent first, with user, turns, errors, tokens, cost and trace ids.",
            "inputSchema": {"type": "object", "properties": {"since": since, "user": {"type": "string"}, "limit": {"type": "integer", "description": "most sessions (default 10)"}}}}),
        json!({"name": "compare_traces",
            "description": "Compare trace b against trace a span by span (matched by their path of names): duration, self time, token and cost differences, spans in one only, and where the critical paths part.",
            "inputSchema": {"type": "object", "properties": {"a": id("the baseline trace id"), "b": id("the trace to compare")}, "required": ["a", "b"]}}),
        json!({"name": "sql",
            "description": "Read-only SQL over the spans table (one row per span: trace_id, span_id, parent_span_id, service, name, start_time, end_time, duration_ns, status, error_type, llm_model, input_tokens, output_tokens, cost_usd, attributes, ...) within a time range.",
            "inputSchema": {"type": "object", "properties": {"query": {"type": "string", "description": "SELECT ... FROM spans ..."}, "since": since}, "required": ["query"]}}),
    ]
}

/// [`Api`] over a router in this process: the tenant's own routes, so
/// `POST /mcp` answers exactly what the API would, for the same tenant.
#[derive(Clone)]
pub struct RouterApi(pub Router);

/// Largest API answer read for a tool (beyond it the tool says so).
const MAX_API_ANSWER: usize = 16 << 20;

#[async_trait::async_trait]
impl Api for RouterApi {
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::ACCEPT, "application/json");
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| format!("bad request to the API: {e}"))?;
        let response = match self.0.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_API_ANSWER)
            .await
            .map_err(|e| {
                format!("the API's answer could not be read (over {MAX_API_ANSWER} bytes?): {e}")
            })?;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&bytes)}));
        Ok((status, value))
    }
}

/// `POST /mcp` (MCP streamable HTTP) over `api`, the routes it answers
/// from; `GET` and `DELETE` answer 405, as the transport allows a server
/// that offers no event stream and keeps no sessions.
pub fn mcp_routes(api: Router) -> Router {
    Router::new()
        .route(
            "/mcp",
            axum::routing::post(post_mcp)
                .get(no_stream)
                .delete(no_stream),
        )
        .with_state(std::sync::Arc::new(Mcp::new(RouterApi(api))))
}

async fn answer_mcp(
    State(mcp): State<std::sync::Arc<Mcp<RouterApi>>>,
    body: axum::body::Bytes,
) -> Response {
    let message: Value = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(error_reply(
                    Value::Null,
                    RpcError(-32700, format!("the body is not JSON: {e}")),
                )),
            )
                .into_response()
        }
    };
    match mcp.handle(message).await {
        Some(reply) => axum::Json(reply).into_response(),
        // Notifications and replies: accepted, nothing to say.
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// `POST /mcp`: asks for JSON first. MCP clients send it; requiring it
/// keeps another site's page from posting here with a plain form, which
/// needs no CORS preflight.
async fn post_mcp(
    state: State<std::sync::Arc<Mcp<RouterApi>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        let reply = error_reply(
            Value::Null,
            RpcError(
                -32600,
                "POST /mcp takes Content-Type: application/json".into(),
            ),
        );
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(reply)).into_response();
    }
    answer_mcp(state, body).await
}

async fn no_stream() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "this MCP server answers each POST directly and offers no event stream",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    #[async_trait::async_trait]
    impl Api for Fake {
        async fn call(
            &self,
            method: Method,
            path_and_query: &str,
            body: Option<Value>,
        ) -> Result<(u16, Value), String> {
            Ok(match path_and_query {
                p if p.starts_with("/api/v1/search") => {
                    (200, json!({"asked": p, "method": method.as_str()}))
                }
                "/api/v1/sql" => (
                    400,
                    json!({"error": format!("bad query {}", body.unwrap_or_default()["query"])}),
                ),
                _ => (404, json!({"error": "no such trace"})),
            })
        }
    }

    async fn call(mcp: &Mcp<Fake>, message: Value) -> Value {
        mcp.handle(message).await.expect("a reply")
    }

    #[tokio::test]
    async fn the_protocol_answers_as_json_rpc() {
        let mcp = Mcp::new(Fake);
        let init = call(&mcp, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}})).await;
        assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
        let init = call(&mcp, json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}})).await;
        assert_eq!(init["result"]["protocolVersion"], PROTOCOL_VERSIONS[0]);
        assert!(mcp
            .handle(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .is_none());
        let unknown = call(
            &mcp,
            json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list"}),
        )
        .await;
        assert_eq!(unknown["error"]["code"], -32601);
        let list = call(
            &mcp,
            json!({"jsonrpc": "2.0", "id": "x", "method": "tools/list"}),
        )
        .await;
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "search_traces",
                "get_trace",
                "analyze_trace",
                "top_operations",
                "error_groups",
                "list_sessions",
                "compare_traces",
                "sql"
            ]
        );
        let batch = mcp
            .handle(json!([{"jsonrpc": "2.0", "id": 7, "method": "ping"}]))
            .await
            .unwrap();
        assert_eq!(batch["error"]["code"], -32600);
    }

    #[tokio::test]
    async fn tools_ask_the_api_and_say_what_went_wrong() {
        let mcp = Mcp::new(Fake);
        let tool = |name: &str, args: Value| json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args}});
        let found = call(
            &mcp,
            tool(
                "search_traces",
                json!({"query": "{ status = error }", "since": "2h"}),
            ),
        )
        .await;
        assert_eq!(found["result"]["isError"], false);
        let asked = found["result"]["structuredContent"]["asked"]
            .as_str()
            .unwrap();
        assert_eq!(
            asked,
            "/api/v1/search?since=2h&q=%7B%20status%20%3D%20error%20%7D&limit=20"
        );
        let missing = call(&mcp, tool("search_traces", json!({}))).await;
        assert_eq!(missing["result"]["isError"], true);
        assert!(missing["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("needs the argument \\\"query\\\""));
        let bad_id = call(
            &mcp,
            tool("get_trace", json!({"trace_id": "../../metrics"})),
        )
        .await;
        assert!(bad_id["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("not a trace id"));
        let refused = call(&mcp, tool("sql", json!({"query": "DROP TABLE spans"}))).await;
        assert_eq!(refused["result"]["isError"], true);
        assert!(refused["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("the API answered 400"));
        let nope = call(&mcp, tool("rm_rf", json!({}))).await;
        assert_eq!(nope["error"]["code"], -32602);
    }

    #[test]
    fn a_trace_is_summarised_as_a_tree() {
        let trace = json!({"trace_id": "ab", "spans": [
            {"span_id": "1", "parent_span_id": null, "name": "root", "start": 1_000_000, "end": 11_000_000, "status": {"code": "unset"}},
            {"span_id": "3", "parent_span_id": "1", "name": "late", "start": 6_000_000, "end": 11_000_000, "status": {"code": "error", "message": "RateLimitError"}},
            {"span_id": "2", "parent_span_id": "1", "name": "early", "start": 1_000_000, "end": 5_000_000, "status": {"code": "unset"}},
        ]});
        let analysis = json!({"critical_path": [{"span_id": "1"}, {"span_id": "3"}], "duration_nano": 10_000_000});
        let s = summary(&trace, &analysis);
        assert_eq!(
            s["tree"].as_str().unwrap(),
            "◆ root +0.0ms 10.0ms\n  early +0.0ms 4.0ms\n  ◆ late +5.0ms 5.0ms ERROR RateLimitError\n"
        );
    }

    #[test]
    fn large_answers_are_cut_with_a_note() {
        let big = json!({"x": "y".repeat(MAX_TOOL_TEXT)});
        let r = tool_result(big, false);
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.len() < MAX_TOOL_TEXT + 300 && text.contains("narrow the question"));
        assert!(r.get("structuredContent").is_none());
    }
}
