//! Ships encoded batches to an OTLP endpoint and reads the answers.
//!
//! gRPC goes through tonic with a codec that writes the pre-encoded bytes
//! as they are (the generated client would want a decoded message and encode
//! it again); requests are spread over a few HTTP/2 connections. HTTP posts
//! `application/x-protobuf` with one shared reqwest client. Answers that
//! mean "later" (HTTP 429/502/503/504, gRPC `UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED`) are retried with backoff, honouring `Retry-After`
//! or gRPC `RetryInfo`, up to a bound; anything else is a failure.
//!
//! Only I/O and answer classification live here; batches come from `batch`.

use std::time::Duration;

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::bytes::{BufMut, Bytes};
use prost::Message;
use tokio::sync::watch;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Where batches go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    Grpc(String),
    /// An OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    Http(String),
    /// Nowhere: every batch counts as accepted (measures the generator).
    DryRun,
}

/// How hard to retry answers that mean "later".
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries per request before it counts as failed.
    pub max_retries: u32,
    /// First backoff when the server names no delay; doubles per retry.
    pub first_backoff: Duration,
    /// Longest single wait, also caps `Retry-After`.
    pub max_wait: Duration,
}

/// One answer from the endpoint.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Stored, except `rejected` spans (OTLP partial success).
    Accepted {
        /// `partial_success.rejected_spans`.
        rejected: u64,
    },
    /// Try again, after `after` if the server said.
    Retry {
        /// The server's `Retry-After` or `RetryInfo`.
        after: Option<Duration>,
        /// What the server said, for the terminal.
        reason: String,
    },
    /// Will not succeed by retrying.
    Failed(String),
}

/// What became of one batch after retries.
#[derive(Debug)]
pub enum Delivery {
    /// Accepted, except `rejected` spans.
    Acked {
        /// Spans the server refused.
        rejected: u64,
    },
    /// Refused, or retries ran out.
    Failed(String),
    /// The run was stopped while waiting to retry.
    Stopped,
}

/// A connected endpoint.
#[derive(Debug)]
pub enum Exporter {
    /// gRPC over several HTTP/2 connections.
    Grpc {
        /// The connections.
        channels: Vec<Channel>,
        /// `Bearer <key>` for the `authorization` metadata, when given a key.
        authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    },
    /// HTTP with a shared client.
    Http {
        /// The shared client (pools connections).
        client: reqwest::Client,
        /// The traces URL.
        url: String,
    },
    /// Accepts everything without sending.
    DryRun,
}

impl Exporter {
    /// Connects to `target`; gRPC opens `connections` connections now, so an
    /// unreachable endpoint fails here rather than in every request.
    /// With `key`, every request carries `Authorization: Bearer <key>`
    /// (gRPC: the `authorization` metadata), as a server with `--keys` asks.
    pub async fn connect(
        target: &Target,
        connections: usize,
        timeout: Duration,
        key: Option<&str>,
    ) -> Result<Self> {
        let bearer = key.map(|k| format!("Bearer {}", k.trim()));
        match target {
            Target::Grpc(url) => {
                let endpoint = Endpoint::from_shared(url.clone())
                    .with_context(|| format!("--otlp-grpc {url:?} is not a valid URL"))?
                    .timeout(timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true);
                let mut channels = Vec::with_capacity(connections);
                for _ in 0..connections.max(1) {
                    let channel = endpoint
                        .connect()
                        .await
                        .with_context(|| format!("cannot reach the OTLP/gRPC endpoint at {url}"))?;
                    channels.push(channel);
                }
                let authorization = bearer
                    .map(|b| b.parse())
                    .transpose()
                    .context("the API key has characters gRPC metadata cannot carry")?;
                Ok(Exporter::Grpc {
                    channels,
                    authorization,
                })
            }
            Target::Http(url) => {
                reqwest::Url::parse(url)
                    .with_context(|| format!("--otlp-http {url:?} is not a valid URL"))?;
                let mut headers = reqwest::header::HeaderMap::new();
                if let Some(bearer) = bearer {
                    let mut value = reqwest::header::HeaderValue::from_str(&bearer)
                        .context("the API key has characters a header cannot carry")?;
                    value.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                let client = reqwest::Client::builder()
                    .default_headers(headers)
                    .timeout(timeout)
                    .tcp_nodelay(true)
                    .build()
                    .context("cannot build the HTTP client")?;
                Ok(Exporter::Http {
                    client,
                    url: url.clone(),
                })
            }
            Target::DryRun => Ok(Exporter::DryRun),
        }
    }

    /// Sends one batch once; `lane` picks the connection.
    pub async fn export(&self, lane: usize, body: Bytes) -> Answer {
        match self {
            Exporter::Grpc {
                channels,
                authorization,
            } => {
                let channel = channels[lane % channels.len()].clone();
                let mut grpc = tonic::client::Grpc::new(channel);
                if let Err(e) = grpc.ready().await {
                    return Answer::Retry {
                        after: None,
                        reason: format!("gRPC connection not ready: {e}"),
                    };
                }
                let path = PathAndQuery::from_static(EXPORT_PATH);
                let mut request = tonic::Request::new(body);
                if let Some(value) = authorization {
                    request
                        .metadata_mut()
                        .insert("authorization", value.clone());
                }
                match grpc.unary(request, path, RawCodec).await {
                    Ok(response) => Answer::Accepted {
                        rejected: rejected_spans(&response.into_inner()),
                    },
                    Err(status) => classify_grpc(&status),
                }
            }
            Exporter::Http { client, url } => {
                let sent = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                let response = match sent {
                    Ok(r) => r,
                    // Like gRPC's UNAVAILABLE: the server may be restarting.
                    Err(e) if e.is_connect() => {
                        return Answer::Retry {
                            after: None,
                            reason: format!("POST {url}: {e}"),
                        }
                    }
                    Err(e) => return Answer::Failed(format!("POST {url}: {e}")),
                };
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = response.bytes().await.unwrap_or_default();
                classify_http(status, retry_after.as_deref(), &body)
            }
            Exporter::DryRun => Answer::Accepted { rejected: 0 },
        }
    }

    /// Sends one batch, retrying "later" answers per `policy`; gives up
    /// early when `stop` turns true. `on_retry` runs before each retry.
    pub async fn deliver(
        &self,
        lane: usize,
        body: Bytes,
        policy: &RetryPolicy,
        stop: &mut watch::Receiver<bool>,
        mut on_retry: impl FnMut(),
    ) -> Delivery {
        let mut backoff = policy.first_backoff;
        let mut retries = 0;
        loop {
            match self.export(lane, body.clone()).await {
                Answer::Accepted { rejected } => return Delivery::Acked { rejected },
                Answer::Failed(why) => return Delivery::Failed(why),
                Answer::Retry { after, reason } => {
                    if retries >= policy.max_retries {
                        return Delivery::Failed(format!(
                            "{reason} (gave up after {retries} retries)"
                        ));
                    }
                    retries += 1;
                    on_retry();
                    let wait = after.unwrap_or(backoff).min(policy.max_wait);
                    backoff = (backoff * 2).min(policy.max_wait);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return Delivery::Stopped,
                    }
                }
            }
        }
    }
}

fn rejected_spans(response: &ExportTraceServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

/// HTTP status → answer; OTLP/HTTP names 429, 502, 503 and 504 retryable.
fn classify_http(status: u16, retry_after: Option<&str>, body: &[u8]) -> Answer {
    match status {
        200..=299 => Answer::Accepted {
            // An empty or non-protobuf body means nothing was rejected.
            rejected: ExportTraceServiceResponse::decode(body).map_or(0, |r| rejected_spans(&r)),
        },
        429 | 502 | 503 | 504 => Answer::Retry {
            after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            reason: format!("HTTP {status}"),
        },
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            Answer::Failed(format!("HTTP {status}: {}", text.trim()))
        }
    }
}

/// gRPC status → answer. `RESOURCE_EXHAUSTED` because of a message-size
/// limit will never pass, so it is a failure, not a retry.
fn classify_grpc(status: &Status) -> Answer {
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::ResourceExhausted if status.message().contains("too large") => Answer::Failed(reason),
        Code::Unavailable | Code::ResourceExhausted => Answer::Retry {
            after: grpc_retry_delay(status),
            reason,
        },
        _ => Answer::Failed(reason),
    }
}

/// `google.rpc.RetryInfo` from the status details, else a `retry-after`
/// header (seconds) in the trailers.
fn grpc_retry_delay(status: &Status) -> Option<Duration> {
    let from_details = RpcStatus::decode(status.details())
        .ok()
        .into_iter()
        .flat_map(|s| s.details)
        .find(|any| any.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|any| RetryInfo::decode(&any.value[..]).ok())
        .and_then(|info| info.retry_delay)
        .map(|d| {
            Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
        });
    from_details.or_else(|| {
        status
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

/// The parts of `google.rpc.Status` needed to find `RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// Sends already-encoded request bytes; decodes the response with prost.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable ExportTraceServiceResponse: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    use super::*;

    #[test]
    fn http_answers_are_classified_as_otlp_says() {
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "bad ids".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            classify_http(200, None, &partial),
            Answer::Accepted { rejected: 3 }
        );
        assert_eq!(
            classify_http(200, None, b""),
            Answer::Accepted { rejected: 0 }
        );
        assert_eq!(
            classify_http(503, Some("2"), b""),
            Answer::Retry {
                after: Some(Duration::from_secs(2)),
                reason: "HTTP 503".into()
            }
        );
        assert!(matches!(
            classify_http(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), b""),
            Answer::Retry { after: None, .. }
        ));
        assert_eq!(
            classify_http(400, None, b"bad protobuf"),
            Answer::Failed("HTTP 400: bad protobuf".into())
        );
    }

    #[test]
    fn grpc_retry_info_is_honoured_and_size_limits_are_not_retried() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 1,
                nanos: 500_000_000,
            }),
        };
        let details = RpcStatus {
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        }
        .encode_to_vec();
        let status = Status::with_details(Code::Unavailable, "overloaded", details.into());
        assert!(matches!(
            classify_grpc(&status),
            Answer::Retry { after: Some(d), .. } if d == Duration::from_millis(1500)
        ));
        assert!(matches!(
            classify_grpc(&Status::resource_exhausted("memory budget")),
            Answer::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify_grpc(&Status::resource_exhausted(
                "Error, decoded message length too large"
            )),
            Answer::Failed(_)
        ));
        assert!(matches!(
            classify_grpc(&Status::invalid_argument("bad span id")),
            Answer::Failed(_)
        ));
    }
}
