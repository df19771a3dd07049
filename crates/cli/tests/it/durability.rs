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

/// A second server on a running server's data directory stops before it
/// touches anything: it would otherwise truncate the WAL tail and delete the
/// half-written blocks of the first.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_exits_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for n in 0..30u64 {
        let (status, _) = server
            .post_traces(
                "application/x-protobuf",
                request(400 + n, 20).encode_to_vec(),
                false,
            )
            .await;
        assert_eq!(status, 200);
    }
    let wal_before = dir_listing(&server.data_dir.join("wal"));
    let mut args = crate::harness::SERVE_ON_FREE_PORTS.to_vec();
    args.extend(["--data-dir", server.data_dir.to_str().unwrap()]);
    let (ok, _, stderr) = crate::harness::chaintrace(&args);
    assert!(!ok, "the second server must fail");
    assert!(
        stderr.contains("already in use by another chaintrace process"),
        "the message says why: {stderr}"
    );
    assert_eq!(
        dir_listing(&server.data_dir.join("wal")),
        wal_before,
        "the WAL segments are untouched"
    );
    // The first server goes on, and its data survives it.
    let (status, _) = server
        .post_traces(
            "application/x-protobuf",
            request(430, 5).encode_to_vec(),
            false,
        )
        .await;
    assert_eq!(status, 200);
    let data_dir = server.data_dir.clone();
    server.kill9();
    // kill -9 leaves no stale lock: the kernel dropped it with the process.
    let server = Server::start(&data_dir, &[]);
    for n in 400..430u64 {
        assert_eq!(span_ids(&server, n).await.len(), 20, "trace {n}");
    }
    assert_eq!(span_ids(&server, 430).await.len(), 5);
}

/// Names and sizes of the files in `dir`, sorted.
fn dir_listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}
