//! gzip for large answers, off the async workers.
//!
//! tower-http's compression layer compresses as the body streams out, on
//! the async worker: a 16 MB Gantt answer of a 100 000-span trace took
//! about a third of its request's CPU there, and a 256 MiB answer would
//! hold a worker for seconds. Answers built whole (every JSON answer here)
//! of at least [`OFF_WORKER_BYTES`] are compressed by this layer instead, in
//! a CPU-pool slot at gzip's fastest level (a few times faster than the
//! default level, for a slightly larger answer); when every slot stays busy
//! the answer goes out uncompressed rather than not at all. Smaller and
//! streamed answers are left to tower-http, which skips what this layer
//! has already encoded.

use std::io::Write;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

use crate::cpu::CpuPool;

/// Answers at least this large are compressed here.
pub const OFF_WORKER_BYTES: u64 = 256 << 10;

/// Whether `Accept-Encoding` allows gzip (present, and not `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
                && !refused
        })
}

/// The middleware: see the module docs.
pub async fn gzip_large_answers(
    State(cpu): State<CpuPool>,
    request: Request,
    next: Next,
) -> Response {
    let wants_gzip = accepts_gzip(request.headers());
    let response = next.run(request).await;
    let large = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n >= OFF_WORKER_BYTES);
    if !wants_gzip || !large || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The body is whole in memory already: collecting it only moves it.
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let Ok(slot) = cpu.slot().await else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let compressed = slot
        .run(move || {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(bytes.len() / 8),
                flate2::Compression::fast(),
            );
            encoder
                .write_all(&bytes)
                .and_then(|()| encoder.finish())
                .map_err(|_| bytes)
        })
        .await;
    match compressed {
        Ok(Ok(gzipped)) => {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .append(header::VARY, HeaderValue::from_static("accept-encoding"));
            Response::from_parts(parts, Body::from(gzipped))
        }
        // Writing to a Vec does not fail; should it, send it as it was.
        Ok(Err(bytes)) => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "compressing an answer failed");
            Response::from_parts(parts, Body::empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    async fn fetch(app: axum::Router, path: &str, accept: Option<&str>) -> (HeaderMap, Vec<u8>) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (headers, body.to_vec())
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn large_answers_are_gzipped_here_and_small_ones_by_tower_http() {
        let large: String = (0..100_000).map(|i| format!("{i},")).collect();
        assert!(large.len() as u64 >= OFF_WORKER_BYTES);
        let small = "small answer ".repeat(20);
        let app = {
            let (large, small) = (large.clone(), small.clone());
            axum::Router::new()
                .route("/large", axum::routing::get(move || async move { large }))
                .route("/small", axum::routing::get(move || async move { small }))
                .layer(axum::middleware::from_fn_with_state(
                    CpuPool::default(),
                    gzip_large_answers,
                ))
                .layer(tower_http::compression::CompressionLayer::new())
        };
        for (path, want) in [("/large", &large), ("/small", &small)] {
            let (headers, body) = fetch(app.clone(), path, Some("br;q=0.9, gzip")).await;
            assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "{path}");
            assert_eq!(gunzip(&body), want.as_bytes(), "{path}");
            let (headers, body) = fetch(app.clone(), path, None).await;
            assert!(!headers.contains_key(header::CONTENT_ENCODING), "{path}");
            assert_eq!(body, want.as_bytes(), "{path}");
        }
        // (Compressed once, not twice: gunzip gave the answer itself.)
    }

    #[test]
    fn gzip_is_taken_only_when_offered_and_not_refused() {
        assert!(accepts_gzip(&headers("gzip, deflate, br, zstd")));
        assert!(accepts_gzip(&headers("br;q=1.0, GZIP;q=0.5")));
        assert!(!accepts_gzip(&headers("gzip;q=0")));
        assert!(!accepts_gzip(&headers("br, zstd")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
