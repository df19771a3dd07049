//! Tenants (`tenant = "…"` of a key): each sees its own spans and logs
//! only. Another tenant's trace id is a 404 (not a 403: its existence is
//! not revealed); lists, search, SQL, analytics, sessions, logs, stats and
//! the Jaeger API hold nothing of the other tenant; and it stays so after
//! a restart.

use std::path::Path;

use prost::Message;
use serde_json::{json, Value};

use crate::harness::{chaintrace, testdata, Server};
use crate::otlp::{hex, request, trace_id};

/// `chaintrace keys add` for `tenant`: the key.
fn add_key(file: &Path, name: &str, scopes: &str, tenant: &str) -> String {
    let file = file.to_str().unwrap();
    let (ok, out, err) = chaintrace(&[
        "keys", "add", "--file", file, "--name", name, "--scopes", scopes, "--tenant", tenant,
    ]);
    assert!(ok, "keys add {name}: {err}");
    out.trim().to_string()
}

/// Trace `n`: three spans of `service`, ending a few seconds ago, its root
/// in session `session`.
fn fresh(n: u64, service: &str, session: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut r = request(n, 3);
    let shift =
        now - 5_000_000_000 - r.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano;
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        })
    };
    r.resource_spans[0].resource.as_mut().unwrap().attributes[0].value = text(service);
    for span in &mut r.resource_spans[0].scope_spans[0].spans {
        span.start_time_unix_nano += shift;
        span.end_time_unix_nano += shift;
    }
    r.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "session.id".into(),
            value: text(session),
            ..Default::default()
        });
    r.encode_to_vec()
}

async fn post(url: &str, key: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// GET with `key`: status and body text.
async fn get(server: &Server, path: &str, key: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.api))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// POST /api/v1/sql with `key`: status and body.
async fn sql(server: &Server, key: &str, query: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", server.api))
        .bearer_auth(key)
        .json(&json!({ "query": query, "since": "1h" }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// What tenant `who` (its read key) may see, and that nothing of the
/// other tenant's trace, service, session or logs shows anywhere.
async fn sees_only_its_own(
    s: &Server,
    key: &str,
    own: u64,
    other: u64,
    own_svc: &str,
    other_svc: &str,
) {
    let own_id = hex(&trace_id(own));
    let other_id = hex(&trace_id(other));
    // By id: the other tenant's trace does not exist here.
    for path in [
        format!("/api/v1/traces/{other_id}"),
        format!("/api/v1/traces/{other_id}/gantt"),
        format!("/api/v1/traces/{other_id}/analysis"),
        format!("/api/v1/traces/{other_id}/spans/0"),
        format!("/api/traces/{other_id}"),
        format!("/api/v1/compare/{own_id}/{other_id}"),
    ] {
        let (status, body) = get(s, &path, key).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = get(s, &format!("/api/v1/traces/{own_id}"), key).await;
    assert_eq!(status, 200, "{body}");
    // Lists, search, analytics, sessions, the Jaeger API, stats.
    for path in [
        "/api/v1/traces?since=1h&limit=100".to_string(),
        "/api/v1/search?q=%7B%7D&since=1h&limit=100".to_string(),
        "/api/v1/analytics/operations?since=1h".to_string(),
        "/api/v1/analytics/operations?since=1h&source=traces".to_string(),
        "/api/v1/analytics/errors?since=1h".to_string(),
        "/api/v1/sessions?since=1h".to_string(),
        "/api/services".to_string(),
        format!("/api/traces?service={other_svc}&lookback=1h"),
        format!("/api/services/{other_svc}/operations"),
        "/api/v1/stats".to_string(),
    ] {
        let (status, body) = get(s, &path, key).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains(&other_id),
            "{path} shows the other tenant's trace: {body}"
        );
        assert!(
            !body.contains(other_svc),
            "{path} shows the other tenant's service: {body}"
        );
        assert!(
            !body.contains(&format!("session-of-{other_svc}")),
            "{path}: {body}"
        );
    }
    let (_, traces) = get(s, "/api/v1/traces?since=1h&limit=100", key).await;
    assert!(traces.contains(&own_id), "{traces}");
    let (_, services) = get(s, "/api/services", key).await;
    assert!(services.contains(own_svc), "{services}");
    let (_, stats) = get(s, "/api/v1/stats", key).await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        stats["spans"].as_u64(),
        Some(3),
        "only its own three spans: {stats}"
    );
    // SQL: the spans table is the tenant's; no name reaches further.
    let (status, rows) = sql(s, key, "SELECT DISTINCT service, trace_id FROM spans").await;
    assert_eq!(status, 200, "{rows}");
    let text = rows.to_string();
    assert!(
        text.contains(own_svc) && !text.contains(other_svc),
        "{text}"
    );
    for attempt in [
        "SELECT count(*) FROM spans WHERE service <> ''".to_string(),
        format!("SELECT * FROM spans WHERE trace_id = '{other_id}'"),
        "SELECT * FROM information_schema.tables".to_string(),
        "SELECT * FROM 'tenants/team-a/blocks'".to_string(),
        "SELECT * FROM '../team-a'".to_string(),
    ] {
        let (status, answer) = sql(s, key, &attempt).await;
        let text = answer.to_string();
        assert!(status == 200 || status == 400, "{attempt}: {status} {text}");
        assert!(
            !text.contains(other_svc) && !text.contains(&other_id),
            "{attempt}: {text}"
        );
    }
    let (_, count) = sql(s, key, "SELECT count(*) AS n FROM spans").await;
    assert_eq!(
        count["rows"][0][0]
            .as_i64()
            .or_else(|| count["rows"][0]["n"].as_i64()),
        Some(3),
        "{count}"
    );
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    let a_ingest = add_key(&file, "a-ingest", "ingest", "team-a");
    let a_read = add_key(&file, "a-read", "read", "team-a");
    let b_ingest = add_key(&file, "b-ingest", "ingest", "team-b");
    let b_read = add_key(&file, "b-read", "read", "team-b");
    let data = dir.path().join("data");
    let flags = ["--keys", file.to_str().unwrap()];
    let server = Server::start(&data, &flags);

    assert_eq!(
        post(
            &server.otlp_http,
            &a_ingest,
            fresh(31, "svc-alpha", "session-of-svc-alpha")
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &server.otlp_http,
            &b_ingest,
            fresh(32, "svc-bravo", "session-of-svc-bravo")
        )
        .await,
        200
    );
    // Team A's log records.
    let logs_url = server.otlp_http.replace("/v1/traces", "/v1/logs");
    assert_eq!(
        post(&logs_url, &a_ingest, testdata("otlp-logs-python.pb")).await,
        200
    );
    let (_, a_logs) = get(&server, "/api/v1/logs?limit=10", &a_read).await;
    let a_logs: Value = serde_json::from_str(&a_logs).unwrap();
    assert!(!a_logs["logs"].as_array().unwrap().is_empty(), "{a_logs}");
    let (_, b_logs) = get(&server, "/api/v1/logs?limit=10", &b_read).await;
    let b_logs: Value = serde_json::from_str(&b_logs).unwrap();
    assert!(b_logs["logs"].as_array().unwrap().is_empty(), "{b_logs}");

    sees_only_its_own(&server, &b_read, 32, 31, "svc-bravo", "svc-alpha").await;
    sees_only_its_own(&server, &a_read, 31, 32, "svc-alpha", "svc-bravo").await;
    // Each tenant's data is in a directory of its own.
    assert!(data.join("tenants/team-a/wal").is_dir());
    assert!(data.join("tenants/team-b/wal").is_dir());

    // After a restart (kill -9: the WALs replay), still apart.
    server.kill9();
    let server = Server::start(&data, &flags);
    sees_only_its_own(&server, &b_read, 32, 31, "svc-bravo", "svc-alpha").await;
    sees_only_its_own(&server, &a_read, 31, 32, "svc-alpha", "svc-bravo").await;
}

/// With keys the Jaeger UDP receivers are off, unless bound to a tenant:
/// then what they receive is that tenant's alone.
#[tokio::test]
async fn jaeger_udp_is_bound_to_a_named_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    let u_read = add_key(&file, "u-read", "read", "udp-team");
    let b_read = add_key(&file, "b-read", "read", "team-b");
    let flags = [
        "--keys",
        file.to_str().unwrap(),
        "--jaeger-udp-tenant",
        "udp-team",
    ];
    let server = Server::start(&dir.path().join("data"), &flags);
    let agent = server
        .jaeger_compact
        .expect("the UDP receiver is on for its tenant");
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(
            &testdata("jaeger-thrift-compact-emitbatch-python-rag-chain.bin"),
            agent,
        )
        .unwrap();
    let path = "/api/traces?service=rag-chain&lookback=100000d&limit=100";
    let mut spans = 0;
    for _ in 0..300 {
        let (status, body) = get(&server, path, &u_read).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        spans = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["spans"].as_array().map_or(0, Vec::len))
            .sum();
        if spans >= 14 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        spans, 14,
        "the datagram's two traces reached the bound tenant"
    );
    let (_, other) = get(&server, path, &b_read).await;
    let other: Value = serde_json::from_str(&other).unwrap();
    assert_eq!(other["data"].as_array().map(Vec::len), Some(0), "{other}");
    // Naming a tenant for UDP without keys is a mistake, said so.
    let (ok, _, err) = chaintrace(&[
        "serve",
        "--jaeger-udp-tenant",
        "x",
        "--data-dir",
        dir.path().join("d2").to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("--jaeger-udp-tenant needs --keys"),
        "{err}"
    );
}
