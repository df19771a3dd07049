//! Spans nobody here wrote: the `openai` Python client instrumented by
//! `opentelemetry-instrumentation-openai-v2`, against a fake OpenAI API
//! (in the script, on loopback): the call shows up with its model, tokens
//! and cost in `chaintrace analyze`, and the 429 with its error type in
//! `chaintrace errors`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{chaintrace, Server};

#[tokio::test]
async fn an_auto_instrumented_openai_client_is_analysed_and_its_429_grouped() {
    let python = std::env::var("CHAINTRACE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CHAINTRACE_TEST_PYTHON is not set: run the suite with ./scripts/test, \
             which installs the openai client and its instrumentation into a virtualenv"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/openai_chain.py");
    let endpoint = server.otlp_http.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(endpoint)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_chain.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let ok_trace = ids["ok_trace"].as_str().unwrap();

    // The instrumented call: its model, the tokens the API reported, and
    // a cost from the price table.
    let (ok, analysis, err) = chaintrace(&["analyze", ok_trace, "--server", &server.api]);
    assert!(ok, "{analysis}{err}");
    let call = analysis
        .lines()
        .skip_while(|l| !l.starts_with("LLM calls:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no LLM calls in:\n{analysis}"));
    for want in [
        "chat gpt-4o-mini",
        "gpt-4o-mini",
        "in   1250",
        "out    340",
        "$0.0004",
    ] {
        assert!(call.contains(want), "{want:?} not in {call:?}");
    }

    // The 429, grouped by the error type the instrumentation recorded.
    let (ok, errors, err) = chaintrace(&["errors", "--server", &server.api, "--since", "1h"]);
    assert!(ok, "{errors}{err}");
    let row = errors
        .lines()
        .find(|l| l.contains("RateLimitError"))
        .unwrap_or_else(|| panic!("no RateLimitError group in:\n{errors}"));
    assert!(row.contains("chat gpt-4o-mini"), "{row}");
    assert!(
        row.contains(ids["limited_trace"].as_str().unwrap()),
        "{row}"
    );
    assert!(row.trim_start().starts_with('1'), "one such error: {row}");
}
