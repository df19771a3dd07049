//! The Jaeger agent receiver of `chaintrace serve`: the real `emitBatch`
//! datagram the Python Jaeger exporter sent (testdata) arrives over UDP
//! and comes back through the Jaeger API, and garbage sent before it does
//! not stop the receiver.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{testdata, Server};

/// The Jaeger API's traces of `service`, once `want` spans have arrived
/// (polled for up to 30 s: UDP has no answer to wait for).
async fn traces_of(server: &Server, service: &str, want: usize) -> Vec<Value> {
    for _ in 0..300 {
        let (status, body) = server
            .get_json(&format!(
                "/api/traces?service={service}&lookback=100000d&limit=100"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        let traces = body["data"].as_array().cloned().unwrap_or_default();
        let spans: usize = traces
            .iter()
            .map(|t| t["spans"].as_array().map_or(0, Vec::len))
            .sum();
        if spans >= want {
            return traces;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{want} spans of {service} did not arrive over UDP within 30 s");
}

#[tokio::test]
async fn the_python_jaeger_exporters_datagram_is_stored_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let agent = server
        .jaeger_compact
        .expect("serve prints its Jaeger compact address");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Garbage first: counted and logged, the receiver keeps running.
    client.send_to(b"\x82\x21\x01\x09emit", agent).unwrap();
    client.send_to(&[0xff; 512], agent).unwrap();
    client
        .send_to(
            &testdata("jaeger-thrift-compact-emitbatch-python-rag-chain.bin"),
            agent,
        )
        .unwrap();

    let traces = traces_of(&server, "rag-chain", 14).await;
    assert_eq!(traces.len(), 2);
    for trace in &traces {
        let spans = trace["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 7);
        let name_of = |id: &str| {
            spans
                .iter()
                .find(|s| s["spanID"] == id)
                .map(|s| s["operationName"].as_str().unwrap().to_string())
        };
        // The chain's tree survived: every step hangs under its parent.
        for span in spans {
            let name = span["operationName"].as_str().unwrap();
            let parent = span["references"]
                .as_array()
                .and_then(|r| r.first())
                .and_then(|r| r["spanID"].as_str())
                .and_then(name_of);
            let want = match name {
                "process_query" => None,
                "prompt_assembly" | "api_call" => Some("llm_call"),
                _ => Some("process_query"),
            };
            assert_eq!(parent.as_deref(), want, "parent of {name}");
        }
    }
    // The failed run's LLM call is an error, with the exception as a log.
    let failed: Vec<&Value> = traces
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .filter(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "error" && t["value"] == true)
        })
        .collect();
    let names: Vec<&str> = failed
        .iter()
        .map(|s| s["operationName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"api_call"), "{names:?}");
    let api_call = failed
        .iter()
        .find(|s| s["operationName"] == "api_call")
        .unwrap();
    let logged = api_call["logs"].as_array().unwrap().iter().any(|log| {
        log["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["value"] == "RateLimitError")
    });
    assert!(logged, "{api_call}");

    server.assert_still_serving(96).await;
}
