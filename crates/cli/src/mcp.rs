//! `chaintrace mcp`: the MCP server for coding agents over stdio (one
//! JSON-RPC message per line in, one reply per line out; logs go to
//! stderr), answering from a running server's query API like the other
//! client commands. The protocol and tools are `chaintrace_server::mcp`.

use anyhow::{Context, Result};
use axum::http::Method;
use chaintrace_server::mcp::{Api, Mcp};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::client::ServerArg;

/// Flags of `chaintrace mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub server: ServerArg,
}

/// The query API over HTTP.
struct HttpApi {
    base: String,
    client: reqwest::Client,
}

#[async_trait::async_trait]
impl Api for HttpApi {
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path_and_query}", self.base);
        let mut request = match method {
            Method::POST => self.client.post(&url),
            _ => self.client.get(&url),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach chaintrace at {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"error": text}));
        Ok((status, value))
    }
}

/// Longest message line read from the agent.
const MAX_LINE_BYTES: usize = 4 << 20;

/// Runs the stdio server until stdin closes.
pub async fn run(args: McpArgs) -> Result<()> {
    let mcp = Mcp::new(HttpApi {
        base: args.server.base().to_string(),
        client: args.server.http()?,
    });
    let mut lines = BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut lines)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .context("reading stdin")?;
        if read == 0 {
            return Ok(());
        }
        let reply = if line.len() > MAX_LINE_BYTES {
            // Skip the rest of the oversized line, then say why.
            while !line.ends_with(b"\n") {
                line.clear();
                if (&mut lines)
                    .take(MAX_LINE_BYTES as u64)
                    .read_until(b'\n', &mut line)
                    .await?
                    == 0
                {
                    break;
                }
            }
            Some(
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": format!("a message over {MAX_LINE_BYTES} bytes")}}),
            )
        } else if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<Value>(&line) {
                Ok(message) => mcp.handle(message).await,
                Err(e) => Some(
                    json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("not JSON: {e}")}}),
                ),
            }
        };
        if let Some(reply) = reply {
            let mut out = serde_json::to_vec(&reply)?;
            out.push(b'\n');
            stdout.write_all(&out).await.context("writing stdout")?;
            stdout.flush().await?;
        }
    }
}
