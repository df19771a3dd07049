//! Slow and hostile clients against the real listeners, over raw TCP: half-sent
//! headers and stalled bodies are disconnected, oversized headers get 431,
//! connections past the cap wait until others close, and normal requests
//! still work afterwards.
//!
//! Timeouts are set to a second; the tests only assert that a connection is
//! closed within a generous bound, never how fast.

use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Server;
use crate::otlp::{request, span_ids};

/// How long a test waits for the server to act on a one-second timeout.
const GENEROUS: Duration = Duration::from_secs(30);

/// `host:port` of an `http://host:port/...` URL.
fn addr(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Reads until the server closes the connection; what it sent first, if
/// anything. Panics if the connection is still open after [`GENEROUS`].
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let outcome = tokio::time::timeout(GENEROUS, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{what}: the server still held the connection after {GENEROUS:?}"
    );
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends one whole request and reads the response head's status line.
async fn status_of(stream: &mut TcpStream, raw: &[u8]) -> String {
    stream.write_all(raw).await.expect("send request");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(GENEROUS, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read response");
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    text.lines().next().unwrap_or_default().to_string()
}

fn health_request() -> &'static [u8] {
    b"GET /api/v1/health HTTP/1.1\r\nHost: chaintrace\r\n\r\n"
}

#[tokio::test]
async fn half_sent_headers_and_silent_connections_are_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--header-timeout", "1s"]);
    let http_listeners = [
        ("OTLP/HTTP", addr(&server.otlp_http)),
        ("query API", addr(&server.api)),
    ];
    for (what, address) in &http_listeners {
        // Slowloris: half a header block, then nothing.
        let mut half = TcpStream::connect(address).await.unwrap();
        half.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: chaintrace\r\nContent-Ty")
            .await
            .unwrap();
        read_until_closed(&mut half, &format!("{what}, half a header")).await;

        // Half a request line.
        let mut line = TcpStream::connect(address).await.unwrap();
        line.write_all(b"GET /api/v1/hea").await.unwrap();
        read_until_closed(&mut line, &format!("{what}, half a request line")).await;
    }
    for (what, address) in http_listeners
        .iter()
        .cloned()
        .chain([("OTLP/gRPC", server.grpc.to_string())])
    {
        // Connects and says nothing at all.
        let mut silent = TcpStream::connect(&address).await.unwrap();
        read_until_closed(&mut silent, &format!("{what}, silent")).await;
    }
    // Half of the HTTP/2 preface on the gRPC listener.
    let mut preface = TcpStream::connect(server.grpc).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    read_until_closed(&mut preface, "OTLP/gRPC, half a preface").await;

    server.assert_still_serving(1).await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_or_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--body-timeout", "1s"]);
    let body = request(2, 3).encode_to_vec();
    let mut stalled = TcpStream::connect(addr(&server.otlp_http)).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: chaintrace\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..body.len() / 2]).await.unwrap();
    let answer = read_until_closed(&mut stalled, "OTLP/HTTP, stalled body").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a stalled body gets 408 or a closed connection, got {answer:?}"
    );

    // A body sent slowly but steadily, each pause well under the timeout, is stored.
    let mut steady = TcpStream::connect(addr(&server.otlp_http)).await.unwrap();
    let body = request(3, 3).encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: chaintrace\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    steady.write_all(head.as_bytes()).await.unwrap();
    let pieces: Vec<&[u8]> = body.chunks(body.len().div_ceil(4)).collect();
    for piece in &pieces[..pieces.len() - 1] {
        steady.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = status_of(&mut steady, pieces[pieces.len() - 1]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(span_ids(&server, 3).await.len(), 3);

    server.assert_still_serving(4).await;
}

#[tokio::test]
async fn oversized_headers_get_431_on_both_http_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let huge = "x".repeat(100 * 1024);
    for (what, address, path) in [
        ("OTLP/HTTP", addr(&server.otlp_http), "/v1/traces"),
        ("query API", addr(&server.api), "/api/v1/health"),
    ] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let raw = format!("GET {path} HTTP/1.1\r\nHost: chaintrace\r\nX-Big: {huge}\r\n\r\n");
        // The server may stop reading (and reset) once the limit is passed,
        // so a failed write is fine: the answer is what counts.
        let _ = stream.write_all(raw.as_bytes()).await;
        let answer = read_until_closed(&mut stream, what).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{what}: a 100 KiB header gets 431, got {:?}",
            answer.lines().next()
        );
    }
    // Headers just under the default limit still work.
    let mut stream = TcpStream::connect(addr(&server.api)).await.unwrap();
    let fits = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: chaintrace\r\nX-Big: {}\r\n\r\n",
        "x".repeat(48 * 1024)
    );
    assert_eq!(
        status_of(&mut stream, fits.as_bytes()).await,
        "HTTP/1.1 200 OK"
    );
    server.assert_still_serving(5).await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_others_close() {
    let dir = tempfile::tempdir().unwrap();
    // Long timeouts, so the held connections are not closed as idle meanwhile.
    let server = Server::start(
        dir.path(),
        &[
            "--max-connections",
            "2",
            "--header-timeout",
            "120s",
            "--idle-timeout",
            "120s",
        ],
    );
    let api = addr(&server.api);

    // Two connections take the query API's two slots (each is served, then
    // stays open in keep-alive).
    let mut first = TcpStream::connect(&api).await.unwrap();
    let mut second = TcpStream::connect(&api).await.unwrap();
    assert_eq!(
        status_of(&mut first, health_request()).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_of(&mut second, health_request()).await,
        "HTTP/1.1 200 OK"
    );

    // A third is let in by the kernel but not served while both stay open.
    let mut third = TcpStream::connect(&api).await.unwrap();
    third.write_all(health_request()).await.unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection past the cap was answered: {early:?}"
    );

    // Once one closes, the waiting connection is served.
    drop(first);
    let mut received = Vec::new();
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(GENEROUS, third.read(&mut buf))
            .await
            .expect("served once a slot is free")
            .expect("read");
        assert!(n > 0, "closed instead of served");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(
        received.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&received)
    );

    // The other listeners have their own slots.
    drop(second);
    drop(third);
    server.assert_still_serving(6).await;
}
