//! Tenants (`tenant = "…"` of a key): each sees its own spans and logs
//! only. Another tenant's trace id is a 404 (not a 403: its existence is
//! not revealed); lists, search, SQL, analytics, sessions, logs, stats and
//! the Jaeger API hold nothing of the other tenant; and it stays so after
//! a restart.

use prost::Message;
use serde_json::{json, Value};

use crate::harness::{add_key, chaintrace, testdata, RpcStatus, Server};
use crate::otlp::{hex, request, trace_id};

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
    server.get_with_key(path, Some(key)).await
}

/// `tools/call` of the MCP server with `key`: the call's result.
async fn mcp_tool(server: &Server, key: &str, name: &str, args: Value) -> Value {
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": name, "arguments": args}});
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/mcp", server.api))
        .bearer_auth(key)
        .json(&call)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["result"].clone()
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
        format!("/api/v1/traces/{other_id}/match?q=%7B%7D"),
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
    let a_admin = add_key(&file, "a-admin", "admin", "team-a");
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
    // The MCP tools answer for the key's tenant only.
    let a_trace = json!({"trace_id": hex(&trace_id(31))});
    let other = mcp_tool(&server, &b_read, "get_trace", a_trace.clone()).await;
    assert_eq!(other["isError"], true, "{other}");
    assert!(
        other["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{other}"
    );
    let own = mcp_tool(&server, &a_read, "get_trace", a_trace).await;
    assert_eq!(own["isError"], false, "{own}");
    let services = json!({"query": "SELECT DISTINCT service FROM spans"});
    let rows = mcp_tool(&server, &b_read, "sql", services).await;
    let text = rows["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("svc-bravo") && !text.contains("svc-alpha"),
        "{text}"
    );
    // /metrics counts every tenant (and names every key): a tenant's own
    // admin key may not read it.
    let (status, body) = get(&server, "/metrics", &a_admin).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("b-read"), "{body}");
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

/// POSTs trace `n` (three spans, from 2025) with `key`: status,
/// `Retry-After`, and the `google.rpc.Status` of a refusal.
async fn send_old(server: &Server, key: &str, n: u64) -> (u16, Option<u64>, RpcStatus) {
    let resp = reqwest::Client::new()
        .post(&server.otlp_http)
        .bearer_auth(key)
        .header("content-type", "application/x-protobuf")
        .body(request(n, 3).encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = resp.bytes().await.unwrap();
    (
        status,
        retry,
        RpcStatus::decode(body.as_ref()).unwrap_or_default(),
    )
}

/// A tenant's limits from the keys file: spans a second and a storage
/// quota answer 429 with `Retry-After` (gRPC RESOURCE_EXHAUSTED) for that
/// tenant only; retention applies to that tenant's traces only.
#[tokio::test]
async fn tenant_limits_answer_429_and_retention_is_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    let slow = add_key(&file, "slow", "ingest,read", "slow");
    let full = add_key(&file, "full", "ingest,read", "full");
    let brief = add_key(&file, "brief", "ingest,read", "brief");
    let free = add_key(&file, "free", "ingest,read", "free");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(
        "\n[tenant.slow]\nmax_spans_per_second = 1\n\n[tenant.full]\nstorage_quota = \"1KiB\"\n\n[tenant.brief]\nretention = \"1d\"\n",
    );
    std::fs::write(&file, text).unwrap();
    let flags = [
        "--keys",
        file.to_str().unwrap(),
        "--retention",
        "0",
        "--block-max-age",
        "1s",
    ];
    let server = Server::start(&dir.path().join("data"), &flags);

    // One span a second: a batch of three is let in (a full bucket may go
    // into debt by one batch), the next is told to wait out the debt.
    assert_eq!(send_old(&server, &slow, 41).await.0, 200);
    let (status, retry, refusal) = send_old(&server, &slow, 42).await;
    assert_eq!(status, 429, "{refusal:?}");
    assert_eq!(refusal.code, tonic::Code::ResourceExhausted as i32);
    assert!(
        refusal.message.contains("spans a second"),
        "{}",
        refusal.message
    );
    let retry = retry.expect("a Retry-After");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    // Over gRPC too; other tenants are not held back.
    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(server.grpc_url()).await.unwrap();
    let mut req = tonic::Request::new(request(43, 3));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {slow}").parse().unwrap());
    let err = client.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert_eq!(send_old(&server, &free, 44).await.0, 200);
    // After the wait it asked for (and a second more), it is let in again.
    tokio::time::sleep(std::time::Duration::from_secs(retry + 1)).await;
    assert_eq!(send_old(&server, &slow, 45).await.0, 200);
    let (status, _) = get(
        &server,
        &format!("/api/v1/traces/{}", hex(&trace_id(42))),
        &slow,
    )
    .await;
    assert_eq!(status, 404, "a refused batch is not stored");

    // A 1 KiB quota: once the tenant's disk is measured over it (within
    // ten seconds of its first batch), its batches are refused.
    assert_eq!(send_old(&server, &full, 51).await.0, 200);
    let mut refused = None;
    for n in 52..400 {
        let (status, retry, refusal) = send_old(&server, &full, n).await;
        if status == 429 {
            refused = Some((retry, refusal));
            break;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (retry, refusal) = refused.expect("the quota was never enforced");
    assert!(
        refusal.message.contains("storage quota"),
        "{}",
        refusal.message
    );
    assert!(retry.is_some_and(|r| r >= 1));
    assert_eq!(send_old(&server, &free, 46).await.0, 200);

    // Retention: the 2025 trace is deleted from the tenant that keeps a
    // day, once it is in a block; the tenant without a retention of its
    // own follows --retention 0 and keeps it.
    assert_eq!(send_old(&server, &brief, 61).await.0, 200);
    let brief_trace = format!("/api/v1/traces/{}", hex(&trace_id(61)));
    let mut gone = false;
    for _ in 0..600 {
        if get(&server, &brief_trace, &brief).await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the brief tenant's old trace was never deleted");
    let (_, stats) = get(&server, "/api/v1/stats", &free).await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert!(
        stats["blocks"].as_u64().unwrap_or(0) > 0,
        "the free tenant's spans were cut too: {stats}"
    );
    let (status, _) = get(
        &server,
        &format!("/api/v1/traces/{}", hex(&trace_id(44))),
        &free,
    )
    .await;
    assert_eq!(status, 200, "the free tenant keeps its 2025 trace");
}
