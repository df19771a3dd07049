//! `chaintrace export` and `chaintrace import` move traces between servers
//! and formats: the Python SDK's chain exported as Jaeger JSON and as
//! OTLP/JSON lines (gzipped), imported into fresh servers, reads back the
//! same; JSON spans import too; a file of something else is an error.

use std::io::Write;

use serde_json::Value;

use crate::harness::{chaintrace, testdata, Server};

/// The native trace with its spans in span-id order, for comparing.
async fn trace_of(server: &Server, id: &str) -> Value {
    let (status, mut trace) = server.get_json(&format!("/api/v1/traces/{id}")).await;
    assert_eq!(status, 200, "{trace}");
    // Indexes into resources/scopes may be numbered differently; compare
    // each span with its resource and scope written out.
    let resources = trace["resources"].clone();
    let scopes = trace["scopes"].clone();
    let spans = trace["spans"].as_array_mut().unwrap();
    for span in spans.iter_mut() {
        let r = span["resource"].as_u64().unwrap() as usize;
        let s = span["scope"].as_u64().unwrap() as usize;
        span["resource"] = resources[r].clone();
        span["scope"] = scopes[s].clone();
    }
    spans.sort_by(|a, b| a["span_id"].as_str().cmp(&b["span_id"].as_str()));
    Value::Array(spans.clone())
}

/// Times cut to microseconds, resource attributes in key order.
fn jaeger_precision(spans: &mut Value) {
    fn micros(v: &mut Value) {
        if let Some(n) = v.as_u64() {
            *v = Value::from(n / 1000 * 1000);
        }
    }
    for span in spans.as_array_mut().unwrap() {
        // Jaeger keeps a start and a duration, each in whole microseconds.
        let start = span["start"].as_u64().unwrap();
        let duration = span["end"].as_u64().unwrap() - start;
        span["start"] = Value::from(start / 1000 * 1000);
        span["end"] = Value::from(start / 1000 * 1000 + duration / 1000 * 1000);
        for event in span["events"].as_array_mut().unwrap() {
            micros(&mut event["time"]);
        }
        span["resource"]["attributes"]
            .as_array_mut()
            .unwrap()
            .sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    }
}

#[tokio::test]
async fn traces_survive_export_and_import_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let source = Server::start(&dir.path().join("a"), &[]);
    let (status, _) = source
        .post_traces(
            "application/x-protobuf",
            testdata("otlp-traces-python-rag-chain.pb"),
            false,
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = source
        .get_json("/api/v1/traces?limit=10&since=100000d")
        .await;
    let ids: Vec<String> = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");

    let jaeger_file = dir.path().join("traces.json");
    let otlp_file = dir.path().join("traces.jsonl");
    for (format, file) in [("jaeger", &jaeger_file), ("otlp-json", &otlp_file)] {
        let mut args = vec!["export", "--format", format, "--server", &source.api, "-o"];
        args.push(file.to_str().unwrap());
        args.extend(ids.iter().map(String::as_str));
        let (ok, out, err) = chaintrace(&args);
        assert!(ok, "export {format}: {out}{err}");
    }
    // The OTLP file is one request per trace per line, as the Collector's
    // file exporter writes; import it gzipped.
    let lines = std::fs::read_to_string(&otlp_file).unwrap();
    assert_eq!(lines.lines().count(), 2);
    let gz_file = dir.path().join("traces.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).unwrap();
    std::fs::write(&gz_file, gz.finish().unwrap()).unwrap();

    for (name, file) in [("jaeger", &jaeger_file), ("otlp", &gz_file)] {
        let target = Server::start(&dir.path().join(name), &[]);
        let (ok, out, err) = chaintrace(&[
            "import",
            "--server",
            &target.api,
            "--otlp-http",
            &target.otlp_http,
            file.to_str().unwrap(),
        ]);
        assert!(ok, "import {name}: {out}{err}");
        assert!(out.contains("imported 14 spans"), "{name}: {out}");
        for id in &ids {
            let (mut got, mut want) = (trace_of(&target, id).await, trace_of(&source, id).await);
            if name == "jaeger" {
                // What Jaeger's format cannot carry: times finer than a
                // microsecond, and where service.name stands among the
                // resource's attributes (Jaeger keeps it apart).
                jaeger_precision(&mut got);
                jaeger_precision(&mut want);
            }
            assert_eq!(got, want, "{name}: trace {id} differs after the round trip");
        }
    }
}

#[tokio::test]
async fn json_spans_import_and_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let spans = dir.path().join("spans.json");
    std::fs::write(&spans, testdata("seed-span.json")).unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(&other, br#"{"hello": "world"}"#).unwrap();
    let (ok, out, err) = chaintrace(&[
        "import",
        "--server",
        &server.api,
        "--otlp-http",
        &server.otlp_http,
        spans.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(!ok, "a file of something else fails the command: {out}");
    assert!(out.contains("spans.json: imported 1 spans"), "{out}");
    assert!(
        err.contains("other.json: value 0 is neither OTLP JSON"),
        "{err}"
    );
    let (status, _) = server
        .get_json("/api/v1/traces/550e8400e29b41d4a716446655440000")
        .await;
    assert_eq!(status, 200);

    // A trace that is not there is an error naming it.
    let (ok, _, err) = chaintrace(&[
        "export",
        "--format",
        "jaeger",
        "--server",
        &server.api,
        "0123456789abcdef0123456789abcdef",
    ]);
    assert!(!ok);
    assert!(
        err.contains("not found: 0123456789abcdef0123456789abcdef"),
        "{err}"
    );
}
