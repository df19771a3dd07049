//! Nothing acknowledged is lost: batches that got a success answer survive
//! `kill -9` and a restart on the same data directory, each span exactly once.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

use crate::harness::Server;
use crate::otlp::{request, span_ids};

#[tokio::test]
async fn acknowledged_spans_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // Many concurrent exporters, as SDKs flush: 40 traces over HTTP, 20 over gRPC.
    let mut tasks = Vec::new();
    for n in 0..40u64 {
        let url = server.otlp_http.clone();
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(request(100 + n, 10).encode_to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }));
    }
    for n in 0..20u64 {
        let url = server.grpc_url();
        tasks.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.unwrap();
            client.export(request(200 + n, 10)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // An exporter retry: the same batch again must not show twice.
    let (status, _) = server
        .post_traces(
            "application/x-protobuf",
            request(100, 10).encode_to_vec(),
            false,
        )
        .await;
    assert_eq!(status, 200);

    let data_dir = server.data_dir.clone();
    server.kill9();

    let server = Server::start(&data_dir, &[]);
    for n in (100..140).chain(200..220) {
        let mut ids = span_ids(&server, n).await;
        assert_eq!(ids.len(), 10, "trace {n} after restart");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "trace {n} has duplicate spans");
    }
    let (_, list) = server.get_json("/api/v1/traces?limit=1000").await;
    assert_eq!(list["traces"].as_array().unwrap().len(), 60);

    // And it keeps working: ingest after the restart survives another kill.
    let (status, _) = server
        .post_traces(
            "application/x-protobuf",
            request(300, 3).encode_to_vec(),
            false,
        )
        .await;
    assert_eq!(status, 200);
    server.kill9();
    let server = Server::start(&data_dir, &[]);
    assert_eq!(span_ids(&server, 300).await.len(), 3);
    assert_eq!(span_ids(&server, 139).await.len(), 10);
}
