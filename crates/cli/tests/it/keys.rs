//! API keys (`chaintrace serve --keys FILE`): every receiver and the query
//! API let in only keys with the right scope, answer 401/403 (gRPC
//! UNAUTHENTICATED / PERMISSION_DENIED) otherwise, store nothing they
//! refused, and follow the keys file as `chaintrace keys` edits it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::Value;

use crate::harness::{
    add_key, chaintrace, last_json_line, python, python_script, testdata, RpcStatus, Server,
};
use crate::otlp::{hex, request, trace_id};

/// A server with three keys: `collector` (ingest), `grafana` (read) and
/// `ops` (admin).
struct Keyed {
    server: Server,
    file: PathBuf,
    ingest: String,
    read: String,
    admin: String,
    _dir: tempfile::TempDir,
}

fn keyed_server() -> Keyed {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    let ingest = add_key(&file, "collector", "ingest", "default");
    let read = add_key(&file, "grafana", "read", "default");
    let admin = add_key(&file, "ops", "admin", "default");
    let text = std::fs::read_to_string(&file).unwrap();
    for key in [&ingest, &read, &admin] {
        assert!(!text.contains(&key[4..]), "the file holds a key: {text}");
    }
    let server = Server::start(
        &dir.path().join("data"),
        &["--keys", file.to_str().unwrap()],
    );
    Keyed {
        server,
        file,
        ingest,
        read,
        admin,
        _dir: dir,
    }
}

/// GET `path` of the query API with `key` (or none): status and body.
async fn get(server: &Server, path: &str, key: Option<&str>) -> (u16, String) {
    server.get_with_key(path, key).await
}

/// POST an OTLP/HTTP protobuf export of trace `n` with `key`: status and body.
async fn post_otlp(server: &Server, n: u64, key: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .post(&server.otlp_http)
        .header("content-type", "application/x-protobuf")
        .body(request(n, 3).encode_to_vec());
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// Exports trace `n` over OTLP/gRPC with `key` in the `authorization` metadata.
async fn export_grpc(server: &Server, n: u64, key: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let mut req = tonic::Request::new(request(n, 3));
    if let Some(key) = key {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    client.export(req).await.map(|_| ())
}

/// The spans of trace `n` that a reader sees (0 when it is unknown).
async fn stored_spans(server: &Server, n: u64, read: &str) -> usize {
    let (status, body) = get(
        server,
        &format!("/api/v1/traces/{}", hex(&trace_id(n))),
        Some(read),
    )
    .await;
    if status == 404 {
        return 0;
    }
    assert_eq!(status, 200, "{body}");
    let trace: Value = serde_json::from_str(&body).unwrap();
    trace["spans"].as_array().unwrap().len()
}

/// The value of one series of the admin's `/metrics`.
async fn metric(server: &Server, admin: &str, series: &str) -> f64 {
    let (status, text) = get(server, "/metrics", Some(admin)).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

#[tokio::test]
async fn receivers_take_only_ingest_keys_and_store_nothing_they_refused() {
    let k = keyed_server();
    let s = &k.server;
    // UDP carries no key: with keys, the Jaeger agent receivers are off.
    assert!(s.jaeger_compact.is_none());

    // OTLP/HTTP: google.rpc.Status with the matching gRPC code.
    let (status, body) = post_otlp(s, 1, None).await;
    assert_eq!(status, 401);
    let refusal = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(refusal.code, tonic::Code::Unauthenticated as i32);
    assert!(
        refusal.message.contains("needs an API key"),
        "{}",
        refusal.message
    );
    let (status, body) = post_otlp(s, 2, Some(&k.read)).await;
    assert_eq!(status, 403);
    let refusal = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(refusal.code, tonic::Code::PermissionDenied as i32);
    assert!(
        refusal.message.contains("\"grafana\"") && refusal.message.contains("\"ingest\""),
        "{}",
        refusal.message
    );
    let (status, _) = post_otlp(s, 3, Some("ctk_not-a-key")).await;
    assert_eq!(status, 401);
    let (status, _) = post_otlp(s, 4, Some(&k.ingest)).await;
    assert_eq!(status, 200);

    // OTLP/gRPC.
    let err = export_grpc(s, 5, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = export_grpc(s, 6, Some(&k.read)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("ingest"), "{err}");
    export_grpc(s, 7, Some(&k.ingest)).await.unwrap();

    // Zipkin, the Jaeger collector and JSON spans.
    let client = reqwest::Client::new();
    let zipkin = client
        .post(s.zipkin.as_ref().unwrap())
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(zipkin.status(), 401);
    let jaeger = client
        .post(s.jaeger_http.as_ref().unwrap())
        .header("content-type", "application/vnd.apache.thrift.binary")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(jaeger.status(), 401);
    let spans_url = format!("{}/api/v1/spans", s.api);
    let json_span = |key: &str| {
        client
            .post(&spans_url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(testdata("seed-span.json"))
            .send()
    };
    assert_eq!(json_span(&k.read).await.unwrap().status(), 403);
    let accepted: Value = json_span(&k.ingest).await.unwrap().json().await.unwrap();
    assert_eq!(accepted["accepted"], 1, "{accepted}");

    // The load generator sends with a key too.
    let grpc = s.grpc_url();
    let ingest = k.ingest.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        chaintrace(&[
            "gen",
            "--otlp-grpc",
            &grpc,
            "--traces",
            "20",
            "--key",
            &ingest,
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["acked_spans"], 140, "{out}{err}");

    // What was refused is not stored; what was let in is.
    for n in [1, 2, 3, 5, 6] {
        assert_eq!(stored_spans(s, n, &k.read).await, 0, "trace {n}");
    }
    for n in [4, 7] {
        assert_eq!(stored_spans(s, n, &k.read).await, 3, "trace {n}");
    }
    // Refusals are counted by reason, uses by key name.
    assert!(
        metric(
            s,
            &k.admin,
            "chaintrace_auth_failures_total{reason=\"missing\"}"
        )
        .await
            >= 4.0
    );
    assert!(
        metric(
            s,
            &k.admin,
            "chaintrace_auth_failures_total{reason=\"scope\"}"
        )
        .await
            >= 3.0
    );
    assert!(
        metric(
            s,
            &k.admin,
            "chaintrace_auth_failures_total{reason=\"unknown_key\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            s,
            &k.admin,
            "chaintrace_auth_requests_total{key=\"collector\"}"
        )
        .await
            >= 3.0
    );
}

#[tokio::test]
async fn the_query_api_takes_read_keys_and_follows_the_keys_file() {
    let k = keyed_server();
    let s = &k.server;
    assert_eq!(post_otlp(s, 11, Some(&k.ingest)).await.0, 200);
    let path = format!("/api/v1/traces/{}", hex(&trace_id(11)));

    let (status, body) = get(s, &path, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs an API key"), "{body}");
    let resp = reqwest::get(format!("{}{path}", s.api)).await.unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"chaintrace\""
    );
    let (status, body) = get(s, &path, Some(&k.ingest)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(stored_spans(s, 11, &k.read).await, 3);
    assert_eq!(stored_spans(s, 11, &k.admin).await, 3);
    // The Jaeger API too.
    let jaeger = format!("/api/traces/{}", hex(&trace_id(11)));
    assert_eq!(get(s, &jaeger, None).await.0, 401);
    let (status, body) = get(s, &jaeger, Some(&k.read)).await;
    assert_eq!((status, body.contains("durable")), (200, true), "{body}");
    // Grafana's data sources speak Basic: the key as password works.
    let basic = reqwest::Client::new()
        .get(format!("{}{path}", s.api))
        .basic_auth("grafana", Some(&k.read))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    // Health stays open for load balancers; /metrics spans every tenant: admin only.
    assert_eq!(get(s, "/api/v1/health", None).await.0, 200);
    assert_eq!(get(s, "/metrics", Some(&k.read)).await.0, 403);
    let (status, text) = get(s, "/metrics", Some(&k.admin)).await;
    assert_eq!(status, 200);
    for key in [&k.ingest, &k.read, &k.admin] {
        assert!(!text.contains(&key[4..]), "/metrics shows a key");
    }
    // whoami names the key, never shows it.
    let (_, who) = get(s, "/api/v1/whoami", Some(&k.read)).await;
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        (who["key"].as_str(), who["tenant"].as_str()),
        (Some("grafana"), Some("default"))
    );

    // The CLI takes --key (or CHAINTRACE_KEY).
    let api = s.api.clone();
    let (ok, out, err) = chaintrace(&["traces", "--server", &api, "--key", &k.read]);
    assert!(ok && out.contains("durable"), "{out}{err}");
    let (ok, _, err) = chaintrace(&["traces", "--server", &api]);
    assert!(!ok && err.contains("needs an API key"), "{err}");

    // A change the server cannot read leaves the keys before in force.
    let file = k.file.to_str().unwrap();
    let good = std::fs::read_to_string(&k.file).unwrap();
    std::fs::write(&k.file, format!("{good}\n[[key]]\nname = \"half-typed\n")).unwrap();
    wait_for("the bad edit to be noticed", || async {
        metric(s, &k.admin, "chaintrace_auth_key_reload_errors_total").await >= 1.0
    })
    .await;
    assert_eq!(stored_spans(s, 11, &k.read).await, 3);
    std::fs::write(&k.file, good).unwrap();

    // Revoking takes effect without a restart.
    let (ok, _, err) = chaintrace(&["keys", "revoke", "--file", file, "--name", "grafana"]);
    assert!(ok, "{err}");
    let (ok, out, _) = chaintrace(&["keys", "list", "--file", file]);
    assert!(
        ok && out.contains("collector") && !out.contains("grafana"),
        "{out}"
    );
    wait_for("the revoked key to be refused", || async {
        get(s, &path, Some(&k.read)).await.0 == 401
    })
    .await;
    let (_, body) = get(s, &path, Some(&k.read)).await;
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(stored_spans(s, 11, &k.admin).await, 3);
}

/// Waits (bounded: 30 s) until `condition` holds; the server reads the
/// keys file every second. Not a timing assertion: it only waits for a state.
async fn wait_for<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waited 30 s for {what}");
}

#[tokio::test]
async fn signing_in_keeps_a_session_cookie_and_guards_state_changes() {
    let k = keyed_server();
    let s = &k.server;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A page without a session goes to the sign-in form and back.
    let page = client
        .get(format!("{}/trace/00ff?x=1", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        "/login?next=/trace/00ff%3Fx%3D1"
    );
    let sign_in = |key: &str, origin: Option<&str>| {
        let mut req = client
            .post(format!("{}/login", s.api))
            .form(&[("key", key), ("next", "/trace/00ff")]);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let wrong = sign_in("ctk_wrong", None).await.unwrap();
    assert_eq!(
        wrong.headers()["location"],
        "/login?failed=key&next=/trace/00ff"
    );
    let ingest_only = sign_in(&k.ingest, None).await.unwrap();
    assert_eq!(
        ingest_only.headers()["location"],
        "/login?failed=scope&next=/trace/00ff"
    );
    let elsewhere = sign_in(&k.read, Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
    assert!(elsewhere.headers().get("set-cookie").is_none());

    let own_origin = s.api.clone();
    let ok = sign_in(&k.read, Some(&own_origin)).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/trace/00ff");
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains(&k.read[4..]), "the cookie holds the key");
    let session = cookie.split(';').next().unwrap().to_string();

    let with_session = |req: reqwest::RequestBuilder| req.header("cookie", &session).send();
    let who: Value = with_session(client.get(format!("{}/api/v1/whoami", s.api)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (who["key"].as_str(), who["signed_in"].as_bool()),
        (Some("grafana"), Some(true))
    );
    let csrf = who["csrf"].as_str().unwrap().to_string();
    let page = with_session(client.get(format!("{}/trace/00ff", s.api)))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // A state-changing request from the browser needs the CSRF token.
    let sql = |token: Option<&str>| {
        let mut req = client
            .post(format!("{}/api/v1/sql", s.api))
            .json(&serde_json::json!({"query": "SELECT count(*) AS n FROM spans"}));
        if let Some(token) = token {
            req = req.header("x-csrf-token", token);
        }
        with_session(req)
    };
    let forged = sql(None).await.unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("x-csrf-token"));
    assert_eq!(sql(Some("0000")).await.unwrap().status(), 403);
    assert_eq!(sql(Some(&csrf)).await.unwrap().status(), 200);
    // Another site's page cannot change anything, whatever credentials the
    // browser adds by itself (here a key it remembered).
    let cross = client
        .post(format!("{}/api/v1/sql", s.api))
        .bearer_auth(&k.read)
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({"query": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);

    // Signing out needs the token too, then ends the session.
    let out = |token: &str| {
        with_session(
            client
                .post(format!("{}/logout", s.api))
                .form(&[("csrf", token)]),
        )
    };
    assert_eq!(out("0000").await.unwrap().status(), 403);
    let done = out(&csrf).await.unwrap();
    assert_eq!(done.status(), 303);
    assert!(done.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = with_session(client.get(format!("{}/api/v1/whoami", s.api)))
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

/// The real OpenTelemetry Python SDK exports with the key given the way
/// its users give it (`OTEL_EXPORTER_OTLP_HEADERS`), over gRPC and HTTP;
/// without the key, its exporter reports failure and nothing is stored.
#[tokio::test]
async fn the_python_sdk_sends_with_a_key_and_is_refused_without() {
    let python = python("CHAINTRACE_TEST_PYTHON");
    let k = keyed_server();
    let s = &k.server;
    for (protocol, endpoint) in [("grpc", s.grpc_url()), ("http", s.otlp_http.clone())] {
        for key in [Some(&k.ingest), None, Some(&k.read)] {
            let mut cmd = Command::new(&python);
            cmd.arg(python_script("keyed_export.py"))
                .args([protocol, &endpoint, "keyed"]);
            if let Some(key) = key {
                cmd.env(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    format!("authorization=Bearer%20{key}"),
                );
            }
            let result = last_json_line(protocol, cmd).await;
            let want = if key == Some(&k.ingest) {
                "SUCCESS"
            } else {
                "FAILURE"
            };
            assert_eq!(
                result["result"],
                want,
                "{protocol} with key {:?}",
                key.is_some()
            );
            let (status, _) = get(
                s,
                &format!("/api/v1/traces/{}", result["trace_id"].as_str().unwrap()),
                Some(&k.read),
            )
            .await;
            assert_eq!(
                status,
                if want == "SUCCESS" { 200 } else { 404 },
                "{protocol}"
            );
        }
    }
}
