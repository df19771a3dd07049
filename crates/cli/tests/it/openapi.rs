//! The query API's OpenAPI description against a live server: schemathesis
//! (from PyPI) generates requests from it — examples, boundary values and
//! random ones for every operation — for a bounded time, and the server
//! must answer none of them with a 5xx.

use std::process::Command;

use crate::harness::{chaintrace, Server};

#[tokio::test]
async fn schemathesis_finds_no_server_error() {
    let st = std::env::var("CHAINTRACE_TEST_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("CHAINTRACE_TEST_SCHEMATHESIS is not set: run the suite with ./scripts/test, which installs schemathesis")
    });
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Something to find: the demo's traces, sessions and errors.
    let grpc = server.grpc_url();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&["demo", "--otlp-grpc", &grpc, "--rounds", "2"])
    })
    .await
    .unwrap();
    assert!(ok, "demo: {err}");
    let (status, doc) = server.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["openapi"].as_str().map(|v| &v[..4]),
        Some("3.1."),
        "{doc}"
    );

    let schema = format!("{}/api/v1/openapi.json", server.api);
    let api = server.api.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args(["run", &schema, "--url", &api])
            .args(["--checks", "not_a_server_error"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args([
                "--max-time",
                "60",
                "--workers",
                "2",
                "--request-timeout",
                "30",
            ])
            .args(["--suppress-health-check", "all", "--no-color"])
            .output()
    })
    .await
    .unwrap()
    .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    println!("{stdout}");
    server.assert_still_serving(71).await;
}
