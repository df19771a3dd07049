//! The web UI in a real browser: Debian's Chromium, driven by
//! `scripts/browser/ui-test.mjs` (Node and playwright-core), against a real
//! `chaintrace serve` loaded with fixture chains over OTLP/HTTP JSON.
//!
//! The fixtures are built here so the test names what it expects: a RAG
//! chain whose `api_call` fails with `RateLimitError` and is retried, five
//! `vector_search` siblings, an LLM call in each message convention, and a
//! trace whose every text is an injection attempt.
//!
//! Off CI a missing Chromium, Node or playwright-core skips the test with a
//! message; with `CI=true` it fails, since CI installs them (`.ci/run`,
//! `scripts/test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::Server;

/// The RAG chain with the retried `api_call`.
pub const RAG: &str = "5a1e0000000000000000000000000001";
/// Two LLM calls recorded the OpenInference and Traceloop ways.
pub const CONVENTIONS: &str = "5a1e0000000000000000000000000002";
/// Every text an injection attempt.
pub const HOSTILE: &str = "5a1e0000000000000000000000000003";

const CHROMIUM: &str = "/usr/bin/chromium";

fn s(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn i(key: &str, value: i64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

/// One OTLP/JSON span `ms` milliseconds after `t0`.
#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: u64,
    parent: Option<u64>,
    name: &str,
    t0: u64,
    start_ms: u64,
    end_ms: u64,
    attrs: Vec<Value>,
) -> Value {
    let mut s = json!({
        "traceId": trace,
        "spanId": format!("{id:016x}"),
        "name": name,
        "kind": 1,
        "startTimeUnixNano": (t0 + start_ms * 1_000_000).to_string(),
        "endTimeUnixNano": (t0 + end_ms * 1_000_000).to_string(),
        "attributes": attrs,
    });
    if let Some(p) = parent {
        s["parentSpanId"] = json!(format!("{p:016x}"));
    }
    s
}

fn failed(mut span: Value, kind: &str, message: &str, stack: &str, t: u64) -> Value {
    span["status"] = json!({"code": 2, "message": message});
    span["attributes"]
        .as_array_mut()
        .expect("attributes")
        .push(s("error.type", kind));
    span["events"] = json!([{
        "name": "exception",
        "timeUnixNano": t.to_string(),
        "attributes": [
            s("exception.type", kind),
            s("exception.message", message),
            s("exception.stacktrace", stack),
        ],
    }]);
    span
}

fn request(service: &str, spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [s("service.name", service)]},
        "scopeSpans": [{"scope": {"name": "chaintrace.browser-test", "version": "1"}, "spans": spans}],
    }]})
}

/// The three fixture traces, as OTLP/JSON export requests.
pub fn fixtures(t0: u64) -> Vec<Value> {
    let input = json!([
        {"role": "user", "parts": [
            {"type": "text", "content": "What is the capital of France?"},
            // A 3×2 red PNG: the panel draws it.
            {"type": "blob", "modality": "image", "mime_type": "image/png",
             "content": "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAEElEQVR4nGP4z8AAQQxwFgBB0gX7h/C5SAAAAABJRU5ErkJggg=="},
        ]},
    ])
    .to_string();
    let output = json!([
        {"role": "assistant", "finish_reason": "stop",
         "parts": [{"type": "text", "content": "Paris is the capital of France.\n\n**Sources:** [Wikipedia](https://en.wikipedia.org/wiki/Paris)\n\n- population: `2.1M`\n- river: _Seine_"}]},
    ])
    .to_string();
    let system =
        json!([{"type": "text", "content": "You answer geography questions."}]).to_string();
    let rag_t = RAG;
    let mut rag = vec![
        span(rag_t, 1, None, "process_query", t0, 0, 1200, vec![]),
        span(
            rag_t,
            2,
            Some(1),
            "fetch_context",
            t0,
            0,
            50,
            vec![i("user_id", 42)],
        ),
        span(
            rag_t,
            3,
            Some(1),
            "embed_query",
            t0,
            50,
            150,
            vec![s("model", "text-embedding-3-small")],
        ),
    ];
    for k in 0..5u64 {
        rag.push(span(
            rag_t,
            10 + k,
            Some(1),
            "vector_search",
            t0,
            150 + k * 10,
            158 + k * 10,
            vec![i("k", 5)],
        ));
    }
    rag.push(span(
        rag_t,
        5,
        Some(1),
        "llm_call",
        t0,
        250,
        1200,
        vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.system_instructions", &system),
            s("gen_ai.input.messages", &input),
            s("gen_ai.output.messages", &output),
            i("gen_ai.usage.input_tokens", 1200),
            i("gen_ai.usage.output_tokens", 80),
        ],
    ));
    rag.push(span(
        rag_t,
        6,
        Some(5),
        "prompt_assembly",
        t0,
        250,
        260,
        vec![],
    ));
    rag.push(failed(
        span(rag_t, 7, Some(5), "api_call", t0, 260, 360, vec![]),
        "openai.RateLimitError",
        "Rate limit reached for gpt-4o-mini, retry after 14 ms",
        "Traceback (most recent call last):\n  File \"chain.py\", line 88, in api_call\n    raise RateLimitError(\"Rate limit reached\")\nopenai.RateLimitError: Rate limit reached",
        t0 + 360 * 1_000_000,
    ));
    rag.push(span(rag_t, 8, Some(5), "api_call", t0, 374, 1200, vec![]));

    let conv_t = CONVENTIONS;
    let conventions = vec![
        span(conv_t, 1, None, "rag_pipeline", t0, 0, 900, vec![]),
        span(
            conv_t,
            2,
            Some(1),
            "ChatCompletion",
            t0,
            10,
            400,
            vec![
                s("openinference.span.kind", "LLM"),
                s("llm.model_name", "claude-3-5-haiku"),
                s("llm.input_messages.0.message.role", "system"),
                s("llm.input_messages.0.message.content", "Be brief."),
                s("llm.input_messages.1.message.role", "user"),
                s(
                    "llm.input_messages.1.message.content",
                    "Name a river in Egypt.",
                ),
                s("llm.output_messages.0.message.role", "assistant"),
                s("llm.output_messages.0.message.content", "The Nile."),
                i("llm.token_count.prompt", 30),
                i("llm.token_count.completion", 4),
            ],
        ),
        span(
            conv_t,
            3,
            Some(1),
            "openai.chat",
            t0,
            420,
            880,
            vec![
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.prompt.0.role", "user"),
                s("gen_ai.prompt.0.content", "Translate 'cat' to German."),
                s("gen_ai.completion.0.role", "assistant"),
                s("gen_ai.completion.0.content", "Katze"),
                s("gen_ai.completion.0.finish_reason", "stop"),
                i("gen_ai.usage.prompt_tokens", 12),
                i("gen_ai.usage.completion_tokens", 2),
            ],
        ),
    ];

    let script = "<script>window.__pwned='script'</script>";
    let img = "<img src=x onerror=\"window.__pwned='img'\">";
    let hostile_t = HOSTILE;
    let evil_messages = json!([
        {"role": "user", "parts": [{"type": "text", "content": format!("{script} and {img} and [click](javascript:window.__pwned='md') **{img}**")}]},
        {"role": "tool", "parts": [{"type": "uri", "uri": "javascript:window.__pwned='uri'"}]},
    ])
    .to_string();
    let hostile = vec![
        span(hostile_t, 1, None, script, t0, 0, 500, vec![s("note", img)]),
        span(
            hostile_t,
            2,
            Some(1),
            img,
            t0,
            10,
            300,
            vec![
                s("docs.url", "javascript:window.__pwned='link'"),
                s("homepage", "https://example.com/ok"),
                s("gen_ai.request.model", "<b>gpt</b>"),
                s("gen_ai.input.messages", &evil_messages),
                s(script, img),
            ],
        ),
    ];

    vec![
        request("rag-chain", rag),
        request("rag-chain", conventions),
        request("<svg onload=\"window.__pwned='svc'\">", hostile),
    ]
}

/// Where playwright-core was installed (by `scripts/test`), if it was.
fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("CHAINTRACE_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".cache/chaintrace-test-node/node_modules"))
        })?;
    dir.join("playwright-core/package.json")
        .exists()
        .then_some(dir)
}

/// Whether the browser tools are here; under CI their absence is a failure.
fn tools() -> Option<PathBuf> {
    let node = Command::new("node").arg("--version").output().is_ok();
    let chromium = Path::new(CHROMIUM).exists();
    let modules = node_modules();
    let missing: Vec<&str> = [
        (!node).then_some("node"),
        (!chromium).then_some(CHROMIUM),
        modules
            .is_none()
            .then_some("playwright-core (run ./scripts/test once)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return modules;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("browser test: missing {}", missing.join(", "));
    }
    eprintln!("browser test skipped: missing {}", missing.join(", "));
    None
}

/// Where screenshots go: the target's tmp dir.
fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

#[tokio::test]
async fn the_web_ui_in_chromium() {
    let Some(modules) = tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        - 120_000_000_000;
    for body in fixtures(t0) {
        let (status, answer) = server
            .post_traces("application/json", body.to_string().into_bytes(), false)
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }
    // A log record the failed api_call wrote: the span panel lists it.
    let logs = json!({"resourceLogs": [{
        "resource": {"attributes": [s("service.name", "rag-chain")]},
        "scopeLogs": [{"scope": {"name": "chain"}, "logRecords": [{
            "timeUnixNano": (t0 + 300 * 1_000_000).to_string(),
            "severityNumber": 13,
            "severityText": "WARNING",
            "body": {"stringValue": "backing off after 429"},
            "attributes": [i("retry_attempt", 1)],
            "traceId": RAG,
            "spanId": format!("{:016x}", 7),
        }]}],
    }]});
    let answer = reqwest::Client::new()
        .post(server.otlp_http.replace("/v1/traces", "/v1/logs"))
        .header("content-type", "application/json")
        .body(logs.to_string())
        .send()
        .await
        .expect("POST /v1/logs");
    assert_eq!(answer.status(), 200);
    for id in [RAG, CONVENTIONS, HOSTILE] {
        let (status, body) = server.get_json(&format!("/api/v1/traces/{id}/gantt")).await;
        assert_eq!(status, 200, "{body}");
    }
    run_script(
        "ui-test.mjs",
        &server,
        &modules,
        &[
            ("TRACE_RAG", RAG),
            ("TRACE_CONVENTIONS", CONVENTIONS),
            ("TRACE_HOSTILE", HOSTILE),
        ],
    );
}

/// Runs `scripts/browser/{name}` in Node against `server`, with `vars`
/// beside the URL, the modules and the screenshot dir; fails the test with
/// the script's output when any of its checks failed.
fn run_script(name: &str, server: &Server, modules: &Path, vars: &[(&str, &str)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/browser")
        .join(name);
    let shots = shots();
    let out = Command::new("node")
        .arg(&script)
        .env("CHAINTRACE_URL", &server.api)
        .env("CHAINTRACE_NODE_MODULES", modules)
        .env("CHAINTRACE_SHOTS", &shots)
        .envs(vars.iter().copied())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    println!("{stdout}screenshots in {}", shots.display());
}

/// The sessions pages: the demo's two conversations and a hostile one.
#[tokio::test]
async fn the_sessions_pages_in_chromium() {
    let Some(modules) = tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let grpc = server.grpc_url();
    let (ok, demo_out, err) = tokio::task::spawn_blocking(move || {
        crate::harness::chaintrace(&["demo", "--otlp-grpc", &grpc, "--rounds", "2"])
    })
    .await
    .expect("demo");
    assert!(ok, "demo failed: {err}");
    let demo = demo_out
        .lines()
        .find_map(|l| l.split("chaintrace sessions ").nth(1))
        .map(str::trim)
        .expect("the demo names its session")
        .to_string();
    let hostile_session = "<img src=x onerror=\"window.__pwned='session'\">";
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        - 60_000_000_000;
    let turn = span(
        HOSTILE,
        1,
        None,
        "<script>window.__pwned='name'</script>",
        t0,
        0,
        400,
        vec![
            s("session.id", hostile_session),
            s("user.id", "<b>eve</b>"),
            s("input.value", "<script>window.__pwned='input'</script>"),
            s(
                "output.value",
                "<img src=x onerror=\"window.__pwned='output'\">",
            ),
        ],
    );
    let (status, answer) = server
        .post_traces(
            "application/json",
            request("evil", vec![turn]).to_string().into_bytes(),
            false,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    run_script(
        "sessions-test.mjs",
        &server,
        &modules,
        &[
            ("SESSION_DEMO", &demo),
            ("SESSION_HOSTILE", hostile_session),
        ],
    );
}

/// Signing in to a server with API keys: the demo's traces sent with an
/// ingest key, read in Chromium after signing in with a read key.
#[tokio::test]
async fn signing_in_in_chromium() {
    let Some(modules) = tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.toml");
    let keys = keys.to_str().expect("utf-8 path");
    let made = [
        crate::harness::add_key(
            dir.path().join("keys.toml").as_path(),
            "collector",
            "ingest",
            "default",
        ),
        crate::harness::add_key(
            dir.path().join("keys.toml").as_path(),
            "grafana",
            "read",
            "default",
        ),
    ];
    let server = Server::start(&dir.path().join("data"), &["--keys", keys]);
    let grpc = server.grpc_url();
    let ingest = made[0].clone();
    let (ok, demo_out, err) = tokio::task::spawn_blocking(move || {
        crate::harness::chaintrace(&[
            "demo",
            "--otlp-grpc",
            &grpc,
            "--rounds",
            "1",
            "--key",
            &ingest,
        ])
    })
    .await
    .expect("demo");
    assert!(ok, "demo failed: {err}");
    let trace = demo_out
        .lines()
        .find_map(|l| l.split("chaintrace trace ").nth(1))
        .map(str::trim)
        .expect("the demo names a trace")
        .to_string();
    run_script(
        "login-test.mjs",
        &server,
        &modules,
        &[("READ_KEY", &made[1]), ("TRACE_ID", &trace)],
    );
}

#[tokio::test]
async fn pages_carry_a_strict_policy_and_assets_are_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    for path in ["/", &format!("/trace/{RAG}"), "/sessions", "/sessions/s-1"] {
        let r = client
            .get(format!("{}{path}", server.api))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_string();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let html = r.text().await.expect("html");
        let at = html.find("/ui/").expect("asset link");
        let asset: String = html[at..].chars().take_while(|c| *c != '"').collect();
        let a = client
            .get(format!("{}{asset}", server.api))
            .send()
            .await
            .expect("asset");
        assert_eq!(a.status(), 200, "{asset}");
        assert!(a.headers()["cache-control"]
            .to_str()
            .expect("cc")
            .contains("immutable"));
        let etag = a.headers()["etag"].clone();
        let again = client
            .get(format!("{}{asset}", server.api))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("asset again");
        assert_eq!(again.status(), 304);
    }
    let (status, body) = server.get_json("/api/v1/traces/zz/gantt").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some());
    let (status, body) = server
        .get_json("/api/v1/traceql/check?q=%7B%20name%20%3D%20%7D")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["position"], 9, "{body}");
    let r = client
        .get(format!("{}/api", server.api))
        .send()
        .await
        .expect("GET /api");
    assert!(r.text().await.expect("text").contains("/api/v1/search"));
}
