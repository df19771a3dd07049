//! Bad input gets a clear error naming what was wrong, and the server goes on
//! serving afterwards, good data sent beside the bad kept.

use prost::Message;
use serde_json::Value;

use crate::fixtures::gzip;
use crate::harness::Server;
use crate::otlp::{hex, request, span_ids, trace_id};

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).to_string()
}

#[tokio::test]
async fn bad_otlp_http_requests_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-request-bytes", "64KiB"]);

    let (status, body) = server
        .post_traces("text/plain", b"hello".to_vec(), false)
        .await;
    assert_eq!(status, 415, "{}", text(&body));
    assert!(
        text(&body).contains("text/plain"),
        "names the content type: {}",
        text(&body)
    );

    let (status, body) = server
        .post_traces(
            "application/x-protobuf",
            vec![0xff, 0xff, 0xff, 0x0f, 0x01],
            false,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        text(&body).to_lowercase().contains("protobuf"),
        "{}",
        text(&body)
    );

    let (status, body) = server
        .post_traces(
            "application/json",
            b"{\"resourceSpans\": [ {".to_vec(),
            false,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        text(&body).to_lowercase().contains("json"),
        "{}",
        text(&body)
    );

    let (status, body) = server
        .post_traces("application/x-protobuf", b"not gzip".to_vec(), true)
        .await;
    assert_eq!(status, 400, "{}", text(&body));

    // Over the limit, plainly and as a small gzip body that inflates past it.
    let big = request(7, 2000).encode_to_vec();
    assert!(big.len() > 64 * 1024);
    let (status, _) = server
        .post_traces("application/x-protobuf", big, false)
        .await;
    assert_eq!(status, 413);
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let (status, _) = server
        .post_traces("application/x-protobuf", bomb, true)
        .await;
    assert_eq!(status, 413);
    assert!(span_ids(&server, 7).await.is_empty());

    // Ids of the wrong length: those spans are rejected and counted, the rest stored.
    let mut doc: Value = serde_json::from_slice(&crate::harness::testdata(
        "otlp-traces-python-rag-chain.json",
    ))
    .unwrap();
    let spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array_mut()
        .unwrap();
    let total = spans.len();
    spans[0]["spanId"] = Value::from("abcdef");
    spans[1]["traceId"] = Value::from("0102");
    let (status, body) = server
        .post_traces("application/json", serde_json::to_vec(&doc).unwrap(), false)
        .await;
    assert_eq!(status, 200, "{}", text(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let rejected = &answer["partialSuccess"]["rejectedSpans"];
    assert!(rejected == 2 || rejected == "2", "{answer}");
    let (_, list) = server.get_json("/api/v1/traces?limit=100").await;
    let stored: u64 = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["span_count"].as_u64().unwrap())
        .sum();
    assert_eq!(stored as usize, total - 2);

    server.assert_still_serving(8).await;
}

#[tokio::test]
async fn bad_query_requests_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    let unknown = hex(&trace_id(424242));
    let (status, body) = server.get_json(&format!("/api/traces/{unknown}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["code"], 404);
    assert_eq!(body["errors"][0]["msg"], "trace not found");

    let (status, body) = server.get_json("/api/traces/not-a-trace-id").await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("not hex"),
        "{body}"
    );

    let (status, body) = server.get_json(&format!("/api/v1/traces/{unknown}")).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains(&unknown));

    let (status, body) = server.get_json("/api/v1/traces?since=yesterday").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("yesterday"));
    let (status, _) = server.get_json("/api/v1/traces?limit=0").await;
    assert_eq!(status, 400);

    server.assert_still_serving(9).await;
}

/// Deep nesting in a field nobody reads, times past what 64-bit nanoseconds
/// hold, and SQL bodies nested deep: each a 400 naming the problem, and the
/// good spans sent beside the deep body's neighbours are kept.
#[tokio::test]
async fn deep_json_and_out_of_range_times_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    let deep = format!(
        "{{\"resourceSpans\":[],\"unknownField\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, body) = server
        .post_traces("application/json", deep.into_bytes(), false)
        .await;
    assert_eq!(status, 400, "{}", text(&body));
    assert!(
        text(&body).contains("deeper than 64 levels"),
        "{}",
        text(&body)
    );

    // A good body still nests a kvlist in an array in an attribute.
    let good = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"nested","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2",
        "attributes":[{"key":"k","value":{"arrayValue":{"values":[{"kvlistValue":
        {"values":[{"key":"x","value":{"intValue":"1"}}]}}]}}}]}]}]}]}"#;
    let (status, body) = server
        .post_traces("application/json", good.as_bytes().to_vec(), false)
        .await;
    assert_eq!(status, 200, "{}", text(&body));

    for (query, what) in [
        (
            "/api/v1/search?q=%7B%7D&start=9999-12-31T23:59:59Z",
            "start",
        ),
        ("/api/v1/search?q=%7B%7D&start=1&end=100000000000", "end"),
        ("/api/v1/analytics/operations?end=99999999999", "end"),
    ] {
        let (status, body) = server.get_json(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(what) && msg.contains("2554"), "{query}: {msg}");
    }

    let deep_sql = format!(
        "{{\"query\":\"SELECT 1\",\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", server.api))
        .body(deep_sql)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("deeper than 64 levels"));

    server.assert_still_serving(10).await;
}

#[test]
fn serve_refuses_public_addresses_without_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args([
            "serve",
            "--http",
            "0.0.0.0:0",
            "--otlp-grpc",
            "127.0.0.1:0",
            "--otlp-http",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http 0.0.0.0:0 is not a loopback address"),
        "{err}"
    );
    assert!(err.contains("--insecure"), "{err}");
}

/// Answers do not amplify what was sent: a big resource shared by 3 000
/// spans is written once per trace, a trace id repeated 300 times is
/// answered once, and answers are gzipped for clients that ask.
#[tokio::test]
async fn answers_do_not_amplify_requests() {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--retention", "0"]);
    let mut big = request(77, 3000);
    big.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(KeyValue {
            key: "host.description".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("r".repeat(100 << 10))),
            }),
            ..Default::default()
        });
    let sent = big.encode_to_vec();
    let (status, body) = server
        .post_traces("application/x-protobuf", sent.clone(), false)
        .await;
    assert_eq!(status, 200, "{}", text(&body));

    let id = hex(&trace_id(77));
    let client = reqwest::Client::new();
    let get = |path: String| {
        let request = client.get(format!("{}{path}", server.api));
        async move { request.send().await.unwrap().bytes().await.unwrap() }
    };
    let native = get(format!("/api/v1/traces/{id}")).await;
    let doc: Value = serde_json::from_slice(&native).unwrap();
    assert_eq!(
        doc["spans"].as_array().map(Vec::len),
        Some(3000),
        "{}",
        text(&native[..native.len().min(300)])
    );
    assert_eq!(doc["resources"].as_array().unwrap().len(), 1);
    assert!(
        native.len() < 4 * sent.len(),
        "native answer {} bytes for {} sent",
        native.len(),
        sent.len()
    );

    let repeated: String = (0..300).map(|_| format!("traceID={id}&")).collect();
    let jaeger = get(format!("/api/traces?{repeated}")).await;
    let doc: Value = serde_json::from_slice(&jaeger).unwrap();
    assert_eq!(doc["data"].as_array().unwrap().len(), 1, "answered once");
    assert!(
        jaeger.len() < 4 * sent.len(),
        "Jaeger answer {} bytes",
        jaeger.len()
    );

    let gzipped = client
        .get(format!("{}/api/v1/traces/{id}", server.api))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.unwrap();
    assert!(
        compressed.len() * 5 < native.len(),
        "{} gzipped",
        compressed.len()
    );
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut plain,
    )
    .unwrap();
    assert_eq!(plain, native.to_vec());

    let (status, body) = server
        .get_json(&format!(
            "/api/traces?{}",
            (0..101u64)
                .map(|n| format!("traceID={}&", hex(&trace_id(n))))
                .collect::<String>()
        ))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("at most 100"),
        "{body}"
    );
}

/// A request counts against the memory budget before it is admitted: 400 KB
/// of empty attributes decodes to far more than a small budget, and is
/// refused as too large (413 / INVALID_ARGUMENT, which exporters do not
/// retry), not let in because memory was empty.
#[tokio::test]
async fn a_batch_bigger_than_the_memory_budget_is_refused_as_too_large() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--max-memory", "4MiB", "--block-max-bytes", "1MiB"],
    );
    let mut hostile = request(88, 1);
    hostile.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![KeyValue::default(); 200_000];
    let bytes = hostile.encode_to_vec();
    assert!(bytes.len() < 1 << 20, "{} bytes sent", bytes.len());
    let (status, body) = server
        .post_traces("application/x-protobuf", bytes, false)
        .await;
    assert_eq!(status, 413, "{}", text(&body));
    assert!(
        text(&body).contains("send smaller batches"),
        "{}",
        text(&body)
    );
    let mut grpc = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let err = grpc.export(hostile).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(span_ids(&server, 88).await.is_empty());
    server.assert_still_serving(11).await;
}

/// A scope shared by many spans is stored and answered once: 3 000 spans
/// under a 96 KiB scope name (a 300 KB request) were 288 MiB of copies and
/// failed with 500 / INTERNAL. Here a 64 MiB budget admits them over HTTP
/// and gRPC, the WAL stays small, and the answer holds the scope once —
/// from memory, after a restart (replay), and from a block.
#[tokio::test]
async fn a_long_scope_shared_by_many_spans_is_kept_once() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    let dir = tempfile::tempdir().unwrap();
    let scope_name = "s".repeat(96 << 10);
    let with_scope = |n: u64| {
        let mut r = request(n, 3000);
        r.resource_spans[0].scope_spans[0].scope = Some(InstrumentationScope {
            name: scope_name.clone(),
            version: "1.0".into(),
            ..Default::default()
        });
        r
    };
    let flags = ["--max-memory", "64MiB", "--block-max-bytes", "32MiB"];
    let server = Server::start(dir.path(), &flags);
    let sent = with_scope(91).encode_to_vec();
    assert!(sent.len() < 400 << 10, "{} bytes sent", sent.len());
    let (status, body) = server
        .post_traces("application/x-protobuf", sent.clone(), false)
        .await;
    assert_eq!(status, 200, "{}", text(&body));
    let mut grpc = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    grpc.export(with_scope(92)).await.unwrap();

    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(wal_bytes < 1 << 20, "the WAL holds {wal_bytes} bytes");

    let check = |doc: &Value, what: &str| {
        assert_eq!(doc["spans"].as_array().map(Vec::len), Some(3000), "{what}");
        let scopes = doc["scopes"].as_array().unwrap();
        assert_eq!(scopes.len(), 1, "{what}");
        assert_eq!(scopes[0]["name"].as_str(), Some(scope_name.as_str()));
        assert_eq!(doc["spans"][2999]["scope"], 0, "{what}");
    };
    let limit = 4 * sent.len();
    let answer = |server: &Server, n: u64| {
        let url = format!("{}/api/v1/traces/{}", server.api, hex(&trace_id(n)));
        async move {
            let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
            assert!(bytes.len() < limit, "{} bytes answered", bytes.len());
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    check(&answer(&server, 91).await, "from memory");
    server.kill9();

    // Replayed from the WAL, then cut into a block at the age limit.
    let server = Server::start(
        dir.path(),
        &[&flags[..], &["--block-max-age", "1s", "--retention", "0"]].concat(),
    );
    check(&answer(&server, 92).await, "after a restart");
    server.wait_for_cut("the age cut").await;
    check(&answer(&server, 91).await, "from a block");
    check(&answer(&server, 92).await, "from a block");
    server.assert_still_serving(93).await;
}

/// An OTLP/JSON body of about `bytes` bytes holding nothing but empty
/// spans (`{},{},…`): 4 million of them in 12 MB.
pub fn empty_spans_json(bytes: usize) -> Vec<u8> {
    let mut json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
    while json.len() < bytes {
        json.extend_from_slice(b"{},");
    }
    json.extend_from_slice(b"{}]}]}]}");
    json
}

/// Bodies of many tiny items cost bounded memory: a 12 MB OTLP/JSON body
/// of empty spans raised RSS by 1.8 GiB before it was refused, and 16 MiB
/// of empty protobuf spans reserved about 2 GB. Now the JSON one is refused
/// by its shape (413) before decoding, the protobuf one stops at the decode
/// budget (413), and the server's peak RSS stays small. A good span sent after them is
/// stored.
#[tokio::test]
async fn bodies_of_tiny_items_cost_bounded_memory() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--max-memory", "64MiB", "--block-max-bytes", "16MiB"],
    );

    let json = empty_spans_json(12_000_000);
    let (status, body) = server.post_traces("application/json", json, false).await;
    assert_eq!(status, 413, "{}", text(&body));
    assert!(
        text(&body).contains("objects and arrays"),
        "{}",
        text(&body)
    );

    let empty = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); 8_000_000],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, body) = server
        .post_traces("application/x-protobuf", empty.encode_to_vec(), false)
        .await;
    // 8 million messages cost more than the 32 MiB one request may decode
    // to at this budget (half of --max-memory): refused while decoding.
    assert_eq!(status, 413, "{}", text(&body));
    assert!(
        text(&body).contains("send smaller batches"),
        "{}",
        text(&body)
    );
    let mut fewer = empty;
    fewer.resource_spans[0].scope_spans[0]
        .spans
        .truncate(100_000);
    let (status, body) = server
        .post_traces("application/x-protobuf", fewer.encode_to_vec(), false)
        .await;
    // Every span lacks its ids: rejected one by one, in partial success.
    assert_eq!(status, 200, "{}", text(&body));

    let peak = server.peak_rss_bytes();
    assert!(
        peak < 400 << 20,
        "peak RSS {} MiB after 28 MB of tiny items",
        peak >> 20
    );
    server.assert_still_serving(94).await;
}
