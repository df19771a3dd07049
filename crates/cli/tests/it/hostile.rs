//! The hostile run of issue 19, as one test: requests an attacker or a
//! buggy exporter sends, many at once, against a server at its default
//! memory budget. Each kind alone has its own test with its exact answer;
//! here they run together and the test checks what the operator sees:
//! the server answers all of them without a server error, its peak
//! resident memory stays bounded (the first hostile run left it at
//! 5.3 GiB; see the bound below), it still stores and serves a good trace,
//! and it goes idle afterwards (that run left a core busy).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::json;

use crate::harness::{urlencode, Server};
use crate::otlp::{hex, request, trace_id};

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// One trace of `spans` spans, each the child of the one before (a chain
/// the analysis walks end to end), the root named `name`.
fn chain(n: u64, spans: u64, name: String, attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let base = 1_760_000_000_000_000_000u64 + n * 1_000_000_000;
    let spans = (1..=spans)
        .map(|i| Span {
            trace_id: trace_id(n).to_vec(),
            span_id: (n << 20 | i).to_be_bytes().to_vec(),
            parent_span_id: if i == 1 {
                vec![]
            } else {
                (n << 20 | (i - 1)).to_be_bytes().to_vec()
            },
            name: if i == 1 {
                name.clone()
            } else {
                "llm_call".into()
            },
            start_time_unix_nano: base + i,
            end_time_unix_nano: base + 1_000_000 - i,
            attributes: attributes.clone(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "hostile".into())],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn a_hostile_run_keeps_memory_bounded_and_leaves_the_server_idle() {
    let dir = tempfile::tempdir().unwrap();
    // Default --max-memory (384 MiB) and request limits.
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let otlp = server.otlp_http.clone();
    let api = server.api.clone();

    // The stored traces the reads below are aimed at: a 20 000-span chain
    // whose spans carry a 1 MB model name (prices, analysis), and a span
    // named 2 MiB of `ab` (TraceQL regex).
    let model = "m".repeat(1 << 20);
    let long_chain = chain(
        1,
        20_000,
        "process_query".into(),
        vec![string_kv("gen_ai.request.model", String::new())],
    );
    let mut priced = chain(2, 8, "priced".into(), Vec::new());
    for s in &mut priced.resource_spans[0].scope_spans[0].spans {
        s.attributes = vec![
            string_kv("gen_ai.request.model", model.clone()),
            KeyValue {
                key: "gen_ai.usage.input_tokens".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i64::MAX)),
                }),
                ..Default::default()
            },
        ];
    }
    let regex_bait = chain(3, 1, "ab".repeat(1 << 20), Vec::new());
    for good in [long_chain, priced, regex_bait] {
        let (status, body) = server
            .post_traces("application/x-protobuf", good.encode_to_vec(), false)
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    let mut empty_attributes = request(10, 1);
    empty_attributes.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![KeyValue::default(); 7_000_000];
    let empty_attributes = empty_attributes.encode_to_vec();
    let empty_json = crate::bad_input::empty_spans_json(12_000_000);
    let mut long_scope = request(11, 3000);
    long_scope.resource_spans[0].scope_spans[0].scope = Some(InstrumentationScope {
        name: "s".repeat(96 << 10),
        ..Default::default()
    });
    let long_scope = long_scope.encode_to_vec();
    // The other receivers' worst bodies: a Jaeger Thrift binary Batch of
    // one span with 14 million empty tags (one byte each, a KeyValue each
    // decoded), and 12 MB of empty JSON objects for Zipkin and JSON spans.
    let mut thrift = vec![0x0f, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x01];
    thrift.extend([0x0f, 0x00, 0x0a, 0x0c]);
    thrift.extend(14_000_000u32.to_be_bytes());
    thrift.extend(std::iter::repeat_n(0u8, 14_000_000));
    thrift.extend([0x00, 0x00]);
    let empty_objects = {
        let mut body = b"[".to_vec();
        body.extend(std::iter::repeat_n(&b"{},"[..], 4_000_000).flatten());
        body.extend(b"{}]");
        body
    };
    let jaeger_http = server.jaeger_http.clone().expect("Jaeger collector");
    let zipkin = server.zipkin.clone().expect("Zipkin");

    let mut calls = Vec::new();
    let post = |body: Vec<u8>, content_type: &'static str| {
        let request = client
            .post(&otlp)
            .header("content-type", content_type)
            .body(body);
        async move { request.send().await.map(|r| r.status().as_u16()) }
    };
    for _ in 0..4 {
        calls.push(tokio::spawn(post(
            empty_attributes.clone(),
            "application/x-protobuf",
        )));
        calls.push(tokio::spawn(post(empty_json.clone(), "application/json")));
        calls.push(tokio::spawn(post(
            long_scope.clone(),
            "application/x-protobuf",
        )));
        for (url, content_type, body) in [
            (jaeger_http.clone(), "application/x-thrift", thrift.clone()),
            (zipkin.clone(), "application/json", empty_objects.clone()),
            (
                format!("{api}/api/v1/spans"),
                "application/json",
                empty_objects.clone(),
            ),
        ] {
            let request = client
                .post(url)
                .header("content-type", content_type)
                .body(body);
            calls.push(tokio::spawn(async move {
                request.send().await.map(|r| r.status().as_u16())
            }));
        }
    }
    let get = |path: String| {
        let request = client.get(format!("{api}{path}"));
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            // Read (and drop) the whole answer, as a client would.
            response.bytes().await.map(|_| status)
        }
    };
    let sql = |query: &str| {
        let request = client
            .post(format!("{api}/api/v1/sql"))
            .json(&json!({"query": query, "since": "1000d"}));
        async move { request.send().await.map(|r| r.status().as_u16()) }
    };
    for _ in 0..4 {
        calls.push(tokio::spawn(get(format!(
            "/api/v1/traces/{}/analysis",
            hex(&trace_id(1))
        ))));
        calls.push(tokio::spawn(get(format!(
            "/api/v1/traces/{}/analysis",
            hex(&trace_id(2))
        ))));
        calls.push(tokio::spawn(get(format!(
            "/api/v1/search?since=1000d&q={}",
            urlencode(r#"{ name =~ "[ab]*a[ab]{1000}" }"#)
        ))));
        calls.push(tokio::spawn(get(format!(
            "/api/traces?{}",
            (0..100)
                .map(|_| format!("traceID={}&", hex(&trace_id(1))))
                .collect::<String>()
        ))));
        calls.push(tokio::spawn(get(format!(
            "/api/v1/traces/{}",
            hex(&trace_id(11))
        ))));
        calls.push(tokio::spawn(sql("SELECT length(repeat('x', 1000000000))")));
        calls.push(tokio::spawn(sql(
            "SELECT count(*) FROM range(0, 100000000)",
        )));
        calls.push(tokio::spawn(sql(
            "SELECT count(*) FROM spans a, spans b, spans c",
        )));
        calls.push(tokio::spawn(get(
            "/api/v1/analytics/errors?since=1000d".into()
        )));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(
            call.await
                .unwrap()
                .expect("every hostile request is answered"),
        );
    }
    assert!(
        statuses.iter().all(|s| *s < 500 || *s == 503),
        "no hostile request is a server error: {statuses:?}"
    );

    // Issue 19's bar: under 1 GiB. Measured here (debug build): 514-540
    // MiB with the OTLP bodies, 504-571 MiB since the Jaeger, Zipkin and
    // JSON-span bodies joined (52 requests), of which about 110 MiB before
    // the run. It was 5.3 GiB at the first hostile run, and 1.1-2.0 GiB
    // while reads loaded their traces before queueing for the CPU pool,
    // bodies were read outside any gate, and large jobs left their freed
    // memory with the allocator's per-thread heaps.
    let peak = server.peak_rss_bytes();
    eprintln!("hostile run: peak RSS {} MiB", peak >> 20);
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);

    // Still stores and serves a good trace.
    server.assert_still_serving(95).await;

    // Idle afterwards: within a minute, a second passes without the
    // server using a tenth of a CPU second.
    let pid = server.pid();
    let mut idle = false;
    for _ in 0..60 {
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_ticks(pid) - before < 10 {
            idle = true;
            break;
        }
    }
    assert!(idle, "the server is still busy a minute after the run");
}

/// Without keys the server listens on loopback, and its query API answers
/// only requests addressed to a loopback name: a web page that makes its
/// own name resolve to 127.0.0.1 (DNS rebinding) reads nothing.
#[tokio::test]
async fn a_page_using_dns_rebinding_reads_no_traces() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start(dir.path(), &[]);
    let port = server.api.rsplit(':').next().unwrap().to_string();
    let client = reqwest::Client::new();
    let ask = |host: String| {
        client
            .get(format!("{}/api/v1/traces", server.api))
            .header("host", host)
            .send()
    };
    let rebound = ask(format!("evil.example:{port}")).await.unwrap();
    assert_eq!(rebound.status(), 403);
    let said = rebound.text().await.unwrap();
    assert!(
        said.contains("loopback") && said.contains("--keys"),
        "{said}"
    );
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(ask(host.clone()).await.unwrap().status(), 200, "{host}");
    }
    // Health stays open to any name (probes), and says nothing.
    let health = client
        .get(format!("{}/api/v1/health", server.api))
        .header("host", "probe.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
