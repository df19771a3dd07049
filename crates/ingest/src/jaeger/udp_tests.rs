//! The UDP receiver over a real loopback socket.

use std::sync::Arc;
use std::time::Duration;

use super::tests::COMPACT_FIXTURE;
use super::*;
use crate::testing::{fixture, RecordingSink, SinkMode};

/// Polls `done` every 10 ms for up to 10 s; whether it became true.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1_000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

struct Receiver {
    sink: Arc<RecordingSink>,
    stats: Arc<UdpStats>,
    sender: std::net::UdpSocket,
    task: tokio::task::JoinHandle<()>,
}

async fn start(mode: SinkMode) -> Receiver {
    let socket = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let sink = Arc::new(RecordingSink::new(mode));
    let stats = Arc::new(UdpStats::new());
    let task = tokio::spawn(serve_udp(
        socket,
        ThriftProtocol::Compact,
        sink.clone(),
        stats.clone(),
    ));
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(addr).unwrap();
    Receiver {
        sink,
        stats,
        sender,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_reach_the_sink_and_garbage_does_not_stop_the_receiver() {
    let rx = start(SinkMode::Accept).await;
    let datagram = fixture(COMPACT_FIXTURE);
    rx.sender.send(&datagram).unwrap();
    assert!(eventually(|| rx.sink.spans().len() == 14).await);
    let spans = rx.sink.spans();
    assert!(spans.iter().all(|s| s.service_name() == "rag-chain"));
    assert_eq!(spans.iter().filter(|s| s.is_error()).count(), 3);

    rx.sender
        .send(b"\x82\x81\x00\x09emitBatch\x1c\x1c\x18\xff")
        .unwrap();
    rx.sender.send(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(eventually(|| rx.stats.counts().malformed == 2).await);

    rx.sender.send(&datagram).unwrap();
    assert!(eventually(|| rx.sink.spans().len() == 28).await);
    assert_eq!(
        rx.stats.counts(),
        UdpCounts {
            datagrams: 4,
            spans_accepted: 28,
            spans_rejected: 0,
            malformed: 2,
            sink_refusals: 0,
        }
    );
    assert!(!rx.task.is_finished());
    rx.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_rejected_spans_are_counted() {
    let rx = start(SinkMode::Overloaded).await;
    rx.sender.send(&fixture(COMPACT_FIXTURE)).unwrap();
    assert!(eventually(|| rx.stats.counts().sink_refusals == 1).await);
    assert_eq!(rx.stats.counts().spans_accepted, 0);

    // A span with a zero span id, alone in its batch: rejected, nothing sent to the sink.
    let batch = test_encoder::JBatch {
        service_name: "s".into(),
        spans: vec![test_encoder::JSpan {
            trace_id_low: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    rx.sender
        .send(&test_encoder::emit_batch(&batch, ThriftProtocol::Compact))
        .unwrap();
    assert!(eventually(|| rx.stats.counts().spans_rejected == 1).await);
    assert_eq!(rx.stats.counts().sink_refusals, 1);
    rx.task.abort();
}
